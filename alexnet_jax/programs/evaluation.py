"""Evaluation (§4.1, §6): the one loop that training, `launch.evaluate` and features use,
and the one ten-crop average, which `launch.predict` uses too.

The host feeds uint8 squares (loader.eval_batches); the device takes the centre crop, or
the ten crops of §4.1 (the four corners and the centre, each also flipped), and adds up
masked metric sums, which cross to the host once at the end. Ten-crop predictions average
the crops' softmax outputs, computed as a log-sum-exp of log-softmaxes so that it stays
finite where every crop's softmax underflows.
"""
from __future__ import annotations

import contextlib
import functools
import time
from typing import Any, Iterable

import jax
import jax.numpy as jnp
import optax
from absl import logging
from tqdm import tqdm

from alexnet_jax.data import augment
from alexnet_jax.run import dispatch

CENTRE_CROP = augment.CENTRE_CROP   # the centre crop's index among the ten crops


def metric_sums(logits, labels, mask) -> dict:
  """Sums over the batch (padding masked out), so that they add across batches."""
  # The label's rank among the classes, ties going to the lower index as in lax.top_k: a
  # comparison per logit, where top_k sorts every row (benchmarks/README.md has the cost).
  own = jnp.take_along_axis(logits, labels[:, None], axis=-1)
  lower = jnp.arange(logits.shape[-1]) < labels[:, None]
  rank = jnp.sum((logits > own) | ((logits == own) & lower), axis=-1)
  finite = jnp.all(jnp.isfinite(logits), axis=-1)   # NaN compares False: never a hit
  hit1, hit5 = (rank == 0) & finite, (rank < 5) & finite
  losses = optax.softmax_cross_entropy_with_integer_labels(logits, labels)
  return {"loss": jnp.sum(losses * mask), "top1_error": jnp.sum((1.0 - hit1) * mask),
          "top5_error": jnp.sum((1.0 - hit5) * mask), "count": jnp.sum(mask)}


def normalize(sums: dict) -> dict:
  n = max(float(sums["count"]), 1.0)
  return {k: float(v) / n for k, v in sums.items() if k != "count"}


def crop_logits(params, squares: jax.Array, *, apply_fn, data_cfg, ten_crop: bool
                ) -> jax.Array:
  """uint8 squares [B, R, R, 3] -> the centre crop's logits [B, classes], or with ten_crop
  every crop's, [B, 10, classes] (augment.eval_images' order)."""
  images = augment.eval_images(squares, data_cfg, ten_crop=ten_crop)
  if not ten_crop:
    return apply_fn(params, images, None)
  b, crops = images.shape[:2]
  return apply_fn(params, images.reshape(b * crops, *images.shape[2:]), None).reshape(
      b, crops, -1)


def average_crops(logits: jax.Array) -> jax.Array:
  """[B, crops, classes] -> [B, classes]: the log of the mean of the crops' softmax (§4.1),
  as a log-sum-exp of log-softmaxes, finite where every crop's softmax underflows."""
  return (jax.scipy.special.logsumexp(jax.nn.log_softmax(logits), axis=1)
          - jnp.log(logits.shape[1]))


def eval_sums(params, batch: dict, *, apply_fn, data_cfg, ten_crop: bool) -> dict:
  """{'single_crop': sums} for one uint8 batch, and 'ten_crop' too with ten_crop (the
  single crop is then the centre one of the same pass)."""
  labels, mask = batch["label"], batch["mask"]
  out = crop_logits(params, batch["image"], apply_fn=apply_fn, data_cfg=data_cfg,
                    ten_crop=ten_crop)
  if not ten_crop:
    return {"single_crop": metric_sums(out, labels, mask)}
  return {"single_crop": metric_sums(out[:, CENTRE_CROP], labels, mask),
          "ten_crop": metric_sums(average_crops(out), labels, mask)}


def add_batch(sums: dict, params, batch: dict, **kwargs) -> dict:
  """`sums` plus `eval_sums` of one batch: an evaluation's one compiled step."""
  return jax.tree.map(jnp.add, sums, eval_sums(params, batch, **kwargs))


def zero_sums(params, batch: dict, **kwargs) -> dict:
  """Zeros shaped like `eval_sums`, where the running sums start (the forward pass it
  traces computes nothing that is used, and XLA drops it)."""
  return jax.tree.map(jnp.zeros_like, eval_sums(params, batch, **kwargs))


class Evaluator:
  """`run(params, batches)`: metric sums over host batches, added on the device.

  `put` turns a host batch into global device arrays (sharded over `data`). Each batch is
  one compiled call that adds its sums to the running ones, as the training step does,
  and the host stays at most `dispatch.AHEAD` batches ahead.
  """

  def __init__(self, apply_fn, data_cfg, param_shardings, batch_sharding, replicated, put):
    self._put = put
    self._steps = {}
    for ten in (False, True):
      kwargs = dict(apply_fn=apply_fn, data_cfg=data_cfg, ten_crop=ten)
      self._steps[ten] = (
          jax.jit(functools.partial(zero_sums, **kwargs),
                  in_shardings=(param_shardings, batch_sharding), out_shardings=replicated),
          jax.jit(functools.partial(add_batch, **kwargs),
                  in_shardings=(replicated, param_shardings, batch_sharding),
                  out_shardings=replicated))

  def run(self, params, batches: Iterable[dict], *, ten_crop: bool = False,
          total: int | None = None, log_every: int = 0, progress: bool = False
          ) -> dict[str, Any]:
    """{'single_crop': metrics, ['ten_crop': metrics], 'examples', 'seconds'}; with
    `progress`, a progress bar on stderr."""
    zeros, add = self._steps[ten_crop]
    sums, t0, seen = None, time.perf_counter(), 0
    throttle = dispatch.Throttle()
    bar = tqdm(batches, total=total, disable=not progress, desc="evaluate", unit="batch")
    with contextlib.closing(bar), _closing(batches):   # a Ctrl-C stops the reader's threads
      for i, batch in enumerate(bar):
        seen += len(batch["label"])
        batch = self._put(batch)
        sums = add(zeros(params, batch) if sums is None else sums, params, batch)
        throttle(sums)
        if log_every and (i + 1) % log_every == 0:
          logging.info("evaluated batch %d/%s: %.1f images/s", i + 1, total or "?",
                       seen / (time.perf_counter() - t0))
    if sums is None:
      raise ValueError("the evaluation split yielded no batches")
    sums = jax.device_get(sums)
    return {**{k: normalize(v) for k, v in sums.items()},
            "examples": int(round(float(sums["single_crop"]["count"]))),
            "seconds": time.perf_counter() - t0}


@contextlib.contextmanager
def _closing(batches: Iterable[dict]):
  """Closes `batches` (a generator, or an islice of one) however the loop ends. Left open
  after a Ctrl-C, loader.eval_batches' grain iterator keeps its reading threads alive, and
  the interpreter waits for them at exit (about two minutes in launch.evaluate)."""
  try:
    yield
  finally:
    close = getattr(batches, "close", None)
    if close is not None:
      close()
