"""Which data a run reads, checked before anything compiles.

`data.name`:
  'prepared'  `data.data_dir` is a dataset written by `launch.prepare` (records.py).
  'tfds'      `data.tfds_name` (e.g. 'cifar10'), built as ArrayRecord in `data.data_dir`
              (tfds's default folder when empty), read directly (loader.TfdsSplit).
  'shapes'    the offline quick start's generated dataset (synthetic.py), made once into
              `<workdir>/shapes` (or `data.data_dir`) and prepared there; for a workdir on
              cloud storage, into a local cache folder instead (records are read locally).
"""
from __future__ import annotations

import os

from absl import logging

from alexnet_jax.base import workdir as workdir_lib
from alexnet_jax.data import augment, loader

NAMES = ("prepared", "tfds", "shapes")


def resolve(cfg, workdir: str):
  """A copy of `cfg` whose `data` is a prepared dataset that exists: 'shapes' is generated
  and prepared here (once; safe from every process)."""
  cfg = cfg.copy_and_resolve_references()
  data = cfg.data
  if data.name not in NAMES:
    raise ValueError(f"data.name must be one of {NAMES}, got {data.name!r} (an image folder "
                     "is prepared first: python -m launch.prepare)")
  if data.name == "tfds" and not data.tfds_name:
    raise ValueError("data.name is 'tfds' but data.tfds_name is not set (e.g. "
                     "--config.data.tfds_name=cifar10)")
  if data.name == "shapes":
    from alexnet_jax.data import synthetic  # pylint: disable=import-outside-toplevel
    if workdir_lib.is_url(data.data_dir):   # made and prepared here: a local folder
      raise ValueError(f"data.data_dir={data.data_dir}: the generated 'shapes' dataset is "
                       "written to a local folder; leave data_dir empty or give a local path")
    root = data.data_dir or _shapes_root(workdir, cfg)
    synthetic.make_prepared_shapes(root, num_classes=int(cfg.model.num_classes),
                                   size=augment.square_size(data))
    data.name, data.data_dir = "prepared", root
  return cfg


def _shapes_root(workdir: str, cfg) -> str:
  if not workdir_lib.is_url(workdir):
    return os.path.join(workdir, "shapes")
  size = augment.square_size(cfg.data)
  return os.path.join(os.path.expanduser("~/.cache/alexnet_jax"),
                      f"shapes_{int(cfg.model.num_classes)}_{size}")


def _listed(names) -> str:
  names = list(names)
  return ", ".join(names[:8]) + (f" and {len(names) - 8} more" if len(names) > 8 else "")


def check_classes(data_cfg, train, num_classes: int) -> list[str]:
  """The classes of the opened training split `train` against the model's `num_classes`;
  returns the class names. ValueError (one line) naming the classes involved: a class with
  no training images (its label would never be learned, and an image folder's empty class
  shifts every label after it), or more or fewer classes than outputs."""
  info, names = train.info, list(train.info["class_names"])
  where = loader.describe(data_cfg)
  counts = info["splits"][train.name].get("class_counts") or []   # tfds: not known
  empty = [c for c, n in zip(names, counts) if n == 0]
  if empty:
    raise ValueError(f"{where}: class(es) with no images in training split {train.name!r}: "
                     f"{_listed(empty)}")
  if len(names) != num_classes:
    raise ValueError(f"{where} has {len(names)} classes ({_listed(names)}) but "
                     f"model.num_classes is {num_classes}; set "
                     f"--config.model.num_classes={len(names)}")
  log_resize(data_cfg, train.image_size)
  skipped = sum(len(v) for v in info.get("skipped", {}).values())
  if skipped:
    logging.warning("%d undecodable files were skipped when %s was prepared (listed in %s)",
                    skipped, data_cfg.data_dir, os.path.join(data_cfg.data_dir, "skipped.txt"))
  return names


def log_resize(data_cfg, stored: int) -> None:
  """A log line when the stored squares are not the size the crops are taken from, so that
  every batch is resized on the device (augment.square), which costs time at every step."""
  target = augment.square_size(data_cfg)
  if stored != target:
    logging.info("%s holds %dx%d squares: every batch is resized to %dx%d on the device "
                 "(prepare it with --size=%d to skip that)", loader.describe(data_cfg), stored,
                 stored, target, target, target)


def num_workers(data_cfg) -> int:
  """`data.workers`, with -1 meaning: none on a machine of 4 cores or fewer (reading raw
  records costs little, and the step needs the cores), else one per core less two, up to 16."""
  workers = int(data_cfg.workers)
  if workers >= 0:
    return workers
  cores = os.cpu_count() or 1
  return 0 if cores <= 4 else min(16, cores - 2)
