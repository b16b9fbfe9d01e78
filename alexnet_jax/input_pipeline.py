"""Input pipeline: tf.data and tfds only, no JAX (§2 and §4.1 of the paper).

Sources (`data_cfg.name`):
  'folder'     `data_cfg.data_dir/<split>/<class>/<image>`, labels from the sorted class names.
  anything else  a prepared tfds dataset, `tfds.builder(name, data_dir=data_cfg.data_dir or None)`.

§2: every image is first brought to a `resize_size` square: the shorter side resized to
`resize_size`, then the central `resize_size` x `resize_size` crop. Training (§4.1) then
takes a random `image_size` crop of that square, a random horizontal flip and PCA colour
lighting. Images too small for that (`resize_size <= image_size`, e.g. CIFAR at 32) get the
usual small-image recipe instead: shorter side to `image_size`, zero-pad by image_size // 8
(black; 4 pixels at 32) and take a random crop. Evaluation: the centre crop of the square,
or ten crops (its four corners and its centre, each also flipped; §4.1).

Input scale (`input_scale`):
  'paper'         §2: raw 0-255 pixels minus the per-channel mean of the training set
                  (`mean`, on a 0-1 scale; the paper subtracted the mean *image*, of which
                  the per-channel mean is the usual approximation). The paper's N(0, 0.01)
                  init and LRN constants (k=2, alpha=1e-4) assume this scale.
  'standardized'  (pixels / 255 - mean) / std, the torchvision convention.
PCA lighting is a shift on the 0-1 scale, so it scales with the input like the pixels do.

Batches are dicts: 'image' float32 [B, S, S, 3] ([B, 10, S, S, 3] with ten_crop),
'label' int32 [B], 'mask' float32 [B] (0 marks padding in the last evaluation batch).

Undecodable files (truncated JPEG or PNG, a non-image named .jpg) are skipped and counted,
never fatal: see `skipped_count()`.
"""
from __future__ import annotations

import functools
import math
import os
import threading

from absl import logging
import numpy as np
import tensorflow as tf
import tensorflow_datasets as tfds

from alexnet_jax import synthetic

try:  # Keep TF off the accelerators: JAX owns them.
  tf.config.set_visible_devices([], "GPU")
except Exception:  # pylint: disable=broad-except  # TF already initialised, or no GPU build
  pass

AUTOTUNE = tf.data.AUTOTUNE

# PCA lighting constants (fb.resnet.torch), RGB order, 0-1 scale. Rows of EIGVEC are the R, G
# and B components of the three eigenvectors' coordinates: shift = EIGVEC @ (alpha * EIGVAL).
EIGVAL = (0.2175, 0.0188, 0.0045)
EIGVEC = ((-0.5675, 0.7192, 0.4009),
          (-0.5808, -0.0045, -0.8140),
          (-0.5836, -0.6948, 0.4203))

_TAIL = 64  # bytes at the end of a file searched for the JPEG EOI / PNG IEND marker


# ---------------------------------------------------------------------------------------------
# Skipped-file counter.

_skipped = 0
_skipped_lock = threading.Lock()


def skipped_count() -> int:
  """Undecodable images skipped so far in this process, over all datasets."""
  return _skipped


def reset_skipped_count() -> None:
  global _skipped
  with _skipped_lock:
    _skipped = 0


def _note_skipped(name: tf.Tensor) -> np.int64:
  global _skipped
  with _skipped_lock:
    _skipped += 1
    n = _skipped
  logging.warning("input_pipeline: skipped undecodable image %s (skipped %d undecodable images "
                  "so far)", name.numpy().decode("utf-8", "replace"), n)
  return np.int64(n)


# ---------------------------------------------------------------------------------------------
# Decoding.

def _contains(haystack: tf.Tensor, pattern: bytes) -> tf.Tensor:
  """Whether the uint8 vector `haystack` contains the byte string `pattern`."""
  m = tf.maximum(tf.shape(haystack)[0] - len(pattern) + 1, 0)  # candidate start positions
  hit = tf.ones([m], tf.bool)
  for i, b in enumerate(pattern):
    hit &= tf.equal(haystack[i:i + m], b)
  return tf.reduce_any(hit)


def _looks_complete(data: tf.Tensor) -> tf.Tensor:
  """Cheap in-graph check that `data` is a whole JPEG/PNG (or a GIF/BMP) file.

  TF's decoders raise on truncated files, which inside tf.data would end the run; checking
  first lets us skip and count them. JPEG: starts FFD8FF and has the EOI marker FFD9 near the
  end (entropy-coded data byte-stuffs 0xFF, so a truncated scan cannot contain FFD9). PNG:
  the signature and an IEND chunk near the end. Anything else (text, HTML) is rejected.
  """
  n = tf.strings.length(data)
  tail = tf.io.decode_raw(tf.strings.substr(data, tf.maximum(n - _TAIL, 0), _TAIL), tf.uint8)
  is_jpeg = tf.equal(tf.strings.substr(data, 0, 3), b"\xff\xd8\xff")
  is_png = tf.equal(tf.strings.substr(data, 0, 8), b"\x89PNG\r\n\x1a\n")
  is_gif = tf.equal(tf.strings.substr(data, 0, 4), b"GIF8")
  is_bmp = tf.equal(tf.strings.substr(data, 0, 2), b"BM") & (n > 54)
  return ((is_jpeg & _contains(tail, b"\xff\xd9")) | (is_png & _contains(tail, b"IEND"))
          | is_gif | is_bmp)


def _to_rgb(image: tf.Tensor) -> tf.Tensor:
  """[H, W] or [H, W, C] with C in 1..4 -> [H, W, 3]: grey (and grey+alpha) tiled, alpha dropped."""
  image = tf.convert_to_tensor(image)
  if image.shape.rank == 2:
    image = image[..., None]
  c = tf.shape(image)[-1]
  image = tf.cond(c < 3, lambda: tf.tile(image[..., :1], [1, 1, 3]), lambda: image[..., :3])
  image.set_shape([None, None, 3])
  return image


def decode_image(data: tf.Tensor) -> tf.Tensor:
  """Encoded JPEG/PNG/GIF/BMP bytes -> uint8 [H, W, 3].

  Grey, grey+alpha, RGBA (alpha dropped) and CMYK JPEGs all become RGB. Raises on bytes that
  are not a decodable image (the pipeline checks `_looks_complete` first).
  """
  data = tf.convert_to_tensor(data, tf.string)
  is_jpeg = tf.equal(tf.strings.substr(data, 0, 3), b"\xff\xd8\xff")

  def jpeg():  # libjpeg converts grey and CMYK/YCCK to RGB itself with channels=3
    return tf.io.decode_jpeg(data, channels=3, dct_method="INTEGER_FAST")

  def other():
    return _to_rgb(tf.io.decode_image(data, channels=0, dtype=tf.uint8, expand_animations=False))

  image = tf.cond(is_jpeg, jpeg, other)
  image.set_shape([None, None, 3])
  return image


# ---------------------------------------------------------------------------------------------
# Geometry and colour.

def _resize_shorter(image: tf.Tensor, size: int) -> tf.Tensor:
  """uint8/float [H, W, 3] -> float32 0-255 [H', W', 3] with min(H', W') == size, aspect kept."""
  shape = tf.shape(image)
  shorter = tf.minimum(shape[0], shape[1])

  def resize():
    scale = size / tf.cast(shorter, tf.float32)
    new_size = tf.maximum(size, tf.cast(tf.round(tf.cast(shape[:2], tf.float32) * scale),
                                        tf.int32))
    # Antialiasing matters only when shrinking, and costs 2x (up) to 5x (down) plain bilinear.
    return tf.cond(shorter < size,
                   lambda: tf.image.resize(image, new_size, method="bilinear"),
                   lambda: tf.image.resize(image, new_size, method="bilinear", antialias=True))

  return tf.cond(tf.equal(shorter, size), lambda: tf.cast(image, tf.float32), resize)


def _centre_crop(image: tf.Tensor, size: int) -> tf.Tensor:
  shape = tf.shape(image)
  return tf.slice(image, tf.stack([(shape[0] - size) // 2, (shape[1] - size) // 2, 0]),
                  [size, size, -1])


def ten_crop(image: tf.Tensor, size: int) -> tf.Tensor:
  """[H, W, C] (H, W >= size) -> [10, size, size, C]: top-left, top-right, bottom-left,
  bottom-right, centre, then the same five flipped left-right (§4.1)."""
  image = tf.convert_to_tensor(image)
  shape = tf.shape(image)
  h, w = shape[0], shape[1]
  crop = lambda top, left: tf.slice(  # pylint: disable=unnecessary-lambda-assignment
      image, tf.stack([top, left, 0]), [size, size, -1])
  crops = tf.stack([crop(0, 0), crop(0, w - size), crop(h - size, 0), crop(h - size, w - size),
                    _centre_crop(image, size)])             # [5, S, S, C]
  return tf.concat([crops, crops[:, :, ::-1]], axis=0)      # [10, S, S, C]


INPUT_SCALES = ("paper", "standardized")


def input_gain(data_cfg) -> np.ndarray:
  """Per-channel c with model input = (pixels / 255 + lighting shift - mean) * c:
  255 for 'paper' (0-255 pixels minus the mean, §2), 1 / std for 'standardized'."""
  if data_cfg.input_scale == "paper":
    return np.full(3, 255.0, np.float32)
  if data_cfg.input_scale == "standardized":
    return 1.0 / np.asarray(data_cfg.std, np.float32)
  raise ValueError(f"data.input_scale must be one of {INPUT_SCALES}, "
                   f"got {data_cfg.input_scale!r}")


def to_model_input(pixels: tf.Tensor, data_cfg, shift: tf.Tensor | float = 0.0) -> tf.Tensor:
  """0-255 float pixels [..., 3] -> what the model sees, as one multiply-add per pixel."""
  gain = input_gain(data_cfg)
  offset = (shift - tf.constant(data_cfg.mean, tf.float32)) * gain
  return pixels * tf.constant(gain / 255.0) + offset


def from_model_input(images: np.ndarray, data_cfg) -> np.ndarray:
  """The inverse of `to_model_input` (no shift): model inputs -> uint8 pixels, for display."""
  x = images / input_gain(data_cfg) + np.asarray(data_cfg.mean, np.float32)
  return np.clip(np.round(x * 255.0), 0, 255).astype(np.uint8)


def _square(image: tf.Tensor, size: int) -> tf.Tensor:
  """§2: shorter side to `size`, then the central size x size crop -> float32 0-255."""
  return _centre_crop(_resize_shorter(image, size), size)


def pca_lighting_shift(alpha: tf.Tensor) -> tf.Tensor:
  """alpha [3] -> RGB shift [3] on a 0-1 scale: EIGVEC @ (alpha * EIGVAL) (§4.1)."""
  return tf.linalg.matvec(tf.constant(EIGVEC, tf.float32), alpha * tf.constant(EIGVAL, tf.float32))


def _train_preprocess(image: tf.Tensor, seed: tf.Tensor, data_cfg) -> tf.Tensor:
  """uint8 [H, W, 3] -> normalised float32 [S, S, 3]; `seed` is a stateless seed [2].

  Written with few, vectorised ops: tf.data runs this per image, and on 32x32 images the
  per-op overhead, not the arithmetic, sets the throughput.
  """
  size = int(data_cfg.image_size)
  resize_size = int(data_cfg.resize_size)
  geometry_seed, light_seed = tf.unstack(tf.random.experimental.stateless_split(seed, 2))
  if resize_size > size:
    image = _square(image, resize_size)                   # [R, R, 3], §2
  else:  # small images: pad-and-crop (see the module docstring)
    image = _resize_shorter(image, size)
    pad = max(1, size // 8)
    image = tf.pad(image, [[pad, pad], [pad, pad], [0, 0]])
  u = tf.random.stateless_uniform([3], geometry_seed)  # crop top, crop left, flip
  room = tf.cast(tf.shape(image)[:2] - size + 1, tf.float32)
  top_left = tf.cast(u[:2] * room, tf.int32)
  image = tf.slice(image, tf.concat([top_left, [0]], 0), [size, size, 3])  # [S, S, 3]
  if data_cfg.flip:
    image = tf.cond(u[2] < 0.5, lambda: tf.reverse(image, [1]), lambda: image)
  shift = 0.0
  if data_cfg.pca_lighting > 0:
    alpha = tf.random.stateless_normal([3], light_seed, stddev=float(data_cfg.pca_lighting))
    shift = pca_lighting_shift(alpha)
  return to_model_input(image, data_cfg, shift)


def _eval_square(image: tf.Tensor, data_cfg) -> tf.Tensor:
  size = int(data_cfg.image_size)
  return _square(_to_rgb(image), max(int(data_cfg.resize_size), size))


def preprocess_eval_image(image_uint8_hwc, data_cfg) -> tf.Tensor:
  """Decoded uint8 image, any channel count -> model input float32 [S, S, 3], centre crop."""
  image = _centre_crop(_eval_square(image_uint8_hwc, data_cfg), int(data_cfg.image_size))
  return to_model_input(image, data_cfg)


def preprocess_eval_image_ten_crop(image_uint8_hwc, data_cfg) -> tf.Tensor:
  """Decoded uint8 image, any channel count -> model input float32 [10, S, S, 3]: the
  corners and centre of the §2 square, and their mirror images (§4.1)."""
  crops = ten_crop(_eval_square(image_uint8_hwc, data_cfg), int(data_cfg.image_size))
  return to_model_input(crops, data_cfg)


# ---------------------------------------------------------------------------------------------
# Sources.

def _dir_signature(root: str) -> tuple | None:
  """mtimes of root, its split folders and their class folders: adding or removing a file
  changes one of them. None (do not cache) for non-local paths."""
  try:
    sig = [(root, os.stat(root).st_mtime_ns)]
    for split in sorted(os.listdir(root)):
      split_dir = os.path.join(root, split)
      if os.path.isdir(split_dir):
        sig.append((split_dir, os.stat(split_dir).st_mtime_ns))
        for c in sorted(os.listdir(split_dir)):
          class_dir = os.path.join(split_dir, c)
          if os.path.isdir(class_dir):
            sig.append((class_dir, os.stat(class_dir).st_mtime_ns))
    return tuple(sig)
  except OSError:
    return None


@functools.lru_cache(maxsize=4)
def _image_folder_cached(root: str, signature: tuple) -> tfds.ImageFolder:
  del signature  # only part of the cache key
  return tfds.ImageFolder(root)


def _image_folder(data_cfg) -> tfds.ImageFolder:
  root = os.path.expanduser(data_cfg.data_dir)
  if not root:
    raise ValueError("data.data_dir must be set to the folder root when data.name is 'folder'")
  if not tf.io.gfile.isdir(root):
    raise ValueError(f"data.data_dir {root!r} does not exist (or is not a directory)")
  # Listing a big folder takes a while (ImageNet: tens of seconds), and create_split,
  # num_examples and class_names all need it: cache it while the folders are unchanged.
  signature = _dir_signature(root)
  builder = (tfds.ImageFolder(root) if signature is None
             else _image_folder_cached(root, signature))
  if not builder.info.splits:
    raise ValueError(f"data.data_dir {root!r} holds no <split>/<class>/<image> folders")
  return builder


def _folder_examples(data_cfg, split: str) -> tuple[list[str], list[int]]:
  """(paths, labels) of a split spec, slicing included, in a fixed pseudo-random order.

  tfds.ImageFolder does the listing and labelling: sorted class names, and each split's files
  in one fixed shuffled order (random.Random(split_name)), so that 'train[90%:]' is a mix of
  all classes rather than the last one. Its as_dataset refuses sub-splits ("Subsplit API not
  yet supported for ImageFolder") and reads every file it yields, so we slice its example list
  (the private `_split_examples`, tfds 4.9.x) with tfds's own split parser and build the
  tf.data graph ourselves: slicing and per-process sharding then happen before any file read.
  """
  builder = _image_folder(data_cfg)
  try:
    instructions = tfds.core.ReadInstruction.from_spec(split).to_absolute(builder.info.splits)
  except (ValueError, AssertionError) as e:
    raise ValueError(f"split {split!r} not usable with data.data_dir {data_cfg.data_dir!r} "
                     f"(splits: {sorted(builder.info.splits.keys())}): {e}") from None
  names = builder.info.features["label"]
  paths, labels = [], []
  for ins in instructions:
    examples = builder._split_examples[ins.splitname]  # pylint: disable=protected-access
    for ex in examples[ins.from_:ins.to]:
      paths.append(ex.image_path)
      labels.append(names.str2int(ex.label))
  return paths, labels


def _tfds_builder(data_cfg) -> tfds.core.DatasetBuilder:
  data_dir = data_cfg.data_dir or None
  if data_dir and not tf.io.gfile.isdir(data_dir):
    raise ValueError(f"data.data_dir {data_dir!r} does not exist (or is not a directory)")
  try:
    builder = tfds.builder(data_cfg.name, data_dir=data_dir)
  except tfds.core.registered.DatasetNotFoundError:
    raise ValueError(f"unknown dataset data.name {data_cfg.name!r}: not 'folder' and not a "
                     "tfds dataset") from None
  if not builder.is_prepared():
    raise ValueError(f"tfds dataset {data_cfg.name!r} is not prepared in data.data_dir "
                     f"{builder.data_dir!r}; build it first (`tfds build {data_cfg.name}`), "
                     "the pipeline never downloads")
  return builder


def _tfds_num_examples(builder, split: str) -> int:
  try:
    return int(builder.info.splits[split].num_examples)
  except (ValueError, KeyError, AssertionError) as e:
    raise ValueError(f"split {split!r} not usable with tfds dataset {builder.name!r} "
                     f"(splits: {sorted(builder.info.splits.keys())}): {e}") from None


def num_examples(data_cfg, split: str) -> int:
  """Examples in a split spec (slicing included), over all processes."""
  if data_cfg.name == "folder":
    return len(_folder_examples(data_cfg, split)[0])
  return _tfds_num_examples(_tfds_builder(data_cfg), split)


def class_names(data_cfg) -> list[str]:
  """Class names in label order."""
  if data_cfg.name == "folder":
    return list(_image_folder(data_cfg).info.features["label"].names)
  return list(_tfds_builder(data_cfg).info.features["label"].names)


def _listed(names) -> str:
  names = list(names)
  return ", ".join(names[:8]) + (f" and {len(names) - 8} more" if len(names) > 8 else "")


def check_classes(data_cfg, num_classes: int) -> list[str]:
  """The dataset's classes against the model's `num_classes`, and the evaluation split's
  against the training split's; returns the class names. Raises ValueError naming the
  folders involved: a class with no training images (an empty folder would shift every
  label after it, and an evaluation-only class is one too), more or fewer classes than
  outputs, or an unusable `eval_split`."""
  names = class_names(data_cfg)
  where = (f"data.data_dir {data_cfg.data_dir!r}" if data_cfg.name == "folder"
           else f"tfds dataset {data_cfg.name!r}")
  if data_cfg.name == "folder":
    _folder_examples(data_cfg, data_cfg.eval_split)   # a clear error for a bad split
    trained = set(_folder_examples(data_cfg, data_cfg.train_split)[1])
    empty = [c for i, c in enumerate(names) if i not in trained]
    if empty:
      raise ValueError(f"{where}: class folder(s) with no images in training split "
                       f"{data_cfg.train_split!r}: {_listed(empty)}")
  else:
    builder = _tfds_builder(data_cfg)
    for split in (data_cfg.train_split, data_cfg.eval_split):
      _tfds_num_examples(builder, split)
  if len(names) != num_classes:
    raise ValueError(f"{where} has {len(names)} classes ({_listed(names)}) but "
                     f"model.num_classes is {num_classes}; set "
                     f"--config.model.num_classes={len(names)}")
  return names


def prepare(cfg, workdir: str):
  """Makes `cfg.data` point at data that exists, and returns a resolved copy of `cfg`.

  'shapes': generates the synthetic dataset (alexnet_jax/synthetic.py) once into
  <workdir>/shapes, with cfg.model.num_classes classes at max(resize_size, image_size) pixels,
  and returns a config reading it as 'folder'. A tfds name that is not prepared yet is
  prepared by tfds (`download_and_prepare`; ImageNet needs its manual download first).
  'folder' is returned as it is. Safe to call from every process: generation is atomic.
  """
  cfg = cfg.copy_and_resolve_references()
  data = cfg.data
  if data.name == "shapes":
    root = data.data_dir or os.path.join(workdir, "shapes")
    num_classes = int(getattr(getattr(cfg, "model", None), "num_classes", 4))
    synthetic.make_shapes_dataset(root, num_classes=num_classes,
                                  size=max(int(data.resize_size), int(data.image_size)))
    data.name, data.data_dir = "folder", root
  elif data.name != "folder":
    try:
      builder = tfds.builder(data.name, data_dir=data.data_dir or None)
    except tfds.core.registered.DatasetNotFoundError:
      raise ValueError(f"unknown dataset data.name {data.name!r}: not 'folder', 'shapes' or a "
                       "tfds dataset") from None
    if not builder.is_prepared():
      logging.info("input_pipeline: preparing tfds dataset %s in %s", data.name, builder.data_dir)
      builder.download_and_prepare()
  return cfg


# ---------------------------------------------------------------------------------------------
# The pipeline.

def _options() -> tf.data.Options:
  options = tf.data.Options()
  options.deterministic = True
  options.experimental_optimization.map_parallelization = True
  # The skip counter is a py_function (external state); it need not be in iterator checkpoints.
  options.experimental_external_state_policy = tf.data.experimental.ExternalStatePolicy.IGNORE
  return options


def _decode_or_skip(data: tf.Tensor, name: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
  """-> (uint8 [H, W, 3], ok). Not-ok images are counted and logged here, dropped later.

  Fast path, for nearly every file: a JPEG ending in its EOI marker goes straight to
  decode_jpeg. Everything else takes the slower, fuller check (per-op overhead matters: the
  full check on every file halves the throughput on 32x32 CIFAR).
  """
  n = tf.strings.length(data)
  fast = (tf.equal(tf.strings.substr(data, 0, 3), b"\xff\xd8\xff")
          & tf.equal(tf.strings.substr(data, tf.maximum(n - 2, 0), 2), b"\xff\xd9"))

  def jpeg():
    return tf.io.decode_jpeg(data, channels=3, dct_method="INTEGER_FAST"), tf.constant(True)

  def slow():
    ok = _looks_complete(data)

    def skip():
      count = tf.py_function(_note_skipped, [name], tf.int64)
      with tf.control_dependencies([count]):
        return tf.zeros([1, 1, 3], tf.uint8)

    image = tf.cond(ok, lambda: decode_image(data), skip)
    image.set_shape([None, None, 3])
    return image, ok

  image, ok = tf.cond(fast, jpeg, slow)
  image.set_shape([None, None, 3])
  return image, ok


def create_split(data_cfg, split: str, *, train: bool, batch_size: int, seed: int = 0,
                 process_index: int = 0, process_count: int = 1, repeat: bool | None = None,
                 ten_crop: bool = False,  # pylint: disable=redefined-outer-name
                 skip_batches: int = 0) -> tf.data.Dataset:
  """Batches of one process's part of `split`; see the module docstring.

  Args:
    data_cfg: `config.data`.
    split: tfds split spec, slicing included ('train[:90%]', 'test[:100]', 'train+test').
    train: augment and shuffle (§4.1), else the deterministic evaluation pass.
    batch_size: per-process batch size.
    seed: shuffling and augmentation seed; the same seed gives the same batches.
    process_index, process_count: this process reads examples i with i % count == index
      (folder) or tfds.even_splits' part (tfds).
    repeat: loop forever (default: `train`). Evaluation without repeat pads the last batch
      ('mask' 0) and yields ceil(ceil(N / process_count) / batch_size) batches in every
      process, so that processes stay in step and every example is seen once.
    ten_crop: evaluation only: 'image' is [B, 10, S, S, 3].
    skip_batches: start at this batch of the sequence (to resume training at a step).
      Training skips examples before decoding them (for a folder without cache, in O(1):
      straight to the right epoch and offset); the batches equal the uninterrupted run's
      unless undecodable files were dropped before that point.
  """
  if repeat is None:
    repeat = train
  if ten_crop and train:
    raise ValueError("ten_crop is for evaluation (train=False) only")
  if batch_size <= 0:
    raise ValueError(f"batch_size must be positive, got {batch_size}")
  if not 0 <= process_index < process_count:
    raise ValueError(f"process_index {process_index} not in [0, {process_count})")
  if skip_batches < 0:
    raise ValueError(f"skip_batches must be >= 0, got {skip_batches}")
  skip_elements = skip_batches * batch_size if train else 0
  size = int(data_cfg.image_size)
  cache = bool(getattr(data_cfg, "cache", False))

  # 1. This process's examples, validated eagerly: `source` yields what `fetch` turns into
  # (encoded bytes, label, name) inside the parallel map.
  if data_cfg.name == "folder":
    paths, labels = _folder_examples(data_cfg, split)
    per_process_max = math.ceil(len(paths) / process_count)
    paths, labels = paths[process_index::process_count], labels[process_index::process_count]
    local = len(paths)
    if local == 0:
      raise ValueError(f"split {split!r} of data.data_dir {data_cfg.data_dir!r} has no examples "
                       f"for process {process_index} of {process_count}")
    paths_t, labels_t = tf.constant(paths), tf.constant(labels, tf.int32)
    if train and not cache:
      # A fresh stateless permutation of the file list every epoch: reproducible without TF's
      # global seed, and only indices in the shuffle.
      # Resuming (skip) starts at the right epoch and offset without touching earlier ones.
      first_epoch, offset = divmod(skip_elements, local)
      epochs = (tf.data.Dataset.counter(start=first_epoch) if repeat
                else tf.data.Dataset.range(first_epoch, 1))

      def epoch_order(epoch):
        perm = tf.random.experimental.stateless_shuffle(
            tf.range(local, dtype=tf.int64), seed=tf.stack([tf.constant(seed, tf.int64), epoch]))
        return tf.data.Dataset.from_tensor_slices(
            perm[tf.where(tf.equal(epoch, first_epoch), offset, 0):])

      order = epochs.flat_map(epoch_order)
      shuffled, repeated, skipped = True, True, True
    else:
      order = tf.data.Dataset.range(local)
      shuffled, repeated, skipped = False, False, False
    source = order

    def fetch(i):
      return tf.io.read_file(paths_t[i]), labels_t[i], paths_t[i]
  else:
    builder = _tfds_builder(data_cfg)
    _tfds_num_examples(builder, split)  # a clear error for a bad split spec
    parts = tfds.even_splits(split, n=process_count, drop_remainder=False)
    local = _tfds_num_examples(builder, parts[process_index])
    per_process_max = max(_tfds_num_examples(builder, part) for part in parts)
    source = builder.as_dataset(
        split=parts[process_index], shuffle_files=train,
        decoders={"image": tfds.decode.SkipDecoding()},
        read_config=tfds.ReadConfig(shuffle_seed=seed, add_tfds_id=True))
    shuffled, repeated, skipped = False, False, False

    def fetch(ex):
      return ex["image"], tf.cast(ex["label"], tf.int32), ex["tfds_id"]

  # 2. Decode (and, unless cached, preprocess in the same map); drop undecodable images.
  # Element i (counted after shuffling and repetition) of process p gets the stateless seed
  # [seed * 2^20 + p, i]: reproducible, and distinct across elements and processes.
  key = tf.constant(seed * (1 << 20) + process_index, tf.int64)

  def preprocess(image, i):
    if train:
      return _train_preprocess(image, tf.stack([key, i]), data_cfg)
    if ten_crop:
      return preprocess_eval_image_ten_crop(image, data_cfg)
    return preprocess_eval_image(image, data_cfg)

  def finish(image, label, i):
    return {"image": preprocess(image, i), "label": label, "mask": tf.constant(1.0)}

  def is_ok(element, ok):
    del element
    return ok

  def drop_bad(ds):  # (element, ok) -> (element, ok) with ok True
    # _looks_complete catches truncation and non-images (counted); ignore_errors is the net for
    # rarer damage it cannot see (a corrupt scan, an unreadable file): logged by TF, not counted.
    return ds.filter(is_ok).ignore_errors(log_warning=True)

  if cache:  # decoded uint8 images in memory; augmentation stays fresh every epoch
    def load_only(element):
      data, y, name = fetch(element)
      image, ok = _decode_or_skip(data, name)
      return (image, y), ok

    ds = drop_bad(source.map(load_only, num_parallel_calls=AUTOTUNE)).cache()
    if train:
      ds = ds.shuffle(min(local, int(data_cfg.shuffle_buffer)), seed=seed,
                      reshuffle_each_iteration=True)
    if repeat:
      ds = ds.repeat()
    ds = ds.skip(skip_elements).enumerate(start=skip_elements).map(
        lambda i, ex: (finish(ex[0][0], ex[0][1], i), ex[1]), num_parallel_calls=AUTOTUNE)
  else:
    if train and not shuffled:
      source = source.shuffle(min(local, int(data_cfg.shuffle_buffer)), seed=seed,
                              reshuffle_each_iteration=True)
    if repeat and not repeated:
      source = source.repeat()
    if not skipped:
      source = source.skip(skip_elements)

    def load(i, element):
      data, y, name = fetch(element)
      image, ok = _decode_or_skip(data, name)
      return finish(image, y, i), ok

    ds = drop_bad(source.enumerate(start=skip_elements).map(load, num_parallel_calls=AUTOTUNE))

  # 3. Batch (then drop the `ok` flags, per batch). A finite evaluation pads with mask-0
  # examples to the same number of batches in every process.
  if repeat or train:
    ds = ds.batch(batch_size, drop_remainder=True, num_parallel_calls=AUTOTUNE)
  else:
    image_shape = [10, size, size, 3] if ten_crop else [size, size, 3]
    pad = tf.data.Dataset.from_tensors(({
        "image": tf.zeros(image_shape, tf.float32), "label": tf.constant(0, tf.int32),
        "mask": tf.constant(0.0)}, tf.constant(True))).repeat()
    num_batches = math.ceil(per_process_max / batch_size)
    ds = ds.concatenate(pad).batch(batch_size, drop_remainder=True).take(num_batches)
  ds = ds.map(lambda batch, ok: batch)
  if not train:
    ds = ds.skip(skip_batches)
  return ds.prefetch(AUTOTUNE).with_options(_options())
