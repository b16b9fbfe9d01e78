"""Ablation sweeps (alexnet_jax/programs/sweep.py, launch/sweep.py, experiments/sweeps/*): the grid,
the reports, skipping finished runs, resuming interrupted ones, and every definition on
every experiment config."""
import csv
import glob
import json
import math
import os
import subprocess
import sys

import jax
import jax.numpy as jnp
import pytest
from scipy import special

from alexnet_jax.base import workdir as workdir_lib
from alexnet_jax.data import synthetic
from alexnet_jax.nn import models
from alexnet_jax.programs import sweep, sweep_report, train
from experiments import cifar10, imagenet_paper, imagenette, quickstart
import helpers

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SWEEPS = ("lrn", "pooling", "lrn_x_pooling", "activation", "towers", "paper_claims")
CONFIGS = {"cifar10": cifar10, "imagenette": imagenette, "imagenet_paper": imagenet_paper}


def definition(name):
  return sweep.load_definition(os.path.join(ROOT, "experiments", "sweeps", name + ".py"))


def tiny_config(data_root, **overrides):
  """A quick-start-like config that trains a step in well under a second."""
  cfg = quickstart.get_config()
  cfg.model = models.model_config("small", num_classes=4, towers=1,
                                  features=(16, 32, 48, 48, 32), fc_features=(64, 64),
                                  init_scheme="he")
  cfg.data.name = "prepared"
  cfg.data.data_dir = data_root
  cfg.data.image_size = 64
  cfg.data.resize_size = 64
  cfg.data.workers = 0
  cfg.batch_size = 16
  cfg.num_train_steps = 4
  cfg.log_every_steps = 2
  cfg.eval_every_steps = 4      # and at the end: one evaluation per run, for speed
  cfg.checkpoint_every_steps = 2
  cfg.eval_batches = 1
  cfg.mesh_shape = (1, 1)
  for k, v in overrides.items():
    cfg[k] = v
  return cfg


@pytest.fixture(scope="module")
def shapes_dir(tmp_path_factory):
  return synthetic.make_prepared_shapes(str(tmp_path_factory.mktemp("data") / "shapes"),
                                        train_per_class=24, test_per_class=8, size=64)


def metric_lines(workdir):
  with open(os.path.join(workdir, "metrics.jsonl")) as f:
    return [json.loads(line) for line in f if line.strip()]


# ------------------------------------------------------------------- pure pieces

def test_names_are_readable_and_filesystem_safe():
  assert sweep.default_label({"model.lrn": False, "model.features": (8, 16)}) == \
      "lrn=False,features=8-16"
  assert sweep.default_label({"learning_rate": 0.05}) == "learning_rate=0.05"
  assert sweep.safe_name("a/b c:*") == "a_b_c__"
  assert sweep.safe_name("..") == "base"
  names = [r.name for r in sweep.make_runs(definition("lrn_x_pooling"), cifar10.get_config())]
  assert names[:4] == ["lrn=True,pool=3-2,seed=0", "lrn=True,pool=2-2,seed=0",
                       "lrn=False,pool=3-2,seed=0", "lrn=False,pool=2-2,seed=0"]
  assert names[4] == "lrn=True,pool=3-2,seed=1" and len(names) == 8   # seed-major


def test_overrides_copy_the_config_and_reject_unknown_fields():
  base = cifar10.get_config()
  cfg = sweep.apply_overrides(base, {"model.lrn": False, "model.features": [2, 4, 6, 8]})
  assert cfg.model.lrn is False and tuple(cfg.model.features) == (2, 4, 6, 8)
  assert base.model.lrn is True   # untouched
  with pytest.raises(KeyError, match="no field"):
    sweep.apply_overrides(base, {"model.lrm": False})


def test_epochs_to_train_error_and_deduplicated_metrics(tmp_path):
  lines = [{"step": 2, "epoch": 0.5, "train_top1_error": 0.6},
           {"step": 4, "epoch": 1.0, "train_top1_error": 0.3},
           {"step": 4, "epoch": 1.0, "eval_top1_error": 0.4},
           {"step": 4, "epoch": 1.0, "train_top1_error": 0.2},   # logged again after a resume
           {"step": 6, "epoch": 1.5, "train_top1_error": 0.1}]
  (tmp_path / "metrics.jsonl").write_text(
      "\n".join(json.dumps(x) for x in lines) + '\n{"step": 8, "ep')   # cut short by a kill
  recs = workdir_lib.read_metrics(str(tmp_path))
  assert [(r["step"], "eval_top1_error" in r) for r in recs] == \
      [(2, False), (4, False), (4, True), (6, False)]
  assert recs[1]["train_top1_error"] == 0.2
  assert sweep_report.epochs_to_train_error(recs, 0.25) == 1.0
  assert sweep_report.epochs_to_train_error(recs, 0.05) is None


def test_summary_is_mean_and_std_over_seeds_and_says_not_reached(tmp_path):
  """Reports from fake results: no training needed."""
  mod = type(sys)("fake_sweep")
  mod.get_sweep = lambda base: [{"model.activation": "relu"}, {"model.activation": "tanh"}]
  runs = sweep.make_runs(mod, cifar10.get_config(), seeds=(0, 1))
  errors = {"activation=relu": (0.30, 0.34), "activation=tanh": (0.50, 0.56)}
  for run in runs:
    workdir = tmp_path / run.name
    workdir.mkdir()
    fast = run.variant.endswith("relu")
    recs = [{"step": s, "epoch": s / 10, "train_top1_error": (0.2 if fast else 0.5) + 0.5 / s}
            for s in (1, 5, 10)]
    recs += [{"step": 10, "epoch": 1.0, "eval_top1_error": errors[run.variant][run.seed]}]
    (workdir / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in recs))
    (workdir / "result.json").write_text(json.dumps({
        "status": "ok", "step": 10, "epoch": 1.0, "wall_s": 5.0 + run.seed,
        "metrics": {"top1_error": errors[run.variant][run.seed], "top5_error": 0.1}}))
  rows = sweep_report.write_reports(runs, str(tmp_path), "fake", thresholds=(0.25,))
  assert [r["variant"] for r in rows] == ["activation=relu", "activation=tanh"]
  assert rows[0]["n"] == 2 and rows[0]["top1_error_mean"] == pytest.approx(0.32)
  assert rows[0]["top1_error_std"] == pytest.approx(0.02 * math.sqrt(2))
  assert rows[0]["epochs_to_train_error_0.25_mean"] == pytest.approx(1.0)
  assert rows[1]["epochs_to_train_error_0.25_note"].startswith("not reached")
  # tanh against relu: 53% - 32%, and Welch's test by hand (Welch-Satterthwaite's df).
  v_relu, v_tanh = 0.02 ** 2 * 2 / 2, 0.03 ** 2 * 2 / 2     # sample variance / n
  se = math.sqrt(v_relu + v_tanh)
  df = (v_relu + v_tanh) ** 2 / (v_relu ** 2 + v_tanh ** 2)
  assert math.isnan(rows[0]["top1_diff"])
  assert rows[1]["top1_diff"] == pytest.approx(0.21)
  assert rows[1]["top1_diff_se"] == pytest.approx(se)
  assert rows[1]["top1_diff_p"] == pytest.approx(2 * special.stdtr(df, -0.21 / se))   # t CDF
  md = (tmp_path / "results.md").read_text()
  assert "| `activation=relu` | 0 1 | 32.00 ± 2.83 | – |" in md and "not reached" in md
  assert f"| 53.00 ± 4.24 | +21.00 ± {se * 100:.2f} (p = " in md
  assert (tmp_path / "curves.png").stat().st_size > 1000


# --------------------------------------------------------- definitions x configs

@pytest.mark.parametrize("config_name", sorted(CONFIGS))
@pytest.mark.parametrize("sweep_name", SWEEPS)
def test_every_definition_makes_valid_configs(sweep_name, config_name):
  base = CONFIGS[config_name].get_config()
  runs = sweep.make_runs(definition(sweep_name), base)
  assert len({r.variant for r in runs}) >= 2 and len({r.name for r in runs}) == len(runs)
  for run in runs:
    cfg = sweep.run_config(base, run)
    assert cfg.seed == run.seed
    train.validate(cfg)
    size = cfg.data.image_size
    model = models.create_model(cfg.model, size)
    out = jax.eval_shape(model.init, jax.random.key(0), jnp.zeros((1, size, size, 3)))
    assert out["params"]["conv1"]["kernel"].shape[-1] == cfg.model.features[0]


@pytest.mark.parametrize("config_name,two_towers,one_tower", [
    # §3.2 and footnote 2: half the kernels in each conv layer but the last.
    ("imagenet_paper", (96, 256, 384, 384, 256), (48, 128, 192, 192, 256)),
    ("imagenette", (96, 256, 384, 384, 256), (48, 128, 192, 192, 256)),
    ("cifar10", (64, 64, 64, 32), (32, 32, 32, 32)),
])
def test_towers_sweep_halves_the_kernels_as_in_footnote_2(config_name, two_towers, one_tower):
  two, one = definition("towers").get_sweep(CONFIGS[config_name].get_config())
  assert two == {"model.towers": 2, "model.features": two_towers}
  assert one == {"model.towers": 1, "model.features": one_tower}


# ----------------------------------------------------------------- real training

@pytest.mark.slow
def test_sweep_trains_reports_skips_and_resumes(shapes_dir, tmp_path):
  base = tiny_config(shapes_dir)
  runs = sweep.make_runs(definition("lrn"), base, seeds=(0, 1))
  root = str(tmp_path / "sweep")

  # An interrupted run: lrn=False,seed=1 stopped after its step-2 checkpoint, before the end.
  interrupted = os.path.join(root, "lrn=False,seed=1")
  short = sweep.run_config(base, runs[-1])
  short.num_train_steps = 2
  train.train_and_evaluate(short, interrupted)
  # a stand-in: the stopped run had 4 steps (its run.json and checkpoint say 2)
  helpers.claim_config(interrupted, sweep.run_config(base, runs[-1]))
  assert sweep.read_result(interrupted) is None

  results = sweep.run_sweep(base, runs, root)
  assert [r["name"] for r in results] == [r.name for r in runs]
  assert all(r["status"] == "ok" and r["step"] == 4 for r in results)
  assert [r["resumed_from_step"] for r in results] == [0, 0, 0, 2]
  # It continued from the checkpoint: step 2 was logged once, by the first attempt.
  steps = [x["step"] for x in metric_lines(interrupted) if "train_loss" in x]
  assert steps == [2, 4]

  rows = sweep_report.write_reports(runs, root, "lrn")
  with open(os.path.join(root, "results.csv")) as f:
    table = list(csv.DictReader(f))
  assert [r["variant"] for r in table] == ["lrn=True", "lrn=False"]
  assert [int(r["n"]) for r in table] == [2, 2]
  for row, result_pair in zip(rows, (results[0::2], results[1::2])):
    errs = [r["metrics"]["top1_error"] for r in result_pair]
    assert row["top1_error_mean"] == pytest.approx(sum(errs) / 2)
  md = open(os.path.join(root, "results.md")).read()
  assert md.count("| `lrn=") == 2 and " ± " in md
  assert os.path.getsize(os.path.join(root, "curves.png")) > 1000

  # A rerun trains nothing and leaves every run's files as they were.
  before = {p: os.stat(p).st_mtime_ns for p in glob.glob(os.path.join(root, "*", "*.json*"))}
  def must_not_train(cfg, workdir):
    raise AssertionError(f"retrained {workdir}")
  again = sweep.run_sweep(base, runs, root, train_fn=must_not_train)
  assert again == results
  assert before == {p: os.stat(p).st_mtime_ns for p in before}

  # The launcher, end to end, on the finished sweep: it reports without training.
  out = subprocess.run(
      [sys.executable, "-m", "launch.sweep", "--sweep=experiments/sweeps/lrn.py",
       f"--root={root}", "--seeds=0,1", "--config=experiments/quickstart.py"],
      cwd=ROOT, capture_output=True, text=True, timeout=120,
      env={**os.environ, "JAX_PLATFORMS": "cpu"})
  assert out.returncode == 0, out.stderr[-2000:]
  assert "finished before, skipped" in out.stderr and "| `lrn=False` | 0 1 |" in out.stdout
  assert before == {p: os.stat(p).st_mtime_ns for p in before}
