"""Where a CPU training step's time goes: each layer of the paper's net (two towers, 227,
batch 128), forward and backward (input and weight gradients), alone, in alexnet_jax's XLA
(with the flags the package sets on import, towers split as `models.Conv` does) and in
PyTorch eager fp32 (towers as `groups`), side by side.

    .venv/bin/python benchmarks/layer_times.py [--batch=128] [--repeats=5]

Prints one JSON line per layer and one for the sums, with the CPU's flags. Needs torch (the
tests' requirements). Run it on a quiet machine.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from alexnet_jax.base import machine  # pylint: disable=wrong-import-position  # and its XLA flags
import jax  # pylint: disable=wrong-import-position
import jax.numpy as jnp  # pylint: disable=wrong-import-position
import numpy as np  # pylint: disable=wrong-import-position

# (name, input HxW, in channels, out channels, kernel, stride, padding, groups): §3.5's net.
CONVS = [("conv1", 227, 3, 96, 11, 4, 0, 1), ("conv2", 27, 96, 256, 5, 1, 2, 2),
         ("conv3", 13, 256, 384, 3, 1, 1, 1), ("conv4", 13, 384, 384, 3, 1, 1, 2),
         ("conv5", 13, 384, 256, 3, 1, 1, 2)]
FCS = [("fc6", 9216, 4096), ("fc7", 4096, 4096), ("fc8", 4096, 1000)]


def _median(fn, warmup: int, repeats: int) -> float:
  for _ in range(warmup):
    fn()
  times = []
  for _ in range(repeats):
    t = time.perf_counter()
    fn()
    times.append(time.perf_counter() - t)
  return statistics.median(times)


def jax_layer(kind: str, spec, batch: int):
  rng = np.random.default_rng(0)
  if kind == "conv":
    _, size, cin, cout, k, stride, pad, groups = spec
    x = jnp.asarray(rng.normal(size=(batch, size, size, cin)), jnp.float32)
    w = jnp.asarray(rng.normal(size=(k, k, cin // groups, cout)) * 0.01, jnp.float32)

    def conv(x, w):
      return jax.lax.conv_general_dilated(x, w, (stride, stride), [(pad, pad)] * 2,
                                          dimension_numbers=("NHWC", "HWIO", "NHWC"))

    def f(x, w):   # towers as models.Conv computes them: split, convolved, concatenated
      y = jnp.concatenate([conv(a, b) for a, b in zip(jnp.split(x, groups, axis=-1),
                                                        jnp.split(w, groups, axis=-1))], -1)
      return jnp.sum(y * y)
  else:
    _, fin, fout = spec
    x = jnp.asarray(rng.normal(size=(batch, fin)), jnp.float32)
    w = jnp.asarray(rng.normal(size=(fin, fout)) * 0.01, jnp.float32)

    def f(x, w):
      y = x @ w
      return jnp.sum(y * y)
  step = jax.jit(jax.grad(f, argnums=(0, 1)))
  return lambda: jax.block_until_ready(step(x, w))


def torch_layer(kind: str, spec, batch: int):
  import torch  # pylint: disable=import-outside-toplevel
  torch.manual_seed(0)
  if kind == "conv":
    _, size, cin, cout, k, stride, pad, groups = spec
    layer = torch.nn.Conv2d(cin, cout, k, stride, pad, groups=groups, bias=False)
    x = torch.randn(batch, cin, size, size, requires_grad=True)
  else:
    _, fin, fout = spec
    layer = torch.nn.Linear(fin, fout, bias=False)
    x = torch.randn(batch, fin, requires_grad=True)

  def run():
    layer.zero_grad(set_to_none=True)
    x.grad = None
    y = layer(x)
    (y * y).sum().backward()
  return run


def main():
  p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  p.add_argument("--batch", type=int, default=128)
  p.add_argument("--warmup", type=int, default=2)
  p.add_argument("--repeats", type=int, default=5)
  a = p.parse_args()
  import torch  # pylint: disable=import-outside-toplevel
  torch.set_num_threads(os.cpu_count() or 1)
  cpu = machine.cpu()
  sums = {"jax_s": 0.0, "torch_s": 0.0}
  for kind, specs in (("conv", CONVS), ("fc", FCS)):
    for spec in specs:
      j = _median(jax_layer(kind, spec, a.batch), a.warmup, a.repeats)
      t = _median(torch_layer(kind, spec, a.batch), a.warmup, a.repeats)
      sums["jax_s"] += j
      sums["torch_s"] += t
      print(json.dumps({"layer": spec[0], "batch": a.batch, "jax_fwd_bwd_s": round(j, 4),
                        "torch_fwd_bwd_s": round(t, 4), "torch_over_jax": round(t / j, 2)}),
            flush=True)
  print(json.dumps({"layers": "all", **{k: round(v, 4) for k, v in sums.items()},
                    "torch_over_jax": round(sums["torch_s"] / sums["jax_s"], 2),
                    "jax": jax.__version__, "torch": torch.__version__, **cpu}))


if __name__ == "__main__":
  main()
