"""How fast `launch.prepare` makes §2's 256x256 squares from ImageNet-sized JPEGs, per core.

    .venv/bin/python benchmarks/prepare_speed.py [--images=1200] [--source=<jpeg folder>]

Makes (once, in /tmp/alexnet_prepare_speed) a folder source of full-size JPEGs with
ILSVRC-2012's size distribution (mostly 500x375, 375x500 and 500x333, some 500x500, a few
of 600-1,300 and 1,600-2,600 pixels: mean about 500x440), drawn from the photos in
`--source` (any folder of JPEGs, e.g. Imagenette) upscaled with photographic grain and
saved at quality 92. Then, one core, from bytes in memory: PIL's decode, the old path (PIL
decode and PIL bicubic, `old_square`), and today's (`records.decode_image` and
`records.square_pixels`), with the mean absolute difference of today's squares from the
old; and `prepare.prepare` end to end (reading the files, writing raw shards) with 1 and 2
workers. Prints one JSON line with the CPU's model and flags. Run it on a quiet machine.
"""
from __future__ import annotations

import argparse
import glob
import io
import json
import os
import shutil
import tempfile
import time

import sys

import numpy as np
from PIL import Image

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from alexnet_jax.base import machine, records
from alexnet_jax.data import prepare  # pylint: disable=wrong-import-position

CACHE = "/tmp/alexnet_prepare_speed"


def _size(rng) -> tuple[int, int]:
  r = rng.random()
  if r < 0.60:
    return (500, 375) if rng.random() < 0.7 else (375, 500)
  if r < 0.80:
    return (500, 333) if rng.random() < 0.7 else (333, 500)
  if r < 0.93:
    return 500, 500
  w = int(rng.integers(600, 1300) if r < 0.99 else rng.integers(1600, 2600))
  return w, int(w * rng.uniform(0.6, 0.85))


def make_images(source: str, count: int) -> str:
  """`count` full-size JPEGs as a folder source `<root>/train/<class>/`, made once."""
  root = os.path.join(CACHE, f"jpegs_{count}")
  if os.path.isdir(root):
    return root
  files = sorted(glob.glob(os.path.join(source, "**", "*.JPEG"), recursive=True) +
                 glob.glob(os.path.join(source, "**", "*.jpg"), recursive=True))
  if not files:
    raise SystemExit(f"no JPEGs under {source}")
  rng = np.random.default_rng(0)
  tmp = tempfile.mkdtemp(dir=os.path.dirname(root) if os.path.isdir(CACHE) else None)
  for i in range(count):
    w, h = _size(rng)
    photo = Image.open(files[i % len(files)]).convert("RGB").resize((w, h), Image.BICUBIC)
    grain = rng.integers(-12, 13, (h, w, 3))
    pixels = np.clip(np.asarray(photo).astype(np.int16) + grain, 0, 255).astype(np.uint8)
    folder = os.path.join(tmp, "train", f"c{i % 10}")
    os.makedirs(folder, exist_ok=True)
    Image.fromarray(pixels).save(os.path.join(folder, f"{i:05d}.JPEG"), quality=92)
  os.makedirs(CACHE, exist_ok=True)
  os.rename(tmp, root)
  return root


def old_square(data: bytes, size: int) -> np.ndarray:
  """The path before: PIL decodes, PIL's bicubic resize (antialiased), the central crop."""
  image = Image.open(io.BytesIO(data)).convert("RGB")
  width, height = image.size
  scale = size / min(width, height)
  new_w, new_h = max(size, round(width * scale)), max(size, round(height * scale))
  image = image.resize((new_w, new_h), Image.BICUBIC)
  left, top = (new_w - size) // 2, (new_h - size) // 2
  return np.asarray(image.crop((left, top, left + size, top + size)))


def new_square(data: bytes, size: int) -> np.ndarray:
  return records.square_pixels(records.decode_image(data, size), size)


def _rate(fn, items) -> float:
  for item in items[:10]:
    fn(item)
  start = time.perf_counter()
  for item in items:
    fn(item)
  return len(items) / (time.perf_counter() - start)


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--images", type=int, default=1200)
  parser.add_argument("--source", default=os.path.join(
      os.environ.get("ALEXNET_DATA_DIR", "../shared/data"), "imagenette"))
  args = parser.parse_args()
  root = make_images(args.source, args.images)
  paths = sorted(glob.glob(os.path.join(root, "train", "*", "*.JPEG")))
  data = [open(p, "rb").read() for p in paths]
  sizes = np.array([Image.open(io.BytesIO(d)).size for d in data])
  result = {**machine.cpu(), "images": len(data), "mean_size": sizes.mean(0).round(1).tolist(),
            "mean_kb": round(float(np.mean([len(d) for d in data])) / 1e3, 1)}
  sample = data[:300]
  result["one_core_images_per_s"] = {
      "pil_decode": _rate(lambda d: Image.open(io.BytesIO(d)).convert("RGB"), sample),
      "decode_image": _rate(lambda d: records.decode_image(d, 256), sample),
      "old_square": _rate(lambda d: old_square(d, 256), sample),
      "new_square": _rate(lambda d: new_square(d, 256), sample)}
  result["mean_abs_diff_new_vs_old"] = float(np.mean(
      [np.abs(new_square(d, 256).astype(int) - old_square(d, 256)).mean() for d in sample[:100]]))
  result["prepare_images_per_s"] = {}
  for workers in (1, 2):
    out = tempfile.mkdtemp(dir=CACHE)
    start = time.perf_counter()
    prepare.prepare(root, out, size=256, workers=workers, progress=False)
    result["prepare_images_per_s"][workers] = len(data) / (time.perf_counter() - start)
    shutil.rmtree(out)
  for group in ("one_core_images_per_s", "prepare_images_per_s"):
    result[group] = {k: round(v, 1) for k, v in result[group].items()}
  print(json.dumps(result))


if __name__ == "__main__":
  main()
