"""Draws conv1's kernels as 11x11 RGB tiles, one block per tower (the paper's Figure 3).

    python -m launch.visualize --workdir=DIR [--step=latest|best|N] [--out=DIR/conv1_kernels.png]
"""
import jax
import numpy as np
from absl import flags

from alexnet_jax.base import workdir as workdir_lib
from alexnet_jax.programs import inference, visualize
from launch import cli

_WORKDIR = flags.DEFINE_string("workdir", None, "A training workdir.")
_STEP = flags.DEFINE_string("step", "latest", "latest, best, or a step number.")
_OUT = flags.DEFINE_string("out", None, "PNG path (default: <workdir>/conv1_kernels.png).")


def main(argv):
  del argv
  step = int(_STEP.value) if _STEP.value.isdigit() else _STEP.value
  restored = inference.load(_WORKDIR.value, step, devices=jax.local_devices()[:1])
  kernel = np.asarray(jax.device_get(restored.params["conv1"]["kernel"]))
  towers = restored.cfg.model.towers
  out = _OUT.value or workdir_lib.kernels_path(_WORKDIR.value)
  cli.check_writable(out, "--out")
  visualize.save_kernel_figure(
      kernel, towers, out,
      title=f"conv1 kernels at step {restored.step}: {towers} tower(s), tower 1 on top")
  print(out)


if __name__ == "__main__":
  flags.mark_flags_as_required(["workdir"])
  cli.run(main)
