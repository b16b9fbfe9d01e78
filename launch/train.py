"""Trains an experiment; rerunning the same command resumes from the latest checkpoint.

    python -m launch.train --config=experiments/quickstart.py --workdir=/tmp/quickstart
    python -m launch.train --config=experiments/cifar10.py --workdir=runs/cifar \\
        --config.data.data_dir=../shared/data/cifar10 --config.batch_size=64
"""
import jax
from absl import app, flags, logging
from ml_collections import config_flags

from alexnet_jax import train

_CONFIG = config_flags.DEFINE_config_file("config", None, "Experiment config file.",
                                          lock_config=True)
_WORKDIR = flags.DEFINE_string("workdir", None, "Directory for checkpoints and logs.")


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {argv[1:]}")
  logging.info("JAX process %d of %d, local devices %s", jax.process_index(),
               jax.process_count(), jax.local_devices())
  try:
    train.train_and_evaluate(_CONFIG.value, _WORKDIR.value)
  except (ValueError, OSError, train.LossIsNotFinite) as e:
    logging.exception("training stopped")   # the traceback, for the log
    raise SystemExit(f"error: {e}") from None


if __name__ == "__main__":
  flags.mark_flags_as_required(["config", "workdir"])
  app.run(main)
