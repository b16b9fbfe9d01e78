"""Pretrained nets (alexnet_jax/programs/pretrained.py, state_dict.py, launch.import_weights) against
their own runtimes: torchvision's AlexNet against torchvision, Caffe's bvlc_alexnet (an ONNX
graph of its structure) against onnxruntime. The nets are random-weight, of the real
architectures. torch, torchvision, onnx and onnxruntime are test-only (requirements-test.txt).

Differences that remain, all float32 rounding: the same model input gives logits within
about 1e-6 of the oracle's largest (different summation orders in the convolutions and
matmuls); the input itself differs by at most about 1e-6 from torchvision's, because
(x / 255 - mean) / std is computed here as x * (1 / (255 std)) - mean / std, one
multiply-add; the resized pixels are identical (both are PIL's bilinear resize).
"""
import glob
import json
import os
import subprocess
import sys

import jax
import numpy as np
import pytest
from PIL import Image

from alexnet_jax.data import augment, imagenet
from alexnet_jax.nn import state_dict
from alexnet_jax.programs import features, inference, pretrained, train
from experiments import pretrained as configs
import processes

torch = pytest.importorskip("torch")
torchvision = pytest.importorskip("torchvision")

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DATA = os.environ.get("ALEXNET_DATA_DIR")


def relative(a, b):
  return float(np.abs(np.asarray(a) - np.asarray(b)).max() / np.abs(np.asarray(b)).max())


def launch(module, *args, block=None):
  """`python -m module args` with one CPU device; `block`: a folder where `import torch`
  fails, put first on the path."""
  env = processes.child_env()
  if block:
    (block / "torch").mkdir(parents=True)
    (block / "torch" / "__init__.py").write_text("raise ImportError('torch is blocked')\n")
    env["PYTHONPATH"] = str(block)
  return subprocess.run([sys.executable, "-m", module, *args], cwd=ROOT, env=env,
                        capture_output=True, text=True, timeout=300)


# --------------------------------------------------------------------------- torchvision

@pytest.fixture(scope="module")
def torch_net(tmp_path_factory):
  """torchvision's alexnet() with random weights (its own init), and its saved state_dict."""
  torch.manual_seed(0)
  net = torchvision.models.alexnet().eval()
  path = str(tmp_path_factory.mktemp("torch") / "alexnet.pth")
  torch.save(net.state_dict(), path)
  return net, path


@pytest.fixture(scope="module")
def imported(torch_net, tmp_path_factory):
  cfg, params = pretrained.import_torchvision(torch_net[1], configs.get_config("torchvision"))
  workdir = str(tmp_path_factory.mktemp("imported"))
  pretrained.write_workdir(workdir, cfg, params, torch_net[1], "torchvision")
  return workdir


def test_state_dict_reader_returns_torchs_arrays(torch_net, tmp_path):
  net, path = torch_net
  arrays = state_dict.read(path)
  assert list(arrays) == list(net.state_dict())
  for key, tensor in net.state_dict().items():
    np.testing.assert_array_equal(arrays[key], tensor.numpy())
  strided = torch.arange(12.0).reshape(3, 4).t()   # a view with strides, and bfloat16
  for zipped in (True, False):   # torch.save's format, and the one before PyTorch 1.6
    path = str(tmp_path / f"v{zipped}.pth")
    torch.save({"a": strided, "b": torch.full((2,), 1.5, dtype=torch.bfloat16)}, path,
               _use_new_zipfile_serialization=zipped)
    back = state_dict.read(path)
    np.testing.assert_array_equal(back["a"], strided.numpy())
    assert back["b"].astype(np.float32).tolist() == [1.5, 1.5]
    assert pretrained.guess_format(path) == "torchvision"


def test_imported_logits_equal_torchvisions(torch_net, imported):
  net, _ = torch_net
  restored = inference.load(imported, mesh_shape=(1, 1), devices=jax.devices()[:1])
  assert restored.cfg.model.features == (64, 192, 384, 256, 256)   # the owt model
  assert restored.class_names == imagenet.synsets()
  x = np.random.default_rng(0).normal(size=(4, 3, 224, 224)).astype(np.float32)
  with torch.no_grad():
    want = net(torch.from_numpy(x)).numpy()
  got = restored.apply_fn(restored.params, x.transpose(0, 2, 3, 1), None)
  assert relative(got, want) < 1e-4


def test_named_layers_equal_torchvisions_activations(torch_net, imported):
  """conv1..conv5 after ReLU (what LPIPS reads), fc6 and fc7 after ReLU, and the logits,
  against forward hooks on torchvision's ReLU modules."""
  net, _ = torch_net
  relus = {"conv1": net.features[1], "conv2": net.features[4], "conv3": net.features[7],
           "conv4": net.features[9], "conv5": net.features[11], "fc6": net.classifier[2],
           "fc7": net.classifier[5]}
  seen = {}
  hooks = [m.register_forward_hook(lambda m, i, o, n=n: seen.__setitem__(n, o.clone()))
           for n, m in relus.items()]
  squares = np.random.default_rng(2).integers(0, 256, (2, 256, 256, 3), dtype=np.uint8)
  restored = inference.load(imported, mesh_shape=(1, 1), devices=jax.devices()[:1])
  x = augment.eval_images(squares, restored.cfg.data)
  with torch.no_grad():
    seen["logits"] = net(torch.from_numpy(np.asarray(x).transpose(0, 3, 1, 2).copy()))
  for h in hooks:
    h.remove()
  got = features.activations(restored, squares, list(seen))
  for name, want in seen.items():
    want = want.numpy()
    want = want.transpose(0, 2, 3, 1) if want.ndim == 4 else want
    assert got[name].shape == want.shape, name
    assert relative(got[name], want) < 1e-4, name
  with pytest.raises(ValueError, match="no layer 'conv6'; choose from conv1, conv2"):
    features.activations(restored, squares, ["conv6"])


def test_features_launch_writes_a_layer_of_image_files(imported, tmp_path):
  paths = []
  for i, size in enumerate([(300, 240), (240, 320)]):
    pixels = np.random.default_rng(i).integers(0, 256, (*size[::-1], 3), dtype=np.uint8)
    paths.append(str(tmp_path / f"{i}.jpg"))
    Image.fromarray(pixels).save(paths[-1])
  out = str(tmp_path / "conv5.npz")
  p = launch("launch.features", f"--workdir={imported}", "--layer=conv5", f"--out={out}",
             *paths)
  assert p.returncode == 0, p.stderr
  saved = np.load(out)
  assert tuple(saved["shape"]) == (13, 13, 256) and saved["features"].shape == (2, 13 * 13 * 256)
  restored = inference.load(imported, mesh_shape=(1, 1), devices=jax.devices()[:1])
  want = features.activations(restored, inference.load_images(restored.cfg.data, paths),
                              ["conv5"])["conv5"]
  np.testing.assert_allclose(saved["features"], want.reshape(2, -1), rtol=1e-5, atol=1e-6)


def _jpegs(tmp_path):
  """Real Imagenette JPEGs (224x224, one greyscale), and real images cut to odd shapes and
  saved as JPEG, where torchvision's resize rounding and crop offsets matter."""
  files = sorted(glob.glob(os.path.join(DATA, "imagenette", "train", "*", "*.JPEG")))
  if not files:
    pytest.skip(f"no Imagenette JPEGs under {DATA}/imagenette/train")
  chosen = files[::len(files) // 5][:5]
  grey = next((f for f in files[:400] if Image.open(f).mode == "L"), None)
  chosen += [grey] if grey else []
  for i, (w, h) in enumerate([(224, 171), (161, 224), (224, 203)]):
    path = str(tmp_path / f"cut{i}.jpg")
    Image.open(chosen[i]).convert("RGB").crop((0, 0, w, h)).save(path, quality=90)
    chosen.append(path)
  return chosen


@pytest.mark.slow
@pytest.mark.skipif(not DATA, reason="ALEXNET_DATA_DIR is not set")
def test_import_launch_then_predict_top5_equals_torchvisions(torch_net, tmp_path):
  """launch.import_weights (in a process where `import torch` fails), then launch.predict
  on JPEG files, against torchvision's model on torchvision's own preprocessing of the same
  files (AlexNet_Weights.transforms())."""
  net, path = torch_net
  files = _jpegs(tmp_path)
  workdir = str(tmp_path / "tv")
  p = launch("launch.import_weights", f"--weights={path}", f"--workdir={workdir}",
             block=tmp_path / "no_torch")
  assert p.returncode == 0, p.stderr
  assert "torchvision AlexNet (1000 classes, 224x224 input)" in p.stdout
  out = str(tmp_path / "predictions.json")
  p = launch("launch.predict", f"--workdir={workdir}", f"--json={out}", *files)
  assert p.returncode == 0, p.stderr
  results = json.load(open(out))["results"]
  transform = torchvision.models.AlexNet_Weights.IMAGENET1K_V1.transforms()
  x = torch.stack([transform(Image.open(f).convert("RGB")) for f in files])
  with torch.no_grad():
    probs = torch.softmax(net(x), -1).numpy()
  for r, want in zip(results, probs):
    top = [t["label"] for t in r["top"]]
    assert top == list(np.argsort(-want)[:5]), r["image"]
    np.testing.assert_allclose([t["probability"] for t in r["top"]], want[top], rtol=1e-4)
  # The input the model saw is torchvision's: identical resized pixels, then one rounding.
  restored = inference.load(workdir, mesh_shape=(1, 1), devices=jax.devices()[:1])
  seen = augment.eval_images(inference.load_images(restored.cfg.data, files), restored.cfg.data)
  assert np.abs(np.asarray(seen) - x.numpy().transpose(0, 2, 3, 1)).max() < 2e-6


def test_the_shipped_class_names_are_the_imagenet_class_index():
  synsets = imagenet.synsets()
  assert len(set(synsets)) == 1000 and synsets == sorted(synsets)   # label order
  torchvision_names = torchvision.models.AlexNet_Weights.IMAGENET1K_V1.meta["categories"]
  same = sum(a == b for a, b in zip(imagenet.names().values(), torchvision_names))
  assert same >= 995   # the same classes in the same order; a few short names differ
  if DATA:
    index = json.load(open(os.path.join(DATA, "imagenet_meta", "imagenet_class_index.json")))
    assert synsets == [index[str(i)][0] for i in range(1000)]


def test_bad_state_dicts_are_one_line_errors(torch_net, tmp_path):
  _, path = torch_net
  cfg = configs.get_config("torchvision")
  weights = state_dict.read(path)
  (tmp_path / "notes.pth").write_text("not weights\n")
  with pytest.raises(ValueError, match="not a PyTorch state_dict file"):
    pretrained.import_torchvision(str(tmp_path / "notes.pth"), cfg)
  (tmp_path / "cut.pth").write_bytes(open(path, "rb").read()[:100_000])
  with pytest.raises(ValueError, match="cut.pth: "):
    pretrained.import_torchvision(str(tmp_path / "cut.pth"), cfg)
  torch.save(torchvision.models.alexnet(), tmp_path / "module.pth")   # the model, not its dict
  with pytest.raises(ValueError, match="holds a torchvision.models.alexnet.AlexNet"):
    pretrained.import_torchvision(str(tmp_path / "module.pth"), cfg)
  missing = {k: v for k, v in weights.items() if k != "features.6.weight"}
  with pytest.raises(ValueError, match="has no 'features.6.weight'"):
    pretrained.torchvision_params(missing, cfg)
  misshapen = {**weights, "features.3.weight": np.zeros((192, 32, 5, 5), np.float32)}
  with pytest.raises(ValueError, match=r"features.3.weight has shape \(192, 32, 5, 5\), "
                                       r"torchvision's has \(192, 64, 5, 5\)"):
    pretrained.torchvision_params(misshapen, cfg)
  resnet = {"conv1.weight": np.zeros((64, 3, 7, 7), np.float32)}
  with pytest.raises(ValueError, match="has no 'features.0.weight'.*conv1.weight"):
    pretrained.torchvision_params(resnet, cfg)


def test_a_finetuned_torchvision_net_keeps_its_classes():
  """... whatever its number of classes, also as saved through (Distributed)DataParallel
  (PyTorch's ImageNet example wraps AlexNet's features in DataParallel)."""
  torch.manual_seed(1)
  net = torchvision.models.alexnet(num_classes=10)
  weights = {k: v.numpy() for k, v in net.state_dict().items()}
  cfg, params = pretrained.torchvision_params(weights, configs.get_config("torchvision"))
  assert cfg.model.num_classes == 10 and params["fc8"]["kernel"].shape == (4096, 10)
  wrapped = {"module." + k.replace("features.", "features.module."): v
             for k, v in weights.items()}
  _, again = pretrained.torchvision_params(wrapped, configs.get_config("torchvision"))
  np.testing.assert_array_equal(again["conv2"]["kernel"], params["conv2"]["kernel"])


def test_workdir_is_not_overwritten_without_overwrite(torch_net, imported):
  cfg, params = pretrained.import_torchvision(torch_net[1], configs.get_config("torchvision"))
  before = open(os.path.join(imported, "run.json")).read()
  with pytest.raises(ValueError, match="is not empty.*--overwrite"):
    pretrained.write_workdir(imported, cfg, params, torch_net[1], "torchvision")
  assert open(os.path.join(imported, "run.json")).read() == before


def _trainer_running(shapes_dir, workdir):
  """launch.train on `workdir` for good, once it has written a checkpoint."""
  proc = subprocess.Popen(processes.launch_train(
      workdir, "--config.num_train_steps=100000", "--config.checkpoint_every_steps=2",
      "--config.data.name=prepared", f"--config.data.data_dir={shapes_dir}"), cwd=ROOT,
      stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, start_new_session=True)
  processes.wait_for(lambda: os.path.isdir(workdir / "checkpoints" / "2"), proc,
                     "a checkpoint", seconds=240)
  return proc


@pytest.mark.slow
def test_overwrite_never_touches_a_workdir_whose_training_is_running(torch_net, shapes_dir,
                                                                     tmp_path):
  workdir = tmp_path / "run"
  trainer = _trainer_running(shapes_dir, workdir)
  try:
    before = {n: (workdir / n).read_bytes() for n in ("run.json", "LOCK")}
    proc = launch("launch.import_weights", f"--weights={torch_net[1]}", f"--workdir={workdir}",
                  "--overwrite")
    assert proc.returncode == 1
    assert "Traceback" not in proc.stderr, proc.stderr[-3000:]
    last = proc.stderr.strip().splitlines()[-1]
    assert last.startswith(f"error: workdir {workdir} is in use by process {trainer.pid}"), last
    assert {n: (workdir / n).read_bytes() for n in before} == before
    assert os.listdir(workdir / "checkpoints") and (workdir / "metrics.jsonl").exists()
    assert trainer.poll() is None   # still training
  finally:
    trainer.terminate()   # SIGTERM: it saves and exits 0
    _, err = trainer.communicate(timeout=120)
  assert trainer.returncode == 0, err[-3000:]


@pytest.mark.slow
def test_overwriting_trained_checkpoints_needs_a_second_flag(torch_net, shapes_dir, tmp_path):
  from test_train import tiny_config, with_data  # pylint: disable=import-outside-toplevel
  workdir = tmp_path / "run"
  train.train_and_evaluate(with_data(tiny_config(num_train_steps=4, checkpoint_every_steps=2,
                                                 eval_every_steps=1000), shapes_dir),
                           str(workdir))
  before = sorted(os.listdir(workdir)), (workdir / "run.json").read_text()
  cfg, params = pretrained.import_torchvision(torch_net[1], configs.get_config("torchvision"))
  with pytest.raises(ValueError, match=r"holds checkpoints that training wrote \(steps 2, 4\); "
                                       r"--overwrite would delete them: pass "
                                       r"--overwrite_trained as well"):
    pretrained.write_workdir(str(workdir), cfg, params, torch_net[1], "torchvision",
                             overwrite=True)
  assert (sorted(os.listdir(workdir)), (workdir / "run.json").read_text()) == before
  assert sorted(os.listdir(workdir / "checkpoints")) == ["2", "4"]
  pretrained.write_workdir(str(workdir), cfg, params, torch_net[1], "torchvision",
                           overwrite=True, overwrite_trained=True)
  assert os.listdir(workdir / "checkpoints") == ["0"]
  assert json.loads((workdir / "run.json").read_text())["imported_from"]["kind"] == "torchvision"
  # an imported net is replaced with --overwrite alone
  pretrained.write_workdir(str(workdir), cfg, params, torch_net[1], "torchvision",
                           overwrite=True)


def test_a_truncated_pth_is_named_a_damaged_pytorch_archive(torch_net, tmp_path):
  cut = tmp_path / "alexnet.pth"
  cut.write_bytes(open(torch_net[1], "rb").read()[:5_000_000])   # a download cut short
  assert pretrained.guess_format(str(cut)) == "torchvision"
  proc = launch("launch.import_weights", f"--weights={cut}", f"--workdir={tmp_path / 'w'}")
  assert proc.returncode == 1 and "Traceback" not in proc.stderr, proc.stderr[-3000:]
  last = proc.stderr.strip().splitlines()[-1]
  assert last.startswith(f"error: {cut}: a damaged PyTorch archive"), last


# ---------------------------------------------------------------------------------- ONNX

def bvlc_graph(path, rng, *, extra_op=None, pool_first=False, width=1.0):
  """An ONNX file of bvlc_alexnet's structure with random weights (the real shapes): input
  data_0 [N, 3, 227, 227] in Caffe's BGR order, outputs fc8 (logits) and prob.

  `extra_op` puts that operator after conv1's ReLU; `pool_first` swaps conv1's LRN and
  pooling (CaffeNet's order); `width` < 1 shrinks every layer (for the graphs that the
  importer must refuse before it reads a weight)."""
  onnx = pytest.importorskip("onnx")
  from onnx import TensorProto, helper, numpy_helper  # pylint: disable=import-outside-toplevel
  inits, nodes = [], []

  def param(name, shape, fan_in):
    w = rng.standard_normal(shape, dtype=np.float32) * np.float32(np.sqrt(2.0 / fan_in))
    inits.append(numpy_helper.from_array(w, name))
    return name

  def bias(name, n):
    inits.append(numpy_helper.from_array(rng.normal(0, 0.1, n).astype(np.float32), name))
    return name

  x = "data_0"
  wide = lambda n: max(2, int(n * width)) // 2 * 2   # even: two towers
  convs = [("conv1", wide(96), 3, 11, 4, 0, 1),   # name, out, in per group, k, stride, pad,
           ("conv2", wide(256), wide(96) // 2, 5, 1, 2, 2),   # groups
           ("conv3", wide(384), wide(256), 3, 1, 1, 1),
           ("conv4", wide(384), wide(384) // 2, 3, 1, 1, 2),
           ("conv5", wide(256), wide(384) // 2, 3, 1, 1, 2)]
  for name, out, cin, k, stride, pad, group in convs:
    w = param(f"{name}_w_0", (out, cin, k, k), cin * k * k)
    nodes.append(helper.make_node("Conv", [x, w, bias(f"{name}_b_0", out)], [name],
                                  name=name, kernel_shape=[k, k], strides=[stride] * 2,
                                  pads=[pad] * 4, group=group))
    nodes.append(helper.make_node("Relu", [name], [f"{name}_relu"]))
    x = f"{name}_relu"
    if name == "conv1" and extra_op:
      nodes.append(helper.make_node(extra_op, [x], [f"{name}_extra"], name="extra"))
      x = f"{name}_extra"
    post = {"conv1": ["lrn", "pool"], "conv2": ["lrn", "pool"], "conv5": ["pool"]}.get(name, [])
    if name == "conv1" and pool_first:
      post = post[::-1]
    for op in post:
      if op == "lrn":
        nodes.append(helper.make_node("LRN", [x], [f"{name}_norm"], size=5, alpha=1e-4,
                                      beta=0.75, bias=1.0))
        x = f"{name}_norm"
      else:   # pool2 pads its end by one, as Caffe's converters do for its ceil mode
        pads = [0, 0, 1, 1] if name == "conv2" else [0, 0, 0, 0]
        nodes.append(helper.make_node("MaxPool", [x], [f"{name}_pool"], kernel_shape=[3, 3],
                                      strides=[2, 2], pads=pads))
        x = f"{name}_pool"
  nodes.append(helper.make_node("Flatten", [x], ["flat"], axis=1))
  x = "flat"
  for name, out, fan_in in [("fc6", wide(4096), 36 * wide(256)), ("fc7", wide(4096), wide(4096)),
                            ("fc8", 1000, wide(4096))]:
    w = param(f"{name}_w_0", (out, fan_in), fan_in)
    nodes.append(helper.make_node("Gemm", [x, w, bias(f"{name}_b_0", out)], [name],
                                  name=name, transB=1))
    x = name
    if name != "fc8":
      nodes.append(helper.make_node("Relu", [x], [f"{name}_relu"]))
      nodes.append(helper.make_node("Dropout", [f"{name}_relu"], [f"{name}_drop"]))
      x = f"{name}_drop"
  nodes.append(helper.make_node("Softmax", ["fc8"], ["prob"], axis=1))
  graph = helper.make_graph(
      nodes, "bvlc_alexnet",
      [helper.make_tensor_value_info("data_0", TensorProto.FLOAT, ["N", 3, 227, 227])],
      [helper.make_tensor_value_info("fc8", TensorProto.FLOAT, ["N", 1000]),
       helper.make_tensor_value_info("prob", TensorProto.FLOAT, ["N", 1000])], inits)
  model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 12)])
  model.ir_version = 7
  onnx.save(model, path)
  return path


@pytest.fixture(scope="module")
def caffe_onnx(tmp_path_factory):
  return bvlc_graph(str(tmp_path_factory.mktemp("onnx") / "bvlcalexnet.onnx"),
                    np.random.default_rng(0))


@pytest.fixture(scope="module")
def caffe_workdir(caffe_onnx, tmp_path_factory):
  cfg, params = pretrained.import_onnx(caffe_onnx, configs.get_config("caffe"))
  assert (cfg.model.towers, cfg.model.lrn_k, cfg.model.lrn_n) == (2, 1.0, 5)
  return pretrained.write_workdir(str(tmp_path_factory.mktemp("caffe")), cfg, params,
                                  caffe_onnx, "onnx")


@pytest.mark.parametrize("mesh_shape", [(1, 1), (1, 2)])
def test_imported_caffe_alexnet_equals_onnxruntime(caffe_onnx, caffe_workdir, mesh_shape):
  """On one device, and with one tower per device (the LRN reading both towers' maps)."""
  ort = pytest.importorskip("onnxruntime")
  workdir = caffe_workdir
  restored = inference.load(workdir, mesh_shape=mesh_shape, devices=jax.devices()[:2])
  assert dict(restored.mesh.shape) == {"data": mesh_shape[0], "model": mesh_shape[1]}
  # Caffe's input: BGR, 0-255 minus the mean, NCHW.
  bgr = np.random.default_rng(1).uniform(-120, 135, (2, 3, 227, 227)).astype(np.float32)
  session = ort.InferenceSession(caffe_onnx, providers=["CPUExecutionProvider"])
  want, _ = session.run(["fc8", "prob"], {"data_0": bgr})
  rgb = bgr[:, ::-1].transpose(0, 2, 3, 1)
  got = restored.apply_fn(restored.params, jax.device_put(rgb, restored.batch_sharding), None)
  assert relative(got, want) < 1e-4


def test_imported_caffe_input_is_caffes(caffe_workdir):
  """0-255 RGB pixels minus Caffe's mean: pixel p of channel c enters as p - mean_c."""
  cfg = inference.load(caffe_workdir, mesh_shape=(1, 1), devices=jax.devices()[:1]).cfg
  pixels = np.full((1, 256, 256, 3), 200, np.uint8)
  x = np.asarray(augment.eval_images(pixels, cfg.data))[0, 0, 0]
  np.testing.assert_allclose(x, 200 - np.asarray(configs.CAFFE_MEAN_BGR[::-1]), rtol=1e-5)


def test_bad_onnx_files_are_one_line_errors(tmp_path, torch_net):
  pytest.importorskip("onnx")
  cfg = configs.get_config("caffe")
  rng = np.random.default_rng(0)
  with pytest.raises(ValueError, match="not an ONNX model"):
    pretrained.import_onnx(torch_net[1], cfg)   # a state_dict
  unmapped = bvlc_graph(str(tmp_path / "sigmoid.onnx"), rng, extra_op="Sigmoid", width=0.1)
  with pytest.raises(ValueError, match="ONNX operator 'Sigmoid' \\(node 'extra'\\) is not one"):
    pretrained.import_onnx(unmapped, cfg)
  caffenet = bvlc_graph(str(tmp_path / "caffenet.onnx"), rng, pool_first=True, width=0.1)
  with pytest.raises(ValueError, match="operator 3 is MaxPool, bvlc_alexnet's is LRN"):
    pretrained.import_onnx(caffenet, cfg)


def test_the_readmes_python_lines_return_the_layers(imported, tmp_path):
  """README, "Pretrained nets": the lines that load an imported net and return layers."""
  text = open(os.path.join(ROOT, "README.md")).read().split("## Pretrained nets\n", 1)[1]
  code = text.split("```python\n", 1)[1].split("```", 1)[0]
  for name in ("cat.jpg", "dog.jpg"):
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (180, 240, 3), np.uint8)).save(
        tmp_path / name)
    code = code.replace(f'"{name}"', repr(str(tmp_path / name)))
  scope = {}
  code = code.replace('"runs/torchvision_alexnet"', repr(imported))
  exec(code, scope)  # pylint: disable=exec-used
  assert {k: v.shape for k, v in scope["acts"].items()} == {
      "conv1": (2, 55, 55, 64), "conv5": (2, 13, 13, 256), "fc7": (2, 4096)}
