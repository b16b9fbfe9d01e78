"""Benchmarks the training step, evaluation, LRN and the input pipeline in one process.

    python -m launch.benchmark                       # the paper model, 227x227, batch 128, fp32
    python -m launch.benchmark --config.model.lrn=False --json=/tmp/bench.json
    python -m launch.benchmark --what=input --data_dir=../shared/data/imagenette

Medians over --repeats after --warmup. Prints a table and writes JSON (--json).
"""
import json
import os
import platform
import tempfile

import jax
from absl import flags
from ml_collections import config_flags

from alexnet_jax import benchmark, cli, input_pipeline

_CONFIG = config_flags.DEFINE_config_file(
    "config", "experiments/default.py", "Experiment config (default: the paper model).",
    lock_config=True)
_WHAT = flags.DEFINE_list("what", ["train", "lrn", "input"], "train (with eval), lrn, input.")
_WARMUP = flags.DEFINE_integer("warmup", 2, "Untimed repeats first.")
_REPEATS = flags.DEFINE_integer("repeats", 5, "Timed repeats (the median is reported).")
_DATA_DIR = flags.DEFINE_string(
    "data_dir", None, "Image folder <dir>/train/<class>/* for the input benchmark; "
    "default: a generated one at the config's resize size.")
_LRN_BATCH = flags.DEFINE_integer("lrn_batch", 128, "Batch of the 55x55x96 LRN input.")
_JSON = flags.DEFINE_string("json", None, "Write the results here as JSON.")


def main(argv):
  del argv
  cfg = _CONFIG.value
  results = {"devices": [str(d) for d in jax.devices()], "cpus": os.cpu_count(),
             "machine": platform.processor() or platform.machine(), "jax": jax.__version__,
             "preset": cfg.model.preset, "lrn": cfg.model.lrn, "towers": cfg.model.towers,
             "image_size": cfg.data.image_size, "batch": cfg.batch_size, "dtype": cfg.model.dtype}
  if "train" in _WHAT.value:
    results.update(benchmark.train_and_eval_step(cfg, _WARMUP.value, _REPEATS.value))
  if "lrn" in _WHAT.value:
    results.update(benchmark.lrn_forward_backward((_LRN_BATCH.value, 55, 55, 96),
                                                  _WARMUP.value, _REPEATS.value))
  if "input" in _WHAT.value:
    with tempfile.TemporaryDirectory() as tmp:
      with cfg.unlocked():
        cfg.data.name = "folder"
        cfg.data.train_split = "train"
        if _DATA_DIR.value:
          cfg.data.data_dir = _DATA_DIR.value
        else:   # a generated folder of JPEGs at the config's resize size
          cfg.data.name = "shapes"
          cfg.model.num_classes = 4
          cfg = input_pipeline.prepare(cfg, tmp)
      results.update(benchmark.input_pipeline_rate(cfg, batches=2 * _REPEATS.value,
                                                   warmup=_WARMUP.value))
  width = max(map(len, results))
  for k, v in results.items():
    print(f"{k:<{width}}  {round(v, 4) if isinstance(v, float) else v}")
  if _JSON.value:
    with open(_JSON.value, "w") as f:
      json.dump(results, f, indent=1)


if __name__ == "__main__":
  cli.run(main)
