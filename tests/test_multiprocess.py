"""Two local processes (gloo collectives on 127.0.0.1) train like one (issue: several hosts)."""
import json
import os
import socket
import subprocess
import sys

import numpy as np
import pytest

WORKER = os.path.join(os.path.dirname(__file__), "multiprocess_worker.py")


def free_port():
  with socket.socket() as s:
    s.bind(("127.0.0.1", 0))
    return s.getsockname()[1]


def run_job(n, tmp_path, data_dir, timeout=300):
  port = free_port()
  procs = []
  try:
    for pid in range(n):
      procs.append(subprocess.Popen(
          [sys.executable, WORKER, str(pid), str(n), str(port), str(tmp_path / f"out{n}_{pid}.json"),
           str(tmp_path / f"workdir{n}"), data_dir],
          stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True))
    for p in procs:
      output, _ = p.communicate(timeout=timeout)
      assert p.returncode == 0, output[-3000:]
  finally:
    for p in procs:   # never leave a process behind, whatever happened
      if p.poll() is None:
        p.kill()
        p.wait()
  return [json.load(open(tmp_path / f"out{n}_{pid}.json")) for pid in range(n)]


@pytest.mark.slow
def test_two_processes_match_one(shapes_dir, tmp_path):
  (single,) = run_job(1, tmp_path, shapes_dir)
  two = run_job(2, tmp_path, shapes_dir)
  assert single["devices"] == 1 and two[0]["devices"] == 2
  np.testing.assert_allclose(two[0]["losses"], single["losses"], rtol=1e-5)
  np.testing.assert_allclose(two[1]["losses"], single["losses"], rtol=1e-5)
  assert single["losses"][2] < single["losses"][0]   # it did train on that batch
  # The collective checkpoint is complete and only process 0 wrote the logs.
  workdir = tmp_path / "workdir2"
  assert os.listdir(workdir / "checkpoints") == ["4"]
  assert len([f for f in os.listdir(workdir) if f.startswith("events.out")]) == 1
  assert two[0]["final"] == two[1]["final"]
