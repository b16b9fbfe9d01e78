"""Inference from a training workdir: restore, predict and evaluate (§4.1, §6).

A workdir that `train.train_and_evaluate` wrote holds `run.json` (the resolved config, the
code revision and the class names) and `checkpoints/<step>/`. `load` rebuilds the model for
this process's devices, whatever mesh trained it: the parameter layout on disk is the same
for every mesh (see sharding.py), so only the target shardings change. Only the parameters
are read, not the optimiser state.

Predictions use the evaluation preprocessing of the input pipeline: the shorter side resized
to max(resize_size, image_size), then the centre crop, or the ten crops of §4.1 (corners and
centre, each also flipped) whose softmax outputs are averaged.

Images from files: JPEG, PNG, GIF and BMP are decoded as the input pipeline decodes them
(other formats that PIL reads are decoded by PIL); grey and RGBA images become RGB. An image
with more than `MAX_PIXELS` pixels is refused. One whose shorter side is over four times
the evaluation resize is shrunk while decoding (JPEG DCT scaling) or by box averaging to
at least twice that size first, so that an 8000x8000 photo needs no gigabytes; smaller
images go through exactly the evaluation pipeline's steps.
"""
from __future__ import annotations

import dataclasses
import functools
import io
import json
import math
import os
import re
import time
import warnings
from typing import Any, Sequence

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import orbax.checkpoint as ocp
import tensorflow as tf
import tensorflow_datasets as tfds
from absl import logging
from etils import epath
from flax import traverse_util
from PIL import Image

from alexnet_jax import checkpoint, input_pipeline, sharding, train

MAX_PIXELS = 100_000_000   # 100 megapixels, e.g. 10000x10000; larger images are refused
CENTRE_CROP = 4            # the centre crop's index in input_pipeline.ten_crop's order
_SYNSET = re.compile(r"n\d{8}")


# ------------------------------------------------------------------------------ restoring

@dataclasses.dataclass(frozen=True)
class Restored:
  """A checkpoint's parameters on this process's devices, with what is needed to use them."""
  workdir: str
  step: int
  cfg: ml_collections.ConfigDict   # run.json's config, mesh and batch size set for here
  params: Any                      # sharded like `trainer.state_shardings.params`
  class_names: list[str]           # in label order
  trainer: train.Trainer           # mesh, apply_fn, batch sharding
  revision: str                    # the code revision that trained it


def _tuples(tree):
  """JSON lists back to the tuples that the configs use."""
  if isinstance(tree, dict):
    return {k: _tuples(v) for k, v in tree.items()}
  if isinstance(tree, list):
    return tuple(_tuples(v) for v in tree)
  return tree


def read_run_info(workdir: str) -> dict:
  """run.json of a training workdir; FileNotFoundError naming the folder if it has none."""
  workdir = os.path.abspath(os.path.expanduser(workdir))
  if not os.path.isdir(workdir):
    raise FileNotFoundError(f"workdir {workdir} does not exist")
  path = os.path.join(workdir, "run.json")
  if not os.path.isfile(path):
    raise FileNotFoundError(f"workdir {workdir} has no run.json: not a training workdir "
                            "(launch.train writes run.json and checkpoints/ there)")
  try:
    with open(path) as f:
      info = json.load(f)
  except json.JSONDecodeError as e:
    raise ValueError(f"{path} is not valid JSON: {e}") from None
  if not isinstance(info, dict) or not isinstance(info.get("config"), dict):
    raise ValueError(f"{path} has no 'config' object")
  return info


def _manager(workdir: str) -> tuple[ocp.CheckpointManager, list[int]]:
  directory = checkpoint.checkpoint_dir(workdir)
  if not os.path.isdir(directory):
    raise FileNotFoundError(f"no checkpoints in {workdir}: {directory} does not exist")
  manager = checkpoint.create_manager(workdir, read_only=True)
  steps = sorted(manager.all_steps())
  if not steps:
    raise FileNotFoundError(f"no checkpoints in {directory}")
  return manager, steps


def eval_errors(workdir: str, manager: ocp.CheckpointManager, steps: Sequence[int]
                ) -> dict[int, float]:
  """Validation top-1 error per checkpoint step: the checkpoint's metrics, else the last
  'eval_top1_error' that metrics.jsonl recorded at that step."""
  errors = {}
  for step in steps:
    metrics = manager.metadata(step).metrics or {}
    if checkpoint.EVAL_METRIC in metrics:
      errors[step] = float(metrics[checkpoint.EVAL_METRIC])
  path = os.path.join(workdir, "metrics.jsonl")
  if os.path.isfile(path):
    logged = {}
    with open(path) as f:
      for line in f:
        try:
          record = json.loads(line)
        except json.JSONDecodeError:
          continue   # a line cut short by a crash
        if "eval_top1_error" in record and "step" in record:
          logged[int(record["step"])] = float(record["eval_top1_error"])
    for step in steps:
      if step not in errors and step in logged:
        errors[step] = logged[step]
  return errors


def resolve_step(workdir: str, manager: ocp.CheckpointManager, steps: Sequence[int],
                 step: int | str) -> int:
  """'latest', 'best' (lowest validation top-1 error) or a step number -> a saved step."""
  where = checkpoint.checkpoint_dir(workdir)
  available = ", ".join(map(str, steps))
  if isinstance(step, str) and step.strip().isdigit():
    step = int(step)
  if isinstance(step, (int, np.integer)) and not isinstance(step, bool):
    if step not in steps:
      raise ValueError(f"no checkpoint for step {step} in {where}; available steps: {available}")
    return int(step)
  if step == "latest":
    return steps[-1]
  if step == "best":
    errors = eval_errors(workdir, manager, steps)
    if not errors:
      raise ValueError(f"no checkpoint in {where} has a recorded validation error, so none is "
                       f"'best'; available steps: {available}")
    return min(errors, key=lambda s: (errors[s], -s))   # ties: the later step
  raise ValueError(f"step must be 'latest', 'best' or a step number, got {step!r}")


def _saved_param_shapes(manager: ocp.CheckpointManager, step: int) -> dict[str, tuple]:
  path = epath.Path(manager.directory) / str(step) / "state"
  tree = ocp.StandardCheckpointHandler().metadata(path).tree
  if not isinstance(tree, dict) or "params" not in tree:
    raise ValueError(f"checkpoint {step} in {manager.directory} holds no 'params'")
  return {k: tuple(v.shape) for k, v in traverse_util.flatten_dict(tree["params"], sep="/").items()}


def check_param_shapes(saved: dict[str, tuple], expected: dict[str, tuple], what: str) -> None:
  """ValueError naming the layers where a checkpoint and a config's model differ."""
  problems = []
  for name in sorted(set(saved) | set(expected), key=lambda n: (n.split("/")[0], n)):
    layer = name.split("/")[0]
    if name not in saved:
      problems.append(f"layer {layer} ({name}) is in the config's model but not in the checkpoint")
    elif name not in expected:
      problems.append(f"layer {layer} ({name}) is in the checkpoint but not in the config's model")
    elif saved[name] != expected[name]:
      problems.append(f"layer {layer}: {name} has shape {saved[name]} in the checkpoint but "
                      f"{expected[name]} in the config's model")
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
  probe = cfg.copy_and_resolve_references()
  probe.batch_size = 0   # divisible by anything: only the mesh's shape is wanted here
  data, _ = sharding.mesh_shape(probe, num_devices)
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
  workdir = os.path.abspath(os.path.expanduser(workdir))
  info = read_run_info(workdir)
  manager, steps = _manager(workdir)
  step = resolve_step(workdir, manager, steps, step)
  devices = list(jax.local_devices() if devices is None else devices)
  saved = _tuples(info["config"])
  # Runs written before data.input_scale existed were trained on standardised inputs.
  saved.get("data", {}).setdefault("input_scale", "standardized")
  cfg = local_config(ml_collections.ConfigDict(saved), len(devices), mesh_shape, batch_size)
  trainer = train.Trainer(cfg, devices=devices)
  abstract = trainer.abstract_state.params
  expected = {k: tuple(v.shape) for k, v in traverse_util.flatten_dict(abstract, sep="/").items()}
  check_param_shapes(_saved_param_shapes(manager, step), expected,
                     f"checkpoint {step} in {manager.directory}")
  target = {"params": abstract}
  out = manager.restore(step, args=ocp.args.Composite(state=ocp.args.PyTreeRestore(
      item=target, restore_args=ocp.checkpoint_utils.construct_restore_args(target),
      partial_restore=True)))
  names = list(info.get("class_names") or [])
  if len(names) != cfg.model.num_classes:
    logging.warning("run.json has %d class names for %d classes: using class numbers",
                    len(names), cfg.model.num_classes)
    names = [str(i) for i in range(cfg.model.num_classes)]
  logging.info("restored checkpoint %d of %s on mesh %s", step, workdir,
               dict(trainer.mesh.shape))
  return Restored(workdir, step, cfg, out["state"]["params"], names, trainer,
                  str(info.get("revision", "unknown")))


# ---------------------------------------------------------------------------- class names

@functools.lru_cache(maxsize=1)
def _imagenet_names() -> dict[str, str]:
  """ImageNet-1k synset -> WordNet names ('n01440764' -> 'tench, Tinca tinca'), from files
  that the installed tensorflow_datasets ships: the imagenet2012 builder's synset list and
  SI-Score's list of the names in the same (sorted-synset) order. Empty if either is gone."""
  try:
    synsets = tfds.core.tfds_path("datasets/imagenet2012/labels.txt").read_text().split()
    from tensorflow_datasets.datasets.siscore import labels  # pylint: disable=g-import-not-at-top
    names = list(labels.IMAGENET_LABELS_LIST)
  except Exception:  # pylint: disable=broad-except  # a tfds without these files
    return {}
  if len(synsets) != 1000 or len(names) != 1000:
    return {}
  return dict(zip(synsets, names))


def readable_names(class_names: Sequence[str]) -> list[str]:
  """Class names for people: ImageNet synsets become their first WordNet name."""
  table = _imagenet_names() if any(_SYNSET.fullmatch(c) for c in class_names) else {}
  return [table[c].split(",")[0] if c in table else c for c in class_names]


# ------------------------------------------------------------------------------ images

class ImageError(ValueError):
  """A file that is not a usable image; the message names the file."""


def _truncated(data: bytes) -> bool:
  """JPEG without its end-of-image marker, or PNG without IEND, near the end (as the input
  pipeline checks: byte stuffing keeps FFD9 out of a truncated scan)."""
  if data[:3] == b"\xff\xd8\xff":
    return b"\xff\xd9" not in data[-64:]
  if data[:8] == b"\x89PNG\r\n\x1a\n":
    return b"IEND" not in data[-64:]
  return False


def _shrink(image: np.ndarray, target: int) -> np.ndarray:
  """Box-average by an integer factor while the shorter side stays >= 2 * target."""
  factor = min(image.shape[:2]) // (2 * target)
  if factor < 2:
    return image
  return np.asarray(Image.fromarray(image).reduce(factor))


def printable(path: str) -> str:
  """A file name as text, whatever bytes it holds (undecodable ones shown as U+FFFD)."""
  return os.fsencode(path).decode("utf-8", "replace")


def load_image(path: str, target: int) -> np.ndarray:
  """uint8 [H, W, 3] from an image file; `target` is the size the shorter side will be
  resized to (huge images are shrunk towards it while decoding). Raises ImageError."""
  name = printable(path)
  try:
    if "://" in path:   # gs://, s3://, ...: TF's file systems
      with tf.io.gfile.GFile(path, "rb") as f:
        data = f.read()
    else:               # any local name, including bytes that are not UTF-8
      with open(path, "rb") as f:
        data = f.read()
  except (tf.errors.NotFoundError, FileNotFoundError):
    raise ImageError(f"{name}: no such file") from None
  except IsADirectoryError:
    raise ImageError(f"{name}: is a folder, not an image file") from None
  except (tf.errors.OpError, OSError) as e:
    raise ImageError(f"{name}: cannot read: {getattr(e, 'strerror', None) or e}") from None
  path = name
  if not data:
    raise ImageError(f"{path}: empty file")
  try:
    with warnings.catch_warnings():
      warnings.simplefilter("ignore", Image.DecompressionBombWarning)
      with Image.open(io.BytesIO(data)) as im:   # reads the header only
        fmt, (width, height) = im.format, im.size
  except Image.DecompressionBombError:
    raise ImageError(f"{path}: more than {MAX_PIXELS:,} pixels, the limit") from None
  except Exception:  # pylint: disable=broad-except  # PIL raises several types on junk
    raise ImageError(f"{path}: not an image file (not a format that PIL or TF can read)"
                     ) from None
  if width * height > MAX_PIXELS:
    raise ImageError(f"{path}: {width}x{height} is {width * height:,} pixels, more than the "
                     f"limit of {MAX_PIXELS:,}")
  if _truncated(data):
    raise ImageError(f"{path}: truncated {fmt} file (its end-of-image marker is missing)")
  # JPEG: libjpeg scales huge images down by 2, 4 or 8 while decoding.
  ratio = max(r for r in (1, 2, 4, 8) if r == 1 or min(width, height) // r >= 2 * target)
  try:
    if data[:3] == b"\xff\xd8\xff":
      image = tf.io.decode_jpeg(data, channels=3, ratio=ratio, dct_method="INTEGER_FAST").numpy()
    elif fmt in ("PNG", "GIF", "BMP"):
      image = input_pipeline.decode_image(data).numpy()
    else:
      with Image.open(io.BytesIO(data)) as im:
        image = np.asarray(im.convert("RGB"))
  except (tf.errors.OpError, OSError, ValueError):
    raise ImageError(f"{path}: cannot decode {fmt}: the image data is corrupt") from None
  return _shrink(image, target)


def eval_size(data_cfg) -> int:
  """The shorter side that evaluation resizes to."""
  return max(int(data_cfg.resize_size), int(data_cfg.image_size))


def preprocess(image: np.ndarray, data_cfg, ten_crop: bool = False) -> np.ndarray:
  """uint8 [H, W, C] -> float32 [S, S, 3], or [10, S, S, 3] with ten_crop (§4.1)."""
  fn = (input_pipeline.preprocess_eval_image_ten_crop if ten_crop
        else input_pipeline.preprocess_eval_image)
  return fn(tf.convert_to_tensor(image), data_cfg).numpy()


# -------------------------------------------------------------------------- prediction

def logits(restored: Restored, images: np.ndarray) -> np.ndarray:
  """Normalised images [N, S, S, 3] -> logits [N, classes], in batches of cfg.batch_size
  (the last padded to a multiple of the mesh's `data` axis)."""
  images = np.asarray(images, np.float32)
  data = restored.trainer.mesh.shape[sharding.DATA]
  batch = restored.cfg.batch_size
  out = []
  for start in range(0, len(images), batch):
    chunk = images[start:start + batch]
    n = len(chunk)
    padded = math.ceil(n / data) * data
    if padded > n:
      chunk = np.concatenate([chunk, np.zeros((padded - n, *chunk.shape[1:]), chunk.dtype)])
    x = jax.device_put(chunk, restored.trainer.batch_sharding)
    out.append(np.asarray(jax.device_get(restored.trainer.apply_fn(restored.params, x, None)))[:n])
  if not out:
    return np.zeros((0, restored.cfg.model.num_classes), np.float32)
  return np.concatenate(out)


def softmax(x: np.ndarray) -> np.ndarray:
  x = x - x.max(axis=-1, keepdims=True)
  e = np.exp(x)
  return e / e.sum(axis=-1, keepdims=True)


def probabilities(restored: Restored, images: np.ndarray) -> np.ndarray:
  """[N, S, S, 3] -> softmax [N, classes]; ten crops [N, 10, S, S, 3] -> the mean of the
  crops' softmax outputs (§4.1)."""
  images = np.asarray(images, np.float32)
  if images.ndim == 5:
    n, crops = images.shape[:2]
    probs = softmax(logits(restored, images.reshape(n * crops, *images.shape[2:])))
    return probs.reshape(n, crops, -1).mean(axis=1)
  return softmax(logits(restored, images))


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
  data_cfg = restored.cfg.data
  target = eval_size(data_cfg)
  results = []
  batch = restored.cfg.batch_size
  for start in range(0, len(paths), batch):
    chunk, ready = [], []
    for path in paths[start:start + batch]:
      try:
        chunk.append(preprocess(load_image(path, target), data_cfg, ten_crop))
        ready.append({"image": path})
      except ImageError as e:
        ready.append({"image": path, "error": str(e)})
    probs = iter(probabilities(restored, np.stack(chunk)) if chunk else [])
    for r in ready:
      if "error" not in r:
        r["top"] = top_k(next(probs), restored.class_names, k)
    results.extend(ready)
  return results


# -------------------------------------------------------------------------- evaluation

def _eval_sums(params, batch: dict, *, apply_fn) -> dict:
  """Metric sums of one batch: single crop, and with [B, 10, S, S, 3] also ten-crop (the
  single crop is then the centre one, which equals the single-crop preprocessing)."""
  images = batch["image"]
  if images.ndim == 4:
    return {"single_crop": train.metric_sums(apply_fn(params, images, None), batch["label"],
                                             batch["mask"])}
  b, crops = images.shape[:2]
  out = apply_fn(params, images.reshape(b * crops, *images.shape[2:]), None).reshape(b, crops, -1)
  # log(mean of the crops' probabilities), finite even where every crop's softmax underflows.
  log_mean_probs = (jax.scipy.special.logsumexp(jax.nn.log_softmax(out), axis=1)
                    - jnp.log(crops))
  return {"single_crop": train.metric_sums(out[:, CENTRE_CROP], batch["label"], batch["mask"]),
          "ten_crop": train.metric_sums(log_mean_probs, batch["label"], batch["mask"])}


def evaluate(restored: Restored, split: str, *, ten_crop: bool = False,
             data_dir: str | None = None, log_every: int = 50) -> dict:
  """Top-1/top-5 error (and loss) on a split of the run's dataset: a JSON-able report.

  One pass: with ten_crop, the single-crop numbers come from the centre crop of the same
  batches. Logs progress every `log_every` batches.
  """
  cfg = restored.cfg
  data_cfg = cfg.data.copy_and_resolve_references()
  if data_dir:
    data_cfg.data_dir = data_dir
  check_data_classes(restored, data_cfg)
  num = input_pipeline.num_examples(data_cfg, split)
  dataset = input_pipeline.create_split(data_cfg, split, train=False, batch_size=cfg.batch_size,
                                        ten_crop=ten_crop)
  trainer = restored.trainer
  step_fn = jax.jit(functools.partial(_eval_sums, apply_fn=trainer.apply_fn),
                    in_shardings=(trainer.state_shardings.params, trainer.batch_sharding),
                    out_shardings=sharding.replicated(trainer.mesh))
  skipped = input_pipeline.skipped_count()
  total_batches = math.ceil(num / cfg.batch_size)
  logging.info("evaluating checkpoint %d on %s (%d examples, %d batches of %d%s)",
               restored.step, split, num, total_batches, cfg.batch_size,
               ", ten crops" if ten_crop else "")
  sums, seen = None, 0.0
  t0 = window = time.perf_counter()
  window_seen = 0.0
  for i, batch in enumerate(dataset.as_numpy_iterator()):
    out = step_fn(restored.params, trainer.device_batch(batch))
    sums = out if sums is None else jax.tree.map(jnp.add, sums, out)
    real = float(batch["mask"].sum())
    seen += real
    window_seen += real
    if log_every > 0 and (i + 1) % log_every == 0:
      now = time.perf_counter()
      logging.info("batch %d/%d: %d images, %.1f images/s", i + 1, total_batches, seen,
                   window_seen / max(now - window, 1e-9))
      window, window_seen = now, 0.0
  if sums is None:
    raise ValueError(f"split {split!r} yielded no batches")
  seconds = time.perf_counter() - t0
  sums = jax.device_get(sums)
  report = {
      "workdir": restored.workdir, "step": restored.step, "split": split,
      "data": {"name": data_cfg.name, "data_dir": data_cfg.data_dir,
               "image_size": int(data_cfg.image_size), "resize_size": int(data_cfg.resize_size)},
      "examples": int(round(float(sums["single_crop"]["count"]))),
      "skipped_images": input_pipeline.skipped_count() - skipped,
      **{k: train.normalize(v) for k, v in sums.items()},
      "seconds": seconds, "images_per_second": seen / max(seconds, 1e-9),
      "batch_size": cfg.batch_size, "mesh": dict(trainer.mesh.shape),
      "device": trainer.mesh.devices.flat[0].device_kind, "revision": restored.revision,
  }
  return report


def _file_safe(text: str) -> str:
  return re.sub(r"[^A-Za-z0-9._-]+", "_", text).strip("_")


def check_data_classes(restored: Restored, data_cfg) -> None:
  """ValueError when a dataset's classes are not the ones the checkpoint was trained on
  (the same names in the same order), so that labels mean the same thing."""
  names = input_pipeline.class_names(data_cfg)
  if names == list(restored.class_names):
    return
  missing = [c for c in restored.class_names if c not in names]
  extra = [c for c in names if c not in restored.class_names]
  detail = "; ".join(part for part in (
      missing and f"missing {', '.join(missing[:5])}", extra and f"not trained on "
      f"{', '.join(extra[:5])}") if part) or "the same names in another order"
  where = data_cfg.data_dir if data_cfg.name == "folder" else data_cfg.name
  raise ValueError(f"{where} has {len(names)} classes but checkpoint {restored.step} of "
                   f"{restored.workdir} was trained on {len(restored.class_names)}: {detail}")


def report_path(workdir: str, data: dict, split: str, step: int, ten_crop: bool) -> str:
  """<workdir>/eval_<data>_<split>_<step>[_10crop].json: <data> is the image folder's name
  (or the tfds dataset's), so that evaluations of other folders never overwrite each other."""
  source = (os.path.basename(os.path.normpath(data["data_dir"])) if data["name"] == "folder"
            else data["name"])
  name = "_".join(_file_safe(p) or "x" for p in (source, split))
  return os.path.join(workdir, f"eval_{name}_{step}{'_10crop' if ten_crop else ''}.json")


def write_report(report: dict, ten_crop: bool) -> str:
  path = report_path(report["workdir"], report["data"], report["split"], report["step"],
                     ten_crop)
  with open(path, "w") as f:
    json.dump(report, f, indent=1)
  return path
