"""Training end to end on a tiny config: the step, the optimiser, resume, logs (§5)."""
import glob
import json
import os
import re
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from alexnet_jax.base import records
from alexnet_jax.data import loader
from alexnet_jax.nn import onednn
from alexnet_jax.programs import train
from alexnet_jax.run import checkpoint
from experiments import default
import helpers


def tiny_config(**overrides):
  return helpers.tiny_config(**overrides)


def with_data(cfg, root):
  cfg.data.name, cfg.data.data_dir = "prepared", root
  return cfg


def test_paper_sgd_is_the_papers_update_rule():
  """v <- 0.9 v - wd lr w - lr g;  w <- w + v, with the rate changing between steps."""
  params = {"conv1": {"kernel": jnp.array([1.0, -2.0]), "bias": jnp.array([0.5])}}
  grads = [{"conv1": {"kernel": jnp.array([0.3, 0.1]), "bias": jnp.array([0.2])}},
           {"conv1": {"kernel": jnp.array([-0.1, 0.4]), "bias": jnp.array([-0.3])}}]
  tx = optax.inject_hyperparams(train.paper_sgd)(learning_rate=0.1, momentum=0.9,
                                                 weight_decay=5e-4)
  state = tx.init(params)
  w, b = np.array([1.0, -2.0]), np.array([0.5])
  vw, vb = np.zeros(2), np.zeros(1)
  for lr, g in zip([0.1, 0.01], grads):
    state.hyperparams["learning_rate"] = jnp.asarray(lr)
    updates, state = tx.update(g, state, params)
    params = optax.apply_updates(params, updates)
    vw = 0.9 * vw - 5e-4 * lr * w - lr * np.asarray(g["conv1"]["kernel"])
    vb = 0.9 * vb - lr * np.asarray(g["conv1"]["bias"])   # no decay on biases
    w, b = w + vw, b + vb
  np.testing.assert_allclose(params["conv1"]["kernel"], w, rtol=1e-6)
  np.testing.assert_allclose(params["conv1"]["bias"], b, rtol=1e-6)


def test_schedules():
  cfg = tiny_config(schedule="step", learning_rate=0.1)
  cfg.step_epochs = (1, 2)
  fn = train.create_learning_rate_fn(cfg, steps_per_epoch=10)
  assert [round(float(fn(s)), 6) for s in (0, 9, 10, 19, 20)] == [0.1, 0.1, 0.01, 0.01, 0.001]
  cfg = tiny_config(schedule="cosine", learning_rate=0.1, warmup_epochs=1.0, num_train_steps=100)
  fn = train.create_learning_rate_fn(cfg, steps_per_epoch=10)
  assert float(fn(0)) == 0.0 and abs(float(fn(10)) - 0.1) < 1e-6 and float(fn(100)) < 1e-3
  # A warm-up longer than half a short run is cut to half, so the peak is still reached.
  cfg = tiny_config(schedule="cosine", learning_rate=0.1, warmup_epochs=5.0, num_train_steps=20)
  fn = train.create_learning_rate_fn(cfg, steps_per_epoch=10)
  assert abs(float(fn(10)) - 0.1) < 1e-6
  with pytest.raises(ValueError, match="schedule"):
    train.create_learning_rate_fn(tiny_config(schedule="linear"), 10)


def test_plateau_divides_the_rate_by_ten():
  cfg = tiny_config(schedule="plateau", plateau_patience=2)
  trainer = train.Trainer(cfg)
  state = trainer.init(jax.random.key(0))
  meta = {"best_eval_error": None, "bad_evals": 0}
  lrs = []
  for error in [0.5, 0.4, 0.45, 0.41, 0.42, 0.3]:
    state, meta = train._plateau(trainer, state, meta, error, cfg)
    lrs.append(round(float(state.opt_state.hyperparams["learning_rate"]), 6))
  assert lrs == [0.01, 0.01, 0.01, 0.001, 0.001, 0.001]
  assert meta["best_eval_error"] == 0.3


def test_train_step_compiles_once(shapes_dir):
  cfg = with_data(tiny_config(), shapes_dir)
  trainer = train.Trainer(cfg)
  state = trainer.init(jax.random.key(0))
  batches = loader.train_batches(loader.open_split(cfg.data), cfg.batch_size, seed=0)
  sums = trainer.zero_sums()
  for i in range(3):
    state, sums = trainer.train_step(state, sums, trainer.device_batch(next(batches)),
                                     jax.random.key(i))
  assert trainer.train_step._cache_size() == 1
  assert int(state.step) == 3 and float(sums["count"]) == 3 * cfg.batch_size


def test_quick_start_learns_and_leaves_a_checkpoint_and_logs(shapes_dir, tmp_path, caplog,
                                                             monkeypatch):
  cfg = with_data(tiny_config(num_train_steps=60, eval_every_steps=30, eval_batches=-1,
                              checkpoint_every_steps=30, log_every_steps=10), shapes_dir)
  cfg.model.dropout = 0.0
  opened = []   # each split is opened, and its shards checked, once per run
  check_split = records.check_split

  def counted(root, info, name):
    opened.append(name)
    return check_split(root, info, name)

  monkeypatch.setattr(records, "check_split", counted)
  with caplog.at_level("INFO"):
    final = train.train_and_evaluate(cfg, str(tmp_path))
  assert sorted(opened) == ["test", "train"]   # two evaluations
  lines = [r.getMessage() for r in caplog.records if r.getMessage().startswith("step ")]
  assert len(lines) == 8 and "images/s" in lines[0] and " left" in lines[0], lines
  assert not any("top-5" in line for line in lines)   # 4 classes: top-5 error is always 0
  rows = [json.loads(l) for l in open(tmp_path / "metrics.jsonl")]
  losses = [r["train_loss"] for r in rows if "train_loss" in r]
  assert losses[-1] < 0.8 * losses[0], losses
  assert final["top1_error"] < 0.6   # 4 balanced classes: chance is 0.75
  assert sorted(os.listdir(tmp_path / "checkpoints")) == ["30", "60"]
  assert glob.glob(str(tmp_path / "events.out.tfevents.*"))
  info = json.load(open(tmp_path / "run.json"))
  assert info["class_names"] == ["checker", "circle", "hstripes", "vstripes"]
  assert info["config"]["model"]["features"] == [16, 32, 48, 48, 32]


@pytest.mark.slow
def test_resume_gives_the_same_parameters(shapes_dir, tmp_path, threefry):
  """20 steps straight == 10 steps, a stop, then 10 more from the checkpoint: the same
  batches (the loader's state is in the checkpoint) and the same augmentation and dropout
  (keys folded with the step)."""
  cfg = with_data(tiny_config(num_train_steps=20, checkpoint_every_steps=10,
                              eval_every_steps=1000), shapes_dir)
  train.train_and_evaluate(cfg, str(tmp_path / "straight"))
  cfg10 = with_data(tiny_config(num_train_steps=10, checkpoint_every_steps=10,
                                eval_every_steps=1000), shapes_dir)
  train.train_and_evaluate(cfg10, str(tmp_path / "resumed"))
  metrics = tmp_path / "resumed" / "metrics.jsonl"
  before = metrics.read_text()
  train.train_and_evaluate(cfg10, str(tmp_path / "resumed"))   # done: evaluates, logs nothing
  assert metrics.read_text() == before
  with open(metrics, "a") as f:   # a row logged after the checkpoint, then a crash
    f.write(json.dumps({"step": 15, "epoch": 0.3, "train_loss": 9.0}) + "\n")
  train.train_and_evaluate(cfg, str(tmp_path / "resumed"), allow_changes=True)   # more steps
  rows = [json.loads(line) for line in metrics.read_text().splitlines()]
  keys = [(r["step"], "train_loss" in r) for r in rows]
  assert len(keys) == len(set(keys)), keys                     # no step logged twice
  assert 9.0 not in [r.get("train_loss") for r in rows]

  def params_at(workdir, step):
    trainer = train.Trainer(cfg)
    manager = checkpoint.create_manager(str(workdir), read_only=True)
    state, _ = checkpoint.restore(manager, step, trainer.abstract_state)
    return state

  a, b = params_at(tmp_path / "straight", 20), params_at(tmp_path / "resumed", 20)
  assert int(a.step) == int(b.step) == 20
  for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)):
    np.testing.assert_allclose(x, y, rtol=1e-6, atol=1e-7)


@pytest.mark.slow
def test_non_finite_loss_stops_with_the_step_and_keeps_the_checkpoint(shapes_dir, tmp_path):
  # A 'step' schedule recomputes the rate every step (a constant one is restored with the
  # optimiser state), so the rerun below really trains at 1e30.
  cfg = with_data(tiny_config(num_train_steps=10, checkpoint_every_steps=5,
                              eval_every_steps=1000, schedule="step"), shapes_dir)
  train.train_and_evaluate(cfg, str(tmp_path))
  cfg = with_data(tiny_config(num_train_steps=20, checkpoint_every_steps=5,
                              eval_every_steps=1000, learning_rate=1e30, schedule="step"),
                  shapes_dir)
  helpers.claim_config(tmp_path, cfg)   # else the rerun is refused as another config
  with pytest.raises(train.LossIsNotFinite,
                     match=r"between steps 11 and 15; stopping.*last good checkpoint.* is step 10"):
    train.train_and_evaluate(cfg, str(tmp_path))
  manager = checkpoint.create_manager(str(tmp_path), read_only=True)
  assert manager.latest_step() == 10


@pytest.mark.slow
def test_the_plateau_schedule_survives_a_resume(shapes_dir, tmp_path):
  """§5's divide-by-10: the count of evaluations without improvement and the best error are
  in the checkpoint, so a run stopped between two bad evaluations still divides the rate."""
  def cfg(steps):
    c = with_data(tiny_config(num_train_steps=steps, eval_every_steps=2,
                              checkpoint_every_steps=2, log_every_steps=2, eval_batches=1,
                              schedule="plateau", plateau_patience=2, learning_rate=1e-9),
                  shapes_dir)
    return c   # lr ~0: the error never improves, so every evaluation after the first is bad

  train.train_and_evaluate(cfg(4), str(tmp_path))   # evaluations at 2 (best) and 4 (bad)
  manager = checkpoint.create_manager(str(tmp_path), read_only=True)
  _, meta = checkpoint.restore(manager, 4, train.Trainer(cfg(4)).abstract_state)
  assert meta["bad_evals"] == 1
  with pytest.raises(ValueError, match=r"num_train_steps: 4 -> 6; .*--resume_with_changes"):
    train.train_and_evaluate(cfg(6), str(tmp_path))   # a longer run is asked for explicitly
  train.train_and_evaluate(cfg(6), str(tmp_path), allow_changes=True)   # 6: the second bad one
  manager = checkpoint.create_manager(str(tmp_path), read_only=True)
  state, meta = checkpoint.restore(manager, 6, train.Trainer(cfg(6)).abstract_state)
  assert meta["bad_evals"] == 0
  assert float(state.opt_state.hyperparams["learning_rate"]) == pytest.approx(1e-10)
  rows = [json.loads(l) for l in open(tmp_path / "metrics.jsonl")]
  assert [r["step"] for r in rows if "eval_top1_error" in r] == [2, 4, 6]


def test_a_run_from_before_a_config_field_existed_resumes(shapes_dir, tmp_path):
  """A run.json without a field that the code gained later (here: one written before
  `freeze` and `model.lrn_across_towers` existed) is not another config; a different value
  of a field it has still is."""
  cfg = with_data(tiny_config(num_train_steps=2, checkpoint_every_steps=2,
                              eval_every_steps=1000), shapes_dir)
  train.train_and_evaluate(cfg, str(tmp_path))
  info = json.loads((tmp_path / "run.json").read_text())
  del info["config"]["freeze"], info["config"]["model"]["lrn_across_towers"]
  (tmp_path / "run.json").write_text(json.dumps(info))
  cfg.num_train_steps = 4
  with pytest.raises(ValueError, match=r"num_train_steps: 2 -> 4; use a new workdir"):
    train.train_and_evaluate(cfg, str(tmp_path))
  train.train_and_evaluate(cfg, str(tmp_path), allow_changes=True)
  assert "lrn_across_towers" in json.loads((tmp_path / "run.json").read_text())["config"]["model"]
  rows = [json.loads(l) for l in open(tmp_path / "metrics.jsonl")]
  assert max(r["step"] for r in rows) == 4


@pytest.mark.slow
def test_loader_worker_processes_resume_exactly(shapes_dir, tmp_path):
  """With grain worker processes, the loader state in the checkpoint still resumes at the
  right batch: 6 steps straight equal 4, a restart, and 2 more; the first 4 with batches
  put on the device in the loop's own thread, the rest from the prefetch thread."""
  def cfg(steps, thread=True):
    c = with_data(tiny_config(num_train_steps=steps, checkpoint_every_steps=2,
                              eval_every_steps=1000, log_every_steps=2), shapes_dir)
    c.data.workers = 2
    c.data.prefetch_thread = thread
    c.model.dropout = 0.0
    return c

  train.train_and_evaluate(cfg(6), str(tmp_path / "straight"))
  train.train_and_evaluate(cfg(4, thread=False), str(tmp_path / "resumed"))
  train.train_and_evaluate(cfg(6), str(tmp_path / "resumed"), allow_changes=True)
  trainer = train.Trainer(cfg(6))
  a, b = (checkpoint.restore(checkpoint.create_manager(str(tmp_path / d), read_only=True), 6,
                             trainer.abstract_state)[0] for d in ("straight", "resumed"))
  for x, y in zip(jax.tree.leaves(a.params), jax.tree.leaves(b.params)):
    np.testing.assert_allclose(x, y, rtol=1e-6, atol=1e-7)


def test_non_finite_parameters_are_never_checkpointed(shapes_dir, tmp_path, monkeypatch):
  """The last update of a log window can make the parameters NaN while the window's loss,
  computed before it, is still finite: the check before a save reads the parameters."""
  cfg = with_data(tiny_config(num_train_steps=6, checkpoint_every_steps=3, log_every_steps=3,
                              eval_every_steps=1000), shapes_dir)
  step = train.train_step

  def poisoned(state, sums, batch, key, **kw):   # step 6's update makes fc8 NaN
    state, sums = step(state, sums, batch, key, **kw)
    bad = jnp.where(state.step == 6, jnp.nan, 0.0)
    params = {**state.params, "fc8": {**state.params["fc8"],
                                      "bias": state.params["fc8"]["bias"] + bad}}
    return state.replace(params=params), sums
  monkeypatch.setattr(train, "train_step", poisoned)
  with pytest.raises(train.LossIsNotFinite, match=r"parameters are not finite at step 6.*is step 3"):
    train.train_and_evaluate(cfg, str(tmp_path))
  assert checkpoint.create_manager(str(tmp_path), read_only=True).all_steps() == [3]


def test_training_does_not_import_inference():
  """Training sits below inference: both read checkpoints through checkpoint.py and
  run.json through run_info.py."""
  code = ("import sys, alexnet_jax.programs.train; print(sorted(m for m in sys.modules if m in "
          "('alexnet_jax.programs.inference', 'alexnet_jax.programs.pretrained', 'alexnet_jax.programs.features')))")
  out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                       cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                       timeout=120)
  assert out.stdout.strip() == "[]", out.stderr[-2000:]


def test_bf16_on_a_cpu_warns_because_xla_computes_it_in_f32(caplog, monkeypatch):
  """The warning's premise, checked on this jaxlib: a bf16 convolution compiles to an f32
  one. When XLA:CPU computes bf16 natively this fails, and the warning should go. It is
  given where oneDNN's bf16 convolutions are not (tests/test_onednn.py: where they are,
  it is not)."""
  x, w = jnp.ones((2, 9, 9, 3), jnp.bfloat16), jnp.ones((3, 3, 3, 4), jnp.bfloat16)
  conv = jax.jit(lambda x, w: jax.lax.conv_general_dilated(
      x, w, (1, 1), "SAME", dimension_numbers=("NHWC", "HWIO", "NHWC")))
  hlo = conv.lower(x, w).compile().as_text()
  assert re.search(r"f32\[2,9,9,4\]\S* convolution\(", hlo), hlo
  monkeypatch.setattr(onednn, "available", lambda: False)
  cfg = default.get_config()
  cfg.model.dtype = "bfloat16"
  with caplog.at_level("WARNING"):
    train.validate(cfg)
  assert train.BF16_ON_CPU in caplog.text
  caplog.clear()
  cfg.model.dtype = "float32"
  with caplog.at_level("WARNING"):
    train.validate(cfg)
  assert train.BF16_ON_CPU not in caplog.text
