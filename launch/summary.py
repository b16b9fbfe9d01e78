"""Prints the per-layer table of an experiment's model.

    python -m launch.summary --config=experiments/imagenet_paper.py
    python -m launch.summary --config=experiments/default.py --config.model.towers=1
"""
from absl import flags
from ml_collections import config_flags

from alexnet_jax import cli, summary

_CONFIG = config_flags.DEFINE_config_file("config", None, "Experiment config file.",
                                          lock_config=True)


def main(argv):
  del argv
  cfg = _CONFIG.value
  rows = summary.layer_table(cfg.model, cfg.data.image_size)
  title = (f"AlexNet {cfg.model.arch} {'-'.join(map(str, cfg.model.features))} "
           f"towers={cfg.model.towers} "
           f"input={cfg.data.image_size}x{cfg.data.image_size}x3 classes={cfg.model.num_classes}")
  print(summary.format_table(rows, title))


if __name__ == "__main__":
  flags.mark_flags_as_required(["config"])
  cli.run(main)
