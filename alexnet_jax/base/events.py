"""TensorBoard scalars without TensorFlow: `tensorboard --logdir=<workdir>` reads them.

flax.metrics.tensorboard writes through TensorFlow's file API, and the training path must
run on a JAX-only image. This writes the same event files with TensorBoard's own protocol
buffers and record framing (`tensorboard.compat.proto`, `RecordWriter`). A local file is
appended to; on cloud storage (`gs://`), where objects cannot be appended to, each flush
uploads the whole file again (a 90-epoch run's events are a few MB).
"""
from __future__ import annotations

import io
import os
import socket
import time

from absl import logging
from etils import epath
from tensorboard.compat.proto import event_pb2, summary_pb2
from tensorboard.summary.writer.record_writer import RecordWriter

from alexnet_jax.base import workdir as workdir_lib


class _Upload(io.BytesIO):
  """A file object whose every flush writes all its bytes to `path` (an epath URL)."""

  def __init__(self, path: epath.Path):
    super().__init__()
    self._path = path

  def flush(self) -> None:
    self._path.write_bytes(self.getvalue())

  def close(self) -> None:
    if not self.closed:
      self.flush()
    super().close()


class ScalarWriter:
  """Appends scalar summaries to a new `events.out.tfevents.*` file in `logdir`."""

  def __init__(self, logdir):
    logdir = workdir_lib.resolve(logdir)
    logdir.mkdir(parents=True, exist_ok=True)
    path = logdir / f"events.out.tfevents.{int(time.time())}.{socket.gethostname()}.{os.getpid()}"
    out = _Upload(path) if workdir_lib.is_url(path) else open(path, "wb")
    self._records = RecordWriter(out)
    self._write(event_pb2.Event(wall_time=time.time(), file_version="brain.Event:2"))

  def _write(self, event: event_pb2.Event) -> None:
    self._records.write(event.SerializeToString())

  def scalars(self, step: int, values: dict) -> None:
    summary = summary_pb2.Summary(value=[
        summary_pb2.Summary.Value(tag=tag, simple_value=float(v)) for tag, v in values.items()])
    self._write(event_pb2.Event(wall_time=time.time(), step=int(step), summary=summary))
    self._records.flush()

  def close(self) -> None:
    self._records.close()


class MetricWriter:
  """Where a step's scalars go: TensorBoard events and one row of `<workdir>/metrics.jsonl`
  for scripts (with `files`: process 0), and a log line (every process)."""

  def __init__(self, workdir, steps_per_epoch: int, files: bool = True):
    self._workdir, self._steps_per_epoch = workdir, steps_per_epoch
    self._events = ScalarWriter(workdir) if files else None

  def write(self, step: int, scalars: dict, line: str = "") -> None:
    """Logs `line`, if any, and records `scalars` at `step` (metrics.jsonl adds the epoch)."""
    if line:
      logging.info("%s", line)
    if self._events:
      self._events.scalars(step, scalars)
      workdir_lib.append_metrics(self._workdir, {
          "step": step, "epoch": step / self._steps_per_epoch, **scalars})

  def close(self) -> None:
    if self._events:
      self._events.close()
