"""Training and evaluation (Krizhevsky et al. 2012, §5), top-down.

`train_step` is pure: `(state, batch, rng) -> (state, metrics)`, compiled once with
`jax.jit` over the (data, model) mesh of `sharding.py`; `train_and_evaluate` is the only
function with a loop and side effects (input, logs, checkpoints).
"""
from __future__ import annotations

import contextlib
import functools
import json
import math
import os
import subprocess
import time
from typing import Any, Callable

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
from absl import logging
from flax import struct
from flax.metrics import tensorboard

from alexnet_jax import checkpoint, input_pipeline, models, sharding
from alexnet_jax import workdir as workdir_lib


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
  return optax.inject_hyperparams(paper_sgd)(
      learning_rate=create_learning_rate_fn(cfg, steps_per_epoch),
      momentum=cfg.momentum, weight_decay=cfg.weight_decay)


def num_train_steps(cfg, steps_per_epoch: int) -> int:
  if cfg.num_train_steps > 0:
    return cfg.num_train_steps
  return max(1, int(math.ceil(cfg.num_epochs * steps_per_epoch)))


# ------------------------------------------------------------------------ loss, metrics

def cross_entropy(logits, labels, mask):
  losses = optax.softmax_cross_entropy_with_integer_labels(logits, labels)
  return jnp.sum(losses * mask) / jnp.maximum(jnp.sum(mask), 1.0)


def metric_sums(logits, labels, mask) -> dict:
  """Sums over the batch (padding masked out), so that they add across batches."""
  top5 = jax.lax.top_k(logits, min(5, logits.shape[-1]))[1]
  hit1 = top5[:, 0] == labels
  hit5 = jnp.any(top5 == labels[:, None], axis=-1)
  losses = optax.softmax_cross_entropy_with_integer_labels(logits, labels)
  return {"loss": jnp.sum(losses * mask), "top1_error": jnp.sum((1.0 - hit1) * mask),
          "top5_error": jnp.sum((1.0 - hit5) * mask), "count": jnp.sum(mask)}


def normalize(sums: dict) -> dict:
  n = max(float(sums["count"]), 1.0)
  return {k: float(v) / n for k, v in sums.items() if k != "count"}


# ----------------------------------------------------------------------------- the step

def train_step(state: TrainState, batch: dict, rng: jax.Array, *, apply_fn, tx
               ) -> tuple[TrainState, dict]:
  def loss_fn(params):
    logits = apply_fn(params, batch["image"], rng, train=True)
    return cross_entropy(logits, batch["label"], batch["mask"]), logits

  (_, logits), grads = jax.value_and_grad(loss_fn, has_aux=True)(state.params)
  updates, opt_state = tx.update(grads, state.opt_state, state.params)
  params = optax.apply_updates(state.params, updates)
  metrics = metric_sums(logits, batch["label"], batch["mask"])
  metrics["learning_rate"] = opt_state.hyperparams["learning_rate"]
  return TrainState(state.step + 1, params, opt_state), metrics


def eval_step(params, batch: dict, *, apply_fn) -> dict:
  """Single-crop metric sums; ten-crop evaluation lives in inference.py."""
  logits = apply_fn(params, batch["image"], None)
  return metric_sums(logits, batch["label"], batch["mask"])


# --------------------------------------------------------------------------- set-up

class Trainer:
  """The compiled pieces for one config on one mesh: built once, used by the loop,
  by evaluation from checkpoints and by the benchmark."""

  def __init__(self, cfg: ml_collections.ConfigDict, steps_per_epoch: int = 1, devices=None):
    validate(cfg, devices)
    self.cfg = cfg
    self.mesh = sharding.make_mesh(cfg, devices)
    self.image_size = cfg.data.image_size
    self.model = models.create_model(cfg.model, self.image_size)
    self.apply_fn = sharding.make_apply_fn(cfg.model, self.image_size, self.mesh)
    self.tx = create_optimizer(cfg, steps_per_epoch)
    self.batch_sharding = sharding.batch_sharding(mesh=self.mesh)
    abstract = jax.eval_shape(self._init, jax.random.key(0))
    self.state_shardings = sharding.param_shardings(self.mesh, abstract)
    self.abstract_state = checkpoint.abstract(abstract, self.state_shardings)
    self.init = jax.jit(self._init, out_shardings=self.state_shardings)
    rep = sharding.replicated(self.mesh)
    self.train_step = jax.jit(
        functools.partial(train_step, apply_fn=self.apply_fn, tx=self.tx),
        in_shardings=(self.state_shardings, self.batch_sharding, rep),
        out_shardings=(self.state_shardings, rep), donate_argnums=0)
    self.eval_step = jax.jit(functools.partial(eval_step, apply_fn=self.apply_fn),
                             in_shardings=(self.state_shardings.params, self.batch_sharding),
                             out_shardings=rep)

  def _init(self, rng) -> TrainState:
    size = self.image_size
    params = self.model.init(rng, jnp.zeros((1, size, size, 3), jnp.float32))["params"]
    return TrainState(jnp.zeros((), jnp.int32), params, self.tx.init(params))

  def device_batch(self, batch: dict) -> dict:
    """A process's numpy batch -> global arrays sharded over `data`."""
    return {k: jax.make_array_from_process_local_data(self.batch_sharding, np.asarray(v))
            for k, v in batch.items()}

  def set_learning_rate(self, state: TrainState, lr: float) -> TrainState:
    opt_state = state.opt_state
    hyper = dict(opt_state.hyperparams, learning_rate=jnp.asarray(lr, jnp.float32))
    hyper = jax.device_put(hyper, jax.tree.map(lambda _: sharding.replicated(self.mesh), hyper))
    return state.replace(opt_state=opt_state._replace(hyperparams=hyper))

  def evaluate(self, params, dataset, max_batches: int = -1) -> dict:
    sums = None
    for i, batch in enumerate(dataset.as_numpy_iterator()):
      if 0 <= max_batches <= i:
        break
      out = self.eval_step(params, self.device_batch(batch))
      sums = out if sums is None else jax.tree.map(jnp.add, sums, out)
    if sums is None:
      raise ValueError("the evaluation split yielded no batches")
    return normalize(jax.device_get(sums))


def validate(cfg: ml_collections.ConfigDict, devices=None) -> None:
  """Configuration errors that would otherwise surface deep inside compilation."""
  models.create_model(cfg.model, cfg.data.image_size)   # model fields
  input_pipeline.input_gain(cfg.data)                    # data.input_scale
  for field in ("batch_size", "log_every_steps", "eval_every_steps", "checkpoint_every_steps"):
    if int(cfg[field]) < 1:
      raise ValueError(f"{field} must be at least 1, got {cfg[field]}")
  if models.output_size(cfg.model, cfg.data.image_size) < 1:
    raise ValueError(f"data.image_size={cfg.data.image_size} is too small for model "
                     f"{cfg.model.preset!r}: its last pooling layer would have no output")
  n = len(devices) if devices is not None else jax.device_count()
  sharding.mesh_shape(cfg, n)
  if cfg.batch_size % jax.process_count():
    raise ValueError(f"batch_size={cfg.batch_size} is not divisible by the "
                     f"{jax.process_count()} processes")


# --------------------------------------------------------------------------- the loop

def _code_revision() -> str:
  try:
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    return subprocess.run(["git", "-C", root, "rev-parse", "HEAD"], capture_output=True,
                          text=True, timeout=10).stdout.strip() or "unknown"
  except (OSError, subprocess.SubprocessError):
    return "unknown"


def write_run_info(cfg, workdir: str) -> None:
  """The resolved config, the code revision and the class names, for predict/evaluate."""
  info = {"config": json.loads(cfg.to_json_best_effort()), "revision": _code_revision(),
          "class_names": input_pipeline.class_names(cfg.data)}
  with open(os.path.join(workdir, "run.json"), "w") as f:
    json.dump(info, f, indent=1)


def _write_scalars(writer: tensorboard.SummaryWriter, step: int, scalars: dict) -> None:
  for tag, value in scalars.items():
    writer.scalar(tag, value, step)
  writer.flush()


class LossIsNotFinite(RuntimeError):
  pass


def train_and_evaluate(cfg: ml_collections.ConfigDict, workdir: str) -> dict:
  """Trains (resuming from the latest checkpoint in `workdir`) and returns final metrics.

  Process 0 holds the workdir's lock meanwhile: a second trainer on it stops at once.
  """
  workdir = os.path.abspath(workdir)
  validate(cfg)   # configuration errors first, before any data is read or code compiled
  os.makedirs(workdir, exist_ok=True)
  with (workdir_lib.lock(workdir) if jax.process_index() == 0 else contextlib.nullcontext()):
    return _train_and_evaluate(cfg, workdir)


def _train_and_evaluate(cfg: ml_collections.ConfigDict, workdir: str) -> dict:
  cfg = input_pipeline.prepare(cfg, workdir)   # resolves generated datasets' locations
  # The data's classes against the model and each other, before anything compiles.
  input_pipeline.check_classes(cfg.data, cfg.model.num_classes)
  n_train = input_pipeline.num_examples(cfg.data, cfg.data.train_split)
  steps_per_epoch = max(1, n_train // cfg.batch_size)
  trainer = Trainer(cfg, steps_per_epoch)
  total_steps = num_train_steps(cfg, steps_per_epoch)
  is_chief = jax.process_index() == 0
  if is_chief:
    write_run_info(cfg, workdir)
  writer = tensorboard.SummaryWriter(workdir) if is_chief else None
  manager = checkpoint.create_manager(workdir, cfg.keep_checkpoints)

  meta = {"best_eval_error": None, "bad_evals": 0}
  start = manager.latest_step()
  if start is None:
    state = trainer.init(jax.random.key(cfg.seed))
    start = 0
  else:
    state, meta = checkpoint.restore(manager, start, trainer.abstract_state)
    logging.info("resumed from checkpoint %d in %s", start, manager.directory)
  if is_chief:   # rows logged after the checkpoint are logged again as training redoes them
    _trim_metrics(os.path.join(workdir, "metrics.jsonl"), start)
  logging.info("training %d steps (%d per epoch, %d examples) on mesh %s, batch %d",
               total_steps, steps_per_epoch, n_train, dict(trainer.mesh.shape), cfg.batch_size)

  local_batch = cfg.batch_size // jax.process_count()
  train_ds = input_pipeline.create_split(
      cfg.data, cfg.data.train_split, train=True, batch_size=local_batch, seed=cfg.seed,
      process_index=jax.process_index(), process_count=jax.process_count(),
      skip_batches=start)
  train_iter = train_ds.as_numpy_iterator()

  def eval_dataset():
    return input_pipeline.create_split(
        cfg.data, cfg.data.eval_split, train=False, batch_size=local_batch,
        process_index=jax.process_index(), process_count=jax.process_count())

  def errors(metrics):   # top-5 error says something only with more than 5 classes
    top5 = (f" top-5 error {metrics['top5_error']:.4f}" if cfg.model.num_classes > 5 else "")
    return f"loss {metrics['loss']:.4f} top-1 error {metrics['top1_error']:.4f}{top5}"

  def run_eval(step, keep=True):
    t = time.perf_counter()
    metrics = trainer.evaluate(state.params, eval_dataset(), cfg.eval_batches)
    logging.info("step %d eval: %s (%.1fs)", step, errors(metrics),
                 time.perf_counter() - t)
    if keep:
      record(step, {f"eval_{k}": v for k, v in metrics.items()})
    return metrics

  def save(step, eval_metrics=None):
    metrics = {checkpoint.EVAL_METRIC: eval_metrics["top1_error"]} if eval_metrics else None
    checkpoint.save(manager, step, state, meta, metrics)
    logging.info("saved checkpoint %d", step)

  def record(step, scalars):
    """TensorBoard, and one JSON line per record in <workdir>/metrics.jsonl for scripts."""
    if not is_chief:
      return
    _write_scalars(writer, step, scalars)
    with open(os.path.join(workdir, "metrics.jsonl"), "a") as f:
      f.write(json.dumps({"step": step, "epoch": step / steps_per_epoch, **scalars}) + "\n")

  base_rng = jax.random.key(cfg.seed)
  sums, t0, window_start = None, time.perf_counter(), start
  eval_metrics = None
  for step in range(start, total_steps):
    batch = trainer.device_batch(next(train_iter))
    state, out = trainer.train_step(state, batch, jax.random.fold_in(base_rng, step))
    done = step + 1
    if not math.isfinite(float(out["loss"])):
      raise LossIsNotFinite(
          f"training loss is {float(out['loss'])} at step {done}; stopping. The last good "
          f"checkpoint in {manager.directory} is step {manager.latest_step()}")
    sums = out if sums is None else jax.tree.map(jnp.add, sums, out)
    if done % cfg.log_every_steps == 0 or done == total_steps:
      sums = jax.device_get(sums)
      lr = float(sums.pop("learning_rate")) / (done - window_start)
      metrics = normalize(sums)
      dt = time.perf_counter() - t0
      rate = (done - window_start) * cfg.batch_size / dt
      eta = (total_steps - done) * cfg.batch_size / rate
      logging.info("step %d/%d: %s lr %.3g | %.1f images/s, %s left", done, total_steps,
                   errors(metrics), lr, rate, time.strftime("%H:%M:%S", time.gmtime(eta)))
      record(done, {**{f"train_{k}": v for k, v in metrics.items()},
                    "learning_rate": lr, "images_per_second": rate})
      sums, t0, window_start = None, time.perf_counter(), done
    eval_now = done % cfg.eval_every_steps == 0 or done == total_steps
    if eval_now:
      eval_metrics = run_eval(done)
      if cfg.schedule == "plateau":
        state, meta = _plateau(trainer, state, meta, eval_metrics["top1_error"], cfg)
    if done % cfg.checkpoint_every_steps == 0 or done == total_steps:
      save(done, eval_metrics if eval_now else None)
  if start >= total_steps:
    logging.info("nothing to do: checkpoint %d already reached %d steps", start, total_steps)
    eval_metrics = run_eval(start, keep=False)   # metrics.jsonl already has this step
  if writer:
    writer.close()
  return eval_metrics


def _trim_metrics(path: str, last_step: int) -> None:
  """Drops the records of steps after `last_step` from metrics.jsonl (atomically)."""
  if not os.path.isfile(path):
    return
  with open(path) as f:
    lines = f.readlines()
  kept = []
  for line in lines:
    try:
      if json.loads(line)["step"] <= last_step:
        kept.append(line if line.endswith("\n") else line + "\n")
    except (json.JSONDecodeError, KeyError, TypeError):
      continue   # a line cut short by a crash
  if len(kept) != len(lines):
    with open(path + ".tmp", "w") as f:
      f.writelines(kept)
    os.replace(path + ".tmp", path)


def _plateau(trainer, state, meta, error, cfg):
  """§5: divide the learning rate by 10 when the validation error stops improving."""
  best = meta["best_eval_error"]
  if best is None or error < best:
    return state, {**meta, "best_eval_error": error, "bad_evals": 0}
  bad = meta["bad_evals"] + 1
  if bad < cfg.plateau_patience:
    return state, {**meta, "bad_evals": bad}
  lr = float(state.opt_state.hyperparams["learning_rate"]) * cfg.plateau_factor
  logging.info("validation error has not improved for %d evaluations: learning rate -> %.3g",
               bad, lr)
  return trainer.set_learning_rate(state, lr), {**meta, "bad_evals": 0}
