"""Top-1 and top-5 error of a checkpoint on a dataset split (§6), as a JSON report.

    python -m launch.evaluate --workdir=/tmp/quickstart --split=test
    python -m launch.evaluate --workdir=runs/imagenet --step=best --split=validation --ten_crop

The dataset is the run's (run.json); --data_dir points it elsewhere. The report goes to
<workdir>/eval_<data folder>_<split>_<step>[_10crop].json; with --ten_crop it holds both the
single-crop (centre) and the ten-crop numbers.
"""

from absl import flags

from alexnet_jax.programs import inference
from launch import cli

_WORKDIR = flags.DEFINE_string("workdir", None, "Training workdir (run.json, checkpoints/).")
_STEP = flags.DEFINE_string("step", "latest", "Checkpoint: 'latest', 'best' or a step number.")
_SPLIT = flags.DEFINE_string("split", None, "Split (tfds syntax, slicing included); "
                             "default: the run's eval split.")
_TEN_CROP = flags.DEFINE_bool("ten_crop", False, "Also the ten-crop error (§4.1).")
_DATA_DIR = flags.DEFINE_string("data_dir", None, "Override the run's data.data_dir.")
_BATCH = flags.DEFINE_integer("batch_size", None, "Batch size (default: the run's).")
_LOG_EVERY = flags.DEFINE_integer("log_every", 50, "Log progress every this many batches.")


def main(argv):
  if _BATCH.value is not None and _BATCH.value < 1:
    cli.fail(ValueError(f"--batch_size must be at least 1, got {_BATCH.value}"))
  restored = inference.load(_WORKDIR.value, _STEP.value, batch_size=_BATCH.value)
  split = _SPLIT.value or restored.cfg.data.eval_split
  path = inference.report_file(restored, split, _TEN_CROP.value, _DATA_DIR.value)
  cli.check_writable(path, "the report")   # before the evaluation, not after it
  report = inference.evaluate(restored, split, ten_crop=_TEN_CROP.value,
                              data_dir=_DATA_DIR.value, log_every=_LOG_EVERY.value,
                              progress=True)
  for kind in ("single_crop", "ten_crop"):
    if kind in report:
      m = report[kind]
      top5 = (f"top-5 error {m['top5_error']:.4f}  "
              if restored.cfg.model.num_classes > 5 else "")
      print(f"{kind.replace('_', '-')}: top-1 error {m['top1_error']:.4f}  {top5}"
            f"loss {m['loss']:.4f}")
  print(f"{report['examples']} examples of {split}, checkpoint {report['step']}, "
        f"{report['images_per_second']:.1f} images/s")
  try:   # the numbers are printed already: a failed write loses only the file
    inference.write_report(report, _TEN_CROP.value)
  except OSError as e:
    cli.fail(OSError(f"could not write the report {path}: {e.strerror or e}"))
  print(f"report: {path}")


if __name__ == "__main__":
  flags.mark_flags_as_required(["workdir"])
  cli.run(main)
