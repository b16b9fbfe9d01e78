"""Benchmarks the training step, the training loop, the loader, LRN and GEMM in one process.

    python -m launch.benchmark --what=train,gemm        # the paper model, 227, batch 128, fp32
    python -m launch.benchmark --what=loop --data_dir=data/imagenette   # the real loop
    python -m launch.benchmark --what=input --workers=4 --data_dir=data/imagenette
    python -m launch.benchmark --config.model.lrn=False --json=/tmp/bench.json

`loop` and `input` read a prepared dataset (`launch.prepare`), or with
`--config.data.name=tfds --config.data.tfds_name=<name>` a tfds one; without either they
make a generated prepared one at the config's resize size in a temporary folder. Medians
over --repeats after --warmup. Prints a table and writes JSON (--json).
"""
import json
import os
import tempfile

import jax
from absl import flags
from ml_collections import config_flags

from alexnet_jax.base import machine
from alexnet_jax.data import augment, synthetic
from alexnet_jax.programs import benchmark, train
from launch import cli

_CONFIG = config_flags.DEFINE_config_file(
    "config", "experiments/default.py", "Experiment config (default: the paper model).",
    lock_config=True)
MODES = ("train", "loop", "input", "lrn", "gemm")
_WHAT = flags.DEFINE_list("what", ["train", "lrn", "gemm"], f"What to measure: {', '.join(MODES)}.")
flags.register_validator("what", lambda v: set(v) <= set(MODES),
                         f"--what takes a comma-separated list of {', '.join(MODES)}")
_WARMUP = flags.DEFINE_integer("warmup", 2, "Untimed repeats first.")
_REPEATS = flags.DEFINE_integer("repeats", 5, "Timed repeats (the median is reported); "
                                "loop and input time 4x this many batches.")
_DATA_DIR = flags.DEFINE_string("data_dir", None, "A prepared dataset for loop and input.")
_WORKERS = flags.DEFINE_integer("workers", 0, "Loader worker processes for loop and input.")
_LRN_BATCH = flags.DEFINE_integer("lrn_batch", 128, "Batch of the 55x55x96 LRN input.")
_GEMM_N = flags.DEFINE_integer("gemm_n", 4096, "Size of the square float32 matmul.")
_JSON = flags.DEFINE_string("json", None, "Write the results here as JSON.")


def _with_data(cfg, tmp: str):
  cfg = cfg.copy_and_resolve_references()
  if cfg.data.name == "tfds":
    return cfg
  cfg.data.name, cfg.data.train_split = "prepared", "train"
  if _DATA_DIR.value:
    cfg.data.data_dir = _DATA_DIR.value
  else:   # generated squares at the config's resize size
    size = augment.square_size(cfg.data)
    cfg.data.data_dir = synthetic.make_prepared_shapes(
        os.path.join(tmp, "shapes"), num_classes=min(cfg.model.num_classes, 4), size=size)
  return cfg


def main(argv):
  del argv
  cfg = _CONFIG.value
  train.validate(cfg)
  what = set(_WHAT.value)
  results = {"devices": [str(d) for d in jax.devices()], **machine.cpu(), "jax": jax.__version__,
             "glibc_tunables": os.environ.get("GLIBC_TUNABLES", ""),   # see alexnet_jax/base/environment.py
             "arch": cfg.model.arch, "features": list(cfg.model.features), "lrn": cfg.model.lrn,
             "towers": cfg.model.towers,
             "image_size": cfg.data.image_size, "batch": cfg.batch_size, "dtype": cfg.model.dtype}
  if "gemm" in what:
    results.update(benchmark.gemm(_GEMM_N.value, warmup=_WARMUP.value, repeats=_REPEATS.value))
  if "train" in what:
    results.update(benchmark.train_and_eval_step(cfg, _WARMUP.value, _REPEATS.value))
    if "gemm" in what and jax.default_backend() == "cpu":   # XLA:GPU counts no convolutions
      roofline = results["gemm_gflop_per_s"] / results["train_gflop_per_image"]
      results["roofline_images_per_s"] = roofline
      results["train_over_roofline"] = results["train_images_per_s"] / roofline
  if "lrn" in what:
    results.update(benchmark.lrn_forward_backward((_LRN_BATCH.value, 55, 55, 96),
                                                  _WARMUP.value, _REPEATS.value))
  if what & {"loop", "input"}:
    with tempfile.TemporaryDirectory() as tmp:
      data_cfg = _with_data(cfg, tmp)
      if "input" in what:
        results.update(benchmark.input_rate(data_cfg.data, cfg.batch_size,
                                            batches=4 * _REPEATS.value, warmup=_WARMUP.value,
                                            workers=_WORKERS.value))
      if "loop" in what:
        results.update(benchmark.loop(data_cfg, steps=4 * _REPEATS.value,
                                      warmup=_WARMUP.value + 1, workers=_WORKERS.value))
  width = max(map(len, results))
  for k, v in results.items():
    print(f"{k:<{width}}  {round(v, 4) if isinstance(v, float) else v}")
  if _JSON.value:
    with open(_JSON.value, "w") as f:
      json.dump(results, f, indent=1)


if __name__ == "__main__":
  cli.run(main)
