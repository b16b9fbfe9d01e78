"""Whether the model is traced with the forms that XLA:CPU runs fast (the one switch).

LRN's padded t (`lrn.py`) and the pad before a pool that no window reads
(`pooling.pad_unread`, which changes the shapes in between, so it has to be chosen at trace
time) help XLA:CPU's fused loops but cost a GPU about 16% (benchmarks/README.md). Both ask
`active()` while tracing: the default backend is the CPU, unless `forced` says otherwise,
which lets a benchmark trace either set on any backend.
"""
from __future__ import annotations

import contextlib
import contextvars
from typing import Iterator

import jax

_FORCED: contextvars.ContextVar[bool | None] = contextvars.ContextVar("cpu_forms", default=None)


def active() -> bool:
  """True while tracing for the CPU (or inside `forced(True)`)."""
  forced = _FORCED.get()
  return jax.default_backend() == "cpu" if forced is None else forced


@contextlib.contextmanager
def forced(cpu: bool) -> Iterator[None]:
  """Functions traced inside take the CPU's forms (cpu=True) or the others', whatever the
  backend. A function compiled before is not traced again: build it inside."""
  token = _FORCED.set(cpu)
  try:
    yield
  finally:
    _FORCED.reset(token)
