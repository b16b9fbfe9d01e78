"""features.py's Figure 4 helpers (what the neighbours share, which queries to show) and
launch.figure4 on a workdir."""
import json
import os
import subprocess
import sys

import numpy as np
import pytest

from alexnet_jax.programs import features
import processes


def test_same_class_share_counts_the_neighbours_with_the_querys_label():
  database = np.array([[0.0], [1.0], [2.0], [10.0], [11.0], [12.0]])
  labels = np.array([0, 0, 1, 1, 1, 0])
  queries, query_labels = np.array([[0.4], [11.2], [5.8]]), np.array([0, 1, 1])
  # nearest 3: rows 0, 1, 2 -> labels 0, 0, 1; 4, 5, 3 -> 1, 0, 1; 2, 3, 1 -> 1, 1, 0
  share = features.same_class_share(queries, query_labels, database, labels, 3, block=2)
  np.testing.assert_allclose(share, [2 / 3, 2 / 3, 2 / 3])
  np.testing.assert_allclose(features.same_class_share(queries, query_labels, database,
                                                       labels, 1), [1, 1, 1])


def test_pick_queries_takes_one_example_of_each_of_distinct_classes():
  labels = np.repeat(np.arange(10), 7)
  picked = features.pick_queries(labels, 5, seed=3)
  assert len(set(labels[picked])) == 5
  np.testing.assert_array_equal(picked, features.pick_queries(labels, 5, seed=3))
  assert not np.array_equal(picked, features.pick_queries(labels, 5, seed=4))
  few = features.pick_queries(np.array([0, 0, 1, 1, 1]), 3)   # 2 classes: 3 examples
  assert len(set(few)) == 3


@pytest.mark.slow
def test_launch_figure4_draws_held_out_images_beside_their_nearest_training_images(
    shapes_dir, tmp_path):
  """A workdir of random weights on the generated shapes: the grid, and a report whose
  queries are of distinct classes with their neighbours nearest first."""
  import jax
  from alexnet_jax.nn import models
  from alexnet_jax.programs import pretrained
  import helpers

  cfg = helpers.tiny_config(shapes_dir)
  size = cfg.data.image_size
  params = jax.jit(models.create_model(cfg.model, size).init)(
      jax.random.key(0), np.zeros((1, size, size, 3)))["params"]
  source = tmp_path / "weights.bin"
  source.write_bytes(b"random")
  workdir = pretrained.write_workdir(str(tmp_path / "run"), cfg,
                                     jax.tree.map(np.asarray, params), str(source), "random")
  info = json.loads((tmp_path / "run" / "run.json").read_text())   # the shapes' classes
  info["class_names"] = json.loads(open(os.path.join(shapes_dir, "dataset.json")).read()
                                  )["class_names"]
  (tmp_path / "run" / "run.json").write_text(json.dumps(info))
  out = tmp_path / "figure4"
  env = processes.child_env()
  root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
  proc = subprocess.run([sys.executable, "-m", "launch.figure4", f"--workdir={workdir}",
                         f"--out={out}", "--queries=3", "--neighbours=4"], cwd=root, env=env,
                        capture_output=True, text=True, timeout=300)
  assert proc.returncode == 0, proc.stderr[-2000:]
  report = json.loads((out / "figure4.json").read_text())
  assert report["layer"] == "fc7_out" and report["train_images"] == 800
  assert report["held_out_images"] == 200
  assert len({q["class"] for q in report["queries"]}) == 3
  for q in report["queries"]:
    distances = [n["distance"] for n in q["neighbours"]]
    assert len(distances) == 4 and distances == sorted(distances)
  assert 0 <= report["same_class_share"] <= 1 and 0 <= report["nearest_same_class"] <= 1
  assert (out / "figure4.png").stat().st_size > 5000
