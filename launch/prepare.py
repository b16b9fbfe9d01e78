"""Prepares a dataset once as fixed-size squares (§2) for training: `alexnet_jax.data.prepare`.

    python -m launch.prepare --source=~/data/flowers --out=~/data/flowers-256
    python -m launch.prepare --source=imagenet:~/downloads/ilsvrc2012 --out=~/data/imagenet-256
    python -m launch.prepare --source=tfds:imagenet2012 --tfds_data_dir=~/tensorflow_datasets \\
        --out=~/data/imagenet-256
    python -m launch.prepare --source=tfds:cifar10 --out=~/data/cifar10-32   # --size=32
    python -m launch.prepare --source=~/data/photos --out=~/data/photos-jpeg --encoding=jpeg

A folder source is `<root>/<split>/<class>/<image>`. `imagenet:<folder>` reads ILSVRC-2012 as
downloaded: the official train and val tars with the devkit, Kaggle's layout, or an
extracted copy (alexnet_jax/data/ilsvrc.py); labels are the sorted-WNID order. Rerunning the same command resumes an
interrupted run, or says there is nothing to do; files that do not decode are skipped and
listed in `<out>/skipped.txt`. A rerun also rewrites shards found truncated or damaged;
`--verify` compares every shard's sha256 as well. Ctrl-C stops it at once; rerun to resume.
Train on it with `--config.data.data_dir=<out>`.
"""
from absl import flags

from alexnet_jax.data import prepare
from launch import cli

_SOURCE = flags.DEFINE_string("source", None, "Image folder <root>/<split>/<class>/<image>, "
                              "tfds:<name> (already prepared in --tfds_data_dir), or imagenet:<folder> "
                              "(ILSVRC-2012's tars and devkit, or Kaggle's layout).")
_OUT = flags.DEFINE_string("out", None, "Folder to write the prepared dataset to.")
_SIZE = flags.DEFINE_integer("size", None, "Side of the stored squares (§2); default 256, "
                             "32 for tfds:cifar10 and tfds:cifar100.")
_ENCODING = flags.DEFINE_enum("encoding", "raw", ["raw", "jpeg"],
                              "raw: uint8 pixels (fast to read); jpeg: ~8x smaller on disk.")
_JPEG_QUALITY = flags.DEFINE_integer("jpeg_quality", 95, "JPEG quality, with --encoding=jpeg.")
_SPLITS = flags.DEFINE_list("splits", None, "tfds or imagenet splits to write (default: "
                            "all; imagenet's are train and validation).")
_TFDS_DATA_DIR = flags.DEFINE_string("tfds_data_dir", None, "tfds data_dir of the source.")
_WORKERS = flags.DEFINE_integer("workers", None, "Decoding processes (default: CPU count).")
_PER_SHARD = flags.DEFINE_integer("examples_per_shard", 1024, "Examples per shard.")
_VERIFY = flags.DEFINE_bool("verify", False, "Also check every written shard's sha256 (reads "
                            "them all); damaged shards are written again.")

SMALL = ("tfds:cifar10", "tfds:cifar100")


def main(argv):
  size = _SIZE.value or (32 if _SOURCE.value in SMALL else 256)
  prepare.prepare(_SOURCE.value, _OUT.value, size=size, encoding=_ENCODING.value,
                  jpeg_quality=_JPEG_QUALITY.value, splits=_SPLITS.value,
                  tfds_data_dir=_TFDS_DATA_DIR.value, workers=_WORKERS.value,
                  examples_per_shard=_PER_SHARD.value, verify=_VERIFY.value)


if __name__ == "__main__":
  flags.mark_flags_as_required(["source", "out"])
  cli.run(main, on_interrupt="rerun the same command to resume", wait_for_writes=True,
          runs_xla=False)
