"""Inference from checkpoints (alexnet_jax/programs/inference.py, features.py, launch.predict/
evaluate/features): restoring on any mesh, bad inputs, ten crops, reports, fc7 features."""
import json
import os
import shutil
import subprocess
import sys

import jax
import numpy as np
import pytest
from PIL import Image

from alexnet_jax.data import augment, loader, prepare, synthetic
from alexnet_jax.nn import models
from alexnet_jax.programs import evaluation, features, inference, train
from alexnet_jax.run import checkpoint
import helpers
import processes

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def tiny_config(data_dir, mesh_shape, steps):
  return helpers.tiny_config(data_dir, mesh_shape=mesh_shape, num_train_steps=steps,
                             log_every_steps=2, eval_every_steps=2, checkpoint_every_steps=2,
                             eval_batches=-1)


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
  """4 classes x (16 train, 8 test) shapes as prepared 72x72 squares."""
  return helpers.shapes(str(tmp_path_factory.mktemp("data") / "shapes"),
                        train_per_class=16, test_per_class=8)


@pytest.fixture(scope="module")
def run(tmp_path_factory, data_dir):
  """One run for the whole module, trained on a (data=2, model=2) mesh of the virtual CPU
  devices (towers on devices), with checkpoints and evaluations at steps 2 and 4. The
  layout on disk does not depend on the mesh, so the other tests load it on one device.

  XLA compiles the threefry PRNG slowly on CPU (about 1 s per initialiser); the 'rbg'
  PRNG, for this fixture only, makes training start several seconds sooner.
  """
  workdir = str(tmp_path_factory.mktemp("run"))
  impl = jax.config.jax_default_prng_impl
  jax.config.update("jax_default_prng_impl", "rbg")
  try:
    train.train_and_evaluate(tiny_config(data_dir, (2, 2), 4), workdir)
  finally:
    jax.config.update("jax_default_prng_impl", impl)
  return workdir


@pytest.fixture(scope="module")
def restored(run):
  """The run on one device."""
  return inference.load(run, mesh_shape=(1, 1), devices=jax.devices()[:1])


@pytest.fixture(scope="module")
def images(tmp_path_factory, data_dir):
  """The bad-input zoo, and two good images."""
  d = tmp_path_factory.mktemp("images")
  folder = synthetic.make_shapes_dataset(str(d / "shapes"), train_per_class=1,
                                         test_per_class=1, size=72)
  good = os.path.join(folder, "test", "circle", "0000.jpg")
  rng = np.random.default_rng(0)
  grey = rng.integers(0, 256, (50, 90), dtype=np.uint8)
  Image.fromarray(grey).save(d / "grey.png")
  Image.fromarray(np.dstack([grey, grey // 2, grey // 3, grey])).save(d / "rgba.png")
  Image.new("RGB", (8000, 8000), (200, 40, 30)).save(d / "big.jpg", quality=50)
  data = open(good, "rb").read()
  (d / "truncated.jpg").write_bytes(data[:len(data) // 2])
  (d / "notes.jpg").write_text("not an image\n")
  return {"good": good, "grey": str(d / "grey.png"), "rgba": str(d / "rgba.png"),
          "big": str(d / "big.jpg"), "truncated": str(d / "truncated.jpg"),
          "text": str(d / "notes.jpg"), "missing": str(d / "missing.jpg")}


def launch(module, *args):
  """A launch in a fresh process with one CPU device (not the tests' eight)."""
  env = processes.child_env(JAX_PLATFORMS="cpu", TF_CPP_MIN_LOG_LEVEL="2")
  return subprocess.run([sys.executable, "-m", module, *args], capture_output=True, text=True,
                        cwd=ROOT, env=env, timeout=300)


def direct_logits(r, images):
  """Logits from the plain Flax model of model inputs, without batching or meshes."""
  model = models.create_model(r.cfg.model, r.cfg.data.image_size)
  return np.asarray(jax.jit(model.apply)({"params": jax.device_get(r.params)},
                                         np.asarray(images)))


def centre_crops(r, squares, ten_crop=False):
  crop = jax.jit(lambda s: augment.eval_images(s, r.cfg.data, ten_crop=ten_crop))
  return np.asarray(crop(np.asarray(squares)))


def softmax(x):
  e = np.exp(x - x.max(-1, keepdims=True))
  return e / e.sum(-1, keepdims=True)


# ------------------------------------------------------------------------------ restoring

def test_steps_latest_best_and_numbered(run):
  errors = {}
  with open(os.path.join(run, "metrics.jsonl")) as f:
    for line in f:
      r = json.loads(line)
      if "eval_top1_error" in r:
        errors[r["step"]] = r["eval_top1_error"]
  assert sorted(errors) == [2, 4]
  best = min(errors, key=lambda s: (errors[s], -s))
  manager, steps = checkpoint.open_steps(run)
  assert steps == [2, 4]
  assert checkpoint.resolve_step(manager, steps, "latest") == 4
  assert checkpoint.resolve_step(manager, steps, "best") == best
  assert checkpoint.resolve_step(manager, steps, "2") == 2
  with pytest.raises(ValueError, match=r"no checkpoint for step 3 in .*checkpoints; "
                                       r"available steps: 2, 4"):
    inference.load(run, 3)
  with pytest.raises(ValueError, match="'latest', 'best' or a step number"):
    inference.load(run, "newest")
  r2 = inference.load(run, 2, mesh_shape=(1, 1))
  assert r2.step == 2 and r2.class_names == ["checker", "circle", "hstripes", "vstripes"]


def test_missing_workdir_run_json_or_checkpoints(tmp_path, run):
  with pytest.raises(FileNotFoundError, match=f"workdir {tmp_path / 'nope'} does not exist"):
    inference.load(str(tmp_path / "nope"))
  with pytest.raises(FileNotFoundError, match=f"workdir {tmp_path} has no run.json"):
    inference.load(str(tmp_path))
  shutil.copy(os.path.join(run, "run.json"), tmp_path)
  with pytest.raises(FileNotFoundError, match=f"no checkpoints in {tmp_path}"):
    inference.load(str(tmp_path))


def edited_copy(run, dest, **model_fields):
  shutil.copytree(os.path.join(run, "checkpoints"), os.path.join(dest, "checkpoints"))
  with open(os.path.join(run, "run.json")) as f:
    info = json.load(f)
  info["config"]["model"].update(model_fields)
  with open(os.path.join(dest, "run.json"), "w") as f:
    json.dump(info, f)
  return str(dest)


def test_checkpoint_that_does_not_fit_the_config_names_the_layer(tmp_path, run):
  wider = edited_copy(run, tmp_path / "wider", features=[16, 32, 64, 48, 32])
  with pytest.raises(ValueError, match=r"does not match run.json's model: layer conv3: "
                                       r"conv3/bias has shape \(48,\) in the checkpoint but "
                                       r"\(64,\)"):
    inference.load(wider)
  shorter = edited_copy(run, tmp_path / "shorter", fc_features=[64])
  with pytest.raises(ValueError, match=r"layer fc8 \(fc8/bias\) is in the checkpoint but not "
                                       r"in the config's model"):
    inference.load(shorter)


def test_mesh_trained_checkpoint_gives_the_same_outputs_on_one_device(run, restored, images):
  on_mesh = inference.load(run, mesh_shape=(2, 2))
  assert dict(on_mesh.mesh.shape) == {"data": 2, "model": 2}
  assert restored.mesh.devices.size == 1
  x = np.stack([inference.load_image(images[k], 72) for k in ("good", "grey", "rgba")])
  a = inference.probabilities(on_mesh, x)   # padded to 4 on the mesh
  b = inference.probabilities(restored, x)
  np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
  np.testing.assert_allclose(b, softmax(direct_logits(restored, centre_crops(restored, x))),
                             rtol=1e-5, atol=1e-6)


@pytest.mark.slow
def test_a_4x2_trained_checkpoint_restores_on_one_device_with_the_same_outputs(
    data_dir, images, tmp_path):
  workdir = str(tmp_path / "run42")
  train.train_and_evaluate(tiny_config(data_dir, (4, 2), 2), workdir)
  on_mesh = inference.load(workdir, mesh_shape=(4, 2))
  single = inference.load(workdir, mesh_shape=(1, 1), devices=jax.devices()[:1])
  assert dict(on_mesh.mesh.shape) == {"data": 4, "model": 2} and single.mesh.devices.size == 1
  x = np.stack([inference.load_image(images[k], 72) for k in ("good", "grey", "rgba")])
  np.testing.assert_allclose(inference.probabilities(on_mesh, x),
                             inference.probabilities(single, x), rtol=1e-5, atol=1e-6)


# ------------------------------------------------------------------------------- predict

def test_predict_cli_reports_each_bad_file_and_predicts_the_rest(run, images, tmp_path):
  order = ["good", "missing", "text", "grey", "truncated", "rgba", "big"]
  out = tmp_path / "out.json"
  p = launch("launch.predict", f"--workdir={run}", "--step=best", f"--json={out}",
             *[images[k] for k in order])
  assert p.returncode == 1, p.stderr
  errors = [line for line in p.stderr.splitlines() if line.startswith("error:")]
  assert errors == [f"error: {images['missing']}: no such file",
                    f"error: {images['text']}: not an image file (not a format that PIL can "
                    f"read)",
                    f"error: {images['truncated']}: cannot decode JPEG: the file is truncated",
                    "error: 3 of 7 images could not be read"], p.stderr
  for k in ("good", "grey", "rgba", "big"):
    assert f"{images[k]}\n  1. " in p.stdout
  report = json.loads(out.read_text())
  assert report["workdir"] == run and report["ten_crop"] is False
  assert [r["image"] for r in report["results"]] == [images[k] for k in order]
  for k, r in zip(order, report["results"]):
    if k in ("missing", "text", "truncated"):
      assert set(r) == {"image", "error"} and images[k] in r["error"]
      continue
    assert set(r) == {"image", "top"}
    top = r["top"]
    assert len(top) == 4   # four classes: all of them in the top 5
    assert {t["class"] for t in top} == {"checker", "circle", "hstripes", "vstripes"}
    assert set(top[0]) == {"label", "class", "name", "probability"}
    probs = [t["probability"] for t in top]
    assert probs == sorted(probs, reverse=True) and abs(sum(probs) - 1) < 1e-5


def test_predict_cli_on_an_empty_workdir_is_one_clear_line(tmp_path, images):
  p = launch("launch.predict", f"--workdir={tmp_path}", images["good"])
  assert p.returncode == 1
  assert p.stderr.strip().splitlines()[-1] == (
      f"error: workdir {tmp_path} has no run.json: not a training workdir (launch.train "
      "writes run.json and checkpoints/ there)")


def test_odd_images_decode_to_rgb_and_huge_ones_shrink_first(images, monkeypatch):
  grey = inference.load_image(images["grey"], 72)   # 50x90 -> the central 72x72 of 72x130
  rgba = inference.load_image(images["rgba"], 72)
  assert grey.shape == (72, 72, 3) and grey.dtype == np.uint8
  assert (grey[..., 0] == grey[..., 2]).all()
  assert rgba.shape == (72, 72, 3)
  decoded = []
  real_load = Image.Image.load
  monkeypatch.setattr(Image.Image, "load",
                      lambda im: decoded.append(im.size) or real_load(im))
  big = inference.load_image(images["big"], 72)   # decoded at 1/8 scale: 1000x1000
  monkeypatch.undo()
  assert decoded[0] == (1000, 1000)   # the first load is the decode
  assert big.shape == (72, 72, 3)
  np.testing.assert_allclose(big.mean((0, 1)), (200, 40, 30), atol=3)
  monkeypatch.setattr(inference, "MAX_PIXELS", 1000)
  with pytest.raises(inference.ImageError, match=r"0000.jpg: 72x72 is 5,184 pixels, more than "
                                                 r"the limit of 1,000"):
    inference.load_image(images["good"], 72)


def test_ten_crop_probabilities_are_the_mean_of_the_crops_softmax(restored, images):
  paths = [images["good"], images["rgba"]]
  result = inference.predict_files(restored, paths, ten_crop=True)
  for path, r in zip(paths, result):
    crops = centre_crops(restored, inference.load_image(path, 72)[None], ten_crop=True)[0]
    assert crops.shape == (10, 64, 64, 3)
    want = softmax(direct_logits(restored, crops)).mean(0)
    got = np.zeros(4)
    for t in r["top"]:
      got[t["label"]] = t["probability"]
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)


def test_predict_pads_every_chunk_to_one_shape_and_compiles_once(run, images):
  """Five readable images and a bad one in chunks of 2: the last chunk is padded to 2 too,
  so the prediction compiles once; each image's probabilities are those it gets alone."""
  r = inference.load(run, mesh_shape=(1, 1), devices=jax.devices()[:1], batch_size=2)
  paths = [images["good"], images["rgba"], images["text"], images["grey"], images["good"],
           images["rgba"]]
  result = inference.predict_files(r, paths)
  assert inference._predict_fn(r, False)._cache_size() == 1  # pylint: disable=protected-access
  assert "error" in result[2] and all("top" in x for i, x in enumerate(result) if i != 2)
  alone = inference.predict_files(r, [images["grey"]])
  probs = lambda top: {x["label"]: x["probability"] for x in top}
  assert probs(result[3]["top"]) == pytest.approx(probs(alone[0]["top"]), rel=1e-5)
  assert inference.padded_batch(r, 1) == 1 and inference.padded_batch(r, 7) == 2


def test_imagenet_synsets_get_wordnet_names():
  assert inference.readable_names(["n01440764", "n03888257", "n02102040", "circle"]) == [
      "tench", "parachute", "English springer", "circle"]


# ------------------------------------------------------------------------------ evaluate

def test_evaluate_report_equals_a_direct_computation(restored, data_dir):
  report = inference.evaluate(restored, "test", ten_crop=True)
  single, ten, labels = [], [], []
  for batch in loader.eval_batches(loader.open_split(restored.cfg.data, "test"), 16):
    real = batch["mask"] > 0
    x = centre_crops(restored, batch["image"][real], ten_crop=True)      # [b, 10, S, S, 3]
    out = direct_logits(restored, x.reshape(-1, *x.shape[2:])).reshape(len(x), 10, -1)
    single.append(out[:, evaluation.CENTRE_CROP])
    ten.append(softmax(out).mean(1))
    labels.append(batch["label"][real])
  labels = np.concatenate(labels)
  assert report["examples"] == len(labels) == 32
  for kind, scores in (("single_crop", np.concatenate(single)), ("ten_crop", np.concatenate(ten))):
    top5 = np.argsort(-scores, axis=1)[:, :5]
    assert report[kind]["top1_error"] == pytest.approx(np.mean(top5[:, 0] != labels), abs=1e-6)
    assert report[kind]["top5_error"] == pytest.approx(
        np.mean(~(top5 == labels[:, None]).any(1)), abs=1e-6)
  # The single-crop numbers equal the training loop's evaluation of the same checkpoint.
  with open(os.path.join(restored.workdir, "metrics.jsonl")) as f:
    logged = [r for r in map(json.loads, f) if r["step"] == 4 and "eval_loss" in r][-1]
  for k in ("top1_error", "top5_error", "loss"):
    assert report["single_crop"][k] == pytest.approx(logged[f"eval_{k}"], abs=1e-5)
  path = inference.write_report(report, ten_crop=True)
  assert path == os.path.join(restored.workdir, "eval_shapes_test_4_10crop.json")
  assert json.load(open(path))["ten_crop"] == report["ten_crop"]


@pytest.mark.slow
def test_evaluate_cli_writes_the_report(run, data_dir):
  p = launch("launch.evaluate", f"--workdir={run}", "--step=2", "--split=test[:50%]",
             f"--data_dir={data_dir}", "--batch_size=8", "--log_every=1")
  assert p.returncode == 0, p.stderr
  report = json.load(open(os.path.join(run, "eval_shapes_test_50_2.json")))
  assert report["step"] == 2 and report["examples"] == 16 and report["batch_size"] == 8
  assert set(report["single_crop"]) == {"top1_error", "top5_error", "loss"}
  assert "ten_crop" not in report
  assert "images/s" in p.stderr and "single-crop: top-1 error" in p.stdout
  # Another folder's evaluation of the same split and step gets its own report.
  other = os.path.join(os.path.dirname(data_dir), "other_shapes")
  shutil.copytree(data_dir, other, dirs_exist_ok=True)
  p = launch("launch.evaluate", f"--workdir={run}", "--step=2", "--split=test[:50%]",
             f"--data_dir={other}", "--batch_size=8")
  assert p.returncode == 0, p.stderr
  assert os.path.isfile(os.path.join(run, "eval_other_shapes_test_50_2.json"))
  assert os.path.isfile(os.path.join(run, "eval_shapes_test_50_2.json"))


def test_evaluate_cli_on_a_test_set_with_only_a_val_split(run, tmp_path):
  """A separate test set need not have the run's train split; and orbax's warnings about
  opening the workdir read-only (on purpose) do not reach the user."""
  src = synthetic.make_shapes_dataset(str(tmp_path / "src"), train_per_class=1,
                                      test_per_class=2, size=72)
  (tmp_path / "images").mkdir()
  os.rename(os.path.join(src, "test"), tmp_path / "images" / "val")
  prepare.prepare(str(tmp_path / "images"), str(tmp_path / "val_only"), size=72, workers=0,
                  progress=False)
  p = launch("launch.evaluate", f"--workdir={run}", f"--data_dir={tmp_path / 'val_only'}",
             "--split=val")
  assert p.returncode == 0, p.stderr[-3000:]
  assert "8 examples of val, checkpoint 4" in p.stdout
  warnings = [l for l in p.stderr.splitlines() if l.startswith("W")]   # absl's format
  assert warnings == [], warnings


# ------------------------------------------------------------------------------ features

def test_feature_layer_is_the_classifiers_input():
  assert features.feature_layer(models.model_config("paper")) == "fc7_out"
  assert features.feature_layer(models.model_config("conv_local_11pct_as_conv")) == "conv4_out"
  assert features.feature_layer(models.model_config("paper", fc_features=())) == "pool5"


def test_nearest_neighbours():
  rng = np.random.default_rng(0)
  db, q = rng.normal(size=(50, 8)), rng.normal(size=(3, 8))
  idx, dist = features.nearest(q, db, 4)
  full = np.linalg.norm(q[:, None] - db[None], axis=-1)
  np.testing.assert_array_equal(idx, np.argsort(full, axis=1)[:, :4])
  np.testing.assert_allclose(dist, np.sort(full, axis=1)[:, :4], rtol=1e-9)


def test_features_cli_exports_fc7_and_draws_the_neighbour_grid(run, restored, tmp_path):
  out, png = tmp_path / "feats.npz", tmp_path / "grid.png"
  p = launch("launch.features", f"--workdir={run}", "--split=test", f"--out={out}",
             "--neighbours=3", "--queries=2", f"--png={png}")
  assert p.returncode == 0, p.stderr
  saved = np.load(out)
  assert saved["features"].shape == (32, 64) and saved["labels"].shape == (32,)
  assert str(saved["layer"]) == "fc7_out" and (saved["features"] >= 0).all()   # post-ReLU
  assert saved["neighbour_indices"].shape == (2, 3)
  # They are the plain model's sown fc7 activations of the split's centre crops.
  split = loader.Split(restored.cfg.data.data_dir, "test")
  batch = {"image": np.stack([split[i]["image"] for i in range(5)]),
           "label": np.stack([split[i]["label"] for i in range(5)])}
  model = models.create_model(restored.cfg.model, 64)
  fc7 = jax.jit(lambda p, x: model.apply({"params": p}, x, mutable=["intermediates"])[1])
  state = fc7(jax.device_get(restored.params), centre_crops(restored, batch["image"]))
  np.testing.assert_allclose(saved["features"][:5], state["intermediates"]["fc7_out"][0],
                             rtol=1e-5, atol=1e-5)
  np.testing.assert_array_equal(saved["labels"][:5], batch["label"])
  with Image.open(png) as im:
    assert im.format == "PNG" and im.size[0] > im.size[1] > 100


def test_ten_crop_loss_is_finite_when_every_crop_underflows():
  """log(mean of the crops' probabilities) as a logsumexp of log-softmaxes: where each
  crop's softmax gives the true class exactly 0 in float32, the loss is still the right
  finite number, not inf."""
  logits = np.zeros((2, 10, 3), np.float32)
  logits[:, :, 0] = -2000.0 - np.arange(10)        # class 0 underflows in every crop
  batch = {"image": np.zeros((2, 4, 4, 3), np.uint8), "label": np.zeros(2, np.int32),
           "mask": np.ones(2, np.float32)}
  data_cfg = helpers.tiny_config(**{"data.image_size": 4, "data.resize_size": 4}).data
  sums = evaluation.eval_sums(None, batch, apply_fn=lambda p, x, r: logits.reshape(20, 3),
                              data_cfg=data_cfg, ten_crop=True)
  # -log(mean_c e^(l_c) / (e^(l_c) + 2)) ~= -logsumexp(l) + log(10) + log(2)
  want = -(-2000.0 + np.log(np.exp(-np.arange(10.0)).sum())) + np.log(10) + np.log(2)
  np.testing.assert_allclose(float(sums["ten_crop"]["loss"]) / 2, want, rtol=1e-5)


@pytest.mark.parametrize("saved", ["paper", "standardized"])
def test_inference_uses_the_input_scale_the_checkpoint_was_trained_with(run, tmp_path, saved):
  """run.json's data.input_scale drives predict/evaluate/features."""
  copy = str(tmp_path / "run")
  shutil.copytree(run, copy)
  info = json.load(open(os.path.join(copy, "run.json")))
  info["config"]["data"]["input_scale"] = saved
  json.dump(info, open(os.path.join(copy, "run.json"), "w"))
  r = inference.load(copy, devices=jax.local_devices()[:1], mesh_shape=(1, 1))
  assert r.cfg.data.input_scale == saved
  image = np.full((1, 72, 72, 3), 200, np.uint8)
  x = np.asarray(augment.eval_images(image, r.cfg.data))[0]
  want = (200 / 255 - np.array(r.cfg.data.mean)) * (255 if saved == "paper"
                                                    else 1 / np.array(r.cfg.data.std))
  np.testing.assert_allclose(x[0, 0], want, rtol=1e-5)


def test_evaluate_refuses_a_folder_whose_classes_differ_from_the_run(restored, data_dir,
                                                                     tmp_path):
  three = helpers.shapes(str(tmp_path / "three_classes"), num_classes=3, train_per_class=2,
                         test_per_class=2)   # circle, hstripes, vstripes
  with pytest.raises(ValueError, match="has 3 classes but checkpoint .* trained on 4: "
                                       "missing checker"):
    inference.evaluate(restored, "test", data_dir=three)
  with pytest.raises(ValueError, match="missing checker"):
    features.extract(restored, "test", data_dir=three)


def test_predict_takes_any_file_name_makes_the_json_folder_and_checks_top(run, images,
                                                                          tmp_path):
  odd = os.fsdecode(os.path.join(os.fsencode(str(tmp_path)), b"caf\xe9\xff.jpg"))  # not UTF-8
  shutil.copy(images["good"], odd)
  corrupt = tmp_path / "corrupt.jpg"
  data = bytearray(open(images["good"], "rb").read())
  huffman = data.find(b"\xff\xc4") + 5
  data[huffman:huffman + 25] = b"\xee" * 25                  # a bogus Huffman table
  corrupt.write_bytes(bytes(data))
  out = tmp_path / "new" / "folder" / "out.json"
  p = launch("launch.predict", f"--workdir={run}", f"--json={out}", odd, images["good"])
  assert p.returncode == 0, p.stderr
  assert p.stdout.count("  1. ") == 2
  assert [r["image"] for r in json.loads(out.read_text())["results"]] == [odd, images["good"]]
  for top in ("0", "-1"):
    p = launch("launch.predict", f"--workdir={run}", f"--top={top}", images["good"])
    assert p.returncode != 0 and p.stderr.strip().splitlines()[-1] == (
        f"error: --top must be at least 1, got {top}")
  with pytest.raises(inference.ImageError) as e:
    inference.load_image(str(corrupt), 72)
  assert str(e.value) == f"{corrupt}: cannot decode JPEG: the file is corrupt"
