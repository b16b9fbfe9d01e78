"""The input pipeline: prepared squares (records.py) read by grain as uint8 batches.

The host only reads: every image was brought to a fixed square once by `launch.prepare`
(§2), and the random crops, flips and PCA lighting of §4.1 run on the device inside the
jitted step (augment.py). What crosses to the device is uint8, a quarter of float32.

Training: the split is shuffled as a whole, afresh every epoch (grain's index shuffle with
the run's seed, re-seeded per epoch), and global batch k is elements kB ... kB + B - 1 of
that sequence, whatever the number of processes or devices. A process reads only its rows
of each global batch (its `sharding.Feed`: block `index` of `count`), so processes sharing
a data row read the same examples and the others never overlap. `data.workers` processes
decode (0: threads in this process). The position is the number of global batches read,
one per step, so the checkpoint's step is the loader's state: a resume, on any number of
processes, starts at the batch the interrupted run would have read next, with no replay.

Evaluation: feed i of n takes elements i, i + n, ... in stored order; the last batch is
padded (mask 0), and every feed yields the same number of batches so that they stay in step.

Sources (`data.name`): 'prepared' reads a `launch.prepare` output (`Split`); 'tfds' reads a
tfds dataset stored as ArrayRecord (`TfdsSplit`, through tfds's data source, which decodes
with PIL or OpenCV, not TensorFlow). Both give random access, so everything above applies
to both; slices ('train[:90%]') are resolved the same way (records.resolve_split).

A prepared dataset may be on cloud storage (`data.data_dir=gs://bucket/dir`): dataset.json
is read through etils.epath, and the shards by array_record itself (riegeli's GcsReader, on
google-cloud-cpp: credentials from GOOGLE_APPLICATION_CREDENTIALS or the metadata server; an
emulator from CLOUD_STORAGE_EMULATOR_ENDPOINT, which is set from STORAGE_EMULATOR_HOST, the
variable gcsfs reads, when only that one is set). That reader retries for minutes when it
cannot reach the bucket, so one shard is opened first, within $ALEXNET_GCS_OPEN_TIMEOUT
seconds (30 unless set), and anything else is a one-line error naming the alternatives (a
local copy, a gcsfuse mount), never a hang. Every record is a ranged read of its object.

A prepared split checks its shards against dataset.json when it is opened
(records.check_split: missing or truncated shards, counts that disagree), so a damaged
dataset is a one-line error before anything compiles. Worker processes ignore SIGINT: on
Ctrl-C the main process stops them.

Batches are dicts of numpy arrays: 'image' uint8 [B, R, R, 3], 'label' int32 [B], and for
evaluation 'mask' float32 [B]. Nothing here imports TensorFlow.
"""
from __future__ import annotations

import collections
import math
import os
import signal
import threading
from typing import Any, Callable, Iterator

import grain
from absl import flags
from array_record.python.array_record_module import ArrayRecordReader
import numpy as np
from PIL import Image

from alexnet_jax.base import records
from alexnet_jax.run import dispatch


class Split:
  """One split spec of a prepared dataset ('train', 'train[:90%]'), with random access."""

  def __init__(self, data_dir: str, spec: str):
    self.root = os.path.expanduser(data_dir)
    self.info = records.read_info(self.root)
    self.spec = spec
    self.name, self.start, self.stop = records.resolve_split(self.info, spec)
    files = records.split_files(self.root, self.info, self.name)
    failure = check_cloud_reads(self.root, files[0]) if records.is_url(self.root) else None
    records.check_split(self.root, self.info, self.name)   # damaged shards: one line, now
    if failure:   # a shard that check_split finds whole, which array_record cannot read
      raise ValueError(failure)
    self._files = _file_instructions(files, self.info["splits"][self.name].get("shards"))
    self.encoding = self.info["encoding"]
    self.image_size = int(self.info["image_size"])
    self._records = None

  def __len__(self) -> int:
    return self.stop - self.start

  def __getitem__(self, index: int) -> dict:
    if self._records is None:   # opened lazily: in each worker process, not pickled to it
      self._records = grain.sources.ArrayRecordDataSource(self._files)
    image, label = records.decode(self._records[self.start + index], self.encoding,
                                  self.image_size)
    return {"image": image, "label": np.int32(label)}

  def __getstate__(self):
    return {**self.__dict__, "_records": None}

  def __repr__(self) -> str:
    return f"Split({self.root!r}, {self.spec!r})"


def _file_instructions(files: list[str], shards: list[dict] | None) -> list[str]:
  """The shards as grain reads them: 'file[0:n]' where dataset.json gives the count n
  (checked by records.check_split), so that no reader opens every shard to count it."""
  if not shards or any("records" not in s for s in shards):
    return files
  return [f"{f}[0:{int(s['records'])}]" for f, s in zip(files, shards)]


OPEN_TIMEOUT_VAR = "ALEXNET_GCS_OPEN_TIMEOUT"   # seconds for the first gs:// shard to open
_CLOUD_READABLE: set[str] = set()


def check_cloud_reads(root: str, file: str) -> str | None:
  """Opens `file` (a shard under the URL `root`) with array_record's own reader, once per
  root. ValueError (one line) when it has not opened within $ALEXNET_GCS_OPEN_TIMEOUT seconds
  (30 unless set); the one-line error when the reader fails, for the caller to raise once
  records.check_split has named a missing or truncated shard in its own words."""
  if root in _CLOUD_READABLE:
    return None
  timeout = float(os.environ.get(OPEN_TIMEOUT_VAR) or 30)
  host = os.environ.get("STORAGE_EMULATOR_HOST")
  if host and "CLOUD_STORAGE_EMULATOR_ENDPOINT" not in os.environ:   # google-cloud-cpp's name
    os.environ["CLOUD_STORAGE_EMULATOR_ENDPOINT"] = host if "://" in host else f"http://{host}"
  outcome = {}

  def open_one():
    try:
      ArrayRecordReader(file, "readahead_buffer_size:0").close()
    except Exception as e:  # pylint: disable=broad-except
      outcome["error"] = str(e).strip().splitlines()[0] if str(e).strip() else repr(e)

  thread = threading.Thread(target=open_one, name="gcs-open", daemon=True)
  thread.start()
  thread.join(timeout)   # a reader that hangs is left behind; it holds no GIL
  if thread.is_alive():
    problem = f"array_record's GCS reader did not open it in {timeout:g} s"
  elif "error" in outcome:
    problem = f"array_record's GCS reader could not read it ({outcome['error']})"
  else:
    _CLOUD_READABLE.add(root)
    return None
  endpoint = os.environ.get("CLOUD_STORAGE_EMULATOR_ENDPOINT")
  where = (f"CLOUD_STORAGE_EMULATOR_ENDPOINT={endpoint}" if endpoint else
           "credentials from GOOGLE_APPLICATION_CREDENTIALS or the metadata server")
  message = (f"{file}: {problem}, with {where}; copy the dataset to a local disk "
             f"(gcloud storage cp -r {root} <dir>) or mount the bucket with gcsfuse, and "
             "set data.data_dir to that folder")
  if thread.is_alive():
    raise ValueError(message)
  return message


class TfdsSplit:
  """One split spec of a tfds dataset stored as ArrayRecord, with random access.

  `tfds.data_source` reads it without TensorFlow. Its images are brought to `size` squares
  here, on the host, as `launch.prepare` would (§2: shorter side to `size`, central crop):
  free when they already are (CIFAR-10 at 32), but a decode and a resize per image for
  full-size photos (a few hundred a second per core: benchmarks/README.md), where
  preparing once with `launch.prepare --source=tfds:<name>` is the fast path.
  """

  def __init__(self, name: str, data_dir: str, spec: str, size: int):
    builder = tfds_builder(name, data_dir)
    self.root, self.spec, self.image_size = f"tfds:{name}", spec, int(size)
    self._args = (name, data_dir)
    self.info = {"class_names": list(builder.info.features["label"].names),
                 "splits": {s: {"num_examples": i.num_examples}
                            for s, i in builder.info.splits.items()}}
    self.name, self.start, self.stop = records.resolve_split(self.info, spec)
    self._source = None

  def __len__(self) -> int:
    return self.stop - self.start

  def __getitem__(self, index: int) -> dict:
    if self._source is None:    # opened lazily: in each worker process, not pickled to it
      self._source = tfds_builder(*self._args).as_data_source(split=self.name)
    example = self._source[self.start + index]
    image = np.asarray(example["image"])
    if image.ndim == 2 or image.shape[-1] != 3:
      image = np.asarray(records.to_rgb(Image.fromarray(image.squeeze())))
    if image.shape[:2] != (self.image_size, self.image_size):
      image = np.asarray(records.square(Image.fromarray(image), self.image_size))
    return {"image": image, "label": np.int32(example["label"])}

  def __getstate__(self):
    return {**self.__dict__, "_source": None}

  def __repr__(self) -> str:
    return f"TfdsSplit({self._args[0]!r}, {self.spec!r})"


def tfds_builder(name: str, data_dir: str, random_access: bool = True):
  """The tfds builder of a dataset already built in `data_dir` (tfds's default when empty),
  with 'image' and 'label' features, and stored as ArrayRecord when `random_access` (what
  the loader needs; `launch.prepare` reads any format in order). ValueError (one line)
  otherwise. Never downloads or builds anything."""
  import tensorflow_datasets as tfds  # pylint: disable=import-outside-toplevel
  try:
    builder = tfds.builder(name, data_dir=os.path.expanduser(data_dir) if data_dir else None)
  except tfds.core.registered.DatasetNotFoundError:
    raise ValueError(f"data.tfds_name {name!r}: tfds knows no such dataset, and none is "
                     f"built in data.data_dir {data_dir!r}") from None
  if not builder.is_prepared():
    raise ValueError(f"tfds dataset {name!r} is not built in {builder.data_dir!r}; build it "
                     f"first (tfds build {name} --file_format=array_record); training never "
                     "downloads")
  fmt = getattr(builder.info.file_format, "value", builder.info.file_format)
  if random_access and fmt != "array_record":
    raise ValueError(f"tfds dataset {name!r} in {builder.data_dir!r} is stored as {fmt}, "
                     "which has no random access: rebuild it with --file_format=array_record, "
                     f"or prepare it once (python -m launch.prepare --source=tfds:{name})")
  if not {"image", "label"} <= set(builder.info.features.keys()):
    raise ValueError(f"tfds dataset {name!r} has no 'image' and 'label' features")
  return builder


def describe(data_cfg) -> str:
  """The run's data, as error messages name it."""
  if data_cfg.name == "tfds":
    return f"tfds dataset {data_cfg.tfds_name!r}"
  return f"data.data_dir {data_cfg.data_dir!r}"


def open_split(data_cfg, spec: str | None = None) -> Split | TfdsSplit:
  """The split `spec` (default: `data.train_split`) of the run's data (`data.name`
  'prepared' or 'tfds'), its shards checked: open it once and pass it to `train_batches`
  and `eval_batches`."""
  spec = spec or data_cfg.train_split
  if data_cfg.name == "tfds":
    return TfdsSplit(data_cfg.tfds_name, data_cfg.data_dir, spec, data_cfg.resize_size)
  return Split(data_cfg.data_dir, spec)


def _read_options(workers: int) -> grain.ReadOptions:
  # Raw records need little work per element: a few threads keep up. JPEG ones decode in
  # the worker processes, so each of those needs a thread or two, not 16.
  return grain.ReadOptions(num_threads=4 if workers else 8, prefetch_buffer_size=256)


def _with_workers(ds: grain.IterDataset, workers: int) -> grain.IterDataset:
  if workers > 0:
    if not flags.FLAGS.is_parsed():   # grain's workers read its absl flags (library use)
      flags.FLAGS.mark_as_parsed()
    ds = ds.mp_prefetch(grain.multiprocessing.MultiprocessingOptions(num_workers=workers),
                        worker_init_fn=_ignore_sigint)
  return ds


def _ignore_sigint(worker_index: int, worker_count: int) -> None:
  """In each worker process: Ctrl-C is for the main process, which stops the workers."""
  del worker_index, worker_count
  signal.signal(signal.SIGINT, signal.SIG_IGN)


def train_batches(split: Split | TfdsSplit, batch_size: int, *, seed: int,
                  feed_index: int = 0, feed_count: int = 1, start: int = 0, workers: int = 0
                  ) -> grain.DatasetIterator:
  """An endless iterator of this process's rows of the global batches `start`, `start`+1,
  ... of an opened split (see the module docstring). `batch_size` is the global batch."""
  if len(split) < batch_size:
    raise ValueError(f"training split {split.spec!r} of {split.root} has {len(split)} "
                     f"examples, fewer than one batch of {batch_size}")
  if batch_size % feed_count:
    raise ValueError(f"batch_size={batch_size} does not split into {feed_count} equal parts "
                     "for the processes' data rows")
  rows = (grain.MapDataset.source(split).shuffle(seed=seed % 2**32).repeat()
          .batch(batch_size // feed_count, drop_remainder=True))
  ds = rows[feed_index::feed_count][start:]
  return iter(_with_workers(ds.to_iter_dataset(_read_options(workers)), workers))


def eval_batches(split: Split | TfdsSplit, batch_size: int, *, feed_index: int = 0,
                 feed_count: int = 1, workers: int = 0) -> Iterator[dict]:
  """This feed's batches of an opened evaluation split, padded as the module docstring
  says; `batch_size` is per feed."""
  local = grain.MapDataset.source(split)[feed_index::feed_count]
  num_batches = num_eval_batches(len(split), batch_size, feed_count)
  ds = _with_workers(local.batch(batch_size).to_iter_dataset(_read_options(workers)), workers)
  size = split.image_size
  empty = {"image": np.zeros((0, size, size, 3), np.uint8), "label": np.zeros(0, np.int32)}
  it = iter(ds)
  try:
    for _ in range(num_batches):
      batch = next(it, empty)
      n = len(batch["label"])
      pad = batch_size - n
      yield {"image": np.concatenate([batch["image"],
                                      np.zeros((pad, size, size, 3), np.uint8)]),
             "label": np.concatenate([batch["label"], np.zeros(pad, np.int32)]),
             "mask": (np.arange(batch_size) < n).astype(np.float32)}
  finally:
    it.close()


def num_eval_batches(num_examples: int, batch_size: int, feed_count: int = 1) -> int:
  return math.ceil(math.ceil(num_examples / feed_count) / batch_size)


def class_names(data_cfg) -> list[str]:
  return list(open_split(data_cfg).info["class_names"])


class DeviceIterator:
  """Host batches put on the devices `ahead` batches before they are used.

  With `thread` (the default) a background thread reads the host iterator and puts each
  batch on the devices (grain's ThreadPrefetchDatasetIterator), so neither reading nor the
  host-to-device copy waits in the loop's thread, which only dispatches steps; without it
  the loop's own thread does both, `ahead` batches early. Its position needs no state of
  its own: it is the number of steps taken (see the module docstring).
  """

  def __init__(self, host: grain.DatasetIterator, put: Callable[[dict], Any],
               ahead: int = dispatch.AHEAD, thread: bool = True):
    self._host, self._put, self._ahead = host, put, ahead
    self._prefetch = (grain.experimental.ThreadPrefetchDatasetIterator(_Put(host, put), ahead)
                      if thread else None)
    self._queue = collections.deque()

  def __iter__(self):
    return self

  def __next__(self):
    if self._prefetch is not None:
      return next(self._prefetch)
    while len(self._queue) <= self._ahead:   # the batch handed out and `ahead` behind it
      self._queue.append(self._put(next(self._host)))
    return self._queue.popleft()

  def close(self) -> None:
    """Stops the prefetch thread and the host iterator's worker processes."""
    if self._prefetch is not None:
      self._prefetch.close()   # joins the thread before the host below is closed
    self._queue.clear()
    close = getattr(self._host, "close", None)
    if close:
      close()


class _Put:
  """The host iterator with `put` applied to each batch; its state is the host's."""

  def __init__(self, host, put):
    self._host, self._put = host, put

  def __iter__(self):
    return self

  def __next__(self):
    return self._put(next(self._host))

  def get_state(self):
    return self._host.get_state()

  def set_state(self, state):
    self._host.set_state(state)
