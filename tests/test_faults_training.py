"""Training that survives crashes and Ctrl-C, refuses bad configuration early, and checks
its classes and splits before compiling: each fault reproduced with a real process, signal
or file (issue 25)."""
import os
import signal
import subprocess
import sys
import time

import orbax.checkpoint as ocp
import pytest

from alexnet_jax.programs import train
from alexnet_jax.run import checkpoint
from processes import ROOT, ctrl_c, group_gone, group_killed_after, launch_train, wait_for
from test_train import tiny_config, with_data


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
  with group_killed_after(proc):
    ckpts = workdir / "checkpoints"
    deadline = time.time() + 240
    while time.time() < deadline and not (ckpts.exists() and
                                          any(p.isdigit() and int(p) >= 10 for p in os.listdir(ckpts))):
      time.sleep(0.2)
    assert proc.poll() is None, "training ended before it could be killed"
    os.killpg(proc.pid, signal.SIGKILL)   # mid-step or mid-save, whichever it was doing
    proc.wait(timeout=30)
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


@pytest.mark.slow
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
  with group_killed_after(proc):
    wait_for(lambda: ckpts.exists() and any(p.isdigit() for p in os.listdir(ckpts)), proc,
             "a checkpoint", seconds=240)
    stderr, took = ctrl_c(proc)
  assert took < 30
  assert proc.returncode == 130, stderr[-3000:]
  assert "Traceback" not in stderr, stderr[-3000:]
  # (Last but for grain's resource_tracker warning about shared memory at exit, which any
  # run with worker processes ends with.)
  assert "error: interrupted (Ctrl-C); rerun the same command to resume" in stderr.strip().splitlines()[-3:]
  assert group_gone(proc.pid), "loader workers outlived training"
  assert not (workdir / "LOCK").exists()
  last = max(int(p) for p in os.listdir(ckpts) if p.isdigit())
  rerun = subprocess.run(cmd(last + 5) + ["--resume_with_changes"], cwd=ROOT, capture_output=True,
                         text=True, timeout=300)
  assert rerun.returncode == 0, rerun.stderr[-3000:]
  assert f"resumed from checkpoint {last}" in rerun.stderr
