"""Pretrained AlexNets into workdirs: torchvision's state_dict and Caffe's bvlc_alexnet (ONNX).

An imported net is a workdir like one that training writes (run.json, checkpoints/0), so
predict, evaluate, features and fine-tuning (`init_from`) take it as they take any other.
Configs come from experiments/pretrained.py; here only the weights are mapped:

torchvision (`torchvision.models.alexnet`, the `owt` model): `features.0/3/6/8/10` are
  conv1..conv5 and `classifier.1/4/6` fc6..fc8. Kernels go from PyTorch's [out, in, kh, kw]
  to [kh, kw, in, out] and dense weights are transposed; fc6 also reorders its inputs,
  because PyTorch flattens pool5 channel-first ([256, 6, 6]) and this model height-first
  ([6, 6, 256]). torchvision's AdaptiveAvgPool2d((6, 6)) is the identity on 224 inputs,
  where pool5 is already 6x6.

Caffe's bvlc_alexnet (the ONNX model zoo's `bvlcalexnet-12.onnx`, converted Caffe -> Caffe2
  -> ONNX): the graph's operators must be bvlc_alexnet's, in order (Conv, Relu, LRN and
  MaxPool for conv1 and conv2, Conv and Relu for conv3..conv5, MaxPool, then Gemm (+Relu)
  for fc6..fc8; Dropout, Flatten, Reshape, Softmax and Constant are skipped). conv2, conv4
  and conv5 are two-group convolutions: the paper's towers (§3.2), which map onto `paper`'s
  tower-major layout as they are. conv1's kernel is turned from Caffe's BGR to RGB. LRN's
  size, alpha, beta and bias become lrn_n/alpha/beta/k (ONNX divides alpha by the size, as
  Caffe does: lrn_convention 'caffe'). The zoo file declares a 224x224 input; Caffe trained
  and deployed the net on 227 crops, where conv1 needs no padding and every 3/2 pooling
  window fits, so that MaxPool padding at the end (or ceil mode), which Caffe's converters
  write, reads nothing; the import runs at 227.

Bad input is a one-line ValueError: a file that is not a state_dict or an ONNX model, a
state_dict of another architecture (the first missing, unexpected or misshapen key), an ONNX
operator that is not mapped, a layer order or attribute that is not bvlc_alexnet's.
"""
from __future__ import annotations

import hashlib
import re
from typing import Any

import ml_collections
import numpy as np
from absl import logging

from alexnet_jax.base import workdir as workdir_lib
from alexnet_jax.data import imagenet
from alexnet_jax.nn import models, state_dict
from alexnet_jax.run import checkpoint, run_info

CONVS = ("conv1", "conv2", "conv3", "conv4", "conv5")
FCS = ("fc6", "fc7", "fc8")
TORCHVISION_MODULES = dict(zip(CONVS + FCS, (
    "features.0", "features.3", "features.6", "features.8", "features.10",
    "classifier.1", "classifier.4", "classifier.6")))


def param_shapes(cfg: ml_collections.ConfigDict) -> dict[str, tuple[int, ...]]:
  """'conv1/kernel' -> shape, of the model that `cfg` describes."""
  return checkpoint.leaf_shapes(checkpoint.abstract_params(
      models.create_model(cfg.model, int(cfg.data.image_size)), int(cfg.data.image_size)))


def _conv_kernel(w: np.ndarray) -> np.ndarray:
  """[out, in, kh, kw] (PyTorch, ONNX) -> [kh, kw, in, out]."""
  return np.ascontiguousarray(np.transpose(w, (2, 3, 1, 0)))


def _fc6_kernel(w: np.ndarray, channels: int) -> np.ndarray:
  """[out, C*H*W] (pool5 flattened channel-first) -> [H*W*C, out] (flattened channels-last)."""
  side = int(round((w.shape[1] // channels) ** 0.5))
  return np.ascontiguousarray(
      w.reshape(w.shape[0], channels, side, side).transpose(2, 3, 1, 0).reshape(-1, w.shape[0]))


def _check(params: dict, cfg, what: str) -> None:
  """ValueError naming the first layer whose mapped shape is not the model's."""
  found = checkpoint.differences(checkpoint.leaf_shapes(params), param_shapes(cfg))
  if found:
    raise ValueError(f"{what}: " + checkpoint.describe(found[0], there="the mapped weights",
                                                       here="the model"))


# --------------------------------------------------------------------------- torchvision

def torchvision_params(weights: dict[str, np.ndarray], cfg: ml_collections.ConfigDict,
                       path: str = "the state_dict") -> tuple[ml_collections.ConfigDict, dict]:
  """torchvision AlexNet state_dict arrays -> (cfg with num_classes from fc8, params).

  Keys saved through DataParallel or DistributedDataParallel ('module.features.0.weight',
  or 'features.module.0.weight' from PyTorch's ImageNet example) are read without the
  'module.' part. Raises ValueError naming the first key that is missing, unexpected or
  misshapen."""
  cfg = cfg.copy_and_resolve_references()
  weights = {re.sub(r"(^|\.)module\.", r"\1", k): v for k, v in weights.items()}
  fc8 = weights.get(TORCHVISION_MODULES["fc8"] + ".weight")
  if fc8 is not None and fc8.ndim == 2:
    cfg.model.num_classes = int(fc8.shape[0])
  shapes = param_shapes(cfg)
  expected = {}
  for layer, module in TORCHVISION_MODULES.items():
    h_w_in_out = shapes[f"{layer}/kernel"]
    expected[f"{module}.weight"] = (h_w_in_out[::-1] if len(h_w_in_out) == 2 else
                                    (h_w_in_out[3], h_w_in_out[2], *h_w_in_out[:2]))
    expected[f"{module}.bias"] = shapes[f"{layer}/bias"]
  for key, shape in expected.items():
    if key not in weights:
      raise ValueError(f"{path} is not torchvision's AlexNet: it has no {key!r} (its first "
                       f"keys: {', '.join(list(weights)[:3]) or 'none'})")
    if tuple(weights[key].shape) != shape:
      raise ValueError(f"{path} is not torchvision's AlexNet: {key} has shape "
                       f"{tuple(weights[key].shape)}, torchvision's has {shape}")
  extra = [k for k in weights if k not in expected]
  if extra:
    raise ValueError(f"{path} is not torchvision's AlexNet: unexpected key {extra[0]!r}")
  params = {}
  for layer, module in TORCHVISION_MODULES.items():
    w = np.asarray(weights[f"{module}.weight"], np.float32)
    if layer in CONVS:
      kernel = _conv_kernel(w)
    elif layer == "fc6":
      kernel = _fc6_kernel(w, cfg.model.features[-1])
    else:
      kernel = np.ascontiguousarray(w.T)
    params[layer] = {"kernel": kernel,
                     "bias": np.asarray(weights[f"{module}.bias"], np.float32)}
  _check(params, cfg, path)
  return cfg, params


def import_torchvision(path: str, cfg: ml_collections.ConfigDict):
  """A torchvision AlexNet state_dict file -> (cfg, params); see `torchvision_params`."""
  return torchvision_params(state_dict.read(path), cfg, path)


# ---------------------------------------------------------------------------------- ONNX

SKIPPED_OPS = ("Dropout", "Flatten", "Reshape", "Softmax", "Constant", "Identity")
BVLC_OPS = ("Conv", "Relu", "LRN", "MaxPool", "Conv", "Relu", "LRN", "MaxPool",
            "Conv", "Relu", "Conv", "Relu", "Conv", "Relu", "MaxPool",
            "Gemm", "Relu", "Gemm", "Relu", "Gemm")


def _onnx():
  try:
    import onnx  # pylint: disable=import-outside-toplevel
    from onnx import numpy_helper  # pylint: disable=import-outside-toplevel
  except ImportError:
    raise ValueError("importing an ONNX model needs the onnx package: pip install -r "
                     "requirements-test.txt (or pip install onnx)") from None
  return onnx, numpy_helper


def read_onnx(path: str):
  """The ONNX ModelProto in `path`; ValueError (one line) when it is not one."""
  onnx, _ = _onnx()
  try:
    model = onnx.load(path)
  except Exception:  # pylint: disable=broad-except  # protobuf raises several types on junk
    raise ValueError(f"{path}: not an ONNX model (it does not parse as one)") from None
  if not model.graph.node:
    raise ValueError(f"{path}: not an ONNX model (no graph nodes)")
  return model


def _attrs(node) -> dict[str, Any]:
  onnx, _ = _onnx()
  return {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}


def _expect(node, what: str, got, want, path: str) -> None:
  if got != want:
    raise ValueError(f"{path}: node {node.name or node.op_type!r} ({what}) is {got}, "
                     f"bvlc_alexnet's is {want}")


def onnx_params(model, cfg: ml_collections.ConfigDict, path: str = "the ONNX model"
                ) -> tuple[ml_collections.ConfigDict, dict]:
  """bvlc_alexnet's ONNX graph -> (cfg with its LRN constants and classes, params)."""
  _, numpy_helper = _onnx()
  cfg = cfg.copy_and_resolve_references()
  inits = {t.name: numpy_helper.to_array(t) for t in model.graph.initializer}
  for node in model.graph.node:   # weights held by Constant nodes
    if node.op_type == "Constant" and "value" in _attrs(node):
      inits[node.output[0]] = numpy_helper.to_array(_attrs(node)["value"])
  nodes = []
  for node in model.graph.node:
    if node.op_type in SKIPPED_OPS:
      continue
    if node.op_type not in set(BVLC_OPS) or node.domain not in ("", "ai.onnx"):
      raise ValueError(f"{path}: ONNX operator {node.op_type!r} (node {node.name!r}) is not "
                       f"one the importer maps ({', '.join(sorted(set(BVLC_OPS)))})")
    nodes.append(node)
  for i, want in enumerate(BVLC_OPS):
    got = nodes[i].op_type if i < len(nodes) else "the end of the graph"
    if got != want:
      raise ValueError(f"{path}: not bvlc_alexnet's layers: operator {i + 1} is {got}, "
                       f"bvlc_alexnet's is {want} ({' '.join(BVLC_OPS)})")
  if len(nodes) > len(BVLC_OPS):
    raise ValueError(f"{path}: not bvlc_alexnet's layers: {nodes[len(BVLC_OPS)].op_type} "
                     "after fc8")

  def weight(node, index):
    if index >= len(node.input) or node.input[index] not in inits:
      raise ValueError(f"{path}: node {node.name!r} has no initializer for input {index}")
    return np.asarray(inits[node.input[index]], np.float32)

  convs = [n for n in nodes if n.op_type == "Conv"]
  gemms = [n for n in nodes if n.op_type == "Gemm"]
  lrns = [_attrs(n) for n in nodes if n.op_type == "LRN"]
  fc8 = weight(gemms[2], 1)
  cfg.model.num_classes = int(fc8.shape[0] if _attrs(gemms[2]).get("transB", 0) else
                              fc8.shape[1])
  first = lrns[0]
  for node, attrs in zip([n for n in nodes if n.op_type == "LRN"], lrns):
    _expect(node, "LRN attributes", attrs, first, path)   # one set of constants for both
  cfg.model.lrn_n = int(first["size"])
  cfg.model.lrn_alpha = float(first.get("alpha", 1e-4))
  cfg.model.lrn_beta = float(first.get("beta", 0.75))
  cfg.model.lrn_k = float(first.get("bias", 1.0))
  cfg.model.lrn_convention = "caffe"
  specs = models.ARCHS["alexnet"]
  params = {}
  for layer, spec, node in zip(CONVS, specs, convs):
    attrs = _attrs(node)
    _expect(node, "group", int(attrs.get("group", 1)), 2 if spec.own_tower else 1, path)
    _expect(node, "strides", list(attrs.get("strides", [1, 1])), [spec.stride] * 2, path)
    _expect(node, "pads", list(attrs.get("pads", [0] * 4)), [spec.padding] * 4, path)
    _expect(node, "dilations", list(attrs.get("dilations", [1, 1])), [1, 1], path)
    w = weight(node, 1)
    if layer == "conv1":
      w = w[:, ::-1]   # Caffe's input channels are BGR; images here are RGB
    bias = weight(node, 2) if len(node.input) > 2 else np.zeros(w.shape[0], np.float32)
    params[layer] = {"kernel": _conv_kernel(w), "bias": bias}
  for node in (n for n in nodes if n.op_type == "MaxPool"):
    attrs = _attrs(node)
    _expect(node, "kernel_shape", list(attrs.get("kernel_shape", [])), [3, 3], path)
    _expect(node, "strides", list(attrs.get("strides", [1, 1])), [2, 2], path)
    pads = list(attrs.get("pads", [0] * 4))
    if pads[:2] != [0, 0] or max(pads[2:]) > 1:   # at 227, end padding of 1 is never read
      _expect(node, "pads", pads, [0, 0, 0, 0], path)
  for layer, node in zip(FCS, gemms):
    attrs = _attrs(node)
    _expect(node, "transA", int(attrs.get("transA", 0)), 0, path)
    _expect(node, "alpha, beta", (float(attrs.get("alpha", 1.0)), float(attrs.get("beta", 1.0))),
            (1.0, 1.0), path)
    w = weight(node, 1)
    w = w if int(attrs.get("transB", 0)) else w.T   # -> [out, in]
    kernel = _fc6_kernel(w, cfg.model.features[-1]) if layer == "fc6" else w.T
    bias = (weight(node, 2).reshape(-1) if len(node.input) > 2
            else np.zeros(w.shape[0], np.float32))
    params[layer] = {"kernel": np.ascontiguousarray(kernel), "bias": bias}
  _check(params, cfg, path)
  return cfg, params


def import_onnx(path: str, cfg: ml_collections.ConfigDict):
  """An ONNX file of Caffe's bvlc_alexnet -> (cfg, params); see `onnx_params`."""
  model = read_onnx(path)
  dims = [d.dim_value for d in model.graph.input[0].type.tensor_type.shape.dim]
  if len(dims) == 4 and dims[2:] != [cfg.data.image_size] * 2 and all(dims[2:]):
    logging.info("%s declares %dx%d inputs; importing for %d, Caffe's size (pretrained.py)",
                 path, dims[2], dims[3], cfg.data.image_size)
  return onnx_params(model, cfg, path)


def guess_format(path: str) -> str:
  """'torchvision' for a file that torch.save wrote (a zip archive, even one cut short, or
  a pickle: PyTorch's pre-1.6 format), else 'onnx'. OSError when it cannot be read."""
  return "torchvision" if state_dict.is_torch_file(path) else "onnx"


# ------------------------------------------------------------------------------ workdirs

def _sha256(path: str) -> str:
  digest = hashlib.sha256()
  with open(path, "rb") as f:
    for block in iter(lambda: f.read(1 << 20), b""):
      digest.update(block)
  return digest.hexdigest()


def trained_steps(workdir) -> list[int]:
  """The checkpoints of `workdir` that training wrote: every step but 0, which only an
  import writes (training saves after its first step)."""
  if not (workdir_lib.resolve(workdir) / workdir_lib.CHECKPOINTS).is_dir():
    return []
  manager = checkpoint.create_manager(workdir, read_only=True)
  try:
    return [s for s in sorted(manager.all_steps()) if s > 0]
  finally:
    manager.close()


def write_workdir(workdir: str, cfg: ml_collections.ConfigDict, params: dict, source: str,
                  kind: str, overwrite: bool = False, overwrite_trained: bool = False) -> str:
  """An imported net as a workdir (a folder or a URL): run.json (config, class names, where
  it came from) and checkpoint 0 (the parameters).

  An existing non-empty workdir is refused unless `overwrite`, which replaces run.json,
  checkpoints/ and metrics.jsonl (other files stay). The workdir's lock is taken before
  anything is looked at or deleted, so a running trainer's workdir is refused untouched
  (WorkdirBusy). Checkpoints that training wrote are days of work that a re-import does not
  give back: deleting them needs `overwrite_trained` too, and the refusal names them.
  """
  root = workdir_lib.resolve(workdir)
  n = int(cfg.model.num_classes)
  names = imagenet.synsets() if n == 1000 else [str(i) for i in range(n)]
  if n != 1000:
    logging.warning("%s has %d classes, not ImageNet's 1000: class names are their numbers",
                    source, n)
  file = str(workdir_lib.resolve(source))
  info = run_info.make(cfg, names, imported_from={
      "kind": kind, "file": file, "sha256": _sha256(source)})
  root.mkdir(parents=True, exist_ok=True)
  with workdir_lib.lock(root):
    held = sorted(p.name for p in root.iterdir() if p.name != workdir_lib.LOCK_FILE)
    if held and not overwrite:
      raise ValueError(f"workdir {root} is not empty ({', '.join(held[:4])}); pass "
                       "--overwrite to replace its run.json and checkpoints")
    trained = trained_steps(root)
    if trained and not overwrite_trained:
      raise ValueError(
          f"workdir {root} holds checkpoints that training wrote (steps "
          f"{', '.join(map(str, trained))}); --overwrite would delete them: pass "
          "--overwrite_trained as well to do so, or import into a new workdir")
    for name in (workdir_lib.RUN_INFO, workdir_lib.METRICS):
      if (root / name).exists():
        (root / name).unlink()
    if (root / workdir_lib.CHECKPOINTS).exists():
      (root / workdir_lib.CHECKPOINTS).rmtree()
    manager = checkpoint.create_manager(root)
    try:
      checkpoint.save(manager, 0, {"step": np.zeros((), np.int32), "params": params},
                      {"imported_from": kind, "file": file}, run=info)
    finally:
      manager.close()
    run_info.write(root, info)
  return str(root)
