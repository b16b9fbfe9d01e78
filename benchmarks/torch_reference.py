"""PyTorch CPU timings of the same nets that alexnet_jax trains, for a side-by-side table.

Run it in its own venv (benchmarks/requirements.txt), so that torch never enters the
project's, and in the same quiet period as `python -m launch.benchmark`:

    .venv-torch/bin/python benchmarks/torch_reference.py --net paper            # 227, batch 128
    .venv-torch/bin/python benchmarks/torch_reference.py --net paper --no-lrn
    .venv-torch/bin/python benchmarks/torch_reference.py --net cifar --image-size 32
    .venv-torch/bin/python benchmarks/torch_reference.py --net paper --compile --bf16

It times a full SGD step (forward, backward, momentum and weight decay) and prints one JSON
line with the CPU's flags. `--compile` runs the model under `torch.compile`; `--bf16` runs
the forward and the loss under `torch.autocast("cpu", dtype=torch.bfloat16)`, PyTorch's
mixed precision on a CPU (weights and the optimiser stay fp32, as in alexnet_jax's
`model.dtype=bfloat16`). LRN follows the paper's reading of alpha (torch divides alpha by n, so it is given
n * alpha); the `cifar` net is models.py's preset `conv_local_11pct_as_conv` (cuda-convnet's
layers-conv-local-11pct with its locally-connected layers as convolutions).
"""
import argparse
import contextlib
import json
import os
import statistics
import sys
import time

import torch
from torch import nn

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from alexnet_jax.base import machine  # pylint: disable=wrong-import-position  # standard library only


def paper_net(lrn: bool, overlap: bool, towers: int, classes: int) -> nn.Module:
  """§3.5: five conv layers (conv2, conv4, conv5 grouped by tower), three FC layers."""
  def norm():
    return nn.LocalResponseNorm(5, alpha=5 * 1e-4, beta=0.75, k=2.0) if lrn else nn.Identity()

  pool = lambda: nn.MaxPool2d(3, 2) if overlap else nn.MaxPool2d(2, 2)
  return nn.Sequential(
      nn.Conv2d(3, 96, 11, 4), nn.ReLU(), norm(), pool(),
      nn.Conv2d(96, 256, 5, padding=2, groups=towers), nn.ReLU(), norm(), pool(),
      nn.Conv2d(256, 384, 3, padding=1), nn.ReLU(),
      nn.Conv2d(384, 384, 3, padding=1, groups=towers), nn.ReLU(),
      nn.Conv2d(384, 256, 3, padding=1, groups=towers), nn.ReLU(), pool(),
      nn.Flatten(), nn.LazyLinear(4096), nn.ReLU(), nn.Dropout(0.5),
      nn.Linear(4096, 4096), nn.ReLU(), nn.Dropout(0.5), nn.Linear(4096, classes))


def cifar_net(lrn: bool, overlap: bool, classes: int) -> nn.Module:
  """conv 64 5x5, pool, LRN; conv 64 5x5, LRN, pool; conv 64 3x3; conv 32 3x3; linear.
  LRN n=9, alpha=1e-3 already in cuda-convnet's (and torch's) divided-by-n reading, k=1."""
  norm = lambda: nn.LocalResponseNorm(9, alpha=1e-3, beta=0.75, k=1.0) if lrn else nn.Identity()
  pool = lambda: nn.MaxPool2d(3, 2) if overlap else nn.MaxPool2d(2, 2)
  return nn.Sequential(
      nn.Conv2d(3, 64, 5, padding=2), nn.ReLU(), pool(), norm(),
      nn.Conv2d(64, 64, 5, padding=2), nn.ReLU(), norm(), pool(),
      nn.Conv2d(64, 64, 3, padding=1), nn.ReLU(),
      nn.Conv2d(64, 32, 3, padding=1), nn.ReLU(),
      nn.Flatten(), nn.LazyLinear(classes))


def main() -> None:
  p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  p.add_argument("--net", choices=["paper", "cifar"], default="paper")
  p.add_argument("--batch", type=int, default=128)
  p.add_argument("--image-size", type=int, default=227)
  p.add_argument("--classes", type=int, default=None, help="default: 1000 paper, 10 cifar")
  p.add_argument("--no-lrn", action="store_true")
  p.add_argument("--no-overlap", action="store_true")
  p.add_argument("--towers", type=int, default=2, choices=[1, 2])
  p.add_argument("--warmup", type=int, default=2)
  p.add_argument("--repeats", type=int, default=5)
  p.add_argument("--compile", action="store_true", help="torch.compile the model")
  p.add_argument("--bf16", action="store_true", help="autocast the forward and loss to bf16")
  a = p.parse_args()
  torch.manual_seed(0)
  classes = a.classes or (1000 if a.net == "paper" else 10)
  model = (paper_net(not a.no_lrn, not a.no_overlap, a.towers, classes) if a.net == "paper"
           else cifar_net(not a.no_lrn, not a.no_overlap, classes))
  x = torch.randn(a.batch, 3, a.image_size, a.image_size)
  y = torch.randint(0, classes, (a.batch,))
  model(x)   # sizes the lazy layer
  opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9, weight_decay=5e-4)
  loss_fn = nn.CrossEntropyLoss()
  forward = torch.compile(model) if a.compile else model

  def step():
    opt.zero_grad(set_to_none=True)
    with (torch.autocast("cpu", dtype=torch.bfloat16) if a.bf16 else contextlib.nullcontext()):
      loss = loss_fn(forward(x), y)
    loss.backward()
    opt.step()

  for _ in range(a.warmup):
    step()
  times = []
  for _ in range(a.repeats):
    t = time.perf_counter()
    step()
    times.append(time.perf_counter() - t)
  median = statistics.median(times)
  print(json.dumps({"framework": f"torch {torch.__version__}", "threads": torch.get_num_threads(),
                    **machine.cpu(), "compile": a.compile, "bf16": a.bf16, "net": a.net, "batch": a.batch, "image_size": a.image_size,
                    "lrn": not a.no_lrn, "overlap": not a.no_overlap,
                    "train_step_s": round(median, 4),
                    "train_images_per_s": round(a.batch / median, 1)}))


if __name__ == "__main__":
  main()
