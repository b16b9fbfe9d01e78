"""Faults a user meets, each reproduced with a real process, signal or damaged file:
training that survives crashes and refuses bad configuration early; damaged prepared data;
Ctrl-C; outputs that cannot be written; inputs that are one-line errors (issue 25)."""
import json
import os
import shutil
import signal
import subprocess
import sys
import time

import numpy as np
import orbax.checkpoint as ocp
import pytest
from PIL import Image

import helpers
from alexnet_jax.base import records
from alexnet_jax.data import dataset as data, loader, prepare, synthetic
from alexnet_jax.programs import train
from alexnet_jax.run import checkpoint
from test_train import tiny_config, with_data

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

TINY_FLAGS = ["--config=experiments/quickstart.py", "--config.batch_size=16",
              "--config.model.features=(16,32,48,48,32)", "--config.model.fc_features=(64,64)",
              "--config.mesh_shape=(1,1)", "--config.log_every_steps=5",
              "--config.eval_every_steps=1000", "--config.eval_batches=1"]


def launch_train(workdir, *flags):
  return [sys.executable, "-m", "launch.train", f"--workdir={workdir}", *TINY_FLAGS, *flags]


@pytest.mark.parametrize("overrides,message", [
    ({"batch_size": 6, "mesh_shape": (4, 2)}, "batch_size=6 is not divisible by the 4"),
    ({"mesh_shape": (16, 1)}, "needs 16 devices, but 8 are present"),
    ({"data.image_size": 24}, "image_size=24 is too small"),
    ({"data.name": "imagenet2012"}, "data.name must be one of .* got 'imagenet2012' "
                                    r"\(an image folder is prepared first"),
    ({"data.name": "tfds"}, "data.tfds_name is not set"),
    ({"data.name": "tfds", "data.tfds_name": "no_such_dataset_xyz", "data.data_dir": "/tmp"},
     "data.tfds_name 'no_such_dataset_xyz': tfds knows no such dataset"),
    ({"data.name": "prepared", "data.data_dir": "/no/such/dir"},
     "'/no/such/dir' is not a prepared dataset .* does not exist"),
    ({"batch_size": 0}, "batch_size must be at least 1, got 0"),
    ({"data.input_scale": "raw"}, "data.input_scale must be one of"),
])
def test_bad_configuration_fails_before_anything_runs(tmp_path, overrides, message):
  cfg = tiny_config()
  for key, value in overrides.items():
    node, field = (cfg.data, key[5:]) if key.startswith("data.") else (cfg, key)
    node[field] = value
  with pytest.raises(ValueError, match=message):
    train.train_and_evaluate(cfg, str(tmp_path))
  assert not os.path.exists(tmp_path / "checkpoints")


@pytest.mark.parametrize("flag,message", [
    ("--config.data.image_size=24", "error: data.image_size=24 is too small"),
    ("--config.batch_size=0", "error: batch_size must be at least 1, got 0"),
    ("--config.modle.lrn=False", "error: bad config override: 'modle' Did you mean \"model\""),
    ("--no_such_flag", "error: Unknown command line flag 'no_such_flag'"),
    ("--config.model.preset=owt", "error: bad config override: no config field 'preset' "
                                  "(--config.model.preset)"),
    ("--config.mesh_shape=abc", "error: bad config override: --config.mesh_shape=abc: "
                                "mesh_shape must be a tuple of 2 integers, like "
                                "--config.mesh_shape=(0,0); got "),
])
def test_launch_reports_a_bad_configuration_in_one_line(tmp_path, flag, message):
  proc = subprocess.run(launch_train(tmp_path, flag), capture_output=True, text=True,
                        timeout=120)
  assert proc.returncode != 0
  last = proc.stderr.strip().splitlines()[-1]
  assert last.startswith(message), last
  assert "Traceback" not in proc.stderr


@pytest.mark.slow
def test_failed_checkpoint_write_keeps_the_previous_one(shapes_dir, tmp_path, monkeypatch):
  cfg = with_data(tiny_config(num_train_steps=10, checkpoint_every_steps=5,
                              eval_every_steps=1000), shapes_dir)
  real_save = ocp.CheckpointManager.save

  def save(self, step, *args, **kwargs):
    if step == 10:
      raise OSError(28, "No space left on device")
    return real_save(self, step, *args, **kwargs)

  monkeypatch.setattr(ocp.CheckpointManager, "save", save)
  with pytest.raises(OSError, match=r"could not write checkpoint 10 in .*No space left"):
    train.train_and_evaluate(cfg, str(tmp_path))
  monkeypatch.undo()
  manager = checkpoint.create_manager(str(tmp_path), read_only=True)
  assert manager.all_steps() == [5]
  state, _ = checkpoint.restore(manager, 5, train.Trainer(cfg).abstract_state)
  assert int(state.step) == 5


@pytest.mark.slow
def test_kill_9_then_rerun_resumes_from_the_last_complete_checkpoint(shapes_dir, tmp_path):
  workdir = tmp_path / "run"
  cmd = lambda steps: launch_train(
      workdir, f"--config.num_train_steps={steps}", "--config.checkpoint_every_steps=5",
      "--config.data.name=prepared", f"--config.data.data_dir={shapes_dir}")
  proc = subprocess.Popen(cmd(400), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                          start_new_session=True)
  try:
    ckpts = workdir / "checkpoints"
    deadline = time.time() + 240
    while time.time() < deadline and not (ckpts.exists() and
                                          any(p.isdigit() and int(p) >= 10 for p in os.listdir(ckpts))):
      time.sleep(0.2)
    assert proc.poll() is None, "training ended before it could be killed"
    os.killpg(proc.pid, signal.SIGKILL)   # mid-step or mid-save, whichever it was doing
    proc.wait(timeout=30)
  finally:
    if proc.poll() is None:
      os.killpg(proc.pid, signal.SIGKILL)
  complete = sorted(int(p) for p in os.listdir(ckpts) if p.isdigit())
  assert complete and complete[-1] >= 10
  # What a kill during a save leaves behind: an unfinished temporary directory.
  partial = ckpts / f"{complete[-1] + 5}.orbax-checkpoint-tmp-1"
  partial.mkdir()
  (partial / "state").mkdir()
  (partial / "state" / "half_written").write_bytes(b"\0" * 100)

  rerun = subprocess.run(cmd(complete[-1] + 5) + ["--resume_with_changes"], capture_output=True,
                         text=True, timeout=300)
  assert rerun.returncode == 0, rerun.stderr[-2000:]
  assert f"resumed from checkpoint {complete[-1]}" in rerun.stderr
  assert not partial.exists()
  final = sorted(int(p) for p in os.listdir(ckpts) if p.isdigit())
  assert final[-1] == complete[-1] + 5


@pytest.fixture(scope="module")
def with_empty_class(tmp_path_factory):
  """A small shapes folder with an empty class folder 'dog' (sorting between circle and
  hstripes), prepared as a user's folder would be."""
  from alexnet_jax.data import prepare, synthetic
  root = tmp_path_factory.mktemp("empty_class")
  images = synthetic.make_shapes_dataset(str(root / "images"), train_per_class=4,
                                         test_per_class=2, size=72)
  os.makedirs(os.path.join(images, "train", "dog"))
  prepare.prepare(images, str(root / "prepared"), size=72, workers=0)
  return str(root / "prepared")


@pytest.mark.parametrize("change,message", [
    ("num_classes=3", r"has 4 classes \(checker, circle, hstripes, vstripes\) but "
                      r"model.num_classes is 3; set --config.model.num_classes=4"),
    ("num_classes=5", "has 4 classes .* but model.num_classes is 5"),
    ("empty class in the middle", r"class\(es\) with no images in training split 'train': dog"),
    ("eval_split=validation", "split 'validation' is not in the dataset"),
])
def test_classes_and_splits_are_checked_before_training(shapes_dir, with_empty_class, tmp_path,
                                                        change, message):
  cfg = with_data(tiny_config(), shapes_dir)
  if change.startswith("num_classes"):
    cfg.model.num_classes = int(change.split("=")[1])
  elif change.startswith("eval_split"):
    cfg.data.eval_split = change.split("=")[1]
  else:
    cfg = with_data(tiny_config(), with_empty_class)
    cfg.model.num_classes = 5
  with pytest.raises(ValueError, match=message):
    train.train_and_evaluate(cfg, str(tmp_path / "run"))
  assert not os.path.exists(tmp_path / "run" / "checkpoints")


def test_a_busy_workdir_is_refused_and_a_dead_trainers_lock_is_taken_over(shapes_dir,
                                                                          tmp_path):
  import socket
  from alexnet_jax.base import workdir
  cfg = with_data(tiny_config(num_train_steps=2, checkpoint_every_steps=2,
                              eval_every_steps=1000), shapes_dir)
  run = tmp_path / "run"
  os.makedirs(run)
  (run / "LOCK").write_text(f"{socket.gethostname()} {os.getpid()}\n")   # alive: this one
  with pytest.raises(workdir.WorkdirBusy,
                     match=f"in use by process {os.getpid()} on host {socket.gethostname()}"):
    train.train_and_evaluate(cfg, str(run))
  assert not os.path.exists(run / "checkpoints")
  dead = subprocess.Popen([sys.executable, "-c", "pass"])
  dead.wait()
  (run / "LOCK").write_text(f"{socket.gethostname()} {dead.pid}\n")     # killed, never released
  train.train_and_evaluate(cfg, str(run))
  assert os.listdir(run / "checkpoints") == ["2"]
  assert not os.path.exists(run / "LOCK")                                # released at the end


# ------------------------------------------------------------------ helpers for what follows

def launch(module, *args, timeout=180, wrap=lambda cmd: cmd):
  """`python -m <module> args` from the repository root (as `wrap` changes the command);
  the finished process."""
  return subprocess.run(wrap([sys.executable, "-m", module, *map(str, args)]), cwd=ROOT,
                        capture_output=True, text=True, timeout=timeout)


def assert_one_line_error(proc, *parts):
  """Failed, no traceback, and the last line of stderr is `error: ...` holding `parts`."""
  assert proc.returncode != 0, proc.stdout + proc.stderr
  assert "Traceback" not in proc.stderr, proc.stderr[-3000:]
  last = proc.stderr.strip().splitlines()[-1]
  assert last.startswith("error: "), proc.stderr[-3000:]
  for part in parts:
    assert str(part) in last, last
  return last


@pytest.fixture
def read_only():
  """chmod 555 on folders for one test (restored after); under `helpers.permissions_apply`
  a child process, root included, cannot write there."""
  changed = []

  def make(path):
    os.chmod(path, 0o555)
    changed.append(path)
    return path

  yield make
  for path in changed:
    os.chmod(path, 0o755)


def _shapes_source(root, **kwargs):
  kwargs = {"train_per_class": 4, "test_per_class": 2, "size": 72, **kwargs}
  return synthetic.make_shapes_dataset(str(root), **kwargs)


# ------------------------------------------------------------- damaged prepared data

def test_a_truncated_shard_stops_training_naming_it_and_a_rerun_of_prepare_rewrites_it(tmp_path):
  images, out = _shapes_source(tmp_path / "images"), tmp_path / "prepared"
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
  images = _shapes_source(root / "images", train_per_class=3, test_per_class=1, size=8)
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
  images = _shapes_source(tmp_path / "images", train_per_class=1, test_per_class=1, size=8)
  for out in (os.path.join(images, "prepared"), images):
    with pytest.raises(ValueError, match=f"--out {out} is inside the source {images}"):
      prepare.prepare(images, out, size=8, workers=0)
  assert sorted(os.listdir(images)) == ["COMPLETE", "test", "train"]


def test_a_file_skipped_as_unreadable_is_read_when_the_permission_is_fixed(tmp_path):
  images = _shapes_source(tmp_path / "images", train_per_class=2, test_per_class=1, size=8)
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


# ------------------------------------------------------------------------------ Ctrl-C

def _wait_for(predicate, proc, what, seconds=120):
  deadline = time.time() + seconds
  while not predicate():
    assert proc.poll() is None, f"it ended before {what}: {proc.stderr.read()[-2000:]}"
    assert time.time() < deadline, f"no {what} after {seconds} s"
    time.sleep(0.05)


def _group_gone(pgid, seconds=10):
  """True once no process of the group is left (the pool's workers included)."""
  deadline = time.time() + seconds
  while time.time() < deadline:
    try:
      os.killpg(pgid, 0)
    except ProcessLookupError:
      return True
    time.sleep(0.1)
  return False


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
  try:
    _wait_for(lambda: (out / "train-00000-of-00040.array_record").exists(), proc, "a shard")
    second = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert_one_line_error(second, f"{out} is being written by another launch.prepare")
    assert proc.poll() is None, "prepare finished before it could be interrupted"
    os.killpg(proc.pid, signal.SIGINT)                # what Ctrl-C sends: the whole group
    start = time.time()
    _, stderr = proc.communicate(timeout=60)
  finally:
    if proc.poll() is None:
      os.killpg(proc.pid, signal.SIGKILL)
  assert time.time() - start < 30
  assert proc.returncode == 130, stderr[-3000:]
  assert "Traceback" not in stderr, stderr[-3000:]
  assert stderr.strip().splitlines()[-1] == ("error: interrupted (Ctrl-C); rerun the same "
                                             "command to resume")
  assert _group_gone(proc.pid), "worker processes outlived prepare"
  done = [f for f in os.listdir(out) if f.endswith(".array_record")]
  assert 0 < len(done) < 40
  rerun = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=300)
  assert rerun.returncode == 0, rerun.stderr[-3000:]
  info = records.read_info(str(out))
  assert info["splits"]["train"]["num_examples"] == 160
  assert not [f for f in os.listdir(out) if f.endswith(".tmp")]


@pytest.mark.slow
@pytest.mark.parametrize("workers", [0, 2])
def test_ctrl_c_stops_training_with_one_line_and_the_rerun_resumes(shapes_dir, tmp_path,
                                                                   workers):
  """With loader worker processes too: they ignore SIGINT, the trainer stops them."""
  workdir = tmp_path / "run"
  cmd = lambda steps: launch_train(
      workdir, f"--config.num_train_steps={steps}", "--config.checkpoint_every_steps=5",
      "--config.data.name=prepared", f"--config.data.data_dir={shapes_dir}",
      f"--config.data.workers={workers}")
  proc = subprocess.Popen(cmd(1000), cwd=ROOT, stdout=subprocess.DEVNULL,
                          stderr=subprocess.PIPE, text=True, start_new_session=True)
  ckpts = workdir / "checkpoints"
  try:
    _wait_for(lambda: ckpts.exists() and any(p.isdigit() for p in os.listdir(ckpts)), proc,
              "a checkpoint", seconds=240)
    os.killpg(proc.pid, signal.SIGINT)
    start = time.time()
    _, stderr = proc.communicate(timeout=60)
  finally:
    if proc.poll() is None:
      os.killpg(proc.pid, signal.SIGKILL)
  assert time.time() - start < 30
  assert proc.returncode == 130, stderr[-3000:]
  assert "Traceback" not in stderr, stderr[-3000:]
  # (Last but for grain's resource_tracker warning about shared memory at exit, which any
  # run with worker processes ends with.)
  assert "error: interrupted (Ctrl-C); rerun the same command to resume" in stderr.strip().splitlines()[-3:]
  assert _group_gone(proc.pid), "loader workers outlived training"
  assert not (workdir / "LOCK").exists()
  last = max(int(p) for p in os.listdir(ckpts) if p.isdigit())
  rerun = subprocess.run(cmd(last + 5) + ["--resume_with_changes"], cwd=ROOT, capture_output=True,
                         text=True, timeout=300)
  assert rerun.returncode == 0, rerun.stderr[-3000:]
  assert f"resumed from checkpoint {last}" in rerun.stderr


# ------------------------------------------------------- outputs checked before the work

@pytest.fixture(scope="module")
def trained(shapes_dir, tmp_path_factory):
  """A tiny run with one checkpoint (step 2)."""
  workdir = str(tmp_path_factory.mktemp("trained") / "run")
  train.train_and_evaluate(with_data(tiny_config(num_train_steps=2, checkpoint_every_steps=2,
                                                 eval_every_steps=1000), shapes_dir), workdir)
  return workdir


def test_evaluate_on_a_read_only_workdir_stops_before_evaluating(trained, read_only):
  read_only(trained)
  proc = launch("launch.evaluate", f"--workdir={trained}", wrap=helpers.permissions_apply)
  assert_one_line_error(proc, f"the report {trained}/eval_shapes_test_2.json: cannot be "
                              "written: Permission denied")
  assert "evaluating checkpoint" not in proc.stderr


def test_evaluate_prints_its_numbers_before_a_report_write_that_fails(trained):
  proc = launch("launch.evaluate", f"--workdir={trained}",
                wrap=lambda cmd: helpers.file_size_limit(300, cmd))   # the report: ~1 KB
  assert_one_line_error(proc, f"could not write the report {trained}/eval_shapes_test_2.json: "
                              "File too large")
  assert "single-crop: top-1 error" in proc.stdout
  assert not os.path.exists(os.path.join(trained, "eval_shapes_test_2.json"))


def test_ctrl_c_stops_evaluate_within_seconds_with_one_line(trained, tmp_path):
  """Ctrl-C (SIGINT to the process group, as a terminal sends it) in the middle of the
  evaluation: one line, exit status 130, in seconds (it used to wait two minutes for the
  loader's threads, or to finish the evaluation and exit 0)."""
  log = tmp_path / "stderr.txt"
  with open(log, "w") as err:   # 200 batches of one image: the evaluation takes seconds
    proc = subprocess.Popen([sys.executable, "-m", "launch.evaluate", f"--workdir={trained}",
                             "--batch_size=1", "--log_every=1"], cwd=ROOT,
                            stdout=subprocess.DEVNULL, stderr=err, text=True,
                            start_new_session=True)
  try:
    _wait_for(lambda: "evaluated batch 2/" in log.read_text(), proc, "the evaluation",
              seconds=120)
    os.killpg(proc.pid, signal.SIGINT)
    start = time.time()
    proc.wait(timeout=60)
    took = time.time() - start
  finally:
    if proc.poll() is None:
      os.killpg(proc.pid, signal.SIGKILL)
  stderr = log.read_text()
  assert proc.returncode == 130 and "Traceback" not in stderr, stderr[-3000:]
  assert stderr.strip().splitlines()[-1] == "error: interrupted (Ctrl-C)", stderr[-3000:]
  assert took < 8, f"stopped {took:.1f} s after Ctrl-C"
  assert "report:" not in stderr


def test_a_damaged_checkpoint_is_one_line_naming_it_in_evaluate(trained, tmp_path):
  workdir = tmp_path / "run"
  shutil.copytree(trained, workdir)
  os.remove(workdir / "checkpoints" / "2" / "state" / "manifest.ocdbt")
  proc = launch("launch.evaluate", f"--workdir={workdir}")
  assert proc.returncode == 1
  # (tensorstore may print tracebacks of its reads into orbax's closed event loops around
  # it as the process ends: noise that this project cannot silence.)
  error = [line for line in proc.stderr.splitlines() if line.startswith("error: ")]
  assert error and error[0].startswith(f"error: checkpoint 2 in {workdir}/checkpoints cannot "
                                       "be read: it is damaged or incomplete ("), proc.stderr
  assert "other steps: none (--step)" in error[0], error   # (the noise may follow on it)


@pytest.mark.parametrize("size", [0, -3])
def test_evaluate_refuses_a_batch_size_below_one(trained, size):
  proc = launch("launch.evaluate", f"--workdir={trained}", f"--batch_size={size}")
  assert_one_line_error(proc, f"--batch_size must be at least 1, got {size}")


def test_features_makes_the_out_folder_names_the_npz_and_refuses_an_unwritable_one(trained,
                                                                                  tmp_path):
  (tmp_path / "file").write_text("")
  proc = launch("launch.features", f"--workdir={trained}",
                f"--out={tmp_path / 'file' / 'f.npz'}")
  assert_one_line_error(proc, f"--out {tmp_path / 'file' / 'f.npz'}: cannot be written")
  assert "features of" not in proc.stderr                      # nothing was computed
  proc = launch("launch.features", f"--workdir={trained}", f"--out={tmp_path / 'new' / 'f'}")
  assert proc.returncode == 0, proc.stderr[-3000:]
  assert f"wrote {tmp_path / 'new' / 'f.npz'}:" in proc.stdout
  assert np.load(tmp_path / "new" / "f.npz")["features"].shape == (200, 64)


def test_curves_makes_the_out_folder_and_names_rows_without_an_epoch(trained, tmp_path):
  (tmp_path / "file").write_text("")
  proc = launch("launch.curves", f"--out={tmp_path / 'file' / 'c.png'}", trained)
  assert_one_line_error(proc, f"--out {tmp_path / 'file' / 'c.png'}: cannot be written")
  proc = launch("launch.curves", f"--out={tmp_path / 'new' / 'c.png'}", trained)
  assert proc.returncode == 0, proc.stderr[-3000:]
  assert (tmp_path / "new" / "c.png").stat().st_size > 0
  rows = tmp_path / "rows"
  rows.mkdir()
  (rows / "metrics.jsonl").write_text('{"step": 1, "train_loss": 1.0}\n')
  proc = launch("launch.curves", f"--out={tmp_path / 'c.png'}", rows)
  assert_one_line_error(proc, f"{rows / 'metrics.jsonl'}: 1 of 1 rows have no 'epoch' field")


def test_prepare_into_a_read_only_folder_or_onto_a_full_disk_is_one_line(tmp_path, read_only):
  images = _shapes_source(tmp_path / "images", train_per_class=8, test_per_class=1, size=64)
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
  assert (f"holds 72x72 squares: every batch is resized to 80x80 on the device (prepare it "
          "with --size=80 to skip that)") in caplog.text


# ------------------------------------------------------------- inputs named in one line

@pytest.mark.parametrize("text,message", [
    ("def get_config(:\n  pass\n", "syntax error at {path}:1: invalid syntax"),
    ("def get_config():\n  raise ValueError('no such preset')\n",
     "get_config() raised ValueError at {path}:2: no such preset"),
    ("def get_config():\n  return {}['model']\n", "get_config() raised KeyError at {path}:2: "
                                                  "model"),
    (None, "no such file"),
])
def test_a_config_file_that_does_not_load_is_named_in_one_line(tmp_path, text, message):
  path = tmp_path / "experiment.py"
  if text is not None:
    path.write_text(text)
  proc = launch("launch.train", f"--workdir={tmp_path / 'run'}", f"--config={path}")
  last = assert_one_line_error(proc, f"error: --config={path}: " + message.format(path=path))
  assert "bad config override" not in last


@pytest.mark.parametrize("flags,message", [
    (["--seeds=0,a"], "--seeds: 'a' is not an integer"),
    (["--train_error_thresholds=x"], "--train_error_thresholds: 'x' is not a number"),
    (["--sweep={tmp}/missing.py"], "sweep definition '{tmp}/missing.py': no such file"),
    (["--sweep={tmp}/broken.py"],
     "sweep definition '{tmp}/broken.py': syntax error at {tmp}/broken.py:2"),
    (["--report_only"], "--root {tmp}/root does not exist: there is nothing to report"),
])
def test_sweep_flags_and_definitions_are_one_line_errors(tmp_path, flags, message):
  (tmp_path / "broken.py").write_text("def get_sweep(cfg):\n  return [{}\n")
  flags = [f.format(tmp=tmp_path) for f in flags]
  if not any(f.startswith("--sweep=") for f in flags):
    flags.append("--sweep=experiments/sweeps/lrn.py")
  proc = launch("launch.sweep", f"--root={tmp_path / 'root'}", *flags)
  assert_one_line_error(proc, message.format(tmp=tmp_path))
