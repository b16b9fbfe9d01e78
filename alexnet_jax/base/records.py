"""Prepared datasets: every image stored once as a square of fixed size (§2), in ArrayRecord.

The paper down-sampled every ImageNet image to 256x256 before training (§2: shorter side to
256, then the central 256x256 patch): `square_pixels`, a bicubic (Catmull-Rom) resize
widened by the shrink factor so that it antialiases, run in libvips. `launch.prepare` does that once; training then reads fixed-size
uint8 squares and does the rest (random crops, flips, lighting) on the device.

A prepared dataset is a folder:

    <root>/dataset.json                       what is in it (`read_info`)
    <root>/<split>-00000-of-00008.array_record  shards; records in a fixed shuffled order

`dataset.json` holds `format_version`, `encoding` ('raw' or 'jpeg'), `image_size` (S),
`class_names` (label order) and, per split, `num_examples`, `files`, `class_counts` and
`shards` (each file's record count, size in bytes and sha256), plus the files skipped when
preparing (`skipped`). `check_split` compares it with the shards before anything reads them. Each record is a little-endian int32 label
followed by the image: S*S*3 uint8 bytes (HWC, RGB) for 'raw', a JPEG file for 'jpeg'.

Split specs: 'train', or a slice of one: 'train[:90%]', 'train[90%:]', 'test[:100]'. The
records are stored shuffled, so a slice holds every class in proportion.

Images of any mode PIL opens become 8-bit RGB (`to_rgb`): 16-bit and 32-bit ones are
scaled to 0-255, not clipped.

`root` may be a `gs://` URL: dataset.json goes through etils.epath, the shards' sizes come
from one listing of the folder (fsspec: gcsfs), and the shards are read by array_record's
own GCS reader (loader.py).

Only numpy, PIL, simplejpeg, libvips (pyvips), array_record and etils.epath: nothing here
imports TensorFlow.
"""
from __future__ import annotations

import functools
import io
import json
import os
import re
import struct

import numpy as np
import simplejpeg
from array_record.python.array_record_module import ArrayRecordReader
from etils import epath
from PIL import Image, ImageCms

FORMAT_VERSION = 1
INFO_FILE = "dataset.json"
REQUIRED = ("format_version", "encoding", "image_size", "class_names", "splits")
ENCODINGS = ("raw", "jpeg")
_LABEL = struct.Struct("<i")


def square(image: Image.Image, size: int) -> Image.Image:
  """Shorter side to `size`, then the central size x size crop (§2); squares of `size` pass."""
  if image.size == (size, size):
    return image
  return Image.fromarray(square_pixels(np.asarray(to_rgb(image), np.uint8), size))


def square_pixels(pixels: np.ndarray, size: int) -> np.ndarray:
  """`square` on HWC uint8 RGB pixels: shorter side to `size` with a Catmull-Rom (bicubic)
  filter widened by the shrink factor, so that shrinking antialiases, then the central
  crop. Shrinking (every ImageNet image) runs in libvips, several times faster than PIL's
  resize with the same filter (benchmarks/README.md); enlarging, in PIL."""
  height, width = pixels.shape[:2]
  if (width, height) == (size, size):
    return pixels
  scale = size / min(width, height)
  new_w, new_h = max(size, round(width * scale)), max(size, round(height * scale))
  if new_w <= width and new_h <= height:
    image = _vips().Image.new_from_array(np.ascontiguousarray(pixels))
    image = image.reduce(width / new_w, height / new_h, kernel="cubic")
    left, top = (image.width - size) // 2, (image.height - size) // 2
    return image.crop(left, top, size, size).numpy()
  resized = Image.fromarray(pixels).resize((new_w, new_h), Image.BICUBIC)
  left, top = (new_w - size) // 2, (new_h - size) // 2
  return np.asarray(resized.crop((left, top, left + size, top + size)))


@functools.lru_cache(maxsize=1)
def _vips():
  """pyvips, on one thread and without its operation cache: each call is one small image,
  and the parallelism is `prepare`'s worker processes."""
  import pyvips  # pylint: disable=import-outside-toplevel  # loads libvips: only when resizing
  pyvips.concurrency_set(1)
  pyvips.cache_set_max(0)
  return pyvips


def decode_image(data: bytes, size: int | None = None) -> np.ndarray:
  """An encoded image -> HWC uint8 RGB pixels, as PIL and `to_rgb` decode it.

  Baseline and progressive RGB and greyscale JPEGs (nearly all of ImageNet) are decoded by
  libjpeg-turbo through simplejpeg, about twice PIL's rate; given `size`, one whose shorter
  side is at least twice `size` is decoded at 1/2, 1/4 or 1/8 scale in the DCT (as PIL's
  `draft` does), never below `size`. Anything else (CMYK, PNG under a .JPEG name, a JPEG
  libjpeg-turbo warns about) goes through PIL, which raises on truncated files."""
  if data[:3] == b"\xff\xd8\xff":
    try:
      height, width, colorspace, _ = simplejpeg.decode_jpeg_header(data)
      if colorspace in ("Gray", "YCbCr", "RGB"):
        factor = 1
        while size and min(height, width) >= 2 * factor * size and factor < 8:
          factor *= 2
        return simplejpeg.decode_jpeg(data, "rgb", min_height=-(-height // factor),
                                      min_width=-(-width // factor), min_factor=factor)
    except ValueError:
      pass   # PIL decodes what libjpeg-turbo only warns about, and names real damage
  image = Image.open(io.BytesIO(data))
  image.load()
  return np.asarray(to_rgb(image), np.uint8)


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
  """Any mode PIL opens -> 8-bit RGB: grey, palette, RGBA (alpha dropped), CMYK, YCbCr,
  LAB (through an sRGB profile), and high bit depths scaled to 8 bits (`to_uint8`)."""
  if image.mode == "RGB":
    return image
  if image.mode in ("I", "F") or image.mode.startswith("I;16"):
    return Image.fromarray(to_uint8(image), "L").convert("RGB")
  if image.mode == "LAB":
    return ImageCms.applyTransform(image, _lab_to_srgb())
  if image.mode == "P" and "transparency" in image.info:
    image = image.convert("RGBA")
  return image.convert("RGB")


def to_uint8(image: Image.Image) -> np.ndarray:
  """A one-channel image of 16 or 32 bits ('I;16*', 'I', 'F') -> uint8, scaled, not clipped:
  0-65535 (every 'I;16' image, and 'I' ones in that range: 16-bit PNG, TIFF and PGM) by
  255/65535; floats in 0-1 by 255; anything else from its own minimum and maximum."""
  a = np.nan_to_num(np.asarray(image).astype(np.float64))
  lo, hi = (float(a.min()), float(a.max())) if a.size else (0.0, 0.0)
  if image.mode.startswith("I;16") or (image.mode == "I" and lo >= 0 and hi <= 65535):
    a = a * (255 / 65535)
  elif image.mode == "F" and lo >= 0 and hi <= 1:
    a = a * 255
  else:
    a = (a - lo) * (255 / (hi - lo)) if hi > lo else np.zeros_like(a)
  return np.round(a).astype(np.uint8)


@functools.lru_cache(maxsize=1)
def _lab_to_srgb():
  return ImageCms.buildTransform(ImageCms.createProfile("LAB"), ImageCms.createProfile("sRGB"),
                                 "LAB", "RGB")


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


def is_url(path) -> bool:
  return "://" in str(path)


def info_path(root: str) -> str:
  return os.path.join(os.path.expanduser(root), INFO_FILE)


def read_info(root: str) -> dict:
  """`<root>/dataset.json`; ValueError (one line, naming the file) if `root` is not a
  complete prepared dataset."""
  if not root:
    raise ValueError("data.data_dir is not set: point it at a dataset written by "
                     "`python -m launch.prepare`")
  path = info_path(root)
  if not epath.Path(path).is_file():
    raise ValueError(f"{root!r} is not a prepared dataset (no {INFO_FILE}): {_hint(root)}")
  try:
    with epath.Path(path).open() as f:
      info = json.load(f)
  except json.JSONDecodeError as e:
    raise ValueError(f"{path} is not valid JSON ({e}); prepare the dataset again") from None
  missing = [k for k in REQUIRED if k not in info] if isinstance(info, dict) else REQUIRED
  if missing:
    raise ValueError(f"{path} has no {', '.join(missing)}: not a dataset.json that "
                     "launch.prepare wrote; prepare the dataset again")
  if info["format_version"] != FORMAT_VERSION:
    raise ValueError(f"{path}: format_version {info['format_version']!r}, this code reads "
                     f"{FORMAT_VERSION}; prepare the dataset again")
  for split, entry in info["splits"].items():
    if not isinstance(entry, dict) or not {"num_examples", "files"} <= set(entry):
      raise ValueError(f"{path}: split {split!r} has no num_examples or files; prepare the "
                       "dataset again")
  return info


def _hint(root: str) -> str:
  """What to do with a folder that has no dataset.json."""
  if not epath.Path(root).is_dir():
    return "the folder does not exist"
  sidecars = sorted(f.name for f in epath.Path(root).iterdir()
                    if f.name.endswith(".array_record.json"))
  if sidecars:   # shards written by a launch.prepare that has not finished
    try:
      with (epath.Path(root) / sidecars[0]).open() as f:
        source = json.load(f)["options"]["source"]
    except (OSError, ValueError, KeyError, TypeError):
      source = "<the source it was prepared from>"
    if "://" in root:   # prepare writes local folders: finish the local copy, copy it again
      return ("it is an unfinished launch.prepare output; finish the local folder it was "
              f"copied from (--source={source}) and copy it to {root} again")
    return ("it is an unfinished launch.prepare output; finish it with the command that "
            f"wrote it: python -m launch.prepare --source={source} --out={root}")
  return ("it looks like an image folder; prepare it first: python -m launch.prepare "
          f"--source={root} --out=<new folder>")


_COUNTS: dict[tuple, int | None] = {}


def count_records(path: str) -> int | None:
  """The number of records in an ArrayRecord file; None when it is missing or damaged
  (truncated, not an ArrayRecord file). Cached per file size and modification time (a
  cloud object: per name)."""
  if is_url(path):
    key = (path,)
  else:
    try:
      stat = os.stat(path)
    except OSError:
      return None
    key = (path, stat.st_size, stat.st_mtime_ns)
  if key not in _COUNTS:
    reader = ArrayRecordReader(path, "readahead_buffer_size:0")
    count = reader.num_records() if reader.ok() else None
    try:
      reader.close()
    except RuntimeError:   # a damaged file fails again on close
      count = None
    _COUNTS[key] = count
  return _COUNTS[key]


def check_split(root: str, info: dict, split: str) -> None:
  """dataset.json's entry for `split` against the shards on disk, before anything reads
  them: ValueError (one line) naming the file when a shard is missing, truncated or holds
  other counts, or when the class counts do not fit the class names."""
  path, entry = info_path(root), info["splits"][split]
  advice = ("; rerun the launch.prepare command that wrote it (it rewrites damaged shards): "
            f"python -m launch.prepare --source={info.get('source', '<source>')} "
            f"--out={root} --verify")
  counts = entry.get("class_counts")
  if counts is not None and len(counts) != len(info["class_names"]):
    raise ValueError(f"{path}: split {split!r} has {len(counts)} class_counts for "
                     f"{len(info['class_names'])} class_names")
  if counts is not None and sum(counts) != entry["num_examples"]:
    raise ValueError(f"{path}: split {split!r} has num_examples {entry['num_examples']} but "
                     f"its class_counts add up to {sum(counts)}{advice}")
  shards = entry.get("shards") or [{} for _ in entry["files"]]
  files = split_files(root, info, split)
  remote = _object_sizes(root) if is_url(root) else None   # one listing, not one per shard
  total = 0
  for file, shard in zip(files, shards):
    size = remote.get(file) if remote is not None else (
        os.path.getsize(file) if os.path.isfile(file) else None)
    if size is None:
      raise ValueError(f"{file} is missing (listed in {path}){advice}")
    if "bytes" in shard and size != shard["bytes"]:
      raise ValueError(f"{file} has {size} bytes, but {shard['bytes']} were written (it is "
                       f"truncated or was changed since){advice}")
    if remote is not None and "bytes" in shard and "records" in shard:
      total += shard["records"]   # the size it was written with: not opened one by one
      continue
    count = count_records(file)
    if count is None:
      raise ValueError(f"{file} is damaged: not a readable ArrayRecord file (truncated?)"
                       f"{advice}")
    if "records" in shard and count != shard["records"]:
      raise ValueError(f"{file} holds {count} records, but {path} says {shard['records']}"
                       f"{advice}")
    total += count
  if total != entry["num_examples"]:
    raise ValueError(f"{path}: split {split!r} has num_examples {entry['num_examples']} but "
                     f"its {len(entry['files'])} shard(s) hold {total} records{advice}")


def _object_sizes(url: str) -> dict[str, int]:
  """{'gs://bucket/dir/name': size} of the objects in a cloud-storage folder, from one
  listing (fsspec, the backend etils.epath uses without TensorFlow)."""
  import fsspec  # pylint: disable=import-outside-toplevel
  fs, path = fsspec.core.url_to_fs(url)
  scheme = url.split("://", 1)[0]
  return {f"{scheme}://{e['name']}": int(e["size"]) for e in fs.ls(path, detail=True)
          if e.get("type") == "file"}


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
