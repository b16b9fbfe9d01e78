"""Fine-tuning (alexnet_jax/programs/finetune.py; train.py calls it): `init_from` restores parameters
by name from any workdir, fc8 starts afresh when the classes differ, frozen layers stay
exactly as restored, and other differences are one-line errors naming the layer."""
import logging
import os

import jax
import numpy as np
import pytest
from flax import traverse_util
from PIL import Image

from alexnet_jax.data import prepare
from alexnet_jax.programs import finetune, inference, pretrained, train
from experiments import pretrained as configs
import helpers


def params_of(workdir):
  restored = inference.load(workdir, mesh_shape=(1, 1), devices=jax.devices()[:1])
  return jax.tree.map(np.asarray, restored.params)


@pytest.fixture(scope="module")
def source(tmp_path_factory, shapes_dir):
  """A tiny run of 2 steps on the shapes (4 classes), checkpoints at steps 1 and 2."""
  workdir = str(tmp_path_factory.mktemp("source"))
  train.train_and_evaluate(helpers.tiny_config(
      shapes_dir, num_train_steps=2, checkpoint_every_steps=1, eval_every_steps=2,
      eval_batches=1), workdir)
  return workdir


def test_parse_init_from():
  assert finetune.parse_init_from("runs/a") == ("runs/a", "latest")
  assert finetune.parse_init_from("runs/a:12") == ("runs/a", "12")
  assert finetune.parse_init_from("runs/a:best") == ("runs/a", "best")
  assert finetune.parse_init_from("/data/x:y/run") == ("/data/x:y/run", "latest")


@pytest.mark.slow
def test_fine_tune_from_a_step_with_frozen_layers(source, shapes_dir, tmp_path, caplog):
  caplog.set_level(logging.INFO)
  cfg = helpers.tiny_config(shapes_dir, num_train_steps=2, checkpoint_every_steps=2,
                            eval_every_steps=2, eval_batches=1, weight_decay=0.1)
  cfg.init_from, cfg.freeze = f"{source}:1", ("conv1", "fc7")
  workdir = str(tmp_path / "ft")
  train.train_and_evaluate(cfg, workdir)
  before = traverse_util.flatten_dict(
      params_of_step(source, 1), sep="/")
  after = traverse_util.flatten_dict(params_of(workdir), sep="/")
  for name, value in after.items():
    if name.split("/")[0] in ("conv1", "fc7"):   # no update, no weight decay
      np.testing.assert_array_equal(value, before[name], err_msg=name)
    else:
      assert not np.array_equal(value, before[name]), name
  assert "(checkpoint 1): kept conv1, conv2, conv3, conv4, conv5, fc6, fc7, fc8; not kept: " \
         "none" in caplog.text


def params_of_step(workdir, step):
  restored = inference.load(workdir, step, mesh_shape=(1, 1), devices=jax.devices()[:1])
  return jax.tree.map(np.asarray, restored.params)


def test_freezing_an_unknown_layer_is_an_error(shapes_dir, tmp_path):
  cfg = helpers.tiny_config(shapes_dir)
  cfg.freeze = ("conv9",)
  with pytest.raises(ValueError, match="freeze: no layer 'conv9' in the model"):
    train.train_and_evaluate(cfg, str(tmp_path / "w"))


def test_a_misshapen_layer_is_a_one_line_error_naming_it(source, shapes_dir, tmp_path):
  cfg = helpers.tiny_config(shapes_dir, **{"model.features": (16, 32, 64, 48, 32)})
  cfg.init_from = source
  with pytest.raises(ValueError, match=r"\(checkpoint 2\): layer conv3: conv3/bias has shape "
                                       r"\(48,\) in the checkpoint but \(64,\) in this"):
    train.train_and_evaluate(cfg, str(tmp_path / "w"))
  cfg = helpers.tiny_config(shapes_dir, **{"model.fc_features": (64,)})
  cfg.init_from = source
  with pytest.raises(ValueError, match="layer fc8 .* is in the checkpoint but not in this "
                                       "config's model"):
    train.train_and_evaluate(cfg, str(tmp_path / "w2"))


@pytest.fixture(scope="module")
def small_folder(tmp_path_factory):
  """3 classes of 4 images each (train and val), prepared as 256 squares."""
  root = tmp_path_factory.mktemp("folder")
  rng = np.random.default_rng(0)
  for split in ("train", "val"):
    for c, colour in enumerate(("red", "green", "blue")):
      os.makedirs(root / "images" / split / colour)
      for i in range(4):
        pixels = rng.integers(0, 60, (200, 260, 3)).astype(np.uint8)
        pixels[..., c] += 150
        Image.fromarray(pixels).save(root / "images" / split / colour / f"{i}.jpg")
  out = str(root / "prepared")
  prepare.prepare(str(root / "images"), out, size=256, workers=0, progress=False)
  return out


@pytest.mark.slow   # about 30 s: the real architecture compiled for training at 224
def test_fine_tune_an_imported_torchvision_net_on_a_folder(small_folder, tmp_path, caplog):
  """The imported net (random weights, the real owt architecture), 3 new classes, conv1
  and conv2 frozen: two steps of batch 6 at 224."""
  torch = pytest.importorskip("torch")
  torchvision = pytest.importorskip("torchvision")
  torch.manual_seed(0)
  path = str(tmp_path / "alexnet.pth")
  torch.save(torchvision.models.alexnet().state_dict(), path)
  cfg, params = pretrained.import_torchvision(path, configs.get_config("torchvision"))
  imported = pretrained.write_workdir(str(tmp_path / "imported"), cfg, params, path,
                                      "torchvision")
  caplog.set_level(logging.INFO)
  cfg = configs.get_config("torchvision")
  cfg.init_from, cfg.freeze = imported, ("conv1", "conv2")
  cfg.model.num_classes = 3
  cfg.data.data_dir, cfg.data.train_split, cfg.data.eval_split = small_folder, "train", "val"
  cfg.data.workers, cfg.mesh_shape, cfg.batch_size = 0, (1, 1), 6
  cfg.num_train_steps, cfg.log_every_steps = 2, 1
  cfg.eval_every_steps = cfg.checkpoint_every_steps = 2
  workdir = str(tmp_path / "ft")
  metrics = train.train_and_evaluate(cfg, workdir)
  assert np.isfinite(metrics["loss"])
  assert ("kept conv1, conv2, conv3, conv4, conv5, fc6, fc7; not kept: fc8 (re-initialised: "
          "1000 classes there, 3 here)") in caplog.text
  tuned = params_of(workdir)
  assert tuned["fc8"]["kernel"].shape == (4096, 3)
  np.testing.assert_array_equal(tuned["conv2"]["kernel"], params["conv2"]["kernel"])
  assert not np.array_equal(tuned["fc7"]["kernel"], params["fc7"]["kernel"])
  restored = inference.load(workdir, mesh_shape=(1, 1), devices=jax.devices()[:1])
  assert restored.class_names == ["blue", "green", "red"]
