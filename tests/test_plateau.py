"""The warning for a training loss that stays at chance (plateau.py), alone and in the loop."""
import math
import os

import pytest

from alexnet_jax.base import workdir as workdir_lib
from alexnet_jax.programs import plateau, train
import helpers

LN10 = math.log(10)


def test_warns_once_after_a_long_stretch_at_chance_and_again_after_leaving_it():
  watch = plateau.ChanceLoss(10, min_steps=100)
  at_chance = LN10 * 1.009   # inside the 1% band
  assert [watch.check(s, at_chance) for s in range(50, 150, 50)] == [None, None]
  message = watch.check(150, at_chance)   # 100 steps since step 50
  assert "from step 50 to 150" in message and "ln(10)" in message
  assert "init_scheme=torch" in message and "The paper's initialisation" in message
  assert watch.check(200, at_chance) is None           # once per stretch
  assert watch.check(250, LN10 * 0.98) is None          # it left the band: learning
  assert [watch.check(s, LN10) for s in (300, 350)] == [None, None]
  assert watch.check(400, LN10) is not None            # a new stretch from step 300


def test_the_readme_has_the_section_the_warning_names():
  section = plateau.README_SECTION.split('"')[1]
  with open(os.path.join(os.path.dirname(os.path.dirname(__file__)), "README.md")) as f:
    assert f"### {section}\n" in f.read()


def test_a_loss_just_outside_the_band_never_warns():
  watch = plateau.ChanceLoss(10, min_steps=10)
  assert all(watch.check(s, LN10 * 1.011) is None for s in range(0, 1000, 10))
  assert all(watch.check(s, LN10 * 0.989) is None for s in range(1000, 2000, 10))


def test_the_cause_follows_the_init():
  for scheme, cause in (("paper", "biases"), ("caffe", "biases"), ("torch", "learning rate")):
    watch = plateau.ChanceLoss(4, scheme, min_steps=0)
    assert cause in watch.check(0, math.log(4))


@pytest.mark.slow
def test_a_run_at_chance_logs_the_warning_and_trains_to_the_end(shapes_dir, tmp_path,
                                                                 monkeypatch):
  """The tiny net with a learning rate of 0 stays at ln 4 (N(0, 0.01) weights and a zero
  fc8 bias give logits near 0): the loop warns and still runs every step."""
  monkeypatch.setattr(plateau, "MIN_STEPS", 10)
  warnings = []
  monkeypatch.setattr(plateau.logging, "warning", warnings.append)
  cfg = helpers.tiny_config(shapes_dir, learning_rate=0.0,
                            **{"model.init_scheme": "paper", "model.dropout": 0.0})
  train.train_and_evaluate(cfg, str(tmp_path))
  assert any("has not started to learn" in w for w in warnings), warnings
  assert any(f"`python -m launch.summary --workdir={tmp_path} --signal={shapes_dir}`" in w
             for w in warnings), warnings
  steps = [r["step"] for r in workdir_lib.read_metrics(str(tmp_path)) if "train_loss" in r]
  assert steps[-1] == cfg.num_train_steps
