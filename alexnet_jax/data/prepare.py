"""Prepares a dataset once as fixed-size squares (§2), in the format of `records`.

§2 of the paper: "we down-sampled the images to a fixed resolution of 256 x 256. Given a
rectangular image, we first rescaled the image such that the shorter side was of length 256,
and then cropped out the central 256x256 patch from the resulting image." `prepare` does that
once (`records.decode_image`, libjpeg-turbo; `records.square_pixels`, a bicubic resize that
antialiases when shrinking), so that training reads uint8 squares and does its own random
224x224 crops. An image already
`size` x `size` is stored untouched: CIFAR-10 prepared at size 32 keeps its pixels bit-exact
(raw encoding).

Sources:
  a folder  `<root>/<split>/<class>/<image>`; every folder under root is a split, class
            names are the sorted union of the class folders of all splits (so labels agree
            across splits), and each split's files go in one fixed pseudo-random order
            (numpy default_rng(0)) so that 'train[:90%]' holds every class.
  'tfds:<name>'  a tfds dataset already prepared in `tfds_data_dir` (never downloaded), in
            its stored order. Only this path imports tensorflow_datasets.
  'imagenet:<folder>'  ILSVRC-2012 as downloaded: its tars and devkit, Kaggle's layout or
            an extracted copy (`ilsvrc`), shuffled as a folder source is.

Files that do not decode (truncated, empty, not an image) are skipped, never fatal; they are
listed with a reason in dataset.json (`skipped`) and in `<out>/skipped.txt`. Images are
decoded and resized in a pool of worker processes, CHUNK inputs per message (a worker reads
its own files and tar members); the main process writes the records in order, so the
output is deterministic whatever the number of workers, and a thread hashes each finished
shard beside the next one's writing.

Resumable: each shard is written as `<shard>.tmp`, its sidecar `<shard>.json` (class counts,
record count, size, sha256, skipped files, options) is written, then the shard is renamed.
A rerun writes only the missing shards, those whose size or record count is not what was
written (truncated, damaged), and those with a file skipped because it could not be read
(a permission since fixed); with `verify` it also checks every shard's sha256. dataset.json
is written last. A rerun with other options is a ValueError, and so is a second prepare
into the same `out` while one runs (a lock on `<out>/.prepare.lock`), or an `out` inside a
folder source. Ctrl-C stops the workers at once; the rerun resumes.

Shards are raw pixels, uncompressed (`WRITER_OPTIONS`): the fastest to read, since raw
pixels compress by only a quarter; `encoding='jpeg'` is 7-8x smaller and only just fast
enough, the choice when disk is short (the measurements: benchmarks/README.md).

Worker processes are started with 'spawn' (safe after tfds has loaded TensorFlow), so a script
calling `prepare` with workers > 1 needs the usual `if __name__ == "__main__":` guard.
"""
from __future__ import annotations

import collections
import concurrent.futures
import contextlib
import fcntl
import hashlib
import io
import itertools
import json
import multiprocessing
import os
import signal
import sys
import tempfile
import time
from typing import Callable, Iterable, Iterator

import numpy as np
from absl import logging
from array_record.python.array_record_module import ArrayRecordWriter
from PIL import Image
from tqdm import tqdm

from alexnet_jax.base import messages, records, workdir as workdir_lib
from alexnet_jax.data import ilsvrc, imagenet

WRITER_OPTIONS = "group_size:1,uncompressed"
TFDS_PREFIX = "tfds:"
SKIPPED_FILE = "skipped.txt"
LOCK_FILE = ".prepare.lock"
UNREADABLE = "cannot read"   # a skip reason that a rerun retries: the file may be readable then
IN_FLIGHT = 512   # images being decoded at once, at most: enough for 64+ workers
CHUNK = 16        # images per message to and from a worker

# An input: (name for the skipped list, label, a file path or the encoded image bytes).
Item = tuple[str, int, "str | bytes"]


# ---------------------------------------------------------------- one image (§2)

class _Unreadable(Exception):
  """The file could not be read at all (a permission, an I/O error): not its content."""


def _read(source: "str | bytes | ilsvrc.TarMember") -> bytes:
  """The encoded bytes of an input: a file, bytes already read, or an image inside a tar."""
  try:
    data = source if isinstance(source, bytes) else (
        source.read() if isinstance(source, ilsvrc.TarMember) else open(source, "rb").read())
  except OSError as e:
    raise _Unreadable(e.strerror or str(e)) from None
  if not data:
    raise ValueError("empty file")
  return data


def _reason(error: Exception) -> str:
  """A short plain reason for the skipped list."""
  text = " ".join(str(error).split())
  if isinstance(error, _Unreadable):
    return f"{UNREADABLE}: {text}"
  if isinstance(error, Image.UnidentifiedImageError):
    return "not an image (PIL cannot identify it)"
  if "truncated" in text.lower():
    return "truncated image"
  return text if text == "empty file" else f"cannot decode: {type(error).__name__}: {text}"


def encode_image(source: "str | bytes | ilsvrc.TarMember", size: int, encoding: str,
                 quality: int) -> bytes:
  """An input -> the record payload: raw HWC RGB bytes, or a JPEG file. Decoding raises on
  truncated files (records.decode_image)."""
  pixels = records.square_pixels(records.decode_image(_read(source), size), size)
  if encoding == "raw":
    return pixels.tobytes()
  buffer = io.BytesIO()
  Image.fromarray(pixels).save(buffer, "JPEG", quality=quality)
  return buffer.getvalue()


def _work(item: Item, size: int, encoding: str, quality: int) -> tuple[str, int, bytes | None,
                                                                       str | None]:
  """Runs in a worker: (name, label, the record or None, skip reason or None)."""
  name, label, source = item
  try:
    record = records.encode(label, encode_image(source, size, encoding, quality))
    return name, label, record, None   # the whole record: the main process only writes it
  except Exception as e:  # pylint: disable=broad-except  # any undecodable file is skipped
    return name, label, None, _reason(e)


def _work_chunk(items: list[Item], size: int, encoding: str, quality: int) -> list[tuple]:
  """`_work` on a chunk of inputs: one message each way per chunk, not per image."""
  return [_work(item, size, encoding, quality) for item in items]


# ---------------------------------------------------------------- sources

class Shard:
  """One planned shard: its index, how many inputs, and how to produce them in order."""

  def __init__(self, index: int, count: int, key: str, items: Callable[[], Iterable[Item]]):
    self.index, self.count, self.key, self.items = index, count, key, items


def _plan(num_inputs: int, per_shard: int, key: Callable[[int, int], str],
          items: Callable[[int, int], Iterable[Item]]) -> list[Shard]:
  bounds = [(a, min(a + per_shard, num_inputs)) for a in range(0, num_inputs, per_shard)]
  return [Shard(i, b - a, key(a, b), lambda a=a, b=b: items(a, b))
          for i, (a, b) in enumerate(bounds)]


def _subdirs(path: str) -> list[str]:
  return sorted(e.name for e in os.scandir(path) if e.is_dir() and not e.name.startswith("."))


def _files(path: str) -> list[str]:
  return sorted(e.name for e in os.scandir(path) if e.is_file() and not e.name.startswith("."))


def folder_source(root: str, per_shard: int) -> tuple[list[str], dict[str, list[Shard]]]:
  """`<root>/<split>/<class>/<image>` -> (class names, {split: shards}), files shuffled."""
  if not os.path.isdir(root):
    raise ValueError(f"source {root!r} is not a folder (nor tfds:<name> or imagenet:<folder>)")
  splits = _subdirs(root)
  classes = sorted(set().union(*(_subdirs(os.path.join(root, s)) for s in splits)))
  if not classes:
    raise ValueError(f"source {root!r} has no <split>/<class>/ folders (expected "
                     "<root>/<split>/<class>/<image>, e.g. train/cat/1.jpg)")
  plans = {}
  for split in splits:
    inputs = [(os.path.join(split, c, f), label, os.path.join(root, split, c, f))
              for label, c in enumerate(classes) if os.path.isdir(os.path.join(root, split, c))
              for f in _files(os.path.join(root, split, c))]
    plans[split] = _shuffled_plan(inputs, per_shard)
  return classes, plans


def imagenet_source(root: str, splits: list[str] | None,
                    per_shard: int) -> tuple[list[str], dict[str, list[Shard]]]:
  """ILSVRC-2012 as downloaded (ilsvrc.py) -> (the 1,000 sorted WNIDs, {split: shards})."""
  return imagenet.synsets(), {split: _shuffled_plan(inputs, per_shard)
                               for split, inputs in ilsvrc.splits(root, splits).items()}


def _shuffled_plan(inputs: list[Item], per_shard: int) -> list[Shard]:
  """Shards of `inputs` in one fixed pseudo-random order (numpy default_rng(0)), so that a
  slice such as 'train[:90%]' holds every class; a shard's key names its inputs, so that
  a rerun on a changed source is refused rather than mixed."""
  inputs = [inputs[i] for i in np.random.default_rng(0).permutation(len(inputs))]

  def items(a, b):
    return inputs[a:b]

  def key(a, b):
    return hashlib.sha1("\n".join(f"{n}\t{l}" for n, l, _ in inputs[a:b]).encode()).hexdigest()

  return _plan(len(inputs), per_shard, key, items)


def tfds_source(name: str, data_dir: str | None, splits: list[str] | None,
                per_shard: int) -> tuple[list[str], dict[str, list[Shard]]]:
  """A tfds dataset prepared in `data_dir` -> (class names, {split: shards}); never downloads."""
  import tensorflow_datasets as tfds  # pylint: disable=import-outside-toplevel  # TF only here
  from alexnet_jax.data import loader  # pylint: disable=import-outside-toplevel  # not in the workers
  builder = loader.tfds_builder(name, data_dir or "", random_access=False)
  features = builder.info.features
  available = list(builder.info.splits)
  for split in splits or []:
    if split not in available:
      raise ValueError(f"tfds dataset {name!r} has no split {split!r} (splits: "
                       f"{', '.join(available)})")
  plans = {}
  for split in splits or available:
    count = builder.info.splits[split].num_examples

    def items(a, b, split=split):
      ds = builder.as_dataset(split=f"{split}[{a}:{b}]", shuffle_files=False,
                              decoders={"image": tfds.decode.SkipDecoding()})
      for i, ex in enumerate(tfds.as_numpy(ds)):
        yield f"{split}[{a + i}]", int(ex["label"]), bytes(ex["image"])

    plans[split] = _plan(count, per_shard, lambda a, b, s=split: f"{name}:{s}[{a}:{b}]",
                         items)
  return list(features["label"].names), plans


# ---------------------------------------------------------------- writing

def _read_json(path: str):
  with open(path) as f:
    return json.load(f)


def _sidecar(out: str, name: str) -> str:
  return os.path.join(out, name + ".json")


def _is_done(out: str, name: str, shard: Shard, options: dict, verify: bool) -> bool:
  """The shard and its sidecar exist, were made from the same inputs and options, and the
  shard is whole (see `_damage`); files skipped as unreadable are unreadable still."""
  if not (os.path.isfile(os.path.join(out, name)) and os.path.isfile(_sidecar(out, name))):
    return False
  side = _read_json(_sidecar(out, name))
  _check_options(out, side.get("options", {}), options)
  if side.get("key") != shard.key:
    raise ValueError(f"{out}: shard {name} was written from other inputs (the source changed "
                     "since); use a new --out or delete the old one")
  damage = _damage(os.path.join(out, name), side, verify)
  if damage:
    logging.warning("prepare: %s %s; writing it again", os.path.join(out, name), damage)
    return False
  readable = _now_readable(shard, side["skipped"])
  if readable:
    logging.info("prepare: %s was skipped as unreadable and can be read now; writing %s "
                 "again", readable, name)
    return False
  return True


def _damage(path: str, side: dict, verify: bool) -> str | None:
  """What is wrong with a written shard, or None: its size, its record count (truncated or
  not ArrayRecord), and with `verify` its sha256, against its sidecar."""
  size = os.path.getsize(path)
  if "bytes" in side and size != side["bytes"]:
    return f"has {size} bytes, not the {side['bytes']} written"
  expected = side.get("records", sum(side["class_counts"]))
  count = records.count_records(path)
  if count != expected:
    return ("is not a readable ArrayRecord file" if count is None
            else f"holds {count} records, not the {expected} written")
  if verify and "sha256" in side and _sha256(path) != side["sha256"]:
    return "has another sha256 than when it was written"
  return None


def _now_readable(shard: Shard, skipped: list) -> str | None:
  """The first input that was skipped as unreadable but opens now (folder sources)."""
  unreadable = {name for name, reason in skipped if reason.startswith(UNREADABLE)}
  if not unreadable:
    return None
  for name, _, source in shard.items():
    if name in unreadable and isinstance(source, str):
      try:
        with open(source, "rb") as f:
          f.read(1)
        return name
      except OSError:
        continue
  return None


def _sha256(path: str) -> str:
  with open(path, "rb") as f:
    return hashlib.file_digest(f, "sha256").hexdigest()


def _write_shard(out: str, name: str, shard: Shard, results: Iterator,
                 num_classes: int) -> tuple[list[int], list]:
  """Writes `<name>.tmp`; returns its class counts and skipped inputs (`_finish_shard` then
  writes the sidecar and renames it into place)."""
  counts, skipped = [0] * num_classes, []
  tmp = os.path.join(out, name + ".tmp")
  writer = ArrayRecordWriter(tmp, WRITER_OPTIONS)
  try:
    for item_name, label, payload, reason in results:
      if payload is None:
        skipped.append([item_name, reason])
      else:
        writer.write(payload)
        counts[label] += 1
    writer.close()
  except RuntimeError as e:   # array_record's C++ status: a full disk, a folder not writable
    with contextlib.suppress(OSError):
      os.remove(tmp)   # gives a full disk its space back
    raise OSError(f"could not write {tmp}: {messages.one_line(e, 300)}") from e
  return counts, skipped


def _finish_shard(out: str, name: str, key: str, options: dict, counts: list[int],
                  skipped: list) -> None:
  """The sidecar (with the shard's sha256), then the rename: run in a thread beside the
  next shard's writing, since hashing reads the whole file back (hashlib frees the GIL)."""
  tmp = os.path.join(out, name + ".tmp")
  workdir_lib.write_json_atomic(_sidecar(out, name), {"key": key, "options": options,
                                    "class_counts": counts, "records": sum(counts),
                                    "bytes": os.path.getsize(tmp), "sha256": _sha256(tmp),
                                    "skipped": skipped})
  os.replace(tmp, os.path.join(out, name))


def _results(pool, items: Iterable[Item], options: dict) -> Iterator:
  args = (options["image_size"], options["encoding"], options["jpeg_quality"])
  if pool is None:
    return (_work(item, *args) for item in items)
  return _bounded_map(pool, _chunks(items, CHUNK), args, window=max(1, IN_FLIGHT // CHUNK))


def _chunks(items: Iterable[Item], n: int) -> Iterator[list[Item]]:
  items = iter(items)
  while chunk := list(itertools.islice(items, n)):
    yield chunk


def _bounded_map(pool, chunks: Iterable[list[Item]], args: tuple, window: int) -> Iterator:
  """`_work` on every input in order, a chunk per task, with at most `window` chunks in
  flight: `pool.imap` would read the whole source ahead into memory (all of ImageNet's
  bytes, for a tfds source)."""
  pending = collections.deque()
  for chunk in chunks:
    pending.append(pool.apply_async(_work_chunk, (chunk, *args)))
    if len(pending) >= window:
      yield from pending.popleft().get()
  while pending:
    yield from pending.popleft().get()


def _write_split(out: str, split: str, shards: list[Shard], pool, options: dict,
                 num_classes: int, progress: bool = True, verify: bool = False) -> dict:
  """Writes the missing (or damaged) shards of one split; returns its dataset.json entry."""
  names = [records.shard_name(split, s.index, len(shards)) for s in shards]
  todo = [(n, s) for n, s in zip(names, shards) if not _is_done(out, n, s, options, verify)]
  start, total = time.perf_counter(), sum(s.count for _, s in todo)
  results = _results(pool, (it for _, s in todo for it in s.items()), options)
  with tqdm(total=total, desc=split, unit="img", file=sys.stderr,
            disable=not (todo and progress)) as bar, \
       concurrent.futures.ThreadPoolExecutor(1) as finisher:
    finishing = []
    for name, shard in todo:
      chunk = itertools.islice(results, shard.count)
      counts, skipped = _write_shard(out, name, shard, _counted(chunk, bar), num_classes)
      finishing.append(finisher.submit(_finish_shard, out, name, shard.key, options, counts,
                                       skipped))
    for future in finishing:
      future.result()
  sides = [_read_json(_sidecar(out, n)) for n in names]
  counts = np.sum([s["class_counts"] for s in sides], axis=0, dtype=np.int64).tolist()
  skipped = [row for s in sides for row in s["skipped"]]
  counts = counts if sides else [0] * num_classes
  rate = total / max(time.perf_counter() - start, 1e-9)
  logging.info("prepare: %s: %d examples, %d skipped, %d shards (%s)", split, sum(counts),
               len(skipped), len(names),
               f"{len(todo)} written, {rate:.0f} images/s" if todo else "all there already")
  shard_info = [{"file": n, "records": s.get("records", sum(s["class_counts"])),
                 **{k: s[k] for k in ("bytes", "sha256") if k in s}}
                for n, s in zip(names, sides)]
  return {"num_examples": sum(counts), "files": names, "class_counts": counts,
          "shards": shard_info, "skipped": skipped}


def _counted(results: Iterable, bar: tqdm) -> Iterator:
  for result in results:
    bar.update(1)
    yield result


# ---------------------------------------------------------------- options

def _check_options(out: str, recorded: dict, options: dict) -> None:
  """ValueError naming the first option that differs from what `out` was prepared with."""
  for key, value in options.items():
    if key in recorded and recorded[key] != value:
      raise ValueError(f"{out} was prepared with {key}={recorded[key]!r}, not {value!r}; use "
                       "the same options to resume, or another --out")


def _sidecars(out: str) -> list[str]:
  if not os.path.isdir(out):
    return []
  return sorted(os.path.join(out, f) for f in os.listdir(out) if f.endswith(".array_record.json"))


def _recorded_options(info: dict) -> dict:
  return {"source": info.get("source"), "image_size": info.get("image_size"),
          "encoding": info.get("encoding")}


def _source_string(source: str) -> str:
  if source.startswith(TFDS_PREFIX):
    return source
  if source.startswith(ilsvrc.PREFIX):
    return ilsvrc.PREFIX + os.path.abspath(os.path.expanduser(source[len(ilsvrc.PREFIX):]))
  return os.path.abspath(os.path.expanduser(source))


def _validate(encoding: str, size: int, jpeg_quality: int, per_shard: int) -> None:
  if encoding not in records.ENCODINGS:
    raise ValueError(f"encoding {encoding!r} is not one of {', '.join(records.ENCODINGS)}")
  if size < 1 or per_shard < 1:
    raise ValueError(f"size ({size}) and examples_per_shard ({per_shard}) must be positive")
  if not 1 <= jpeg_quality <= 100:
    raise ValueError(f"jpeg_quality {jpeg_quality} is not in 1..100")


def _pool(workers: int):
  """Worker processes started by 'spawn': safe even when tfds has loaded TensorFlow. They
  ignore SIGINT: Ctrl-C reaches the main process alone, which then terminates them."""
  if workers <= 1:
    return None
  return multiprocessing.get_context("spawn").Pool(workers, initializer=signal.signal,
                                                   initargs=(signal.SIGINT, signal.SIG_IGN))


@contextlib.contextmanager
def _locked(out: str):
  """Holds an exclusive lock on `<out>/.prepare.lock` (released by the kernel when the
  process ends, however it ends); ValueError when another prepare holds it."""
  with open(os.path.join(out, LOCK_FILE), "a") as f:
    try:
      fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
      raise ValueError(f"{out} is being written by another launch.prepare right now; wait "
                       "for it to finish, or use another --out") from None
    yield


def _check_out(source: str, out: str) -> None:
  """ValueError for a folder source that does not exist, or an `out` that is that folder
  or inside it (its shards would be read as a split on the next run); OSError when `out`
  cannot be written."""
  if workdir_lib.is_url(out):   # else os.makedirs would make a local ./gs:/ folder
    raise ValueError(f"--out {out}: launch.prepare writes a local folder; prepare there, "
                     "then copy it to the bucket (gcloud storage cp -r) and train with "
                     "--config.data.data_dir=<the bucket's copy>")
  if source.startswith(ilsvrc.PREFIX):
    root = os.path.realpath(os.path.expanduser(source[len(ilsvrc.PREFIX):]))
    if not os.path.isdir(root):
      raise ValueError(f"source {source!r}: {root} is not a folder")
    read = [os.path.join(root, d) for d in ("train", "val", "ILSVRC")]
    if any(os.path.realpath(out) == r or os.path.realpath(out).startswith(r + os.sep)
           for r in read):
      raise ValueError(f"--out {out} is inside the images {source} reads; write it elsewhere")
  elif not source.startswith(TFDS_PREFIX):
    src, dst = os.path.realpath(os.path.expanduser(source)), os.path.realpath(out)
    if not os.path.isdir(src):   # before `out` is made
      raise ValueError(f"source {source!r} is not a folder (nor tfds:<name> or "
                       "imagenet:<folder>)")
    if dst == src or dst.startswith(src + os.sep):
      raise ValueError(f"--out {out} is inside the source {source}: every folder there is "
                       "read as a split; write the prepared dataset outside it")
  try:
    os.makedirs(out, exist_ok=True)
    with tempfile.TemporaryFile(dir=out):
      pass
  except OSError as e:
    raise OSError(f"--out {out} cannot be written: {e.strerror or e}") from e


def prepare(source: str, out: str, *, size: int = 256, encoding: str = "raw",
            jpeg_quality: int = 95, splits: list[str] | None = None,
            tfds_data_dir: str | None = None, workers: int | None = None,
            examples_per_shard: int = 1024, progress: bool = True,
            verify: bool = False) -> dict:
  """Writes `source` to `out` as `records` shards of size x size squares (§2); returns the info.

  `progress`: a progress bar per split on stderr. `verify`: also compare every written
  shard's sha256 with its sidecar's (reads them all); damaged shards are written again.

  Resumes a partial `out`; on a complete one with the same options it writes nothing.
  ValueError (one line) for a missing source, a bad option, or an `out` made otherwise.
  """
  _validate(encoding, size, jpeg_quality, examples_per_shard)
  out = os.path.expanduser(out)
  _check_out(source, out)
  with _locked(out):
    return _prepare(source, out, size, encoding, jpeg_quality, splits, tfds_data_dir, workers,
                    examples_per_shard, progress, verify)


def _prepare(source, out, size, encoding, jpeg_quality, splits, tfds_data_dir, workers,
             examples_per_shard, progress, verify) -> dict:
  options = {"source": _source_string(source), "image_size": size, "encoding": encoding,
             "jpeg_quality": jpeg_quality if encoding == "jpeg" else None,
             "examples_per_shard": examples_per_shard}
  info_file = records.info_path(out)
  old = _read_json(info_file) if os.path.isfile(info_file) else None
  if old is not None:
    _check_options(out, _recorded_options(old), options)
  for side in _sidecars(out):
    _check_options(out, _read_json(side).get("options", {}), options)
  if source.startswith(TFDS_PREFIX):
    classes, plans = tfds_source(source[len(TFDS_PREFIX):], tfds_data_dir, splits,
                                 examples_per_shard)
  elif source.startswith(ilsvrc.PREFIX):
    classes, plans = imagenet_source(os.path.expanduser(source[len(ilsvrc.PREFIX):]), splits,
                                     examples_per_shard)
  else:
    if splits:
      raise ValueError("--splits is for tfds and imagenet sources; a folder source writes "
                       "all its splits")
    classes, plans = folder_source(os.path.expanduser(source), examples_per_shard)
  pool = _pool(os.cpu_count() if workers is None else workers)
  finished = False
  try:
    entries = {s: _write_split(out, s, shards, pool, options, len(classes), progress, verify)
               for s, shards in plans.items()}
    finished = True
  finally:
    if pool is not None:   # on Ctrl-C or an error, the workers' queued images are dropped
      if finished:
        pool.close()
      else:
        pool.terminate()
      pool.join()
  _remove_stale_tmp(out)
  info = _info(options, classes, entries)
  if info == old:
    logging.info("prepare: %s is already complete with these options; nothing to do", out)
    return info
  _write_skipped(out, info["skipped"])
  workdir_lib.write_json_atomic(info_file, info)
  logging.info("prepare: wrote %s", info_file)
  return info


def _info(options: dict, classes: list[str], entries: dict) -> dict:
  """The dataset.json of `records`."""
  splits = {s: {k: e[k] for k in ("num_examples", "files", "class_counts", "shards")}
            for s, e in entries.items()}
  return {"format_version": records.FORMAT_VERSION, "encoding": options["encoding"],
          "image_size": options["image_size"], "class_names": classes,
          "source": options["source"], "splits": splits,
          "skipped": {s: e["skipped"] for s, e in entries.items()}}


def _remove_stale_tmp(out: str) -> None:
  """Shards left half-written by a crash whose shard has been written since."""
  for name in os.listdir(out):
    if name.endswith(".array_record.tmp"):
      os.remove(os.path.join(out, name))


def _write_skipped(out: str, skipped: dict) -> None:
  lines = [f"{path}\t{reason}\n" for rows in skipped.values() for path, reason in rows]
  with workdir_lib.atomic(os.path.join(out, SKIPPED_FILE)) as tmp, open(tmp, "w") as f:
    f.writelines(lines)
