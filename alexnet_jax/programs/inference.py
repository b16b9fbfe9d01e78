"""Inference from a training workdir: restore, predict and evaluate (§4.1, §6).

A workdir that `train.train_and_evaluate` wrote holds `run.json` (the resolved config, the
code revision and the class names) and `checkpoints/<step>/`. `load` rebuilds the model for
this process's devices, whatever mesh trained it: the parameter layout on disk is the same
for every mesh (see sharding.py), so only the target shardings change. Only the parameters
are read, not the optimiser state. run.json is read through run_info.py (a lost or damaged
one is taken from the checkpoint) and the checkpoint through checkpoint.py.

Predictions see an image as training saw it: the §2 square that `launch.prepare` makes
(shorter side to augment.square_size, central crop; records.square), then on the
device the centre crop, or the ten crops of §4.1 (corners and centre, each also flipped)
whose softmax outputs are averaged (evaluation.average_crops).

Images from files: anything PIL reads, made 8-bit RGB as `launch.prepare` makes it
(records.to_rgb: 16-bit images scaled, not clipped). An image with more than `MAX_PIXELS`
pixels is refused. A JPEG whose shorter side is over twice the square is decoded at a
reduced scale (DCT scaling), so that an 8000x8000 photo needs no gigabytes.
"""
from __future__ import annotations

import dataclasses
import functools
import io
import math
import os
import re
import warnings
from typing import Any, Sequence

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from absl import logging
from etils import epath
from PIL import Image, ImageFile

from alexnet_jax.base import records
from alexnet_jax.base import workdir as workdir_lib
from alexnet_jax.data import augment, imagenet, loader
from alexnet_jax.data import dataset as data_lib
from alexnet_jax.nn import models
from alexnet_jax.programs import evaluation
from alexnet_jax.run import checkpoint, run_info, sharding

MAX_PIXELS = 100_000_000   # 100 megapixels, e.g. 10000x10000; larger images are refused
_SYNSET = re.compile(r"n\d{8}")


# ------------------------------------------------------------------------------ restoring

@dataclasses.dataclass(frozen=True, eq=False)   # hashed by identity (_predict_fn's cache)
class Restored:
  """A checkpoint's parameters on this process's devices, with what is needed to use them."""
  workdir: str
  step: int
  cfg: ml_collections.ConfigDict   # run.json's config, mesh and batch size set for here
  params: Any                      # sharded over the mesh as training shards them
  class_names: list[str]           # in label order
  mesh: jax.sharding.Mesh
  apply_fn: Any                    # sharding.make_apply_fn's (params, images, rng) -> logits
  evaluator: evaluation.Evaluator
  revision: str                    # the code revision that trained it

  @property
  def batch_sharding(self):
    return sharding.batch_sharding(self.mesh)

  def put(self, batch: dict) -> dict:
    return sharding.put_batch(self.batch_sharding, batch)

  def open_data(self, data_dir: str | None = None, split: str | None = None):
    """(the run's `data` config, reading `data_dir` instead when given; its `split`
    (default: the run's train split), opened). ValueError when the split's classes are not
    the ones this checkpoint was trained on. Only `split` is opened: a test set need not
    have the run's train split."""
    data_cfg = self.cfg.data.copy_and_resolve_references()
    if data_dir:
      data_cfg.data_dir = data_dir
    opened = loader.open_split(data_cfg, split)
    check_data_classes(self, data_cfg, list(opened.info["class_names"]))
    data_lib.log_resize(data_cfg, opened.image_size)
    return data_cfg, opened


def _tuples(tree):
  """JSON lists back to the tuples that the configs use."""
  if isinstance(tree, dict):
    return {k: _tuples(v) for k, v in tree.items()}
  if isinstance(tree, list):
    return tuple(_tuples(v) for v in tree)
  return tree


def check_param_shapes(saved: dict[str, tuple], expected: dict[str, tuple], what: str) -> None:
  """ValueError naming the layers where a checkpoint and run.json's model differ."""
  problems = [checkpoint.describe(d, here="the config's model")
              for d in checkpoint.differences(saved, expected)]
  if problems:
    more = f" (and {len(problems) - 3} more differences)" if len(problems) > 3 else ""
    raise ValueError(f"{what} does not match run.json's model: {'; '.join(problems[:3])}{more}")


def local_config(cfg: ml_collections.ConfigDict, num_devices: int,
                 mesh_shape: tuple[int, int], batch_size: int | None
                 ) -> ml_collections.ConfigDict:
  """cfg with mesh_shape for these devices and a batch size that the mesh's `data` axis
  divides (rounded up)."""
  cfg = cfg.copy_and_resolve_references()
  cfg.mesh_shape = tuple(mesh_shape)
  wanted = int(batch_size or cfg.batch_size)
  data, _ = sharding.mesh_shape(cfg, num_devices)
  cfg.batch_size = max(1, math.ceil(wanted / data)) * data
  return cfg


def load(workdir: str, step: int | str = "latest", *, devices: Sequence[Any] | None = None,
         mesh_shape: tuple[int, int] = (0, 0), batch_size: int | None = None) -> Restored:
  """A checkpoint of `workdir` restored onto `devices` (default: this process's).

  Args:
    workdir: a folder that training wrote (run.json, checkpoints/).
    step: 'latest', 'best' (lowest validation top-1 error) or a step number.
    devices: the devices to use; the mesh is built over them whatever mesh trained the run.
    mesh_shape: (data, model) over `devices`; (0, 0) derives it (towers on devices when
      they divide), (1, 1) is one device.
    batch_size: the batch for prediction and evaluation (default: the run's), rounded up to
      a multiple of the mesh's `data` axis.

  Raises:
    FileNotFoundError: no workdir, no run.json or no checkpoints.
    ValueError: no such step; a checkpoint that does not fit run.json's model.
  """
  workdir = str(workdir_lib.resolve(workdir))
  info = run_info.read(workdir)
  manager, steps = checkpoint.open_steps(workdir)
  try:
    step = checkpoint.resolve_step(manager, steps, step)
    devices = list(jax.local_devices() if devices is None else devices)
    cfg = local_config(ml_collections.ConfigDict(_tuples(info["config"])), len(devices),
                       mesh_shape, batch_size)
    mesh = sharding.make_mesh(cfg, devices)
    size = cfg.data.image_size
    model = models.create_model(cfg.model, size)
    shapes = checkpoint.abstract_params(model, size)   # no optimiser
    param_shardings = sharding.param_shardings(mesh, shapes)
    with checkpoint.readable(manager, step, steps):
      saved = checkpoint.stored_shapes(manager, step)
    if not any(k.startswith("params/") for k in saved):
      raise ValueError(f"checkpoint {step} in {manager.directory} holds no 'params'")
    saved = {k.removeprefix("params/"): v for k, v in saved.items() if k.startswith("params/")}
    check_param_shapes(saved, checkpoint.leaf_shapes(shapes),
                       f"checkpoint {step} in {manager.directory}")
    with checkpoint.readable(manager, step, steps):
      params = checkpoint.restore_params(manager, step,
                                         checkpoint.abstract(shapes, param_shardings))
  finally:
    manager.close()   # its threads done before the process ends, whatever happened
  names = list(info.get("class_names") or [])
  if len(names) != cfg.model.num_classes:
    logging.warning("run.json has %d class names for %d classes: using class numbers",
                    len(names), cfg.model.num_classes)
    names = [str(i) for i in range(cfg.model.num_classes)]
  logging.info("restored checkpoint %d of %s on mesh %s", step, workdir, dict(mesh.shape))
  apply_fn = sharding.make_apply_fn(model, mesh)
  batch_sharding = sharding.batch_sharding(mesh)
  evaluator = evaluation.Evaluator(apply_fn, cfg.data, param_shardings, batch_sharding,
                                   sharding.replicated(mesh),
                                   functools.partial(sharding.put_batch, batch_sharding))
  return Restored(workdir, step, cfg, params, names, mesh, apply_fn,
                  evaluator, str(info.get("revision", "unknown")))


# ---------------------------------------------------------------------------- class names

def readable_names(class_names: Sequence[str]) -> list[str]:
  """Class names for people: ImageNet synsets become their short names (imagenet.py)."""
  table = imagenet.names() if any(_SYNSET.fullmatch(c) for c in class_names) else {}
  return [table.get(c, c) for c in class_names]


# ------------------------------------------------------------------------------ images

class ImageError(ValueError):
  """A file that is not a usable image; the message names the file."""


def printable(path: str) -> str:
  """A file name as text, whatever bytes it holds (undecodable ones shown as U+FFFD)."""
  return os.fsencode(path).decode("utf-8", "replace")


def _read(path: str, name: str) -> bytes:
  try:
    if workdir_lib.is_url(path):   # gs://, s3://, ...: etils' file systems
      return epath.Path(path).read_bytes()
    with open(path, "rb") as f:   # any local name, including bytes that are not UTF-8
      return f.read()
  except FileNotFoundError:
    raise ImageError(f"{name}: no such file") from None
  except IsADirectoryError:
    raise ImageError(f"{name}: is a folder, not an image file") from None
  except OSError as e:
    raise ImageError(f"{name}: cannot read: {e.strerror or e}") from None


def load_image(path: str, target: int, convention: str = "paper", crop: int = 0
               ) -> np.ndarray:
  """uint8 [target, target, 3]: an image file as the §2 square that training saw (the
  shorter side to `target`, the central crop), or with convention 'torchvision' the square
  whose central `crop` pixels are torchvision's Resize(target), CenterCrop(crop)
  (records.torchvision_square; decoded at full scale, as torchvision does). Raises
  ImageError naming the file."""
  if convention not in records.RESIZE_CONVENTIONS:
    raise ValueError(f"data.resize_convention must be one of {records.RESIZE_CONVENTIONS}, "
                     f"got {convention!r}")
  name = printable(path)
  data = _read(path, name)
  if not data:
    raise ImageError(f"{name}: empty file")
  try:
    with warnings.catch_warnings():
      warnings.simplefilter("ignore", Image.DecompressionBombWarning)
      im = Image.open(io.BytesIO(data))   # reads the header only
  except Image.DecompressionBombError:
    raise ImageError(f"{name}: more than {MAX_PIXELS:,} pixels, the limit") from None
  except Exception:  # pylint: disable=broad-except  # PIL raises several types on junk
    raise ImageError(f"{name}: not an image file (not a format that PIL can read)") from None
  with im:
    fmt, (width, height) = im.format, im.size
    if width * height > MAX_PIXELS:
      raise ImageError(f"{name}: {width}x{height} is {width * height:,} pixels, more than the "
                       f"limit of {MAX_PIXELS:,}")
    # libjpeg scales down by 2, 4 or 8 while decoding, to >= 2 * target; torchvision does not
    if fmt == "JPEG" and convention == "paper":
      im.draft("RGB", (2 * target * width // min(width, height),
                       2 * target * height // min(width, height)))
    ImageFile.LOAD_TRUNCATED_IMAGES = False
    try:
      im.load()
    except OSError as e:
      what = "truncated" if "truncated" in str(e) else "corrupt"
      raise ImageError(f"{name}: cannot decode {fmt}: the file is {what}") from None
    if convention == "torchvision":
      return np.asarray(records.torchvision_square(records.to_rgb(im), target, crop), np.uint8)
    return np.asarray(records.square(records.to_rgb(im), target), np.uint8)


def image_reader(data_cfg):
  """`load_image` for a run's `data` config: path -> its uint8 square (the run's
  resize_convention)."""
  return functools.partial(load_image, target=augment.square_size(data_cfg),
                           convention=data_cfg.resize_convention,
                           crop=int(data_cfg.image_size))


def load_images(data_cfg, paths: Sequence[str]) -> np.ndarray:
  """uint8 squares [N, R, R, 3] of image files, as `predict_files` reads them."""
  read = image_reader(data_cfg)
  return np.stack([read(p) for p in paths])


# -------------------------------------------------------------------------- prediction

def _probabilities(params, images, *, apply_fn, data_cfg, ten_crop: bool):
  logits = evaluation.crop_logits(params, images, apply_fn=apply_fn, data_cfg=data_cfg,
                                  ten_crop=ten_crop)
  # §4.1: the ten crops' softmax, averaged, as evaluation averages them
  return jnp.exp(evaluation.average_crops(logits)) if ten_crop else jax.nn.softmax(logits)


def padded_batch(restored: Restored, n: int) -> int:
  """The batch that `probabilities` pads every chunk of n images to, so that a call
  compiles one shape: the run's batch size, or for fewer images the fewest rows the mesh's
  `data` axis divides that hold them."""
  data = restored.mesh.shape[sharding.DATA]
  return min(restored.cfg.batch_size, max(1, math.ceil(n / data)) * data)


def probabilities(restored: Restored, squares: np.ndarray, ten_crop: bool = False, *,
                  pad_to: int | None = None) -> np.ndarray:
  """uint8 §2 squares [N, R, R, 3] -> softmax [N, classes], the mean of the ten crops'
  with ten_crop; in chunks of `pad_to` images (default `padded_batch(restored, N)`), the
  last one padded to the same size."""
  fn = _predict_fn(restored, ten_crop)
  size = pad_to or padded_batch(restored, len(squares))
  out = []
  for start in range(0, len(squares), size):
    chunk = np.asarray(squares[start:start + size], np.uint8)
    n = len(chunk)
    chunk = np.concatenate([chunk, np.zeros((size - n, *chunk.shape[1:]), np.uint8)])
    x = jax.device_put(chunk, restored.batch_sharding)
    out.append(np.asarray(jax.device_get(fn(restored.params, x)))[:n])
  if not out:
    return np.zeros((0, restored.cfg.model.num_classes), np.float32)
  return np.concatenate(out)


@functools.lru_cache(maxsize=8)
def _predict_fn(restored: Restored, ten_crop: bool):
  return jax.jit(functools.partial(_probabilities, apply_fn=restored.apply_fn,
                                   data_cfg=restored.cfg.data, ten_crop=ten_crop))


def top_k(probs: np.ndarray, class_names: Sequence[str], k: int = 5) -> list[dict]:
  """One row of probabilities -> the k most probable classes, most probable first."""
  names = readable_names(class_names)
  order = np.argsort(-probs, kind="stable")[:k]
  return [{"label": int(i), "class": class_names[i], "name": names[i],
           "probability": float(probs[i])} for i in order]


def predict_files(restored: Restored, paths: Sequence[str], *, ten_crop: bool = False,
                  k: int = 5) -> list[dict]:
  """One dict per path, in order: {'image', 'top': [...]} or {'image', 'error'} for a file
  that is missing or not a usable image (the others are still predicted)."""
  read = image_reader(restored.cfg.data)
  results = []
  batch = restored.cfg.batch_size
  size = padded_batch(restored, len(paths))   # every chunk one shape: one compilation
  for start in range(0, len(paths), batch):
    chunk, ready = [], []
    for path in paths[start:start + batch]:
      try:
        chunk.append(read(path))
        ready.append({"image": path})
      except ImageError as e:
        ready.append({"image": path, "error": str(e)})
    probs = iter(probabilities(restored, np.stack(chunk), ten_crop, pad_to=size)
                 if chunk else [])
    for r in ready:
      if "error" not in r:
        r["top"] = top_k(next(probs), restored.class_names, k)
    results.extend(ready)
  return results


# -------------------------------------------------------------------------- evaluation

def evaluate(restored: Restored, split: str, *, ten_crop: bool = False,
             data_dir: str | None = None, log_every: int = 50, progress: bool = False) -> dict:
  """Top-1/top-5 error (and loss) on a split of a prepared dataset: a JSON-able report.

  One pass: with ten_crop, the single-crop numbers come from the centre crop of the same
  batches. Logs progress every `log_every` batches.
  """
  cfg = restored.cfg
  data_cfg, opened = restored.open_data(data_dir, split)
  num = len(opened)
  total = loader.num_eval_batches(num, cfg.batch_size)
  logging.info("evaluating checkpoint %d on %s (%d examples, %d batches of %d%s)",
               restored.step, split, num, total, cfg.batch_size,
               ", ten crops" if ten_crop else "")
  batches = loader.eval_batches(opened, cfg.batch_size)
  result = restored.evaluator.run(restored.params, batches, ten_crop=ten_crop, total=total,
                                  log_every=log_every, progress=progress)
  return {
      "workdir": restored.workdir, "step": restored.step, "split": split,
      "data": {"name": data_cfg.name, "data_dir": data_cfg.data_dir,
               **({"tfds_name": data_cfg.tfds_name} if data_cfg.name == "tfds" else {}),
               "image_size": int(data_cfg.image_size), "resize_size": int(data_cfg.resize_size)},
      **result, "images_per_second": result["examples"] / max(result["seconds"], 1e-9),
      "batch_size": cfg.batch_size, "mesh": dict(restored.mesh.shape),
      "device": restored.mesh.devices.flat[0].device_kind, "revision": restored.revision,
  }


def check_data_classes(restored: Restored, data_cfg, names: list[str] | None = None) -> None:
  """ValueError when a dataset's classes (`names`, default its train split's) are not the
  ones the checkpoint was trained on (the same names in the same order), so that labels
  mean the same thing."""
  names = loader.class_names(data_cfg) if names is None else names
  if names == list(restored.class_names):
    return
  missing = [c for c in restored.class_names if c not in names]
  extra = [c for c in names if c not in restored.class_names]
  detail = "; ".join(part for part in (
      missing and f"missing {', '.join(missing[:5])}", extra and f"not trained on "
      f"{', '.join(extra[:5])}") if part) or "the same names in another order"
  raise ValueError(f"{loader.describe(data_cfg)} has {len(names)} classes but checkpoint "
                   f"{restored.step} of {restored.workdir} was trained on "
                   f"{len(restored.class_names)}: {detail}")


def report_file(restored: Restored, split: str, ten_crop: bool,
                data_dir: str | None = None) -> str:
  """Where `write_report` puts the report of `evaluate(restored, split, ...)`."""
  data = restored.cfg.data
  source = data.tfds_name if data.name == "tfds" else (data_dir or data.data_dir)
  return workdir_lib.report_path(restored.workdir, source, split, restored.step, ten_crop)


def write_report(report: dict, ten_crop: bool) -> str:
  data = report["data"]
  path = workdir_lib.report_path(report["workdir"], data.get("tfds_name") or data["data_dir"],
                                 report["split"], report["step"], ten_crop)
  workdir_lib.write_json_atomic(path, report)
  return path
