"""Top-5 classes of image files, from a training workdir's checkpoint.

    python -m launch.predict --workdir=/tmp/quickstart cat.jpg dog.png
    python -m launch.predict --workdir=runs/imagenet --step=best --ten_crop --json=out.json *.JPEG

A file that is missing or not a usable image gets a one-line error on stderr; the other
files are still predicted, and the exit status is 1 if any failed.
"""
import json
import os
import sys

from absl import app, flags, logging

from alexnet_jax.programs import inference
from launch import cli

_WORKDIR = flags.DEFINE_string("workdir", None, "Training workdir (run.json, checkpoints/).")
_STEP = flags.DEFINE_string("step", "latest", "Checkpoint: 'latest', 'best' or a step number.")
_TEN_CROP = flags.DEFINE_bool("ten_crop", False, "Average the softmax over ten crops (§4.1).")
_JSON = flags.DEFINE_string("json", None, "Also write the predictions to this JSON file.")
_TOP = flags.DEFINE_integer("top", 5, "How many classes to show per image.")


def main(argv):
  paths = argv[1:]
  if not paths:
    raise app.UsageError("give one or more image files after the flags")
  if _TOP.value < 1:
    cli.fail(ValueError(f"--top must be at least 1, got {_TOP.value}"))
  if _JSON.value:   # before any work, so that nothing computed is lost for want of a folder
    try:
      os.makedirs(os.path.dirname(os.path.abspath(_JSON.value)), exist_ok=True)
    except OSError as e:
      cli.fail(ValueError(f"--json {_JSON.value}: cannot create its folder: {e.strerror}"))
  if not flags.FLAGS["verbosity"].present:
    logging.set_verbosity(logging.ERROR)   # keep orbax's restore chatter off the terminal
  restored = inference.load(_WORKDIR.value, _STEP.value)
  results = inference.predict_files(restored, paths, ten_crop=_TEN_CROP.value, k=_TOP.value)
  for r in results:
    if "error" in r:
      print(f"error: {r['error']}", file=sys.stderr)
      continue
    print(inference.printable(r["image"]))
    for rank, t in enumerate(r["top"], 1):
      label = t["name"] if t["name"] == t["class"] else f"{t['name']} ({t['class']})"
      print(f"  {rank}. {t['probability']:7.2%}  {label}")
  if _JSON.value:
    with open(_JSON.value, "w") as f:
      json.dump({"workdir": restored.workdir, "step": restored.step,
                 "ten_crop": _TEN_CROP.value, "results": results}, f, indent=1)
  failed = sum("error" in r for r in results)
  if failed:
    raise SystemExit(f"error: {failed} of {len(results)} images could not be read")


if __name__ == "__main__":
  flags.mark_flags_as_required(["workdir"])
  cli.run(main, takes_args=True)
