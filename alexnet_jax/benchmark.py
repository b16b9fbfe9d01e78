"""Speed measurements, the same way every time: warm-up, then the median of timed repeats.

Each function returns a dict of plain numbers; `launch/benchmark.py` prints and saves them.
"""
from __future__ import annotations

import statistics
import time
from typing import Callable

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from alexnet_jax import input_pipeline, lrn, train


def _median_seconds(fn: Callable[[], object], warmup: int, repeats: int) -> dict:
  for _ in range(warmup):
    jax.block_until_ready(fn())
  times = []
  for _ in range(repeats):
    t = time.perf_counter()
    jax.block_until_ready(fn())
    times.append(time.perf_counter() - t)
  return {"median_s": statistics.median(times), "min_s": min(times), "max_s": max(times)}


def _random_batch(cfg, batch_size: int) -> dict:
  rng = np.random.default_rng(0)
  s = cfg.data.image_size
  return {"image": rng.normal(size=(batch_size, s, s, 3)).astype(np.float32),
          "label": rng.integers(0, cfg.model.num_classes, batch_size).astype(np.int32),
          "mask": np.ones(batch_size, np.float32)}


def train_and_eval_step(cfg: ml_collections.ConfigDict, warmup: int = 2, repeats: int = 5
                        ) -> dict:
  """Training step (forward, backward, SGD update) and evaluation images/s, compile time."""
  trainer = train.Trainer(cfg)
  state = trainer.init(jax.random.key(0))
  batch = trainer.device_batch(_random_batch(cfg, cfg.batch_size))
  rng = jax.random.key(1)
  t = time.perf_counter()
  step = trainer.train_step.lower(state, batch, rng).compile()
  compile_s = time.perf_counter() - t
  holder = [state]

  def one_step():
    holder[0], metrics = step(holder[0], batch, rng)
    return metrics

  timed = _median_seconds(one_step, warmup, repeats)
  evaluated = _median_seconds(lambda: trainer.eval_step(holder[0].params, batch), warmup, repeats)
  b = cfg.batch_size
  return {"train_step_s": timed["median_s"], "train_images_per_s": b / timed["median_s"],
          "train_step_min_s": timed["min_s"], "train_step_max_s": timed["max_s"],
          "eval_images_per_s": b / evaluated["median_s"], "compile_train_step_s": compile_s}


def lrn_forward_backward(shape=(128, 55, 55, 96), warmup: int = 2, repeats: int = 5) -> dict:
  """LRN forward+backward on the conv1 activation, the paper's constants."""
  x = jax.random.normal(jax.random.key(0), shape)
  g = jax.random.normal(jax.random.key(1), shape)
  fn = jax.jit(jax.grad(lambda x: jnp.sum(lrn.local_response_norm(x) * g)))
  return {"lrn_fwd_bwd_s": _median_seconds(lambda: fn(x), warmup, repeats)["median_s"],
          "lrn_shape": list(shape)}


def input_pipeline_rate(cfg: ml_collections.ConfigDict, batches: int = 10, warmup: int = 2
                        ) -> dict:
  """Training input pipeline (decode + the paper's augmentation) images/s."""
  ds = input_pipeline.create_split(cfg.data, cfg.data.train_split, train=True,
                                   batch_size=cfg.batch_size, seed=0)
  it = ds.as_numpy_iterator()
  for _ in range(warmup):
    next(it)
  t = time.perf_counter()
  for _ in range(batches):
    next(it)
  return {"input_images_per_s": batches * cfg.batch_size / (time.perf_counter() - t)}
