"""Features (fc7, or any --layer) of a split or of image files, and a nearest-neighbour
grid like the paper's Figure 4 (right).

    python -m launch.features --workdir=/tmp/quickstart --split=test --out=feats.npz
    python -m launch.features --workdir=/tmp/quickstart --neighbours=6 --queries=5 --png=nn.png
    python -m launch.features --workdir=runs/torchvision_alexnet --layer=conv5 --out=f.npz *.jpg

--layer: conv1 ... conv5 (after ReLU), fc6, fc7 (after ReLU) or logits; fc7 by default.
--out writes features [N, D] (each image's activations flattened; `shape` is one image's
unflattened), the layer's name and the class names, and labels [N] for a split or `files`
for image files (read as launch.predict reads them). With
--neighbours, each of the first --queries images of --split (default: the run's eval split)
is shown beside its nearest images of --train_split (default: the run's training split,
centre crops) by Euclidean distance between their features. Slicing keeps this fast on
big sets: --train_split='train[:10000]'.
"""
import numpy as np
from absl import app, flags, logging

from alexnet_jax.programs import features, inference
from launch import cli

_WORKDIR = flags.DEFINE_string("workdir", None, "Training workdir (run.json, checkpoints/).")
_STEP = flags.DEFINE_string("step", "latest", "Checkpoint: 'latest', 'best' or a step number.")
_SPLIT = flags.DEFINE_string("split", None, "Split to export (default: the run's eval split).")
_OUT = flags.DEFINE_string("out", None, "Write the features to this .npz file.")
_DATA_DIR = flags.DEFINE_string("data_dir", None, "Override the run's data.data_dir.")
_BATCH = flags.DEFINE_integer("batch_size", None, "Batch size (default: the run's).")
_NEIGHBOURS = flags.DEFINE_integer("neighbours", 0, "Nearest training images per query.")
_QUERIES = flags.DEFINE_integer("queries", 8, "Query images (the first of --split).")
_TRAIN_SPLIT = flags.DEFINE_string("train_split", None, "Where neighbours come from "
                                   "(default: the run's training split).")
_PNG = flags.DEFINE_string("png", None, "Write the neighbour grid to this PNG.")
_LAYER = flags.DEFINE_string("layer", None, "conv1..conv5, fc6, fc7 or logits (default fc7).")


def _files(restored, paths):
  """--out for image files: the layer's activations, flattened, and their shape."""
  layer = _LAYER.value or features.feature_layer(restored.cfg.model)
  acts = features.activations(restored, inference.load_images(restored.cfg.data, paths),
                              [layer])[layer]
  np.savez(_OUT.value, features=acts.reshape(len(acts), -1), shape=acts.shape[1:],
           layer=features.layer_name(restored.cfg.model, layer), files=np.asarray(paths),
           step=restored.step, class_names=np.asarray(restored.class_names))
  print(f"wrote {_OUT.value}: {layer} features {acts.shape} of {len(paths)} images, "
        f"checkpoint {restored.step}")


def main(argv):
  if len(argv) > 1 and (_PNG.value or not _OUT.value):
    raise app.UsageError("image files go with --out (and not --png)")
  if not _OUT.value and not _PNG.value:
    raise app.UsageError("give --out (features) and/or --png with --neighbours (grid)")
  if bool(_PNG.value) != (_NEIGHBOURS.value > 0):
    raise app.UsageError("--png and --neighbours go together")
  if _BATCH.value is not None and _BATCH.value < 1:
    cli.fail(ValueError(f"--batch_size must be at least 1, got {_BATCH.value}"))
  out = _OUT.value and (_OUT.value if _OUT.value.endswith(".npz") else _OUT.value + ".npz")
  # Before any work: nothing computed is lost for want of a folder.
  for path, flag in ((out, "--out"), (_PNG.value, "--png")):
    if path:
      cli.check_writable(path, flag)
  restored = inference.load(_WORKDIR.value, _STEP.value, batch_size=_BATCH.value)
  if len(argv) > 1:
    return _files(restored, argv[1:])
  data = restored.cfg.data
  split = _SPLIT.value or data.eval_split
  query = features.extract(restored, split, data_dir=_DATA_DIR.value,
                           keep_images=_QUERIES.value if _PNG.value else 0, progress=True,
                           layer=_LAYER.value)
  logging.info("%s features of %d images of %s: %s", query["layer"], len(query["labels"]),
               split, query["features"].shape)
  extra = {}
  if _PNG.value:
    train_split = _TRAIN_SPLIT.value or data.train_split
    train = features.extract(restored, train_split, data_dir=_DATA_DIR.value,
                             progress=True, layer=_LAYER.value)
    idx, dist = features.neighbour_grid(
        restored, query, train, neighbours=_NEIGHBOURS.value, queries=_QUERIES.value,
        path=_PNG.value)
    extra = {"neighbour_indices": idx, "neighbour_distances": dist,
             "train_split": train_split}
    print(f"wrote {_PNG.value}: {len(idx)} queries from {split}, {idx.shape[1]} nearest of "
          f"{len(train['labels'])} images of {train_split} each")
  if out:
    try:
      np.savez(out, features=query["features"], labels=query["labels"],
               layer=query["layer"], split=split, step=restored.step,
               class_names=np.asarray(restored.class_names), **extra)
    except OSError as e:
      cli.fail(OSError(f"could not write {out}: {e.strerror or e}"))
    print(f"wrote {out}: {query['layer']} features {query['features'].shape} of {split}, "
          f"checkpoint {restored.step}")


if __name__ == "__main__":
  flags.mark_flags_as_required(["workdir"])
  cli.run(main, takes_args=True)
