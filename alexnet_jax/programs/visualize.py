"""The paper's Figure 3: conv1's kernels as RGB tiles, one block of rows per tower.

In the paper the 48 kernels on GPU 1 came out largely colour-agnostic and the 48 on GPU 2
largely colour-specific (§6.1); laying the towers out separately makes that visible.
"""
from __future__ import annotations

import numpy as np

from alexnet_jax.base import workdir as workdir_lib


def kernel_grid(kernel: np.ndarray, towers: int, columns: int = 16, gap: int = 1) -> np.ndarray:
  """[kh, kw, 3, C] conv1 kernel -> an RGB image in [0, 1], towers one under the other.

  Each kernel is scaled on its own to fill [0, 1], as such figures usually are.
  """
  kh, kw, cin, c = kernel.shape
  if cin != 3:
    raise ValueError(f"conv1 kernel has {cin} input channels; expected RGB (3)")
  per_tower = c // towers
  rows_per_tower = -(-per_tower // columns)
  tower_gap = 3 * gap
  height = towers * rows_per_tower * (kh + gap) + (towers - 1) * tower_gap
  width = columns * (kw + gap) - gap
  image = np.ones((height, width, 3), np.float32)
  for i in range(c):
    tower, j = divmod(i, per_tower)
    row, col = divmod(j, columns)
    tile = kernel[..., i]
    tile = (tile - tile.min()) / max(float(tile.max() - tile.min()), 1e-12)
    top = tower * (rows_per_tower * (kh + gap) + tower_gap) + row * (kh + gap)
    left = col * (kw + gap)
    image[top:top + kh, left:left + kw] = tile
  return image


def save_kernel_figure(kernel: np.ndarray, towers: int, path: str, title: str = "") -> None:
  import matplotlib
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt

  image = kernel_grid(np.asarray(kernel, np.float32), towers)
  fig, ax = plt.subplots(figsize=(8, 8 * image.shape[0] / image.shape[1] + 0.6))
  ax.imshow(image, interpolation="nearest")
  ax.set_axis_off()
  ax.set_title(title or f"conv1 kernels, {towers} tower(s): tower 1 above tower 2")
  fig.savefig(path, dpi=150, bbox_inches="tight")
  plt.close(fig)


def save_training_curves(curves: dict[str, list[dict]], path: str, title: str = "") -> None:
  """Training loss and validation top-1 error against epoch, one line per run.

  `curves` maps a run's label to its metrics.jsonl records (`workdir.read_metrics`).
  """
  import matplotlib   # pylint: disable=import-outside-toplevel
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt   # pylint: disable=import-outside-toplevel

  fig, (loss_ax, err_ax) = plt.subplots(1, 2, figsize=(12, 4.5))
  for label, records in curves.items():
    train = [(r["epoch"], r["train_loss"]) for r in records if "train_loss" in r]
    evals = [(r["epoch"], r["eval_top1_error"]) for r in records if "eval_top1_error" in r]
    if train:
      loss_ax.plot(*zip(*train), label=label)
    if evals:
      err_ax.plot(*zip(*evals), marker="o", markersize=3, label=label)
  for ax, ylabel in ((loss_ax, "training loss"), (err_ax, "validation top-1 error")):
    label_epochs(ax, ylabel)
  save_figure(fig, path, title)


def label_epochs(ax, ylabel: str, fontsize: int = 8) -> None:
  """Axis labels, grid and legend of a curve against epoch."""
  ax.set_xlabel("epoch")
  ax.set_ylabel(ylabel)
  ax.grid(alpha=0.3)
  ax.legend(fontsize=fontsize)


def save_figure(fig, path: str, title: str = "") -> None:
  """Title, layout, and an atomic write of `fig` to `path` (PNG by its extension)."""
  import matplotlib.pyplot as plt   # pylint: disable=import-outside-toplevel
  if title:
    fig.suptitle(title)
  fig.tight_layout()
  with workdir_lib.atomic(path) as tmp:
    fig.savefig(tmp, dpi=110)
  plt.close(fig)


def save_index_figure(runs: dict[str, dict], path: str) -> None:
  """Every conv1 kernel's colour index (`colour.run_statistics` of each run, by name), one
  column of dots per half (tower or random half) with its mean as a bar; 2/3 is where
  kernels of pure noise sit."""
  import matplotlib   # pylint: disable=import-outside-toplevel
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt   # pylint: disable=import-outside-toplevel

  fig, ax = plt.subplots(figsize=(max(6.0, 1.6 * len(runs) + 1.5), 4))
  jitter = np.random.default_rng(0)
  for i, (name, r) in enumerate(runs.items()):
    index = np.asarray(r["index"])
    for h, (half, dots) in enumerate(zip(r["half_kernels"], ("tab:gray", "tab:red"))):
      x = 3 * i + h
      ax.scatter(x + 0.15 * jitter.standard_normal(len(half)), index[half], s=8,
                 color=dots, alpha=0.7)
      ax.plot([x - 0.35, x + 0.35], [index[half].mean()] * 2, color="black")
  ax.axhline(2 / 3, color="tab:blue", linestyle=":", linewidth=1, label="noise (2/3)")
  ax.set_xticks([3 * i + 0.5 for i in range(len(runs))],
                [f"{n}\n({'towers' if r['towers'] == 2 else 'random halves'})"
                 for n, r in runs.items()], fontsize=8)
  ax.set_ylabel("colour index (0 grey, 1 colour only)")
  ax.set_ylim(-0.02, 1.02)
  ax.legend(fontsize=8)
  save_figure(fig, path, "conv1's colour index by half: 1 grey, 2 red, means as bars")
