"""alexnet_jax/__init__.py sets XLA:CPU's convolution flag on import (environment.py): it
is set when absent, a user's own setting wins, and convolutions give the same numbers with
and without it."""
import os
import subprocess
import sys

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CONV = """
import os, sys
import numpy as np
if sys.argv[1] == "with":
  import alexnet_jax  # noqa: F401  (sets XLA_FLAGS before jax starts)
import jax
x = jax.random.normal(jax.random.key(0), (4, 35, 35, 3))
w = jax.random.normal(jax.random.key(1), (11, 11, 3, 16)) * 0.1
f = lambda x, w: jax.lax.conv_general_dilated(x, w, (4, 4), "VALID",
                                              dimension_numbers=("NHWC", "HWIO", "NHWC"))
y, grad = jax.value_and_grad(lambda w: (f(x, w) ** 2).sum())(w)
np.save(sys.argv[2], np.asarray(grad))
print(os.environ.get("XLA_FLAGS", ""))
"""


def run(mode, out, xla_flags=None):
  env = {k: v for k, v in os.environ.items() if k != "XLA_FLAGS"}
  if xla_flags is not None:
    env["XLA_FLAGS"] = xla_flags
  proc = subprocess.run([sys.executable, "-c", CONV, mode, str(out)], capture_output=True,
                        text=True, cwd=ROOT, env=env, timeout=120)
  assert proc.returncode == 0, proc.stderr[-2000:]
  return proc.stdout.strip()


def test_conv_flag_is_set_when_absent_kept_when_given_and_changes_no_numbers(tmp_path):
  flags = run("with", tmp_path / "with.npy")
  assert "--xla_cpu_experimental_ynn_fusion_type=-individual_convolution" in flags
  assert run("without", tmp_path / "without.npy") == ""
  own = "--xla_cpu_experimental_ynn_fusion_type=-individual_convolution,-dot"
  assert run("with", tmp_path / "own.npy", own) == own   # the user's setting, untouched
  np.testing.assert_allclose(np.load(tmp_path / "with.npy"), np.load(tmp_path / "without.npy"),
                             rtol=2e-5, atol=1e-4)
