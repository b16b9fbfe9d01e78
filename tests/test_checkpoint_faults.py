"""What clusters do to a run: SIGTERM before a stop, and checkpoints damaged afterwards."""
import os
import re
import shutil
import signal
import subprocess
import time

import pytest

from alexnet_jax.programs import train
from alexnet_jax.run import checkpoint
import helpers
from processes import group_killed_after, launch_train, wait_for
from test_train import tiny_config, with_data


def steps_in(ckpts):
  return sorted(int(p) for p in os.listdir(ckpts) if p.isdigit()) if ckpts.exists() else []


@pytest.mark.slow
def test_sigterm_saves_at_the_next_step_and_exits_0(shapes_dir, tmp_path):
  workdir = tmp_path / "run"
  cmd = launch_train(workdir, "--config.num_train_steps=100000",
                     "--config.checkpoint_every_steps=5", "--config.data.name=prepared",
                     f"--config.data.data_dir={shapes_dir}")
  proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                          start_new_session=True)
  with group_killed_after(proc):
    wait_for(lambda: steps_in(workdir / "checkpoints"), proc, "a checkpoint", seconds=240)
    first = steps_in(workdir / "checkpoints")[0]
    time.sleep(1.0)   # some steps past the checkpoint, which SIGTERM must not lose
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=120)
  assert proc.returncode == 0, err[-2000:]
  stopped = int(err.split("stopped by SIGTERM after step ")[1].split(",")[0])
  # Saved where the signal came, past the regular checkpoint (a multiple of 5 or not).
  assert steps_in(workdir / "checkpoints")[-1] == stopped > first, err[-2000:]
  assert not (workdir / "LOCK").exists()
  rerun = subprocess.run(launch_train(workdir, "--config.num_train_steps=" + str(stopped + 2),
                                      "--config.checkpoint_every_steps=5",
                                      "--config.data.name=prepared",
                                      f"--config.data.data_dir={shapes_dir}",
                                      "--resume_with_changes"),
                         capture_output=True, text=True, timeout=300)
  assert rerun.returncode == 0, rerun.stderr[-2000:]
  assert f"resumed from checkpoint {stopped}" in rerun.stderr


@pytest.fixture
def two_checkpoints(shapes_dir, tmp_path):
  cfg = with_data(tiny_config(num_train_steps=10, checkpoint_every_steps=5,
                              eval_every_steps=1000), shapes_dir)
  train.train_and_evaluate(cfg, str(tmp_path))
  cfg.num_train_steps = 12
  return cfg, tmp_path


@pytest.mark.parametrize("damage", ["state/d", "state", "state/manifest.ocdbt", "meta"])
def test_an_unreadable_newest_checkpoint_falls_back_to_the_one_before(two_checkpoints, damage,
                                                                      caplog):
  cfg, workdir = two_checkpoints
  target = workdir / "checkpoints" / "10" / damage
  shutil.rmtree(target) if target.is_dir() else target.unlink()
  train.train_and_evaluate(cfg, str(workdir), allow_changes=True)
  warnings = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
  assert any(m.startswith("checkpoint 10 in ") and "cannot be read" in m for m in warnings)
  assert (workdir / checkpoint.DAMAGED / "10").is_dir()   # kept, out of the way
  assert steps_in(workdir / "checkpoints") == [5, 10, 12]   # 5 resumed, 10 written again


def test_a_checkpoint_of_another_model_is_still_an_error(two_checkpoints):
  cfg, workdir = two_checkpoints
  cfg.model.fc_features = (32, 32)
  helpers.claim_config(workdir, cfg)   # past the config check: the arrays themselves differ
  with pytest.raises(ValueError, match=r"checkpoint 10 .* does not fit this configuration: "
                                       r"layer fc6: \S*fc6/bias has shape \(64,\) in the "
                                       r"checkpoint but \(32,\) in this config's model"):
    train.train_and_evaluate(cfg, str(workdir))
  assert steps_in(workdir / "checkpoints") == [5, 10]


def test_no_readable_checkpoint_is_an_error_not_a_fresh_start(two_checkpoints):
  cfg, workdir = two_checkpoints
  for step in (5, 10):
    shutil.rmtree(workdir / "checkpoints" / str(step) / "state")
  with pytest.raises(ValueError, match=r"no checkpoint in .* can be read \(steps 10, 5\)"):
    train.train_and_evaluate(cfg, str(workdir), allow_changes=True)


def test_a_full_disk_at_a_checkpoint_is_one_line(shapes_dir, tmp_path):
  """Orbax logs the failed write with its traceback, and tensorstore's pending callbacks
  then print one traceback each: none of that reaches the user without --v=1."""
  import helpers  # pylint: disable=import-outside-toplevel
  cmd = helpers.file_size_limit(100_000, launch_train(
      tmp_path / "run", "--config.num_train_steps=10", "--config.checkpoint_every_steps=5",
      "--config.data.name=prepared", f"--config.data.data_dir={shapes_dir}"))
  proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
  assert proc.returncode == 1
  assert "Traceback" not in proc.stderr and len(proc.stderr.splitlines()) < 12, proc.stderr[-3000:]
  last = proc.stderr.strip().splitlines()[-1]
  # Which save hits the limit first depends on how orbax chunks the arrays: 5 or 10.
  assert re.match(r"error: could not write checkpoint (5|10) in .*File too large", last), last


def test_a_failed_writes_reason_survives_tensorstores_spec_in_the_one_line():
  """tensorstore ends a failure with its source locations and whole spec; the OS's reason
  sits before them and must be what the one line keeps (the shape of a real failure)."""
  spec = "{" + ", ".join(f'"field{i}": {{"driver": "zarr", "open": true}}' for i in range(40)) + "}"
  error = RuntimeError(
      'OUT_OF_RANGE: Error opening "zarr" driver: Error writing "opt_state.inner_state.2.trace'
      '.conv3.bias/.zarray" in OCDBT database at local file "/tmp/pytest-of-root/pytest-116/'
      'popen-gw1/test_a_full_disk_at_a_checkpoi0/run/checkpoints/5.orbax-checkpoint-tmp/state'
      '/ocdbt.process_0/": Failed to write 230062 bytes to file 18: File too large '
      "[os_error_code='27'] [source locations='tensorstore/kvstore/file/file_key_value_store"
      ".cc:520\ntensorstore/kvstore/ocdbt/io/io_handle_impl.cc:141'] "
      f"[tensorstore_spec='{spec}']")
  line = checkpoint.failure_reason(error)
  assert len(line) <= 300 and "\n" not in line
  assert "File too large [os_error_code='27']" in line, line
  assert line.startswith('OUT_OF_RANGE: Error opening "zarr" driver'), line
