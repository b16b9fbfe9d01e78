"""The input pipeline: prepared squares (records.py) read by grain as uint8 batches.

The host only reads: every image was brought to a fixed square once by `launch.prepare`
(§2), and the random crops, flips and PCA lighting of §4.1 run on the device inside the
jitted step (augment.py). What crosses to the device is uint8, a quarter of float32.

Training: the split is shuffled as a whole, afresh every epoch (grain's index shuffle with
the run's seed, re-seeded per epoch), and process p of P takes elements p, p + P, ... of
that sequence, so processes never overlap. `data.workers` processes decode (0: threads in
this process). The iterator's state goes into every checkpoint (checkpoint.py): a resume
continues with exactly the batch the interrupted run would have read next, with no replay.

Evaluation: process p takes elements p, p + P, ... in stored order; the last batch is padded
(mask 0), and every process yields the same number of batches so that they stay in step.

Batches are dicts of numpy arrays: 'image' uint8 [B, R, R, 3], 'label' int32 [B], and for
evaluation 'mask' float32 [B]. Nothing here imports TensorFlow.
"""
from __future__ import annotations

import collections
import json
import math
import os
from typing import Any, Callable, Iterator

import grain
from absl import flags
import numpy as np

from alexnet_jax import records


class Split:
  """One split spec of a prepared dataset ('train', 'train[:90%]'), with random access."""

  def __init__(self, data_dir: str, spec: str):
    self.root = os.path.expanduser(data_dir)
    self.info = records.read_info(self.root)
    self.spec = spec
    self.name, self.start, self.stop = records.resolve_split(self.info, spec)
    self.encoding = self.info["encoding"]
    self.image_size = int(self.info["image_size"])
    self._records = None

  def __len__(self) -> int:
    return self.stop - self.start

  def __getitem__(self, index: int) -> dict:
    if self._records is None:   # opened lazily: in each worker process, not pickled to it
      self._records = grain.sources.ArrayRecordDataSource(
          records.split_files(self.root, self.info, self.name))
    image, label = records.decode(self._records[self.start + index], self.encoding,
                                  self.image_size)
    return {"image": image, "label": np.int32(label)}

  def __getstate__(self):
    return {**self.__dict__, "_records": None}

  def __repr__(self) -> str:
    return f"Split({self.root!r}, {self.spec!r})"


def _read_options(workers: int) -> grain.ReadOptions:
  # Raw records need little work per element: a few threads keep up. JPEG ones decode in
  # the worker processes, so each of those needs a thread or two, not 16.
  return grain.ReadOptions(num_threads=4 if workers else 8, prefetch_buffer_size=256)


def _with_workers(ds: grain.IterDataset, workers: int) -> grain.IterDataset:
  if workers > 0:
    if not flags.FLAGS.is_parsed():   # grain's workers read its absl flags (library use)
      flags.FLAGS.mark_as_parsed()
    ds = ds.mp_prefetch(grain.multiprocessing.MultiprocessingOptions(num_workers=workers))
  return ds


def train_batches(data_cfg, batch_size: int, *, seed: int, process_index: int = 0,
                  process_count: int = 1, workers: int = 0) -> grain.DatasetIterator:
  """An endless iterator of this process's training batches (see the module docstring).

  `batch_size` is per process. Its `get_state()` / `set_state()` resume it exactly.
  """
  split = Split(data_cfg.data_dir, data_cfg.train_split)
  if len(split) < process_count * batch_size:
    raise ValueError(f"training split {split.spec!r} of {split.root} has {len(split)} "
                     f"examples, fewer than one batch of {batch_size * process_count}")
  ds = (grain.MapDataset.source(split).shuffle(seed=seed % 2**32).repeat()
        [process_index::process_count].batch(batch_size, drop_remainder=True))
  return iter(_with_workers(ds.to_iter_dataset(_read_options(workers)), workers))


def eval_batches(data_cfg, spec: str, batch_size: int, *, process_index: int = 0,
                 process_count: int = 1, workers: int = 0) -> Iterator[dict]:
  """This process's batches of an evaluation split, padded as the module docstring says."""
  split = Split(data_cfg.data_dir, spec)
  local = grain.MapDataset.source(split)[process_index::process_count]
  num_batches = num_eval_batches(len(split), batch_size, process_count)
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


def num_eval_batches(num_examples: int, batch_size: int, process_count: int = 1) -> int:
  return math.ceil(math.ceil(num_examples / process_count) / batch_size)


def num_examples(data_cfg, spec: str) -> int:
  return len(Split(data_cfg.data_dir, spec))


def class_names(data_cfg) -> list[str]:
  return list(records.read_info(data_cfg.data_dir)["class_names"])


class DeviceIterator:
  """Host batches put on the devices `ahead` batches before they are used.

  `get_state()` is the host iterator's state after the last batch handed out, not after
  the ones queued behind it, so a checkpoint resumes at the batch the step would have seen
  next. The interface (get_state/set_state as JSON bytes, start_prefetch) is the one that
  grain's orbax checkpoint handler expects.
  """

  def __init__(self, host: grain.DatasetIterator, put: Callable[[dict], Any], ahead: int = 2):
    self._host, self._put, self._ahead = host, put, ahead
    self._queue = collections.deque()
    self._state = host.get_state()

  def __iter__(self):
    return self

  def __next__(self):
    while len(self._queue) <= self._ahead:   # the batch handed out and `ahead` behind it
      batch = next(self._host)
      self._queue.append((self._put(batch), self._host.get_state()))
    batch, self._state = self._queue.popleft()
    return batch

  def get_state(self) -> bytes:
    return json.dumps(self._state).encode()

  def set_state(self, state: bytes) -> None:
    self._queue.clear()
    self._state = json.loads(state)
    self._host.set_state(self._state)

  def start_prefetch(self) -> None:
    pass

  def close(self) -> None:
    """Stops the host iterator's worker processes."""
    self._queue.clear()
    close = getattr(self._host, "close", None)
    if close:
      close()
