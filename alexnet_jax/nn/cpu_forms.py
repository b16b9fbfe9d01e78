"""Whether a model is built with the forms that XLA:CPU runs fast, decided once per model.

LRN's padded t (`lrn.py`), max pooling's phase gradient (`pooling.py`) and the pad before a
pool that no window reads (`pooling.pad_unread`, which changes the shapes in between) help
XLA:CPU's fused loops but cost a GPU about 16% (benchmarks/README.md). They are a field of
the model, `AlexNet.cpu_forms`, passed down to LRN and pooling as an argument; nothing reads
a global while tracing. `models.create_model` sets the field from `default()`: the default
backend is the CPU, unless `forced` says otherwise, which lets a benchmark build either set
on any backend.
"""
from __future__ import annotations

import contextlib
import contextvars
from typing import Iterator

import jax

_FORCED: contextvars.ContextVar[bool | None] = contextvars.ContextVar("cpu_forms", default=None)


def default() -> bool:
  """True where the default backend is the CPU (or inside `forced(True)`): what
  `models.create_model` gives a model it builds."""
  forced = _FORCED.get()
  return jax.default_backend() == "cpu" if forced is None else forced


@contextlib.contextmanager
def forced(cpu: bool) -> Iterator[None]:
  """Models built inside take the CPU's forms (cpu=True) or the others', whatever the
  backend. A model built before keeps its own."""
  token = _FORCED.set(cpu)
  try:
    yield
  finally:
    _FORCED.reset(token)
