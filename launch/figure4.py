"""The paper's Figure 4 (right) for a trained run: held-out images and the training images
nearest to them in fc7 (Euclidean distance, §6.1).

    python -m launch.figure4 --workdir=runs/t2_s0 --out=experiments/results/figure3

Extracts fc7 (after its ReLU, centre crops) of the run's eval split (the held-out images)
and of its training split, picks --queries held-out images of distinct classes (seeded),
and draws each beside its --neighbours nearest training images (`figure4.png`). Over every
held-out image it also measures what the neighbours share: the share of the nearest
training images with the query's class, and the nearest one's (a 1-nearest-neighbour
classifier's accuracy), written with the shown queries to `figure4.json`.
"""
import json
import os
import sys

from absl import flags

from alexnet_jax.programs import features, inference
from launch import cli

_WORKDIR = flags.DEFINE_string("workdir", None, "A training workdir.")
_OUT = flags.DEFINE_string("out", None, "Folder for figure4.png and figure4.json.")
_STEP = flags.DEFINE_string("step", "latest", "latest, best, or a step number.")
_QUERIES = flags.DEFINE_integer("queries", 5, "Held-out images shown, of distinct classes.")
_NEIGHBOURS = flags.DEFINE_integer("neighbours", 6, "Nearest training images per query.")
_SEED = flags.DEFINE_integer("seed", 0, "Seeds the choice of the shown queries.")


def main(argv):
  del argv
  png, report = (os.path.join(_OUT.value, name) for name in ("figure4.png", "figure4.json"))
  try:
    cli.check_writable(png, "--out")
    restored = inference.load(_WORKDIR.value, _STEP.value)
    data = restored.cfg.data
    held = features.extract(restored, data.eval_split, progress=True)
    train = features.extract(restored, data.train_split, progress=True)
    queries = features.pick_queries(held["labels"], _QUERIES.value, _SEED.value)
    idx, dist = features.nearest(held["features"][queries], train["features"], _NEIGHBOURS.value)
    names = inference.readable_names(restored.class_names)
    shown = features.images_at(train["split"], data, idx.reshape(-1))
    features.save_grid(
        png, features.images_at(held["split"], data, queries),
        shown.reshape(*idx.shape, *shown.shape[1:]),
        [f"held out: {names[held['labels'][q]]}" for q in queries],
        [[f"{names[train['labels'][j]]} ({d:.3g})" for j, d in zip(row, drow)]
         for row, drow in zip(idx, dist)])
    share = features.same_class_share(held["features"], held["labels"], train["features"],
                                      train["labels"], _NEIGHBOURS.value)
    first = features.same_class_share(held["features"], held["labels"], train["features"],
                                      train["labels"], 1)
    result = {
        "command": " ".join(["python -m launch.figure4", *sys.argv[1:]]),
        "workdir": _WORKDIR.value, "step": restored.step, "layer": held["layer"],
        "held_out_split": data.eval_split, "train_split": data.train_split,
        "held_out_images": len(held["labels"]), "train_images": len(train["labels"]),
        "neighbours": _NEIGHBOURS.value,
        "same_class_share": float(share.mean()), "nearest_same_class": float(first.mean()),
        "queries": [{"index": int(q), "class": names[held["labels"][q]],
                     "neighbours": [{"index": int(j), "class": names[train["labels"][j]],
                                     "distance": float(d)} for j, d in zip(row, drow)]}
                    for q, row, drow in zip(queries, idx, dist)]}
    with open(report, "w") as f:
      json.dump(result, f, indent=1)
  except (ValueError, FileNotFoundError, OSError) as e:
    cli.fail(e)
  print(f"wrote {png} and {report}: {len(queries)} held-out images of {data.eval_split}, "
        f"{idx.shape[1]} nearest of {len(train['labels'])} training images each; over all "
        f"{len(held['labels'])} held-out images {share.mean():.1%} of the {idx.shape[1]} "
        f"nearest share the query's class ({first.mean():.1%} of the nearest)")


if __name__ == "__main__":
  flags.mark_flags_as_required(["workdir", "out"])
  cli.run(main)
