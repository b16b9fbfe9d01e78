"""A pretrained AlexNet into a workdir that predict, evaluate, features and fine-tuning take.

    python -m launch.import_weights --weights=alexnet-owt-7be5be79.pth \
        --workdir=runs/torchvision_alexnet
    python -m launch.import_weights --weights=bvlcalexnet-12.onnx --workdir=runs/caffe_alexnet

--weights is torchvision's AlexNet state_dict (what `torch.save(model.state_dict(), f)`
writes, e.g. ~/.cache/torch/hub/checkpoints/alexnet-owt-7be5be79.pth; torch is not needed)
or Caffe's bvlc_alexnet from the ONNX model zoo (needs the onnx package). --format picks
one; by default a file that torch.save wrote is a state_dict and anything else ONNX. The configs are
experiments/pretrained.py's; a non-empty workdir is refused unless --overwrite, and one
holding checkpoints that training wrote also needs --overwrite_trained; a workdir whose
training is running is refused untouched.
"""
from absl import flags

from alexnet_jax.base import workdir
from alexnet_jax.programs import pretrained
from experiments import pretrained as configs
from launch import cli

_WEIGHTS = flags.DEFINE_string("weights", None, "state_dict (.pth) or ONNX (.onnx) file.")
_WORKDIR = flags.DEFINE_string("workdir", None, "Folder to write (run.json, checkpoints/).")
_FORMAT = flags.DEFINE_enum("format", "auto", ["auto", "torchvision", "onnx"],
                            "What --weights holds; auto: guessed from its first bytes.")
_OVERWRITE = flags.DEFINE_bool("overwrite", False, "Replace an existing workdir's net.")
_OVERWRITE_TRAINED = flags.DEFINE_bool(
    "overwrite_trained", False, "With --overwrite: also delete checkpoints that training "
    "wrote in the workdir (refused without it, naming the steps).")


def main(argv):
  path = _WEIGHTS.value
  try:
    kind = pretrained.guess_format(path) if _FORMAT.value == "auto" else _FORMAT.value
    if kind == "torchvision":
      cfg, params = pretrained.import_torchvision(path, configs.get_config("torchvision"))
    else:
      cfg, params = pretrained.import_onnx(path, configs.get_config("caffe"))
    written = pretrained.write_workdir(_WORKDIR.value, cfg, params, path, kind,
                                       overwrite=_OVERWRITE.value,
                                       overwrite_trained=_OVERWRITE_TRAINED.value)
  except (ValueError, OSError, workdir.WorkdirBusy) as e:
    cli.fail(e)
  print(f"wrote {written}: {kind} AlexNet ({cfg.model.num_classes} classes, "
        f"{cfg.data.image_size}x{cfg.data.image_size} input)")


if __name__ == "__main__":
  flags.mark_flags_as_required(["weights", "workdir"])
  cli.run(main, wait_for_writes=True)
