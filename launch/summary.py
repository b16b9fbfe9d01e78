"""Prints the per-layer table of an experiment's model.

    python -m launch.summary --config=experiments/imagenet_paper.py
    python -m launch.summary --config=experiments/default.py --config.model.towers=1
    python -m launch.summary --config=experiments/imagenette.py:cpu --init_signal=data/imagenette

With --init_signal=<prepared dataset>, it also prints, for the model at initialisation on
the first --images images of its eval split, each layer's image-dependent output against
its bias (summary.init_signal).
"""
import itertools

import numpy as np
from absl import flags
from ml_collections import config_flags

from alexnet_jax import cli, loader, summary

_CONFIG = config_flags.DEFINE_config_file("config", None, "Experiment config file.",
                                          lock_config=True)
_INIT_SIGNAL = flags.DEFINE_string("init_signal", None, "A prepared dataset: also print each "
                                   "layer's signal against its bias at initialisation.")
_SPLIT = flags.DEFINE_string("split", None, "Split for --init_signal (default: the eval split).")
_IMAGES = flags.DEFINE_integer("images", 64, "Images for --init_signal.")


def main(argv):
  del argv
  cfg = _CONFIG.value
  rows = summary.layer_table(cfg.model, cfg.data.image_size)
  title = (f"AlexNet {cfg.model.arch} {'-'.join(map(str, cfg.model.features))} "
           f"towers={cfg.model.towers} "
           f"input={cfg.data.image_size}x{cfg.data.image_size}x3 classes={cfg.model.num_classes}")
  print(summary.format_table(rows, title))
  if _INIT_SIGNAL.value:
    data_cfg = cfg.data.copy_and_resolve_references()
    data_cfg.unlock()
    data_cfg.name, data_cfg.data_dir = "prepared", _INIT_SIGNAL.value
    batches = loader.eval_batches(data_cfg, _SPLIT.value or data_cfg.eval_split, _IMAGES.value)
    images = np.asarray(next(iter(itertools.islice(batches, 1)))["image"])
    print(f"\nat initialisation ({cfg.model.init_scheme} init, {cfg.data.input_scale} input "
          f"scale, {len(images)} images): the output's spread over images against the bias")
    for r in summary.init_signal(cfg.model, data_cfg, images, cfg.seed):
      print(f"{r['layer']:<8} signal {r['signal']:10.4g}  bias {r['bias']:10.4g}  "
            f"signal/bias {r['ratio']:10.4g}")


if __name__ == "__main__":
  flags.mark_flags_as_required(["config"])
  cli.run(main)
