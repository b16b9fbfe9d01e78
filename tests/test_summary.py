"""launch.summary's numbers against the paper and the seeds (issue: foundation)."""
import subprocess
import sys

import pytest

from alexnet_jax.nn import models
from alexnet_jax.programs import summary

# Parameter counts at the stated class counts: the paper model with two towers and with
# one (seed 001), torchvision's AlexNet, and the 48-128-192-192-128 net of seed 003.
@pytest.mark.parametrize("preset,classes,size,total", [
    ("paper", 1000, 227, 60_965_224),
    ("paper", 1000, 224, 60_965_224),
    ("paper_one_tower", 1000, 227, 62_378_344),
    ("owt", 1000, 224, 61_100_840),
    ("small", 2, 227, 14_585_538),
])
def test_parameter_totals(preset, classes, size, total):
  rows = summary.layer_table(models.model_config(preset, num_classes=classes), size)
  assert sum(r.params for r in rows) == total


@pytest.mark.parametrize("size", [227, 224])
def test_shape_chain(size):
  rows = {r.layer: r.shape for r in summary.layer_table(models.model_config("paper"), size)}
  chain = [rows[n][0] for n in ("conv1", "pool1", "conv2", "pool2", "conv3", "conv4", "conv5", "pool5")]
  assert chain == [55, 27, 27, 13, 13, 13, 13, 6]
  assert rows["conv1"] == (55, 55, 96) and rows["pool5"] == (6, 6, 256)
  assert rows["fc6"] == (4096,) and rows["fc8"] == (1000,)


def test_flops_of_conv1():
  rows = {r.layer: r for r in summary.layer_table(models.model_config("paper"), 227)}
  assert rows["conv1"].flops == 2 * 11 * 11 * 3 * 96 * 55 * 55
  # conv2 is grouped: each output map sees 48 input maps.
  assert rows["conv2"].flops == 2 * 5 * 5 * 48 * 256 * 27 * 27


def test_launch_prints_the_table():
  out = subprocess.run(
      [sys.executable, "-m", "launch.summary", "--config=experiments/default.py",
       "--config.model.towers=1"], capture_output=True, text=True, check=True).stdout
  assert "total parameters: 62,378,344" in out
  assert "pool5" in out and "6x6x256" in out


@pytest.mark.slow
def test_layer_signal_measures_the_image_dependent_output_against_the_bias():
  import numpy as np  # pylint: disable=import-outside-toplevel
  from experiments import imagenette  # pylint: disable=import-outside-toplevel
  cfg = imagenette.get_config("cpu")
  cfg.model.init_scheme = "paper"
  cfg.model.num_classes = 4
  rng = np.random.default_rng(0)
  images = rng.integers(0, 256, (4, 128, 128, 3), dtype=np.uint8)
  rows = {r["layer"]: r for r in summary.layer_signal(cfg.model, cfg.data, images)}
  assert list(rows) == ["conv1", "conv2", "conv3", "conv4", "conv5", "fc6", "fc7", "fc8"]
  assert rows["conv2"]["bias"] == 1.0 and rows["conv1"]["bias"] == 0.0   # §5's biases
  assert rows["conv1"]["signal"] > 1 and rows["fc7"]["ratio"] < 0.1   # drowned by fc7
  same = summary.layer_signal(cfg.model, cfg.data, np.repeat(images[:1], 4, 0))
  fc = [r for r in same if r["layer"].startswith("fc")]   # one image: fc outputs never vary
  assert len(fc) == 3 and all(r["signal"] < 1e-3 * rows[r["layer"]]["signal"] for r in fc)


@pytest.mark.slow
def test_layer_signal_counts_the_relus_shut_for_every_image():
  import jax  # pylint: disable=import-outside-toplevel
  import numpy as np  # pylint: disable=import-outside-toplevel
  from experiments import imagenette  # pylint: disable=import-outside-toplevel
  cfg = imagenette.get_config("cpu")
  cfg.model.update(init_scheme="paper", num_classes=4, towers=1,
                   features=(16, 32, 48, 48, 32), fc_features=(64, 64))
  images = np.random.default_rng(0).integers(0, 256, (4, 128, 128, 3), dtype=np.uint8)
  model = models.create_model(cfg.model, cfg.data.image_size)
  params = jax.jit(model.init)(jax.random.key(0), np.zeros((1, 112, 112, 3), np.float32))["params"]
  alive = {r["layer"]: r["dead"] for r in summary.layer_signal(cfg.model, cfg.data, images,
                                                               params=params)}
  assert alive["fc7"] == 0.0 and alive["fc8"] is None   # biases of 1 keep fc7 open
  bias = np.asarray(params["fc7"]["bias"]).copy()
  bias[:48] = -10.0                                      # 48 of fc7's 64 units shut
  params = {**params, "fc7": {**params["fc7"], "bias": bias}}
  dead = {r["layer"]: r["dead"] for r in summary.layer_signal(cfg.model, cfg.data, images,
                                                              params=params)}
  assert dead["fc7"] == pytest.approx(0.75) and dead["fc6"] == 0.0


@pytest.mark.slow
def test_launch_measures_a_trained_checkpoint(shapes_dir, tmp_path):
  import helpers  # pylint: disable=import-outside-toplevel
  from alexnet_jax.programs import train  # pylint: disable=import-outside-toplevel
  workdir = str(tmp_path / "run")
  train.train_and_evaluate(helpers.tiny_config(shapes_dir, num_train_steps=2,
                                               checkpoint_every_steps=2), workdir)
  proc = subprocess.run(
      [sys.executable, "-m", "launch.summary", f"--workdir={workdir}",
       f"--signal={shapes_dir}", "--images=8"], capture_output=True, text=True)
  assert proc.returncode == 0, proc.stderr[-2000:]
  assert f"at step 2 of {workdir} (he init" in proc.stdout
  lines = {l.split()[0]: l for l in proc.stdout.splitlines() if "signal/bias" in l}
  assert "dead ReLUs" in lines["fc7"] and "dead ReLUs" not in lines["fc8"]
  bad = subprocess.run([sys.executable, "-m", "launch.summary", f"--workdir={workdir}"],
                       capture_output=True, text=True)
  assert bad.returncode != 0 and "give --signal=<prepared dataset> too" in bad.stderr
