"""Speed measurements, the same way every time: warm-up, then the median of timed repeats.

Each function returns a dict of plain numbers; `launch/benchmark.py` prints and saves them.

  train_and_eval_step  the compiled training step alone (one uint8 batch, reused), and eval
  loop                 the training loop as `train.py` runs it: loader, device prefetch,
                       step; with the step alone measured in the same process, and the ratio
  input                the loader alone (grain, `workers` processes): images/s, per worker
  gemm                 a 4096x4096 float32 matmul: the machine's GEMM rate, and with the
                       step's FLOPs (XLA's count) the images/s that rate would allow
"""
from __future__ import annotations

import statistics
import time
from typing import Callable

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from alexnet_jax.data import augment, loader
from alexnet_jax.nn import cpu_forms, lrn
from alexnet_jax.programs import train


def _median_seconds(fn: Callable[[], object], warmup: int, repeats: int) -> dict:
  for _ in range(warmup):
    jax.block_until_ready(fn())
  times = []
  for _ in range(repeats):
    t = time.perf_counter()
    jax.block_until_ready(fn())
    times.append(time.perf_counter() - t)
  return {"median_s": statistics.median(times), "min_s": min(times), "max_s": max(times)}


def random_batch(cfg, batch_size: int, mask: bool = False) -> dict:
  rng = np.random.default_rng(0)
  r = augment.square_size(cfg.data)
  batch = {"image": rng.integers(0, 256, (batch_size, r, r, 3), dtype=np.uint8),
           "label": rng.integers(0, cfg.model.num_classes, batch_size).astype(np.int32)}
  if mask:
    batch["mask"] = np.ones(batch_size, np.float32)
  return batch


class Stepper:
  """A trainer, its state and sums, and one call: the step exactly as the loop makes it."""

  def __init__(self, cfg):
    self.trainer = train.Trainer(cfg)
    self.state = self.trainer.init(jax.random.key(0))
    self.sums = self.trainer.zero_sums()
    self.key = jax.random.key(1)

  def __call__(self, batch):
    self.state, self.sums = self.trainer.train_step(self.state, self.sums, batch, self.key)
    return self.sums


def train_and_eval_step(cfg: ml_collections.ConfigDict, warmup: int = 2, repeats: int = 5
                        ) -> dict:
  """Training step (augmentation, forward, backward, SGD update) and evaluation images/s,
  compile time, and XLA's FLOP count of one training image."""
  stepper = Stepper(cfg)
  trainer = stepper.trainer
  batch = trainer.device_batch(random_batch(cfg, cfg.batch_size))
  t = time.perf_counter()
  compiled = trainer.train_step.lower(stepper.state, stepper.sums, batch, stepper.key).compile()
  compile_s = time.perf_counter() - t
  cost = compiled.cost_analysis()
  cost = cost[0] if isinstance(cost, (list, tuple)) else cost
  timed = _median_seconds(lambda: stepper(batch), warmup, repeats)
  eval_batch = random_batch(cfg, cfg.batch_size, mask=True)
  evaluated = _median_seconds(
      lambda: trainer.evaluator.run(stepper.state.params, [eval_batch]), warmup, repeats)
  b = cfg.batch_size
  return {"train_step_s": timed["median_s"], "train_images_per_s": b / timed["median_s"],
          "train_step_min_s": timed["min_s"], "train_step_max_s": timed["max_s"],
          "eval_images_per_s": b / evaluated["median_s"], "compile_train_step_s": compile_s,
          "train_gflop_per_image": float(cost.get("flops", 0.0)) / b / 1e9,
          "onednn": trainer.model.onednn}   # XLA counts no FLOPs in its layers


def _loop_seconds(stepper: Stepper, cfg, split, steps: int, warmup: int, workers: int,
                  thread: bool) -> tuple[float, dict]:
  """Seconds per step of the loop, and a batch it read."""
  batches = loader.DeviceIterator(
      loader.train_batches(split, cfg.batch_size, seed=0, workers=workers),
      stepper.trainer.device_batch, thread=thread)
  try:   # compiles; grain's workers take turns, so two rounds see every worker started
    for _ in range(warmup + 2 * workers):
      jax.block_until_ready(stepper(next(batches)))
    t = time.perf_counter()
    for _ in range(steps):
      stepper(next(batches))
    jax.block_until_ready(stepper.sums)
    return (time.perf_counter() - t) / steps, next(batches)
  finally:
    batches.close()


def loop(cfg: ml_collections.ConfigDict, steps: int = 20, warmup: int = 3, workers: int = 0
         ) -> dict:
  """The training loop's images/s from `cfg.data` (a prepared dataset), against the step
  alone on one batch in the same process: how much of the step's speed the loop keeps.
  The loop as `train.py` runs it (batches read and put on the devices by a background
  thread), and for comparison with the loop's own thread doing both ('inline')."""
  stepper = Stepper(cfg)
  split = loader.open_split(cfg.data)
  loop_s, batch = _loop_seconds(stepper, cfg, split, steps, warmup, workers, thread=True)
  inline_s, _ = _loop_seconds(stepper, cfg, split, steps, warmup, workers, thread=False)
  t = time.perf_counter()
  for _ in range(steps):
    stepper(batch)
  jax.block_until_ready(stepper.sums)
  step_s = (time.perf_counter() - t) / steps
  b = cfg.batch_size
  return {"loop_images_per_s": b / loop_s, "step_images_per_s": b / step_s,
          "loop_over_step": step_s / loop_s, "loop_inline_images_per_s": b / inline_s,
          "loop_inline_over_step": step_s / inline_s, "loop_steps": steps,
          "loop_workers": workers, "batch_dtype": str(batch["image"].dtype)}


def input_rate(data_cfg, batch_size: int, batches: int = 20, warmup: int = 3,
               workers: int = 0) -> dict:
  """The training loader alone: uint8 batches of prepared squares per second."""
  it = loader.train_batches(loader.open_split(data_cfg), batch_size, seed=0,
                            workers=workers)
  try:
    for _ in range(warmup + 2 * workers):   # every worker started (they take turns)
      next(it)
    t = time.perf_counter()
    for _ in range(batches):
      next(it)
    rate = batches * batch_size / (time.perf_counter() - t)
  finally:
    it.close()
  return {"input_images_per_s": rate, "input_workers": workers,
          "input_images_per_s_per_worker": rate / max(workers, 1)}


def gemm(n: int = 4096, warmup: int = 2, repeats: int = 5) -> dict:
  """float32 n x n matmul GFLOP/s: the roofline that a conv net's step is held to. The best
  of at least 10 repeats, since a roofline is what the machine can do and single repeats
  run slow now and then (benchmarks/README.md), and the median."""
  a = jax.random.normal(jax.random.key(0), (n, n), jnp.float32)
  b = jax.random.normal(jax.random.key(1), (n, n), jnp.float32)
  fn = jax.jit(jnp.matmul)
  timed = _median_seconds(lambda: fn(a, b), warmup, max(repeats, 10))
  return {"gemm_n": n, "gemm_gflop_per_s": 2 * n ** 3 / timed["min_s"] / 1e9,
          "gemm_median_gflop_per_s": 2 * n ** 3 / timed["median_s"] / 1e9}


def lrn_forward_backward(shape=(128, 55, 55, 96), warmup: int = 2, repeats: int = 5) -> dict:
  """LRN forward+backward on the conv1 activation, the paper's constants."""
  x = jax.random.normal(jax.random.key(0), shape)
  g = jax.random.normal(jax.random.key(1), shape)
  cpu = cpu_forms.default()   # the forms the model would use here
  fn = jax.jit(jax.grad(lambda x: jnp.sum(lrn.local_response_norm(x, cpu_forms=cpu) * g)))
  return {"lrn_fwd_bwd_s": _median_seconds(lambda: fn(x), warmup, repeats)["median_s"],
          "lrn_shape": list(shape)}
