"""What many tests share: a tiny config and small prepared datasets."""
from __future__ import annotations

import fcntl
import json
import os
import sys

import jax.numpy as jnp
import numpy as np
from array_record.python.array_record_module import ArrayRecordWriter

from alexnet_jax.base import records
from alexnet_jax.data import synthetic
from alexnet_jax.nn import models
from experiments import quickstart


def normal(seed: int, shape: tuple[int, ...], scale: float = 1.0):
  """A float32 array of normal noise, drawn by NumPy: made eagerly with jax.random, each
  new shape would compile a program of its own."""
  return jnp.asarray(np.random.default_rng(seed).standard_normal(shape, np.float32) * scale)


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


def prepared_real(tmp_path_factory, name: str, size: int) -> str:
  """ALEXNET_DATA_DIR/<name> as `launch.prepare` writes it at `size`, once per test run:
  the pytest-xdist workers share the folder (the first prepares it under a lock, the
  others find it complete and `prepare` writes nothing)."""
  from alexnet_jax.data import prepare  # pylint: disable=import-outside-toplevel
  root = tmp_path_factory.getbasetemp()
  if os.environ.get("PYTEST_XDIST_WORKER"):
    root = root.parent   # the run's folder, above each worker's own
  out = root / f"{name}_{size}"
  with open(root / f"{name}_{size}.lock", "a") as lock:
    fcntl.flock(lock, fcntl.LOCK_EX)
    prepare.prepare(os.path.join(os.environ["ALEXNET_DATA_DIR"], name), str(out), size=size,
                    workers=2, progress=False)
  return str(out)


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



# Run in a small Python process that changes what the command may do, then exec()s it: no
# preexec_fn (which forks a multithreaded JAX test process, and may deadlock).
_DROP_CAPS = """
import ctypes, os, sys
libc = ctypes.CDLL(None, use_errno=True)
for cap in (1, 2):   # CAP_DAC_OVERRIDE, CAP_DAC_READ_SEARCH
  if libc.prctl(24, cap, 0, 0, 0):   # PR_CAPBSET_DROP
    raise OSError(ctypes.get_errno(), "prctl(PR_CAPBSET_DROP)")
os.execv(sys.argv[1], sys.argv[1:])
"""
_LIMIT_FILE_SIZE = """
import os, resource, signal, sys
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)   # stays ignored across exec
limit = int(sys.argv[1])
resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))
os.execv(sys.argv[2], sys.argv[2:])
"""


def permissions_apply(cmd: list[str]) -> list[str]:
  """`cmd` run so that file permissions hold even for root: it starts without
  CAP_DAC_OVERRIDE and CAP_DAC_READ_SEARCH in its bounding set, so a chmod 000 file or a
  chmod 555 folder refuses it as it would refuse a user. (Not root: `cmd` unchanged.)"""
  if os.geteuid() != 0:
    return cmd
  return [sys.executable, "-c", _DROP_CAPS, *cmd]


def file_size_limit(limit: int, cmd: list[str]) -> list[str]:
  """`cmd` run so that writing past `limit` bytes into any one file fails with EFBIG, as a
  full disk fails a write (RLIMIT_FSIZE, SIGXFSZ ignored)."""
  return [sys.executable, "-c", _LIMIT_FILE_SIZE, str(limit), *cmd]


def claim_config(workdir, cfg) -> None:
  """Rewrites a run's run.json as if `cfg` had trained it (run.json is what the config
  check reads first), to test what lies past that check."""
  path = os.path.join(workdir, "run.json")
  with open(path) as f:
    info = json.load(f)
  info["config"] = json.loads(cfg.to_json_best_effort())
  with open(path, "w") as f:
    json.dump(info, f)
