"""How far the host may run ahead of the devices.

JAX dispatches asynchronously: a loop that never reads a result queues compiled programs
as fast as the host can make batches. Two steps ahead (AHEAD, which the loader's
DeviceIterator also uses for the batches it puts on the devices early) keep a device busy
while the host prepares the next batch. An unbounded queue also fills XLA:CPU's limit of 32 programs per
device, where jobs of several processes, each with several CPU devices, were seen to
deadlock in their gloo collectives (a device's launch waits at that limit while its
sibling waits for it in an all-gather; tests/test_multiprocess.py runs such a job).
"""
from __future__ import annotations

import collections

import jax

AHEAD = 2


class Throttle:
  """`throttle(result)` after each dispatch: records that step's result (arrays that the
  next step does not donate) and waits until the step `ahead` dispatches back is done."""

  def __init__(self, ahead: int = AHEAD):
    self._ahead, self._pending = ahead, collections.deque()

  def __call__(self, result) -> None:
    self._pending.append(result)
    if len(self._pending) > self._ahead:
      jax.block_until_ready(self._pending.popleft())
