"""Prepared datasets: every image stored once as a square of fixed size (§2), in ArrayRecord.

The paper down-sampled every ImageNet image to 256x256 before training (§2: shorter side to
256, then the central 256x256 patch): `square`, with PIL's bicubic resize, which
antialiases when shrinking. `launch.prepare` does that once; training then reads fixed-size
uint8 squares and does the rest (random crops, flips, lighting) on the device.

A prepared dataset is a folder:

    <root>/dataset.json                       what is in it (`read_info`)
    <root>/<split>-00000-of-00008.array_record  shards; records in a fixed shuffled order

`dataset.json` holds `format_version`, `encoding` ('raw' or 'jpeg'), `image_size` (S),
`class_names` (label order) and, per split, `num_examples`, `files` and `class_counts`, plus
the files skipped when preparing (`skipped`). Each record is a little-endian int32 label
followed by the image: S*S*3 uint8 bytes (HWC, RGB) for 'raw', a JPEG file for 'jpeg'.

Split specs: 'train', or a slice of one: 'train[:90%]', 'train[90%:]', 'test[:100]'. The
records are stored shuffled, so a slice holds every class in proportion.

Only numpy, PIL and grain: nothing here imports TensorFlow.
"""
from __future__ import annotations

import io
import json
import os
import re
import struct

import numpy as np
from PIL import Image

FORMAT_VERSION = 1
INFO_FILE = "dataset.json"
ENCODINGS = ("raw", "jpeg")
_LABEL = struct.Struct("<i")


def square(image: Image.Image, size: int) -> Image.Image:
  """Shorter side to `size`, then the central size x size crop (§2); squares of `size` pass."""
  width, height = image.size
  if (width, height) == (size, size):
    return image
  scale = size / min(width, height)
  new_w, new_h = max(size, round(width * scale)), max(size, round(height * scale))
  image = image.resize((new_w, new_h), Image.BICUBIC)
  left, top = (new_w - size) // 2, (new_h - size) // 2
  return image.crop((left, top, left + size, top + size))


def torchvision_square(image: Image.Image, size: int, crop: int) -> Image.Image:
  """The `size` square whose central `crop` x `crop` pixels are torchvision's
  `Resize(size)` then `CenterCrop(crop)` of `image`, pixel for pixel.

  torchvision resizes the shorter side to `size` with PIL's bilinear filter (antialiased),
  the longer side to int(size * long / short) (truncated), and centre-crops at
  round((side - crop) / 2) (Python's round: halves to even); `augment.eval_images` then takes
  the crop at (size - crop) // 2 of this square. Pixels outside the central crop are the
  resized image's, so ten crops are taken from this square, not from torchvision's."""
  width, height = image.size
  short, long = min(width, height), max(width, height)
  new_short, new_long = size, int(size * long / short)
  new_w, new_h = (new_short, new_long) if width <= height else (new_long, new_short)
  if (new_w, new_h) != (width, height):
    image = image.resize((new_w, new_h), Image.BILINEAR)
  margin = (size - crop) // 2
  left = int(round((new_w - crop) / 2.0)) - margin
  top = int(round((new_h - crop) / 2.0)) - margin
  return image.crop((left, top, left + size, top + size))


RESIZE_CONVENTIONS = ("paper", "torchvision")


def to_rgb(image: Image.Image) -> Image.Image:
  """Grey, grey+alpha, palette, RGBA, CMYK ... -> RGB (alpha dropped)."""
  if image.mode == "RGB":
    return image
  if image.mode == "P" and "transparency" in image.info:
    image = image.convert("RGBA")
  return image.convert("RGB")


def encode(label: int, payload: bytes) -> bytes:
  """One record: the label, then the image bytes (raw pixels or a JPEG file)."""
  return _LABEL.pack(int(label)) + payload


def decode(record: bytes, encoding: str, size: int) -> tuple[np.ndarray, int]:
  """One record -> (uint8 [size, size, 3], label)."""
  (label,) = _LABEL.unpack_from(record)
  if encoding == "raw":
    image = np.frombuffer(record, np.uint8, offset=_LABEL.size).reshape(size, size, 3)
  else:
    with Image.open(io.BytesIO(record[_LABEL.size:])) as im:
      image = np.asarray(im.convert("RGB"))
  return image, label


def shard_name(split: str, index: int, count: int) -> str:
  return f"{split}-{index:05d}-of-{count:05d}.array_record"


def info_path(root: str) -> str:
  return os.path.join(os.path.expanduser(root), INFO_FILE)


def read_info(root: str) -> dict:
  """`<root>/dataset.json`; ValueError (one line) if `root` is not a prepared dataset."""
  if not root:
    raise ValueError("data.data_dir is not set: point it at a dataset written by "
                     "`python -m launch.prepare`")
  path = info_path(root)
  if not os.path.isfile(path):
    hint = ("it looks like an image folder; prepare it first: python -m launch.prepare "
            f"--source={root} --out=<new folder>" if os.path.isdir(root)
            else "the folder does not exist")
    raise ValueError(f"{root!r} is not a prepared dataset (no {INFO_FILE}): {hint}")
  with open(path) as f:
    info = json.load(f)
  if info.get("format_version") != FORMAT_VERSION:
    raise ValueError(f"{path}: format_version {info.get('format_version')!r}, this code reads "
                     f"{FORMAT_VERSION}; prepare the dataset again")
  return info


_SPEC = re.compile(r"^(?P<split>[\w-]+)(?:\[(?P<start>-?\d+%?)?:(?P<stop>-?\d+%?)?\])?$")


def _bound(text: str | None, n: int, default: int) -> int:
  if not text:
    return default
  value = int(text.rstrip("%"))
  if text.endswith("%"):
    value = round(value * n / 100)
  if value < 0:
    value += n
  return min(max(value, 0), n)


def resolve_split(info: dict, spec: str) -> tuple[str, int, int]:
  """A split spec -> (split name, first record, end record); ValueError naming the splits."""
  m = _SPEC.match(spec.replace(" ", ""))
  splits = info["splits"]
  if not m or m["split"] not in splits:
    raise ValueError(f"split {spec!r} is not in the dataset (splits: "
                     f"{', '.join(sorted(splits))}; a slice reads like 'train[:90%]')")
  n = int(splits[m["split"]]["num_examples"])
  start, stop = _bound(m["start"], n, 0), _bound(m["stop"], n, n)
  if stop <= start:
    raise ValueError(f"split {spec!r} is empty ({n} examples in {m['split']!r})")
  return m["split"], start, stop


def split_files(root: str, info: dict, split: str) -> list[str]:
  return [os.path.join(os.path.expanduser(root), f) for f in info["splits"][split]["files"]]
