"""Several local processes (gloo collectives on 127.0.0.1) train like one process with the
same global batch, whichever way the towers fall: inside a process, or across processes."""
import json
import os
import signal
import socket
import subprocess
import sys
import time

import jax
import numpy as np
import pytest

from alexnet_jax import checkpoint, train
import helpers

WORKER = os.path.join(os.path.dirname(__file__), "multiprocess_worker.py")


def free_port():
  with socket.socket() as s:
    s.bind(("127.0.0.1", 0))
    return s.getsockname()[1]


def start_job(processes, devices, mesh, workdir, data_dir, *overrides):
  """The job's processes, each writing its output to a file beside WORKDIR (a pipe nobody
  reads would fill and stall a process, and with it the others in their collectives)."""
  port = free_port()
  procs = []
  for pid in range(processes):
    log = workdir.parent / f"{workdir.name}.process{pid}.log"
    with open(log, "w") as out:
      p = subprocess.Popen(
          [sys.executable, WORKER, str(pid), str(processes), str(port), str(devices), mesh,
           str(workdir), data_dir, *overrides],
          stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    p.log = log
    procs.append(p)
  return procs


def wait(procs, timeout=240):
  """Every process's output once all have exited 0. A job still running after `timeout`
  seconds is a hang: each process prints its threads' stacks (the worker's SIGUSR1) before
  it is killed, and the failure shows every process's output."""
  deadline = time.time() + timeout
  while time.time() < deadline and any(p.poll() is None for p in procs):
    time.sleep(0.2)
  hung = [p for p in procs if p.poll() is None]
  for p in hung:
    p.send_signal(signal.SIGUSR1)
  if hung:
    time.sleep(2)
  for p in procs:   # never leave a process behind, whatever happened
    if p.poll() is None:
      p.kill()
    p.wait()
  outputs = [p.log.read_text() for p in procs]
  report = "\n".join(f"--- process {i} (exit {p.returncode}):\n{out[-4000:]}"
                     for i, (p, out) in enumerate(zip(procs, outputs)))
  pids = [p.pid for p in hung]
  assert not hung, f"processes {pids} still running after {timeout} s:\n{report}"
  assert all(p.returncode == 0 for p in procs), report
  return outputs


def run_job(processes, devices, mesh, workdir, data_dir, *overrides, timeout=240):
  return wait(start_job(processes, devices, mesh, workdir, data_dir, *overrides),
              timeout=timeout)


def train_losses(workdir):
  rows = [json.loads(line) for line in open(workdir / "metrics.jsonl")]
  return [r["train_loss"] for r in rows if "train_loss" in r]


def final_params(workdir, step=4):
  cfg = helpers.tiny_config()
  manager = checkpoint.create_manager(str(workdir), read_only=True)
  return checkpoint.restore(manager, step, train.Trainer(cfg).abstract_state)[0].params


@pytest.fixture(scope="module")
def reference(shapes_dir, tmp_path_factory):
  """One process, one device: the two towers as grouped convolutions."""
  workdir = tmp_path_factory.mktemp("one") / "run"
  run_job(1, 1, "1,1", workdir, shapes_dir)
  return workdir


@pytest.mark.slow
@pytest.mark.parametrize("processes,devices,mesh", [
    (2, 1, "1,2"),    # one device per process: each data row's towers in two processes
    (2, 2, "2,2"),    # two per process: each process holds a whole row, both towers
])
def test_processes_train_like_one(reference, shapes_dir, tmp_path, processes, devices, mesh):
  workdir = tmp_path / "run"
  run_job(processes, devices, mesh, workdir, shapes_dir)
  np.testing.assert_allclose(train_losses(workdir), train_losses(reference), rtol=2e-5)
  for x, y in zip(jax.tree.leaves(final_params(workdir)), jax.tree.leaves(final_params(reference))):
    np.testing.assert_allclose(np.asarray(x), np.asarray(y), rtol=1e-4, atol=1e-5)
  # The collective checkpoint is complete and only process 0 wrote the logs.
  assert os.listdir(workdir / "checkpoints") == ["4"]
  assert len([f for f in os.listdir(workdir) if f.startswith("events.out")]) == 1


@pytest.mark.slow
def test_a_long_stretch_without_logs_does_not_deadlock(shapes_dir, tmp_path):
  """120 steps that read nothing from the devices, on two processes of two CPU devices
  each. A loop that dispatched without bound filled XLA:CPU's 32 programs per device and
  the job hung in its gloo collectives; `dispatch.Throttle` keeps it two steps ahead."""
  workdir = tmp_path / "run"
  run_job(2, 2, "2,2", workdir, shapes_dir, "num_train_steps=120", "log_every_steps=120",
          "eval_every_steps=120", "checkpoint_every_steps=120", timeout=150)
  assert os.listdir(workdir / "checkpoints") == ["120"]


@pytest.mark.slow
def test_a_resume_on_another_number_of_processes_continues_the_same_batches(
    reference, shapes_dir, tmp_path):
  """2 steps on two processes (one device each), then 2 more on one process with two
  devices: the same parameters as 4 steps straight, since the loader's position is the
  number of global batches read, whatever the layout."""
  workdir = tmp_path / "run"
  run_job(2, 1, "1,2", workdir, shapes_dir, "num_train_steps=2", "checkpoint_every_steps=2")
  (out,) = run_job(1, 2, "1,2", workdir, shapes_dir)
  assert "resumed from checkpoint 2" in out
  for x, y in zip(jax.tree.leaves(final_params(workdir)), jax.tree.leaves(final_params(reference))):
    np.testing.assert_allclose(np.asarray(x), np.asarray(y), rtol=1e-4, atol=1e-5)


@pytest.mark.slow
def test_sigterm_to_one_process_stops_every_process_at_one_saved_step(shapes_dir, tmp_path):
  """A cluster's SIGTERM, here to process 1 only: JAX's preemption service tells process 0,
  both save the same step collectively and exit 0."""
  workdir = tmp_path / "run"
  procs = start_job(2, 1, "1,2", workdir, shapes_dir, "num_train_steps=100000",
                    "checkpoint_every_steps=100000", "log_every_steps=5",
                    "eval_every_steps=100000")
  try:
    deadline = time.time() + 240
    while time.time() < deadline and not (
        (workdir / "metrics.jsonl").exists() and len(train_losses(workdir)) >= 2):
      assert all(p.poll() is None for p in procs), procs[0].log.read_text()[-3000:]
      time.sleep(0.2)
    procs[1].send_signal(signal.SIGTERM)
  except BaseException:
    for p in procs:
      p.kill()
    raise
  outputs = wait(procs, timeout=120)
  stopped = int(outputs[0].split("stopped by SIGTERM after step ")[1].split(",")[0])
  assert os.listdir(workdir / "checkpoints") == [str(stopped)]
  assert stopped >= 10   # after the two logged windows, not a fresh start
