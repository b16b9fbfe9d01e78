"""Runs an ablation sweep: every variant x seed as its own training run under --root, then
results.csv, results.md and curves.png. Rerunning the command skips finished runs and
resumes interrupted ones.

    python -m launch.sweep --sweep=experiments/sweeps/lrn_x_pooling.py --root=/tmp/sweeps/lxp \\
        --config=experiments/cifar10.py --config.data.data_dir=../shared/data/cifar10 \\
        --seeds=0,1 --config.num_train_steps=2000
Overrides of --config apply to every variant; --report_only rewrites the reports alone.
"""
import os

import jax
from absl import flags, logging
from etils import epath
from ml_collections import config_flags

from alexnet_jax.programs import sweep, sweep_report
from launch import cli

_CONFIG = config_flags.DEFINE_config_file("config", "experiments/cifar10.py",
                                          "Base experiment config file.", lock_config=True)
_SWEEP = flags.DEFINE_string("sweep", None, "Sweep definition file (experiments/sweeps/*.py).")
_ROOT = flags.DEFINE_string("root", None, "Directory holding one workdir per run.")
_SEEDS = flags.DEFINE_list("seeds", None, "Seeds; default: the sweep definition's SEEDS.")
_THRESHOLDS = flags.DEFINE_list(
    "train_error_thresholds", None,
    "Report epochs to reach these training errors; default: the definition's "
    "TRAIN_ERROR_THRESHOLDS (if any).")
_REPORT_ONLY = flags.DEFINE_bool("report_only", False, "Only rewrite the reports.")
_DRY_RUN = flags.DEFINE_bool("dry_run", False, "List the runs and exit.")


def _numbers(name: str, values: list[str], kind: type) -> list:
  """--seeds=0,1 -> [0, 1]; ValueError naming the flag and the value that is no number."""
  numbers = []
  for value in values:
    try:
      numbers.append(kind(value))
    except ValueError:
      raise ValueError(f"--{name}: {value!r} is not "
                       f"{'an integer' if kind is int else 'a number'}") from None
  return numbers


def main(argv):
  try:
    definition = sweep.load_definition(_SWEEP.value)
    seeds = _numbers("seeds", _SEEDS.value, int) if _SEEDS.value else None
    thresholds = (_numbers("train_error_thresholds", _THRESHOLDS.value, float)
                  if _THRESHOLDS.value is not None
                  else list(getattr(definition, "TRAIN_ERROR_THRESHOLDS", ())))
    if _REPORT_ONLY.value and not epath.Path(_ROOT.value).is_dir():
      raise ValueError(f"--root {_ROOT.value} does not exist: there is nothing to report "
                       "(run the sweep first, without --report_only)")
    base = _CONFIG.value
    runs = sweep.make_runs(definition, base, seeds)
  except (ValueError, KeyError) as e:
    cli.fail(e)
  logging.info("JAX devices %s; sweep %s: %d runs under %s", jax.local_devices(),
               _SWEEP.value, len(runs), _ROOT.value)
  if _DRY_RUN.value:
    for run in runs:
      print(os.path.join(_ROOT.value, run.name))
    return
  if not _REPORT_ONLY.value:
    sweep.run_sweep(base, runs, _ROOT.value)
  title = os.path.splitext(os.path.basename(_SWEEP.value))[0] + " sweep"
  try:
    rows = sweep_report.write_reports(runs, _ROOT.value, title, thresholds,
                                      notes=(definition.__doc__ or "").strip())
  except OSError as e:
    cli.fail(OSError(f"could not write the reports under {_ROOT.value}: {e.strerror or e}"))
  print(sweep_report.markdown_table(rows, thresholds))


if __name__ == "__main__":
  flags.mark_flags_as_required(["sweep", "root"])
  cli.run(main, on_interrupt="rerun the same command to resume", wait_for_writes=True)
