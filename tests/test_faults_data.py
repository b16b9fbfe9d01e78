"""Damaged or half-written prepared data, and `launch.prepare` interrupted, refused or out
of disk: each a one-line error naming the file, nothing already written lost (issue 25)."""
import json
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

import helpers
from alexnet_jax.base import records
from alexnet_jax.data import dataset as data, loader, prepare
from alexnet_jax.programs import train
from processes import (ROOT, assert_one_line_error, ctrl_c, group_gone, group_killed_after,
                       launch, shapes_source, wait_for)
from test_train import tiny_config, with_data


# ------------------------------------------------------------- damaged prepared data

def test_a_truncated_shard_stops_training_naming_it_and_a_rerun_of_prepare_rewrites_it(tmp_path):
  images, out = shapes_source(tmp_path / "images"), tmp_path / "prepared"
  flags = [f"--source={images}", f"--out={out}", "--size=72", "--examples_per_shard=4",
           "--workers=0"]
  assert launch("launch.prepare", *flags).returncode == 0
  shard = out / "train-00001-of-00004.array_record"
  whole = shard.read_bytes()
  shard.write_bytes(whole[:len(whole) // 2])            # as a disk that filled up leaves it
  with pytest.raises(ValueError, match=f"{shard} has {len(whole) // 2} bytes, but {len(whole)} "
                                       r"were written .* --verify"):
    train.train_and_evaluate(tiny_config(data_dir=str(out)), str(tmp_path / "run"))
  assert not (tmp_path / "run" / "checkpoints").exists()   # stopped before compiling
  rerun = launch("launch.prepare", *flags)
  assert rerun.returncode == 0, rerun.stderr
  assert f"{shard} has {len(whole) // 2} bytes, not the {len(whole)} written; writing it " \
         "again" in rerun.stderr
  assert shard.read_bytes() == whole
  assert len(loader.Split(str(out), "train")) == 16
  # A changed byte keeps the size and the record count: only --verify reads the checksum.
  shard.write_bytes(whole[:100] + bytes([whole[100] ^ 1]) + whole[101:])
  assert prepare.prepare(str(images), str(out), size=72, examples_per_shard=4, workers=0)
  assert shard.read_bytes() != whole
  verify = launch("launch.prepare", *flags, "--verify")
  assert "has another sha256 than when it was written; writing it again" in verify.stderr
  assert shard.read_bytes() == whole


@pytest.fixture(scope="module")
def prepared(tmp_path_factory):
  """A small prepared dataset (3 shards of train, 1 of test) and its source folder."""
  root = tmp_path_factory.mktemp("prepared")
  images = shapes_source(root / "images", train_per_class=3, test_per_class=1, size=8)
  prepare.prepare(images, str(root / "out"), size=8, examples_per_shard=4, workers=0)
  return images, str(root / "out")


def _edited_info(prepared, tmp_path, edit):
  out = str(tmp_path / "out")
  shutil.copytree(prepared[1], out)
  path = records.info_path(out)
  with open(path) as f:
    info = json.load(f)
  text = edit(info)
  with open(path, "w") as f:
    f.write(text if isinstance(text, str) else json.dumps(info))
  return out, path


@pytest.mark.parametrize("edit,message", [
    (lambda i: i["splits"]["train"].update(num_examples=13),
     r"split 'train' has num_examples 13 but its class_counts add up to 12"),
    (lambda i: i["splits"]["train"].update(num_examples=11, class_counts=[2, 3, 3, 3]),
     r"split 'train' has num_examples 11 but its 3 shard\(s\) hold 12 records"),
    (lambda i: i["splits"]["test"].update(class_counts=[1, 1, 2]),
     r"split 'test' has 3 class_counts for 4 class_names"),
    (lambda i: i.pop("class_names"), "has no class_names: not a dataset.json that "
                                     "launch.prepare wrote"),
    (lambda i: i.pop("splits"), "has no splits"),
    (lambda i: i.pop("image_size"), "has no image_size"),
    (lambda i: '{"format_version": 1, "splits": {', r"is not valid JSON \(Expecting"),
])
def test_a_dataset_json_that_does_not_fit_its_shards_is_one_line_naming_it(prepared, tmp_path,
                                                                           edit, message):
  out, path = _edited_info(prepared, tmp_path, edit)
  cfg = tiny_config(data_dir=out, **{"data.eval_split": "test", "model.num_classes": 4})
  with pytest.raises(ValueError, match=f"^{path}:? {message}"):
    for spec in ("train", "test"):   # what training opens before compiling
      loader.open_split(cfg.data, spec)


def test_a_record_count_that_disagrees_with_dataset_json_names_the_shard(prepared, tmp_path):
  out, path = _edited_info(prepared, tmp_path,
                           lambda i: i["splits"]["test"]["shards"][0].update(records=5))
  shard = os.path.join(out, "test-00000-of-00001.array_record")
  with pytest.raises(ValueError, match=f"^{shard} holds 4 records, but {path} says 5"):
    loader.Split(out, "test")


def test_a_half_written_prepared_folder_is_told_to_finish_with_its_own_source(prepared,
                                                                             tmp_path):
  out = str(tmp_path / "out")
  shutil.copytree(prepared[1], out)
  os.remove(records.info_path(out))                 # the last file prepare writes
  with pytest.raises(ValueError, match="unfinished launch.prepare output; finish it with the "
                     f"command that wrote it: python -m launch.prepare --source={prepared[0]} "
                     f"--out={out}$"):
    records.read_info(out)


def test_prepare_refuses_an_out_inside_its_source(tmp_path):
  images = shapes_source(tmp_path / "images", train_per_class=1, test_per_class=1, size=8)
  for out in (os.path.join(images, "prepared"), images):
    with pytest.raises(ValueError, match=f"--out {out} is inside the source {images}"):
      prepare.prepare(images, out, size=8, workers=0)
  assert sorted(os.listdir(images)) == ["COMPLETE", "test", "train"]


def test_a_file_skipped_as_unreadable_is_read_when_the_permission_is_fixed(tmp_path):
  images = shapes_source(tmp_path / "images", train_per_class=2, test_per_class=1, size=8)
  locked = os.path.join(images, "train", "circle", "0001.jpg")
  os.chmod(locked, 0)
  flags = [f"--source={images}", f"--out={tmp_path / 'out'}", "--size=8", "--workers=0"]
  first = launch("launch.prepare", *flags, wrap=helpers.permissions_apply)
  assert first.returncode == 0, first.stderr
  skipped = (tmp_path / "out" / prepare.SKIPPED_FILE).read_text()
  assert skipped == os.path.join("train", "circle", "0001.jpg") + \
      "\tcannot read: Permission denied\n"
  os.chmod(locked, 0o644)
  second = launch("launch.prepare", *flags, wrap=helpers.permissions_apply)
  assert "0001.jpg was skipped as unreadable and can be read now" in second.stderr
  assert (tmp_path / "out" / prepare.SKIPPED_FILE).read_text() == ""
  assert records.read_info(str(tmp_path / "out"))["splits"]["train"]["num_examples"] == 8


@pytest.mark.slow
def test_ctrl_c_stops_prepare_and_its_workers_at_once_and_two_prepares_never_share_an_out(
    tmp_path):
  big = np.add.outer(np.arange(2000), np.arange(2000)).astype(np.uint8)   # slow to decode
  Image.fromarray(big).save(tmp_path / "big.png")
  for c in ("a", "b"):
    os.makedirs(tmp_path / "src" / "train" / c)
    for i in range(80):
      shutil.copy(tmp_path / "big.png", tmp_path / "src" / "train" / c / f"{i}.png")
  out = tmp_path / "out"
  cmd = [sys.executable, "-m", "launch.prepare", f"--source={tmp_path / 'src'}", f"--out={out}",
         "--size=32", "--workers=2", "--examples_per_shard=4"]
  proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                          text=True, start_new_session=True)   # a group, as a terminal's job
  with group_killed_after(proc):
    wait_for(lambda: (out / "train-00000-of-00040.array_record").exists(), proc, "a shard")
    second = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert_one_line_error(second, f"{out} is being written by another launch.prepare")
    assert proc.poll() is None, "prepare finished before it could be interrupted"
    stderr, took = ctrl_c(proc)
  assert took < 30
  assert proc.returncode == 130, stderr[-3000:]
  assert "Traceback" not in stderr, stderr[-3000:]
  assert stderr.strip().splitlines()[-1] == ("error: interrupted (Ctrl-C); rerun the same "
                                             "command to resume")
  assert group_gone(proc.pid), "worker processes outlived prepare"
  done = [f for f in os.listdir(out) if f.endswith(".array_record")]
  assert 0 < len(done) < 40
  rerun = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=300)
  assert rerun.returncode == 0, rerun.stderr[-3000:]
  info = records.read_info(str(out))
  assert info["splits"]["train"]["num_examples"] == 160
  assert not [f for f in os.listdir(out) if f.endswith(".tmp")]


def test_prepare_into_a_read_only_folder_or_onto_a_full_disk_is_one_line(tmp_path, read_only):
  images = shapes_source(tmp_path / "images", train_per_class=8, test_per_class=1, size=64)
  (tmp_path / "out").mkdir()
  out = read_only(tmp_path / "out")
  proc = launch("launch.prepare", f"--source={images}", f"--out={out}", "--size=64",
                wrap=helpers.permissions_apply)
  assert_one_line_error(proc, f"--out {out} cannot be written: Permission denied")
  full = tmp_path / "full"   # a shard of 32 images of 64x64 is 390 KB: past the limit
  proc = launch("launch.prepare", f"--source={images}", f"--out={full}", "--size=64",
                wrap=lambda cmd: helpers.file_size_limit(100_000, cmd))
  assert_one_line_error(proc, f"could not write {full}/")
  assert not (full / records.INFO_FILE).exists()


def test_the_quick_starts_data_generation_on_a_full_disk_is_one_line(tmp_path):
  proc = launch("launch.train", "--config=experiments/quickstart.py",
                f"--workdir={tmp_path / 'run'}",
                wrap=lambda cmd: helpers.file_size_limit(100_000, cmd))
  assert_one_line_error(proc, f"cannot write the generated dataset {tmp_path / 'run'}/shapes")
  assert not (tmp_path / "run" / "shapes").exists()


def test_a_log_line_says_when_prepared_squares_are_resized_on_the_device(shapes_dir, caplog):
  cfg = with_data(tiny_config(), shapes_dir)
  cfg.data.resize_size = 80
  with caplog.at_level("INFO"):
    data.check_classes(cfg.data, loader.open_split(cfg.data), 4)
  assert ("holds 72x72 squares: every batch is resized to 80x80 on the device (prepare it "
          "with --size=80 to skip that)") in caplog.text
