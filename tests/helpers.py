"""What many tests share: a tiny config and small prepared datasets."""
from __future__ import annotations

import json
import os

import numpy as np
from array_record.python.array_record_module import ArrayRecordWriter

from alexnet_jax import models, records, synthetic
from experiments import quickstart


def tiny_config(data_dir: str | None = None, **overrides):
  """The quick start shrunk to train a step in well under a second: 4 classes, two towers,
  16-32-48-48-32 convs, fc 64-64, one device. `overrides` are dotted fields:
  tiny_config(d, **{"data.image_size": 48, "batch_size": 8})."""
  cfg = quickstart.get_config()
  cfg.model = models.model_config("small", num_classes=4, towers=2, dropout=0.5,
                                  features=(16, 32, 48, 48, 32), fc_features=(64, 64),
                                  init_scheme="he")
  if data_dir:
    cfg.data.name, cfg.data.data_dir = "prepared", data_dir
  cfg.batch_size = 16
  cfg.num_train_steps = 20
  cfg.log_every_steps = 5
  cfg.eval_every_steps = 10
  cfg.checkpoint_every_steps = 10
  cfg.eval_batches = 2
  cfg.mesh_shape = (1, 1)
  cfg.data.workers = 0
  for field, value in overrides.items():
    *parents, leaf = field.split(".")
    node = cfg
    for p in parents:
      node = node[p]
    node[leaf] = value
  return cfg


def shapes(root: str, **kwargs) -> str:
  """The generated shapes as a prepared dataset (72x72 squares unless `size` says)."""
  kwargs.setdefault("size", 72)
  return synthetic.make_prepared_shapes(root, **kwargs)


def indexed(root: str, n: int = 100, size: int = 8, num_classes: int = 4,
            splits=("train", "test")) -> str:
  """A prepared dataset whose record i is an image filled with i % 256 (and i // 256 in
  the green channel), label i % num_classes: batches show which records they hold."""
  os.makedirs(root, exist_ok=True)
  info = {"format_version": records.FORMAT_VERSION, "encoding": "raw", "image_size": size,
          "class_names": [f"class{c}" for c in range(num_classes)], "splits": {},
          "skipped": {}, "source": "tests.helpers.indexed"}
  for split in splits:
    name = records.shard_name(split, 0, 1)
    writer = ArrayRecordWriter(os.path.join(root, name), "group_size:1")
    for i in range(n):
      image = np.zeros((size, size, 3), np.uint8)
      image[..., 0], image[..., 1] = i % 256, i // 256
      writer.write(records.encode(i % num_classes, image.tobytes()))
    writer.close()
    info["splits"][split] = {"num_examples": n, "files": [name],
                             "class_counts": [len(range(c, n, num_classes))
                                              for c in range(num_classes)]}
  with open(records.info_path(root), "w") as f:
    json.dump(info, f)
  return root


def index_of(images: np.ndarray) -> np.ndarray:
  """The record indices of `indexed` images [B, S, S, 3]."""
  return images[:, 0, 0, 0].astype(np.int64) + 256 * images[:, 0, 0, 1].astype(np.int64)


def tfds_indexed(data_dir: str, n: int = 48, num_classes: int = 4,
                 file_format: str = "array_record") -> str:
  """`indexed`'s images as a tfds dataset 'indexed_shapes' built as ArrayRecord in
  `data_dir` (this needs TensorFlow; reading it does not). Image i is i % 3 pixels taller
  than wide (12 wide), so most need squaring; its colour still encodes i."""
  import tensorflow_datasets as tfds  # pylint: disable=import-outside-toplevel

  class IndexedShapes(tfds.core.GeneratorBasedBuilder, skip_registration=True):
    VERSION = tfds.core.Version("1.0.0")

    def _info(self):
      return tfds.core.DatasetInfo(builder=self, features=tfds.features.FeaturesDict({
          "image": tfds.features.Image(shape=(None, None, 3)),
          "label": tfds.features.ClassLabel(names=[f"class{c}" for c in range(num_classes)])}))

    def _split_generators(self, dl_manager):
      del dl_manager
      return {"train": self._generate_examples(), "test": self._generate_examples()}

    def _generate_examples(self):
      for i in range(n):
        image = np.zeros((12 + i % 3, 12, 3), np.uint8)
        image[..., 0], image[..., 1] = i % 256, i // 256
        yield i, {"image": image, "label": i % num_classes}

  IndexedShapes(data_dir=data_dir, file_format=file_format).download_and_prepare()
  return data_dir
