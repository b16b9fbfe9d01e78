"""The input pipeline (loader.py): epochs, processes, exact resume, evaluation padding."""
import json
import os
import subprocess
import sys

import ml_collections
import numpy as np
import pytest

from alexnet_jax.base import records
from alexnet_jax.data import loader
import helpers
import processes

N = 96


@pytest.fixture(scope="module")
def indexed(tmp_path_factory):
  return helpers.indexed(str(tmp_path_factory.mktemp("indexed")), n=N)


def data_cfg(root, train_split="train"):
  return ml_collections.ConfigDict({"name": "prepared", "data_dir": root,
                                    "train_split": train_split})


def train_split(root):
  return loader.open_split(data_cfg(root))


@pytest.fixture(scope="module")
def tfds_dir(tmp_path_factory):
  pytest.importorskip("tensorflow_datasets")
  return helpers.tfds_indexed(str(tmp_path_factory.mktemp("tfds")), n=48)


def tfds_cfg(root, train_split="train", size=12):
  return ml_collections.ConfigDict({"name": "tfds", "tfds_name": "indexed_shapes",
                                    "data_dir": root, "train_split": train_split,
                                    "resize_size": size})


def indices(it, batches):
  return np.concatenate([helpers.index_of(next(it)["image"]) for _ in range(batches)])


def test_batches_are_uint8_squares_with_their_labels(indexed):
  batch = next(loader.train_batches(train_split(indexed), 8, seed=0))
  assert batch["image"].dtype == np.uint8 and batch["image"].shape == (8, 8, 8, 3)
  np.testing.assert_array_equal(batch["label"], helpers.index_of(batch["image"]) % 4)


def test_every_epoch_is_a_new_permutation_of_the_whole_split(indexed):
  it = loader.train_batches(train_split(indexed), 8, seed=0)
  first, second = indices(it, N // 8), indices(it, N // 8)
  assert sorted(first) == sorted(second) == list(range(N))   # each epoch: every record once
  assert not np.array_equal(first, second)                   # in a new order
  assert not np.array_equal(first, np.arange(N))             # shuffled at all
  # Globally: the first batch draws from the whole split, not from a block of it.
  assert np.ptp(first[:8]) > N // 2


@pytest.mark.parametrize("count", [2, 4])
def test_feeds_read_their_rows_of_the_same_global_batches(indexed, count):
  """Global batch k is the same on any layout: feed i reads block i of its rows."""
  whole = indices(loader.train_batches(train_split(indexed), 8, seed=0), 2 * N // 8)
  parts = [indices(loader.train_batches(train_split(indexed), 8, seed=0, feed_index=i,
                                        feed_count=count), 2 * N // 8) for i in range(count)]
  rows = 8 // count
  joined = np.stack([p.reshape(-1, rows) for p in parts], 1).reshape(-1)
  np.testing.assert_array_equal(joined, whole)
  assert not set(parts[0][:N // count]) & set(parts[1][:N // count])


@pytest.mark.parametrize("workers", [0, pytest.param(2, marks=pytest.mark.slow)])
def test_start_resumes_at_that_global_batch(indexed, workers):
  it = loader.train_batches(train_split(indexed), 8, seed=3, workers=workers)
  indices(it, 17)                          # past the first epoch (12 batches)
  expected = indices(it, 5)
  it.close()
  again = loader.train_batches(train_split(indexed), 8, seed=3, start=17, workers=workers)
  np.testing.assert_array_equal(indices(again, 5), expected)
  again.close()
  # On two feeds (a resume on another number of processes) the rows are the same.
  halves = [loader.train_batches(train_split(indexed), 8, seed=3, start=17, feed_index=i,
                                 feed_count=2) for i in range(2)]
  joined = np.stack([indices(h, 5).reshape(5, 4) for h in halves], 1).reshape(-1)
  np.testing.assert_array_equal(joined, expected)


def test_device_iterator_thread_raises_the_host_error_in_the_loop(indexed):
  def put(batch):
    raise OSError("disk gone")
  it = loader.DeviceIterator(loader.train_batches(train_split(indexed), 8, seed=0), put)
  with pytest.raises(OSError, match="disk gone"):
    next(it)
  it.close()


@pytest.mark.parametrize("count", [1, 3])
def test_evaluation_sees_every_example_once_with_padding_masked(indexed, count):
  spec, batch = "test[:50]", 8
  seen, lengths = [], set()
  for p in range(count):
    batches = list(loader.eval_batches(loader.open_split(data_cfg(indexed), spec), batch,
                                       feed_index=p, feed_count=count))
    lengths.add(len(batches))
    for b in batches:
      assert b["image"].shape[0] == batch and b["image"].dtype == np.uint8
      seen.extend(helpers.index_of(b["image"])[b["mask"] > 0])
  assert lengths == {loader.num_eval_batches(50, batch, count)}   # processes stay in step
  assert sorted(seen) == list(range(50))


def test_slices_partition_a_split_and_bad_specs_are_one_line_errors(indexed):
  info = records.read_info(indexed)
  assert records.resolve_split(info, "train[:90%]") == ("train", 0, 86)
  assert records.resolve_split(info, "train[90%:]") == ("train", 86, N)
  assert records.resolve_split(info, "test[-10:]") == ("test", 86, N)
  with pytest.raises(ValueError, match=r"'validation' is not in the dataset "
                                       r"\(splits: test, train"):
    records.resolve_split(info, "validation")
  with pytest.raises(ValueError, match="is empty"):
    records.resolve_split(info, "train[50%:10%]")


def test_an_image_folder_is_not_prepared_data_and_the_error_says_what_to_run(tmp_path):
  (tmp_path / "train" / "cat").mkdir(parents=True)
  with pytest.raises(ValueError, match="python -m launch.prepare --source="):
    loader.Split(str(tmp_path), "train")
  with pytest.raises(ValueError, match="does not exist"):
    loader.Split(str(tmp_path / "nowhere"), "train")


def test_the_training_path_does_not_import_tensorflow():
  code = ("import sys; import alexnet_jax.programs.train, alexnet_jax.programs.inference, alexnet_jax.programs.features, "
          "alexnet_jax.programs.benchmark, alexnet_jax.data.synthetic, alexnet_jax.data.prepare; "
          "print(sorted(m for m in sys.modules if m.split('.')[0] == 'tensorflow'))")
  out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                       cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
  assert out.stdout.strip() == "[]"


def test_a_tfds_dataset_is_read_directly_as_squares_with_its_labels(tfds_dir):
  split = loader.open_split(tfds_cfg(tfds_dir), "train")
  assert len(split) == 48 and split.info["class_names"] == [f"class{c}" for c in range(4)]
  examples = [split[i] for i in range(len(split))]
  assert all(e["image"].shape == (12, 12, 3) and e["image"].dtype == np.uint8
             for e in examples)                               # 12x13, 12x14 squared (§2)
  index = helpers.index_of(np.stack([e["image"] for e in examples]))
  assert sorted(index) == list(range(48))
  assert [int(e["label"]) for e in examples] == [i % 4 for i in index]
  # One epoch of batches is a permutation; a slice pair partitions the split.
  it = loader.train_batches(loader.open_split(tfds_cfg(tfds_dir)), 8, seed=0)
  assert sorted(indices(it, 6)) == list(range(48))
  halves = [loader.open_split(tfds_cfg(tfds_dir), s) for s in ("test[:50%]", "test[50%:]")]
  assert sorted(helpers.index_of(np.stack([h[i]["image"] for h in halves
                                           for i in range(len(h))]))) == list(range(48))


def test_a_tfds_dataset_without_random_access_is_a_one_line_error(tmp_path):
  pytest.importorskip("tensorflow_datasets")
  cfg = tfds_cfg(str(tmp_path))
  with pytest.raises(ValueError, match="tfds knows no such dataset, and none is built in"):
    loader.open_split(cfg, "train")
  cfg.tfds_name = "cifar10"
  with pytest.raises(ValueError, match="'cifar10' is not built in .*training never downloads"):
    loader.open_split(cfg, "train")
  helpers.tfds_indexed(str(tmp_path), n=4, file_format="tfrecord")
  with pytest.raises(ValueError, match="stored as tfrecord, which has no random access: "
                                       "rebuild it with --file_format=array_record"):
    loader.open_split(tfds_cfg(str(tmp_path)), "train")   # indexed_shapes, now as tfrecord


@pytest.mark.slow
def test_training_on_a_tfds_dataset_needs_no_tensorflow(tfds_dir, tmp_path):
  """launch.train on the tfds dataset, in a process where `import tensorflow` fails."""
  blocker = tmp_path / "no_tf" / "tensorflow"
  blocker.mkdir(parents=True)
  (blocker / "__init__.py").write_text("raise ImportError('TensorFlow is blocked here')\n")
  root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
  env = processes.child_env(PYTHONPATH=str(blocker.parent))
  flags = ["--config=experiments/quickstart.py", f"--workdir={tmp_path / 'run'}",
           "--config.data.name=tfds", "--config.data.tfds_name=indexed_shapes",
           f"--config.data.data_dir={tfds_dir}", "--config.data.eval_split=test",
           "--config.model.num_classes=4", "--config.batch_size=8",
           "--config.num_train_steps=4", "--config.log_every_steps=2",
           "--config.eval_every_steps=4", "--config.checkpoint_every_steps=4"]
  proc = subprocess.run([sys.executable, "-m", "launch.train", *flags], cwd=root, env=env,
                        capture_output=True, text=True, timeout=300)
  assert proc.returncode == 0, proc.stderr[-3000:]
  metrics = [json.loads(line) for line in open(tmp_path / "run" / "metrics.jsonl")]
  assert metrics[-1]["step"] == 4 and "eval_top1_error" in metrics[-1]
