"""Training loss and validation error against epoch for one or more training workdirs.

    python -m launch.curves --out=curves.png runs/a runs/b [--labels=a,b] [--title=...]
"""
import os

from absl import flags

from alexnet_jax.base import workdir as workdir_lib
from alexnet_jax.programs import visualize
from launch import cli

_OUT = flags.DEFINE_string("out", "curves.png", "PNG to write.")
_LABELS = flags.DEFINE_list("labels", None, "One label per workdir (default: folder names).")
_TITLE = flags.DEFINE_string("title", "", "Figure title.")


def main(argv):
  workdirs = argv[1:]
  if not workdirs:
    raise SystemExit("error: name at least one training workdir")
  labels = _LABELS.value or [os.path.basename(os.path.normpath(w)) for w in workdirs]
  if len(labels) != len(workdirs):
    raise SystemExit(f"error: {len(labels)} labels for {len(workdirs)} workdirs")
  cli.check_writable(_OUT.value, "--out")   # before reading and plotting
  curves = {}
  for label, workdir in zip(labels, workdirs):
    records = workdir_lib.read_metrics(workdir)
    if not records:
      raise SystemExit(f"error: {workdir} has no metrics.jsonl records")
    no_epoch = sum("epoch" not in r for r in records)
    if no_epoch:
      path = os.path.join(workdir, workdir_lib.METRICS)
      raise SystemExit(f"error: {path}: {no_epoch} of {len(records)} rows have no 'epoch' "
                       "field, which the curves are plotted against")
    curves[label] = records
  try:
    visualize.save_training_curves(curves, _OUT.value, _TITLE.value)
  except OSError as e:
    cli.fail(OSError(f"could not write {_OUT.value}: {e.strerror or e}"))
  print(_OUT.value)


if __name__ == "__main__":
  cli.run(main, takes_args=True)
