"""What the fault tests share: launching the repository's programs as real processes, and
reading their one-line errors."""
import contextlib
import os
import signal
import subprocess
import sys
import time

from alexnet_jax.data import synthetic

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

TINY_FLAGS = ["--config=experiments/quickstart.py", "--config.batch_size=16",
              "--config.model.features=(16,32,48,48,32)", "--config.model.fc_features=(64,64)",
              "--config.mesh_shape=(1,1)", "--config.log_every_steps=5",
              "--config.eval_every_steps=1000", "--config.eval_batches=1"]


def child_env(devices: int = 1, **changes: str) -> dict:
  """This process's environment for a child process with `devices` CPU devices, keeping
  the suite's other XLA flags (conftest.py: LLVM at -O1), with `changes` on top."""
  flags = [f for f in os.environ.get("XLA_FLAGS", "").split()
           if not f.startswith("--xla_force_host_platform_device_count=")]
  flags.insert(0, f"--xla_force_host_platform_device_count={devices}")
  return {**os.environ, "XLA_FLAGS": " ".join(flags), **changes}


def launch_train(workdir, *flags):
  return [sys.executable, "-m", "launch.train", f"--workdir={workdir}", *TINY_FLAGS, *flags]


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


def shapes_source(root, **kwargs):
  kwargs = {"train_per_class": 4, "test_per_class": 2, "size": 72, **kwargs}
  return synthetic.make_shapes_dataset(str(root), **kwargs)


def wait_for(predicate, proc, what, seconds=120):
  deadline = time.time() + seconds
  while not predicate():
    assert proc.poll() is None, f"it ended before {what}: {proc.stderr.read()[-2000:]}"
    assert time.time() < deadline, f"no {what} after {seconds} s"
    time.sleep(0.05)


@contextlib.contextmanager
def group_killed_after(proc):
  """Runs the block, then SIGKILLs the group of `proc` (started with start_new_session=True)
  if it is still running, so that a failed assertion leaves no process behind."""
  try:
    yield proc
  finally:
    if proc.poll() is None:
      os.killpg(proc.pid, signal.SIGKILL)


def ctrl_c(proc, timeout=60):
  """What a terminal's Ctrl-C sends: SIGINT to the whole group of `proc` (started with
  start_new_session=True). Returns (its stderr when piped, seconds it took to exit)."""
  os.killpg(proc.pid, signal.SIGINT)
  start = time.time()
  _, stderr = proc.communicate(timeout=timeout)
  return stderr, time.time() - start


def group_gone(pgid, seconds=10):
  """True once no process of the group is left (the pool's workers included)."""
  deadline = time.time() + seconds
  while time.time() < deadline:
    try:
      os.killpg(pgid, 0)
    except ProcessLookupError:
      return True
    time.sleep(0.1)
  return False
