"""A small, learnable image-folder dataset for the offline quick start (no download).

`make_shapes_dataset(root)` writes `root/{train,test}/<class>/NNNN.jpg`: coloured shapes and
stripe patterns at random positions, scales and colours, with pixel noise;
`make_prepared_shapes(root)` writes them as a prepared dataset (records.py), which
`data.name = 'shapes'` makes in the workdir. Only numpy and PIL; deterministic for a seed.
"""
from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from typing import Callable, Iterator

import numpy as np
from PIL import Image, ImageDraw

COMPLETE_MARKER = "COMPLETE"  # written last: its presence means the dataset is whole

# Class name -> drawer. Labels follow the sorted names (as for any image folder).
_CLASS_ORDER = ("circle", "hstripes", "vstripes", "checker", "cross", "square", "triangle", "ring")


def _colours(rng: np.random.Generator) -> tuple[tuple[int, ...], tuple[int, ...]]:
  """Background and foreground colours that differ clearly (no class is told by colour)."""
  while True:
    bg, fg = rng.integers(0, 256, size=(2, 3))
    if np.abs(bg - fg).sum() > 200:
      return tuple(int(v) for v in bg), tuple(int(v) for v in fg)


def _draw(name: str, size: int, rng: np.random.Generator) -> np.ndarray:
  bg, fg = _colours(rng)
  img = Image.new("RGB", (size, size), bg)
  d = ImageDraw.Draw(img)
  r = rng.uniform(0.18, 0.38) * size                      # half extent of the shape
  cx, cy = rng.uniform(r, size - r, size=2)              # fully inside the image
  box = (cx - r, cy - r, cx + r, cy + r)
  period = int(rng.integers(max(4, size // 12), max(6, size // 5)))
  phase = int(rng.integers(0, period))
  if name == "circle":
    d.ellipse(box, fill=fg)
  elif name == "square":
    d.rectangle(box, fill=fg)
  elif name == "triangle":
    d.polygon([(cx, cy - r), (cx - r, cy + r), (cx + r, cy + r)], fill=fg)
  elif name == "ring":
    d.ellipse(box, outline=fg, width=max(2, int(r / 3)))
  elif name == "cross":
    w = max(2, r / 3)
    d.rectangle((cx - r, cy - w, cx + r, cy + w), fill=fg)
    d.rectangle((cx - w, cy - r, cx + w, cy + r), fill=fg)
  elif name in ("hstripes", "vstripes", "checker"):
    a = np.asarray(img).copy()
    idx = (np.arange(size) + phase) // (period // 2 or 1) % 2 == 1
    if name == "hstripes":
      mask = np.broadcast_to(idx[:, None], (size, size))
    elif name == "vstripes":
      mask = np.broadcast_to(idx[None, :], (size, size))
    else:
      mask = idx[:, None] ^ idx[None, :]
    a[mask] = fg
    img = Image.fromarray(a)
  else:
    raise ValueError(f"unknown shape class {name!r}")
  a = np.asarray(img, dtype=np.float32)
  a += rng.normal(0.0, 12.0, size=a.shape)                # pixel noise
  return np.clip(a, 0, 255).astype(np.uint8)


@contextlib.contextmanager
def _built_beside(root: str, is_done: Callable[[str], bool]) -> Iterator[str]:
  """Yields a temporary folder beside `root` to fill, and renames it to `root` when the
  block succeeds (replacing an incomplete leftover of a crashed run), so that a crash never
  leaves half of one; where another process finished `root` first (`is_done(root)`), its
  folder is kept. A folder that cannot be made is an OSError naming `root`."""
  parent = os.path.dirname(root)
  try:
    os.makedirs(parent, exist_ok=True)
    tmp = tempfile.mkdtemp(prefix=os.path.basename(root) + ".tmp-", dir=parent)
  except OSError as e:
    raise OSError(f"cannot write the generated dataset {root}: {e.strerror or e}") from e
  try:
    yield tmp
    if os.path.exists(root):           # an incomplete leftover from a crashed run
      shutil.rmtree(root)
    try:
      os.rename(tmp, root)
    except OSError:                    # another process finished first
      if not is_done(root):
        raise
  finally:
    shutil.rmtree(tmp, ignore_errors=True)


def make_shapes_dataset(root: str, *, num_classes: int = 4, train_per_class: int = 200,
                        test_per_class: int = 50, size: int = 64, seed: int = 0) -> str:
  """Writes `root/{train,test}/<class>/NNNN.jpg` once and returns `root`.

  Idempotent: when `root/COMPLETE` exists nothing is written. The dataset is built in a
  temporary folder beside `root` and renamed into place, so a crash never leaves half of one.
  Each image's randomness comes from (seed, split, class, index) alone.
  """
  if not 1 <= num_classes <= len(_CLASS_ORDER):
    raise ValueError(f"num_classes must be in 1..{len(_CLASS_ORDER)}, got {num_classes}")
  root = os.path.abspath(os.path.expanduser(root))
  if os.path.exists(os.path.join(root, COMPLETE_MARKER)):
    return root
  with _built_beside(root, lambda r: os.path.exists(os.path.join(r, COMPLETE_MARKER))) as tmp:
    names = _CLASS_ORDER[:num_classes]
    for split_id, (split, per_class) in enumerate((("train", train_per_class),
                                                   ("test", test_per_class))):
      for class_id, name in enumerate(names):
        folder = os.path.join(tmp, split, name)
        os.makedirs(folder)
        for i in range(per_class):
          rng = np.random.default_rng([seed, split_id, class_id, i])
          Image.fromarray(_draw(name, size, rng)).save(
              os.path.join(folder, f"{i:04d}.jpg"), "JPEG", quality=90)
    with open(os.path.join(tmp, COMPLETE_MARKER), "w") as f:
      f.write(f"classes={','.join(names)} train_per_class={train_per_class} "
              f"test_per_class={test_per_class} size={size} seed={seed}\n")
  return root


def make_prepared_shapes(root: str, *, num_classes: int = 4, size: int = 64, seed: int = 0,
                         train_per_class: int = 200, test_per_class: int = 50) -> str:
  """The shapes dataset as a prepared dataset (records.py) at `root`, made once.

  The JPEG folder is written and prepared in a temporary folder beside `root`, then renamed
  into place: every process of a job may call this, and a crash never leaves half of one.
  A folder that cannot be written (read-only, full) is an OSError naming it, in one line.
  """
  from alexnet_jax.base import records
  from alexnet_jax.data import prepare  # pylint: disable=import-outside-toplevel
  root = os.path.abspath(os.path.expanduser(root))
  if os.path.exists(records.info_path(root)):
    return root
  with _built_beside(root, lambda r: os.path.exists(records.info_path(r))) as tmp:
    try:
      images = make_shapes_dataset(os.path.join(tmp, "images"), num_classes=num_classes,
                                   size=size, seed=seed, train_per_class=train_per_class,
                                   test_per_class=test_per_class)
      prepare.prepare(images, tmp, size=size, workers=0, progress=False)
    except OSError as e:   # a full disk, mid-way
      raise OSError(f"cannot write the generated dataset {root} (in {tmp}): "
                    f"{e.strerror or e}") from e
    shutil.rmtree(images)
  return root
