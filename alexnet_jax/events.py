"""TensorBoard scalars without TensorFlow: `tensorboard --logdir=<workdir>` reads them.

flax.metrics.tensorboard writes through TensorFlow's file API, and the training path must
run on a JAX-only image. This writes the same event files with TensorBoard's own protocol
buffers and record framing (`tensorboard.compat.proto`, `RecordWriter`), local files only.
"""
from __future__ import annotations

import os
import socket
import time

from tensorboard.compat.proto import event_pb2, summary_pb2
from tensorboard.summary.writer.record_writer import RecordWriter


class ScalarWriter:
  """Appends scalar summaries to a new `events.out.tfevents.*` file in `logdir`."""

  def __init__(self, logdir: str):
    os.makedirs(logdir, exist_ok=True)
    name = f"events.out.tfevents.{int(time.time())}.{socket.gethostname()}.{os.getpid()}"
    self._records = RecordWriter(open(os.path.join(logdir, name), "wb"))
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
