"""run.json and the same-run rule (alexnet_jax/run/run_info.py): the config travels with each
checkpoint, so a deleted or damaged run.json neither turns the check off nor blocks the
workdir; a run that failed before it started leaves nothing that blocks the corrected
command; a run resumes on another mesh."""
import json
import os
import subprocess
import sys

import jax
import numpy as np
import pytest

from alexnet_jax.programs import inference, train
from alexnet_jax.run import checkpoint, run_info
from processes import ROOT, TINY_FLAGS, assert_one_line_error, child_env
from test_train import tiny_config, with_data


def config(shapes_dir, steps=2, **fields):
  return with_data(tiny_config(num_train_steps=steps, checkpoint_every_steps=2,
                               eval_every_steps=1000, **fields), shapes_dir)


@pytest.fixture
def trained(shapes_dir, tmp_path):
  cfg = config(shapes_dir)
  train.train_and_evaluate(cfg, str(tmp_path))
  return cfg, tmp_path


def test_each_checkpoint_carries_the_run_json_record(trained):
  _, workdir = trained
  step, record = run_info.from_checkpoints(workdir)
  assert step == 2 and record == json.loads((workdir / "run.json").read_text())


def test_a_deleted_run_json_does_not_turn_the_config_check_off(trained, shapes_dir):
  cfg, workdir = trained
  original = (workdir / "run.json").read_text()
  (workdir / "run.json").unlink()
  other = config(shapes_dir, learning_rate=0.5, batch_size=8)
  with pytest.raises(ValueError, match=r"holds checkpoints of another config .*batch_size: "
                                       r"16 -> 8; learning_rate: 0\.\d+ -> 0\.5"):
    train.train_and_evaluate(other, str(workdir))
  assert json.loads((workdir / "run.json").read_text()) == json.loads(original)   # rebuilt
  assert checkpoint.create_manager(str(workdir), read_only=True).all_steps() == [2]
  cfg.num_train_steps = 4
  train.train_and_evaluate(cfg, str(workdir), allow_changes=True)   # its own config resumes
  assert checkpoint.create_manager(str(workdir), read_only=True).all_steps() == [2, 4]


def test_a_damaged_run_json_is_rebuilt_and_kept_aside(trained, caplog):
  cfg, workdir = trained
  original = (workdir / "run.json").read_text()
  (workdir / "run.json").write_text(original[:40])   # cut short, as by a full disk
  restored = inference.load(str(workdir), mesh_shape=(1, 1))   # predict and evaluate read it
  assert restored.step == 2 and restored.class_names == json.loads(original)["class_names"]
  assert "run.json is damaged; using the config saved with checkpoint 2" in caplog.text
  cfg.num_train_steps = 4
  train.train_and_evaluate(cfg, str(workdir), allow_changes=True)
  assert json.loads((workdir / "run.json").read_text())["config"]["num_train_steps"] == 4
  assert (workdir / "run.json.damaged").read_text() == original[:40]   # nothing lost


def test_launch_predict_reads_a_run_with_a_damaged_run_json(trained, tmp_path_factory):
  _, workdir = trained
  (workdir / "run.json").write_text("{not json")
  image = tmp_path_factory.mktemp("img") / "red.png"
  from PIL import Image  # pylint: disable=import-outside-toplevel
  Image.new("RGB", (72, 72), (200, 30, 30)).save(image)
  proc = subprocess.run([sys.executable, "-m", "launch.predict", f"--workdir={workdir}",
                         str(image)], cwd=ROOT, capture_output=True, text=True, timeout=180)
  assert proc.returncode == 0, proc.stderr[-3000:]
  assert "red.png" in proc.stdout


def test_an_old_workdir_without_records_still_resumes(shapes_dir, tmp_path, monkeypatch):
  """Checkpoints written before they carried run.json: they resume as before; a damaged
  run.json is then a one-line error that says what to do."""
  save = checkpoint.save
  monkeypatch.setattr(checkpoint, "save", lambda *a, run=None, **k: save(*a, **k))
  cfg = config(shapes_dir)
  train.train_and_evaluate(cfg, str(tmp_path))
  monkeypatch.undo()
  assert run_info.from_checkpoints(tmp_path) is None
  cfg.num_train_steps = 4
  with pytest.raises(ValueError, match="num_train_steps: 2 -> 4"):   # run.json still guards
    train.train_and_evaluate(cfg, str(tmp_path))
  train.train_and_evaluate(cfg, str(tmp_path), allow_changes=True)
  assert run_info.from_checkpoints(tmp_path)[0] == 4   # new checkpoints carry it
  (tmp_path / "run.json").write_text("{")
  (tmp_path / "checkpoints" / "4").rename(tmp_path / "elsewhere")   # only the old one left
  with pytest.raises(ValueError, match=r"run.json is not valid JSON.*predate.*restore the "
                                       r"file or use a new workdir"):
    inference.load(str(tmp_path))


@pytest.mark.parametrize("failure", ["batch_size", "init_from"])
def test_a_failed_start_leaves_nothing_that_refuses_the_corrected_command(
    shapes_dir, tmp_path, failure):
  bad = config(shapes_dir)
  if failure == "batch_size":
    bad.batch_size = 2048   # more than the 800 training images
  else:
    bad.init_from = str(tmp_path / "no_such_run")
  with pytest.raises((ValueError, FileNotFoundError)):
    train.train_and_evaluate(bad, str(tmp_path / "run"))
  assert sorted(os.listdir(tmp_path / "run")) == []   # no run.json, checkpoints/ or logs
  train.train_and_evaluate(config(shapes_dir), str(tmp_path / "run"))
  assert os.listdir(tmp_path / "run" / "checkpoints") == ["2"]


def test_a_workdir_without_checkpoints_is_never_another_config(shapes_dir, tmp_path):
  """What a failed start used to leave behind: a run.json and an empty checkpoints/."""
  (tmp_path / "checkpoints").mkdir()
  other = config(shapes_dir, batch_size=8)
  (tmp_path / "run.json").write_text(json.dumps(run_info.make(other, [])))
  train.train_and_evaluate(config(shapes_dir), str(tmp_path))
  assert json.loads((tmp_path / "run.json").read_text())["config"]["batch_size"] == 16


@pytest.mark.slow
def test_a_run_resumes_on_another_mesh(shapes_dir, tmp_path):
  """(1, 2) on two devices, then (2, 1), then one device: each a resume, with
  --resume_with_changes (without it the refusal names the flag), reading the batches a
  straight run on one device reads: the same parameters at the end."""
  # threefry: the same random numbers on every mesh
  env = child_env(2, JAX_DEFAULT_PRNG_IMPL="threefry2x32")
  # (a tuple field given twice is joined into one tuple by the flag parser, not replaced)
  tiny = [f for f in TINY_FLAGS if not f.startswith("--config.mesh_shape=")]

  def launch(steps, mesh, *flags, workdir=tmp_path / "run"):
    cmd = [sys.executable, "-m", "launch.train", f"--workdir={workdir}", *tiny,
           f"--config.num_train_steps={steps}", "--config.checkpoint_every_steps=2",
           "--config.data.name=prepared", f"--config.data.data_dir={shapes_dir}",
           f"--config.mesh_shape={mesh}", *flags]
    return subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)

  first = launch(2, "(1,2)")
  assert first.returncode == 0, first.stderr[-3000:]
  assert_one_line_error(launch(4, "(2,1)"), "mesh_shape: [1, 2] -> [2, 1]",
                        "--resume_with_changes")
  for steps, mesh in ((4, "(2,1)"), (6, "(1,1)")):
    proc = launch(steps, mesh, "--resume_with_changes")
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert f"resumed from checkpoint {steps - 2}" in proc.stderr
    data, model = eval(mesh)  # pylint: disable=eval-used
    assert f"on mesh {{'data': {data}, 'model': {model}}}" in proc.stderr
  assert checkpoint.create_manager(str(tmp_path / "run"), read_only=True).all_steps() == [2, 4, 6]
  straight = launch(6, "(1,1)", workdir=tmp_path / "straight")
  assert straight.returncode == 0, straight.stderr[-3000:]
  a, b = (inference.load(str(tmp_path / d), mesh_shape=(1, 1), devices=jax.devices()[:1])
          for d in ("run", "straight"))
  for x, y in zip(jax.tree.leaves(a.params), jax.tree.leaves(b.params)):
    np.testing.assert_allclose(np.asarray(x), np.asarray(y), rtol=1e-4, atol=1e-5)
