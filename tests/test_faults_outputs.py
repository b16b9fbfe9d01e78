"""Outputs checked before the work: evaluate, features and curves on read-only folders,
full disks, damaged checkpoints and Ctrl-C (issue 25)."""
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest

import helpers
from alexnet_jax.programs import train
from processes import (ROOT, assert_one_line_error, ctrl_c, group_killed_after, launch,
                       wait_for)
from test_train import tiny_config, with_data


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
  with group_killed_after(proc):
    wait_for(lambda: "evaluated batch 2/" in log.read_text(), proc, "the evaluation",
             seconds=120)
    _, took = ctrl_c(proc)
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
