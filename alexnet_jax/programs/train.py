"""Training and evaluation (Krizhevsky et al. 2012, §5), top-down.

`train_step` is pure: `(state, sums, uint8 batch, key) -> (state, sums)`, compiled once with
`jax.jit` over the (data, model) mesh of `sharding.py`, augmentation included (§4.1).
`train_and_evaluate` is the only function with a loop and side effects (input, logs,
checkpoints). The loop reads nothing from the device between log steps: batches are put
on the devices two ahead, the metrics add up on the device, and the NaN check reads one
scalar at log and checkpoint steps. It dispatches at most two steps ahead of the devices
(`dispatch.Throttle`).
"""
from __future__ import annotations

import contextlib
import functools
import itertools
import math
import signal
import threading
import time
from typing import Any, Callable, Iterator

import jax
import jax.numpy as jnp
import ml_collections
import optax
from absl import logging
from flax import struct
from jax.experimental import multihost_utils

from alexnet_jax.base import events
from alexnet_jax.base import workdir as workdir_lib
from alexnet_jax.data import augment, dataset as data, loader
from alexnet_jax.nn import models, onednn
from alexnet_jax.programs import evaluation, finetune, plateau
from alexnet_jax.run import checkpoint, dispatch, run_info, sharding
from alexnet_jax.run import distributed


@struct.dataclass
class TrainState:
  step: jax.Array
  params: Any
  opt_state: Any


# ---------------------------------------------------------------------------- optimiser

def paper_sgd(learning_rate: float, momentum: float, weight_decay: float
              ) -> optax.GradientTransformation:
  """§5: v <- momentum * v - weight_decay * lr * w - lr * grad;  w <- w + v.

  The learning rate multiplies the gradient before it enters the momentum buffer, as in
  the paper (optax.sgd applies it after, which differs when the rate changes). Weight decay
  applies to kernels only: cuda-convnet, which the paper used, set no decay on biases.
  """
  kernels = lambda params: jax.tree_util.tree_map_with_path(
      lambda path, _: path[-1].key == "kernel", params)
  return optax.chain(
      optax.add_decayed_weights(weight_decay, mask=kernels),
      optax.scale_by_learning_rate(learning_rate),
      optax.trace(decay=momentum))


def create_learning_rate_fn(cfg: ml_collections.ConfigDict, steps_per_epoch: int
                            ) -> float | Callable[[int], float]:
  """The schedule as a function of the step; 'plateau' is a constant that
  `train_and_evaluate` divides by 10 when validation error stops improving (§5)."""
  lr = cfg.learning_rate
  if cfg.schedule in ("plateau", "constant"):
    return lr
  if cfg.schedule == "step":
    return optax.piecewise_constant_schedule(
        lr, {int(e * steps_per_epoch): 0.1 for e in cfg.step_epochs})
  if cfg.schedule == "cosine":
    total = num_train_steps(cfg, steps_per_epoch)
    warmup = int(cfg.warmup_epochs * steps_per_epoch)
    if warmup > total // 2:   # a short run would otherwise never reach its peak rate
      logging.warning("warm-up of %d steps is more than half the run's %d; using %d",
                      warmup, total, total // 2)
      warmup = total // 2
    return optax.warmup_cosine_decay_schedule(0.0, lr, max(warmup, 1), max(total, warmup + 1))
  raise ValueError(f"schedule must be plateau, step, cosine or constant, got {cfg.schedule!r}")


def create_optimizer(cfg, steps_per_epoch: int) -> optax.GradientTransformation:
  # inject_hyperparams keeps the learning rate in the optimiser state: it is logged,
  # checkpointed, and for 'plateau' set from the host without recompiling.
  sgd = finetune.frozen(paper_sgd, cfg.get("freeze", ()))   # frozen layers: no update
  return optax.inject_hyperparams(sgd)(
      learning_rate=create_learning_rate_fn(cfg, steps_per_epoch),
      momentum=cfg.momentum, weight_decay=cfg.weight_decay)


def num_train_steps(cfg, steps_per_epoch: int) -> int:
  if cfg.num_train_steps > 0:
    return cfg.num_train_steps
  return max(1, int(math.ceil(cfg.num_epochs * steps_per_epoch)))


# ----------------------------------------------------------------------------- the step

def zero_sums() -> dict:
  """The training metrics' running sums, added up on the device between log steps."""
  return {k: jnp.zeros((), jnp.float32)
          for k in ("loss", "top1_error", "top5_error", "count", "learning_rate")}


def train_step(state: TrainState, sums: dict, batch: dict, key: jax.Array, *, apply_fn, tx,
               data_cfg) -> tuple[TrainState, dict]:
  """One SGD step (§5) on a uint8 batch of squares, with the metrics added to `sums`.

  The step's randomness is `key` folded with the step number, inside the compiled step:
  one half draws the crops, flips and lighting (§4.1, augment.py), the other the dropout
  masks (§4.2). Nothing here waits for the host.
  """
  key = jax.random.fold_in(key, state.step)
  augment_key, dropout_key = jax.random.split(key)
  images = augment.train_images(batch["image"], augment_key, data_cfg)
  labels = batch["label"]

  def loss_fn(params):
    logits = apply_fn(params, images, dropout_key, train=True)
    return jnp.mean(optax.softmax_cross_entropy_with_integer_labels(logits, labels)), logits

  (_, logits), grads = jax.value_and_grad(loss_fn, has_aux=True)(state.params)
  updates, opt_state = tx.update(grads, state.opt_state, state.params)
  params = optax.apply_updates(state.params, updates)
  metrics = evaluation.metric_sums(logits, labels, jnp.ones(labels.shape, jnp.float32))
  metrics["learning_rate"] = opt_state.hyperparams["learning_rate"]
  sums = jax.tree.map(jnp.add, sums, metrics)
  return TrainState(state.step + 1, params, opt_state), sums


# --------------------------------------------------------------------------- set-up

class Trainer:
  """The compiled pieces for one config on one mesh: built once, used by the loop and by
  the benchmark."""

  def __init__(self, cfg: ml_collections.ConfigDict, steps_per_epoch: int = 1, devices=None):
    self.cfg = cfg
    self.mesh = sharding.make_mesh(cfg, devices)
    self.image_size = cfg.data.image_size
    self.model = models.create_model(cfg.model, self.image_size)
    self.apply_fn = sharding.make_apply_fn(self.model, self.mesh)
    self.tx = create_optimizer(cfg, steps_per_epoch)
    self.batch_sharding = sharding.batch_sharding(mesh=self.mesh)
    self.feed = sharding.feed(self.mesh)   # this process's rows of each global batch
    abstract = jax.eval_shape(self._init, jax.random.key(0))
    self.state_shardings = sharding.param_shardings(self.mesh, abstract)
    self.abstract_state = checkpoint.abstract(abstract, self.state_shardings)
    self.init = jax.jit(self._init, out_shardings=self.state_shardings)
    rep = sharding.replicated(self.mesh)
    self.zero_sums = jax.jit(zero_sums, out_shardings=rep)
    self.train_step = jax.jit(
        functools.partial(train_step, apply_fn=self.apply_fn, tx=self.tx, data_cfg=cfg.data),
        in_shardings=(self.state_shardings, rep, self.batch_sharding, rep),
        out_shardings=(self.state_shardings, rep), donate_argnums=0)   # sums: for Throttle
    self.evaluator = evaluation.Evaluator(self.apply_fn, cfg.data, self.state_shardings.params,
                                          self.batch_sharding, rep, self.device_batch)

  def _init(self, rng) -> TrainState:
    size = self.image_size
    params = self.model.init(rng, jnp.zeros((1, size, size, 3), jnp.float32))["params"]
    return TrainState(jnp.zeros((), jnp.int32), params, self.tx.init(params))

  def device_batch(self, batch: dict) -> dict:
    return sharding.put_batch(self.batch_sharding, batch)

  def set_learning_rate(self, state: TrainState, lr: float) -> TrainState:
    opt_state = state.opt_state
    hyper = dict(opt_state.hyperparams, learning_rate=jnp.asarray(lr, jnp.float32))
    hyper = jax.device_put(hyper, jax.tree.map(lambda _: sharding.replicated(self.mesh), hyper))
    return state.replace(opt_state=opt_state._replace(hyperparams=hyper))


def validate(cfg: ml_collections.ConfigDict, devices=None) -> None:
  """Configuration errors that would otherwise surface deep inside compilation."""
  models.create_model(cfg.model, cfg.data.image_size)   # model fields
  augment.input_gain(cfg.data)                           # data.input_scale
  for field in ("batch_size", "log_every_steps", "eval_every_steps", "checkpoint_every_steps"):
    if int(cfg[field]) < 1:
      raise ValueError(f"{field} must be at least 1, got {cfg[field]}")
  if models.output_size(cfg.model, cfg.data.image_size) < 1:
    raise ValueError(f"data.image_size={cfg.data.image_size} is too small for the "
                     f"{cfg.model.arch!r} layers: the last pooling layer would have no output")
  n = len(devices) if devices is not None else jax.device_count()
  data, model = sharding.mesh_shape(cfg, n)
  if cfg.batch_size % data:
    raise ValueError(f"batch_size={cfg.batch_size} is not divisible by the {data} data-parallel "
                     f"devices of mesh (data={data}, model={model})")
  if cfg.model.dtype == "bfloat16" and jax.default_backend() == "cpu":
    if onednn.available():
      logging.info("model.dtype=bfloat16 on a CPU: the convolutions run on oneDNN's bf16 "
                   "kernels (alexnet_jax/nn/onednn.py)")
    else:
      logging.warning(BF16_ON_CPU)


# XLA:CPU (jax 0.10) converts bf16 convolutions and matmuls to f32 before computing them
# (the compiled HLO holds f32 convolutions fed by converts, with every XLA:CPU flag tried:
# benchmarks/README.md), so bf16 adds conversions and saves nothing, unless oneDNN computes
# the convolutions.
BF16_ON_CPU = ("model.dtype=bfloat16 on a CPU without oneDNN's bf16 convolutions (a CPU "
               "with avx512_bf16 or AMX, and `python -m alexnet_jax.nn.onednn`): XLA:CPU "
               "computes bf16 in float32, so this runs slower than float32, not faster "
               "(benchmarks/README.md, bf16 on a CPU)")


# --------------------------------------------------------------------------- the loop

class LossIsNotFinite(RuntimeError):
  pass


class _Preemption:
  """SIGTERM, which clusters send before they stop a job: the loop saves a checkpoint at
  the next step and returns. With several processes JAX's preemption service (which
  catches the signal itself, on any process) makes every process stop at the same step."""

  def __init__(self):
    self._signalled = threading.Event()
    self._previous = None
    self._multi = jax.process_count() > 1
    if not self._multi and threading.current_thread() is threading.main_thread():
      self._previous = signal.signal(signal.SIGTERM, lambda *_: self._signalled.set())

  def reached(self, step: int) -> bool:
    if self._multi:
      return multihost_utils.reached_preemption_sync_point(step)
    return self._signalled.is_set()

  def close(self) -> None:
    if self._previous is not None:
      signal.signal(signal.SIGTERM, self._previous)


def train_and_evaluate(cfg: ml_collections.ConfigDict, workdir: str,
                       allow_changes: bool = False) -> dict:
  """Trains (resuming from the latest checkpoint in `workdir`, a folder or a gs:// URL)
  and returns final metrics. A rerun must have the config that the workdir's checkpoints
  were trained with (see `run_info.check_same_run`); nothing is written before that is
  checked, and run.json and checkpoints/ only once the run has started.

  Process 0 holds the workdir's lock meanwhile: a second trainer on it stops at once.
  """
  workdir = workdir_lib.resolve(workdir)
  validate(cfg)   # configuration errors first, before any data is read or code compiled
  workdir.mkdir(parents=True, exist_ok=True)
  with (workdir_lib.lock(workdir) if jax.process_index() == 0 else contextlib.nullcontext()):
    return _train_and_evaluate(cfg, str(workdir), allow_changes)


class _Window:
  """Training metrics and time between two log steps: sums stay on the device until read,
  and time spent inside `paused()` (the first step's compilation, evaluations,
  checkpoints) is not training time."""

  def __init__(self, trainer: Trainer, start: int):
    self._trainer = trainer
    self.sums, self.start = trainer.zero_sums(), start
    self._t0, self._paused = time.perf_counter(), 0.0

  @contextlib.contextmanager
  def paused(self) -> Iterator[Callable[[], float]]:
    """Yields a function that gives the seconds spent inside so far."""
    t = time.perf_counter()
    try:
      yield lambda: time.perf_counter() - t
    finally:
      self._paused += time.perf_counter() - t

  def check_finite(self, done: int, manager) -> None:
    """The NaN check, at log and checkpoint steps only: one scalar crosses to the host."""
    loss = float(self.sums["loss"])
    if not math.isfinite(loss):
      raise LossIsNotFinite(
          f"training loss became {loss} between steps {self.start + 1} and {done}; stopping. "
          f"{_last_good(manager)}")

  def close(self, done: int, batch_size: int, total_steps: int
            ) -> tuple[dict, float, float, float]:
    """(metrics, learning rate, images/s, seconds left at that rate) of the window; starts
    the next one."""
    sums = jax.device_get(self.sums)
    steps = done - self.start
    lr = float(sums.pop("learning_rate")) / steps
    rate = steps * batch_size / max(time.perf_counter() - self._t0 - self._paused, 1e-9)
    self.sums, self.start = self._trainer.zero_sums(), done
    self._t0, self._paused = time.perf_counter(), 0.0
    return evaluation.normalize(sums), lr, rate, (total_steps - done) * batch_size / rate


class _Run:
  """One run's set-up and side effects (data, logs, evaluations, checkpoints), so that the
  loop in `_train_and_evaluate` reads as the paper's procedure."""

  def __init__(self, cfg: ml_collections.ConfigDict, workdir: str, allow_changes: bool):
    self.cfg, self.workdir = cfg, workdir
    # Each split is opened (its shards checked) once, here, before anything compiles.
    self.train_split = loader.open_split(cfg.data, cfg.data.train_split)
    self.eval_split = loader.open_split(cfg.data, cfg.data.eval_split)
    class_names = data.check_classes(cfg.data, self.train_split, cfg.model.num_classes)
    self.info = run_info.make(cfg, class_names)
    self.is_chief = jax.process_index() == 0
    self.manager = checkpoint.create_manager(workdir, cfg.keep_checkpoints)
    old = run_info.stored(workdir, bool(self.manager.all_steps()), rebuild=self.is_chief)
    run_info.check_same_run(workdir, old, self.info, allow_changes)   # before any writing
    self.n_train = len(self.train_split)
    self.steps_per_epoch = max(1, self.n_train // cfg.batch_size)
    self.total_steps = num_train_steps(cfg, self.steps_per_epoch)
    self.trainer = Trainer(cfg, self.steps_per_epoch)
    self.chance_loss = plateau.ChanceLoss(
        cfg.model.num_classes, cfg.model.init_scheme,
        diagnose=f"python -m launch.summary --workdir={workdir} --signal={cfg.data.data_dir}")
    self.step, self.state, self.meta = checkpoint.restore_latest(
        self.manager, self.trainer.abstract_state)
    self.writer = None   # made by `start`: no files before the run has started
    feed = self.trainer.feed
    self.local_batch = cfg.batch_size // feed.count
    self.workers = data.num_workers(cfg.data)
    self.batches = loader.DeviceIterator(
        loader.train_batches(self.train_split, cfg.batch_size, seed=cfg.seed,
                             feed_index=feed.index, feed_count=feed.count,
                             start=self.step or 0, workers=self.workers),   # a batch a step
        self.trainer.device_batch, thread=cfg.data.prefetch_thread)
    self.all_finite = jax.jit(lambda tree: jnp.all(jnp.stack(
        [jnp.all(jnp.isfinite(x)) for x in jax.tree.leaves(tree)])))

  def start(self) -> tuple[int, TrainState, dict]:
    """(step, state, meta): a fresh state, or the latest readable checkpoint's (the loader
    already starts after its batches); metrics.jsonl rows logged after it are dropped."""
    step, state, meta = self.step, self.state, self.meta
    self.state = None   # the loop owns it now (its buffers are donated)
    if step is None:
      step, meta = 0, {"best_eval_error": None, "bad_evals": 0}
      state = self.trainer.init(jax.random.key(self.cfg.seed))
      if self.cfg.get("init_from"):   # fine-tuning: parameters from another workdir
        state = state.replace(params=finetune.restore_params(self.cfg, state.params))
    else:
      logging.info("resumed from checkpoint %d in %s", step, self.manager.directory)
    if self.is_chief:   # the run has started: its record and logs may be written now
      run_info.write(self.workdir, self.info)
      workdir_lib.trim_metrics(self.workdir, step)
    self.writer = events.MetricWriter(self.workdir, self.steps_per_epoch, files=self.is_chief)
    logging.info("training %d steps (%d per epoch, %d examples) on mesh %s, batch %d, "
                 "%d loader workers", self.total_steps, self.steps_per_epoch, self.n_train,
                 dict(self.trainer.mesh.shape), self.cfg.batch_size, self.workers)
    return step, state, meta

  def errors(self, metrics: dict) -> str:   # top-5 error says something only above 5 classes
    top5 = (f" top-5 error {metrics['top5_error']:.4f}"
            if self.cfg.model.num_classes > 5 else "")
    return f"loss {metrics['loss']:.4f} top-1 error {metrics['top1_error']:.4f}{top5}"

  def log(self, window: _Window, done: int) -> None:
    window.check_finite(done, self.manager)
    metrics, lr, rate, left = window.close(done, self.cfg.batch_size, self.total_steps)
    self.writer.write(done, {**{f"train_{k}": v for k, v in metrics.items()},
                             "learning_rate": lr, "images_per_second": rate},
                      f"step {done}/{self.total_steps}: {self.errors(metrics)} lr {lr:.3g} | "
                      f"{rate:.1f} images/s, {time.strftime('%H:%M:%S', time.gmtime(left))} left")
    self.chance_loss.check(done, metrics["loss"])

  def evaluate(self, params, step: int, keep: bool = True) -> dict:
    cfg = self.cfg
    feed = self.trainer.feed
    batches = loader.eval_batches(self.eval_split, self.local_batch, feed_index=feed.index,
                                  feed_count=feed.count, workers=self.workers)
    if cfg.eval_batches >= 0:
      batches = itertools.islice(batches, cfg.eval_batches)
    report = self.trainer.evaluator.run(params, batches)
    metrics = report["single_crop"]
    line = f"step {step} eval: {self.errors(metrics)} ({report['seconds']:.1f}s)"
    if keep:
      self.writer.write(step, {f"eval_{k}": v for k, v in metrics.items()}, line)
    else:   # already recorded
      logging.info("%s", line)
    return metrics

  def save(self, window: _Window, done: int, state, meta, eval_metrics: dict | None) -> None:
    """A checkpoint, never of non-finite parameters, nor with a non-finite evaluation."""
    window.check_finite(done, self.manager)
    if not bool(self.all_finite(state.params)):
      raise LossIsNotFinite(f"the parameters are not finite at step {done}; stopping. "
                            f"{_last_good(self.manager)}")
    if eval_metrics and not math.isfinite(eval_metrics["loss"]):
      raise LossIsNotFinite(f"the evaluation loss is {eval_metrics['loss']} at step {done}; "
                            f"stopping. {_last_good(self.manager)}")
    scores = {checkpoint.EVAL_METRIC: eval_metrics["top1_error"]} if eval_metrics else None
    checkpoint.save(self.manager, done, state, meta, scores, run=self.info)
    logging.info("saved checkpoint %d", done)

  def close(self) -> None:
    self.batches.close()
    self.manager.close()   # waits for a save still in flight
    if self.writer:
      self.writer.close()


def _last_good(manager) -> str:
  step = manager.latest_step()
  if step is None:
    return f"No checkpoint was written in {manager.directory}."
  return f"The last good checkpoint in {manager.directory} is step {step}."


def _train_and_evaluate(cfg: ml_collections.ConfigDict, workdir: str,
                        allow_changes: bool = False) -> dict:
  cfg = data.resolve(cfg, workdir)   # generated datasets ('shapes') are made here
  run = _Run(cfg, workdir, allow_changes)
  preemption = _Preemption()
  try:
    start, state, meta = run.start()
    key = jax.random.key(cfg.seed)
    window, eval_metrics = _Window(run.trainer, start), None
    throttle = dispatch.Throttle()
    for step in range(start, run.total_steps):
      # the first call compiles the step: not training time
      with window.paused() if step == start else contextlib.nullcontext() as compiling:
        state, window.sums = run.trainer.train_step(state, window.sums, next(run.batches), key)
        throttle(window.sums)
        if compiling:
          jax.block_until_ready(window.sums)
          logging.info("compiled and ran the first step in %.1f s", compiling())
      done = step + 1
      last = done == run.total_steps
      stop = not last and preemption.reached(done)
      if done % cfg.log_every_steps == 0 or last or stop:
        run.log(window, done)
      with window.paused():   # evaluation and saving are not training
        evaluated = done % cfg.eval_every_steps == 0 or last
        if evaluated:
          eval_metrics = run.evaluate(state.params, done)
          if cfg.schedule == "plateau":
            state, meta = _plateau(run.trainer, state, meta, eval_metrics["top1_error"], cfg)
        if done % cfg.checkpoint_every_steps == 0 or last or stop:
          run.save(window, done, state, meta, eval_metrics if evaluated else None)
      if stop:
        logging.warning("stopped by SIGTERM after step %d, which is saved; rerun the same "
                        "command to resume", done)
        return {"stopped_at": done}
    if start >= run.total_steps:
      logging.info("nothing to do: checkpoint %d already reached %d steps", start,
                   run.total_steps)
      eval_metrics = run.evaluate(state.params, start, keep=False)   # already logged
    return eval_metrics
  except Exception as e:  # pylint: disable=broad-except  # a failed collective: a process lost?
    distributed.exit_if_peer_lost(e, lambda: _last_good(run.manager))
    raise
  finally:
    preemption.close()
    run.close()


def _plateau(trainer, state, meta, error, cfg):
  """§5: the learning rate divided by cfg.plateau_factor when plateau.py says the
  validation error has stopped improving."""
  meta, divide = plateau.after_evaluation(meta, error, cfg.plateau_patience)
  if not divide:
    return state, meta
  lr = float(state.opt_state.hyperparams["learning_rate"]) * cfg.plateau_factor
  logging.info("validation error has not improved for %d evaluations: learning rate -> %.3g",
               cfg.plateau_patience, lr)
  return trainer.set_learning_rate(state, lr), meta
