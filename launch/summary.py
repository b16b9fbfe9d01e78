"""Prints the per-layer table of an experiment's model.

    python -m launch.summary --config=experiments/imagenet_paper.py
    python -m launch.summary --config=experiments/default.py --config.model.towers=1
    python -m launch.summary --config=experiments/imagenette.py:cpu --signal=data/imagenette

With --signal=<prepared dataset>, it also prints, for the model at initialisation on the
first --images images of its eval split, each layer's image-dependent output against its
bias and its share of dead ReLUs (summary.layer_signal). With --workdir instead of --config,
the same for that run's checkpoint (--step), with the run's own config: where a run sitting
at chance stands after training.

    python -m launch.summary --workdir=runs/imagenette_paper --signal=data/imagenette
"""
import itertools

import jax
import numpy as np
from absl import flags
from ml_collections import config_flags

from alexnet_jax.data import loader
from alexnet_jax.programs import inference, summary
from launch import cli

_CONFIG = config_flags.DEFINE_config_file("config", None, "Experiment config file.",
                                          lock_config=True)
_SIGNAL = flags.DEFINE_string("signal", None, "A prepared dataset: also print each layer's "
                              "image-dependent output against its bias, and its dead ReLUs.")
_SPLIT = flags.DEFINE_string("split", None, "Split for --signal (default: the eval split).")
_IMAGES = flags.DEFINE_integer("images", 64, "Images for --signal.")
_WORKDIR = flags.DEFINE_string("workdir", None, "A run, instead of --config: measure --signal "
                               "at its checkpoint, with its config.")
_STEP = flags.DEFINE_string("step", "latest", "The checkpoint for --workdir: a step number, "
                            "'latest' or 'best'.")


def main(argv):
  del argv
  if (_CONFIG.value is None) == (_WORKDIR.value is None):
    cli.fail(ValueError("give either --config, or --workdir with --signal"))
  if _WORKDIR.value and not _SIGNAL.value:
    cli.fail(ValueError("--workdir measures --signal at a checkpoint: give "
                        "--signal=<prepared dataset> too"))
  params, at = None, "at initialisation"
  if _WORKDIR.value:
    restored = inference.load(_WORKDIR.value, _STEP.value, mesh_shape=(1, 1))
    cfg, params = restored.cfg, jax.device_get(restored.params)
    at = f"at step {restored.step} of {restored.workdir}"
  else:
    cfg = _CONFIG.value
  rows = summary.layer_table(cfg.model, cfg.data.image_size)
  title = (f"AlexNet {cfg.model.arch} {'-'.join(map(str, cfg.model.features))} "
           f"towers={cfg.model.towers} "
           f"input={cfg.data.image_size}x{cfg.data.image_size}x3 classes={cfg.model.num_classes}")
  print(summary.format_table(rows, title))
  if _SIGNAL.value:
    data_cfg = cfg.data.copy_and_resolve_references()
    data_cfg.unlock()
    data_cfg.name, data_cfg.data_dir = "prepared", _SIGNAL.value
    batches = loader.eval_batches(
        loader.open_split(data_cfg, _SPLIT.value or data_cfg.eval_split), _IMAGES.value)
    images = np.asarray(next(iter(itertools.islice(batches, 1)))["image"])
    print(f"\n{at} ({cfg.model.init_scheme} init, {cfg.data.input_scale} input "
          f"scale, {len(images)} images): the output's spread over images against the bias")
    for r in summary.layer_signal(cfg.model, data_cfg, images, cfg.seed, params):
      dead = "" if r["dead"] is None else f"  dead ReLUs {r['dead']:6.1%}"
      print(f"{r['layer']:<8} signal {r['signal']:10.4g}  bias {r['bias']:10.4g}  "
            f"signal/bias {r['ratio']:10.4g}{dead}")


if __name__ == "__main__":
  cli.run(main)
