"""The training workdir's lock: one trainer per workdir.

`<workdir>/LOCK` holds the host name and pid of the trainer that owns the workdir. A second
trainer on the same workdir stops with a one-line error naming them. A lock whose process
is gone (a kill -9 on this host) is taken over.
"""
from __future__ import annotations

import contextlib
import os
import socket

LOCK_FILE = "LOCK"


def _alive(pid: int) -> bool:
  try:
    os.kill(pid, 0)
  except ProcessLookupError:
    return False
  except PermissionError:   # someone else's process
    return True
  return True


class WorkdirBusy(RuntimeError):
  pass


@contextlib.contextmanager
def lock(workdir: str):
  """Holds `<workdir>/LOCK` for the duration of the block."""
  path = os.path.join(workdir, LOCK_FILE)
  me = f"{socket.gethostname()} {os.getpid()}\n"
  for _ in range(2):
    try:
      fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
    except FileExistsError:
      try:
        with open(path) as f:
          host, pid = f.read().split()
      except (OSError, ValueError):   # unreadable, or half-written by a killed process
        host, pid = socket.gethostname(), "0"
      if host != socket.gethostname() or (pid.isdigit() and _alive(int(pid))):
        raise WorkdirBusy(f"workdir {workdir} is in use by process {pid} on host {host} "
                          f"(remove {path} if that trainer is gone)") from None
      os.remove(path)   # the holder died without releasing it
      continue
    with os.fdopen(fd, "w") as f:
      f.write(me)
    break
  try:
    yield
  finally:
    with contextlib.suppress(OSError):
      os.remove(path)
