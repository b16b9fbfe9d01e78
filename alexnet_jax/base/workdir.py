"""A training workdir's layout, its readers and writers, and its lock.

    <workdir>/run.json        the resolved config, code revision and class names (run_info.py)
    <workdir>/metrics.jsonl   one JSON line per log or evaluation record (train)
    <workdir>/checkpoints/    orbax checkpoints (checkpoint.py)
    <workdir>/events.out.*    TensorBoard scalars (events.py)
    <workdir>/eval_<data>_<split>_<step>[_10crop].json   evaluation reports (launch.evaluate)
    <workdir>/result.json     a sweep run's summary (sweep.py)
    <workdir>/conv1_kernels.png   conv1's kernels, the paper's Figure 3 (launch.visualize)
    <workdir>/LOCK            the host and pid of the trainer that owns it

This module owns paths: every local-or-URL decision (`is_url`, `resolve`) is made here.
A workdir is a local folder or a cloud-storage URL (`gs://bucket/run`): every path goes
through `etils.epath`, the library orbax itself uses, and is never made absolute when it is
a URL. Objects on cloud storage cannot be appended to or renamed atomically, so there an
append rewrites the (small) object and a whole-file write is one upload, which is atomic by
itself; locally both go through a temporary file and a rename.

A second trainer on a workdir stops with a one-line error naming the first; a lock whose
process is gone (a kill -9 on this host) is taken over. On cloud storage the lock is only
advisory: it is read and written, not created atomically, so two trainers started at the
same moment are not told apart.
"""
from __future__ import annotations

import contextlib
import json
import os
import re
import socket
import tempfile
from typing import Any

from etils import epath

LOCK_FILE = "LOCK"
RUN_INFO = "run.json"
METRICS = "metrics.jsonl"
CHECKPOINTS = "checkpoints"
RESULT = "result.json"
KERNELS = "conv1_kernels.png"


def is_url(path) -> bool:
  return "://" in str(path)


def resolve(workdir) -> epath.Path:
  """The workdir as a path: a URL as given, a local folder made absolute."""
  if is_url(workdir):
    return epath.Path(str(workdir))
  return epath.Path(os.path.abspath(os.path.expanduser(str(workdir))))


def checkpoint_dir(workdir) -> str:
  return str(resolve(workdir) / CHECKPOINTS)


def kernels_path(workdir) -> str:
  return str(resolve(workdir) / KERNELS)


@contextlib.contextmanager
def atomic(path):
  """Yields a temporary path beside local `path` (same extension) to write; renames it to
  `path` when the block succeeds, so that `path` is never half a file. For a URL it yields
  a local temporary file and uploads it in one piece."""
  path = str(path)
  if is_url(path):
    with tempfile.TemporaryDirectory() as d:
      tmp = os.path.join(d, os.path.basename(path))
      yield tmp
      epath.Path(path).write_bytes(epath.Path(tmp).read_bytes())
    return
  root, ext = os.path.splitext(path)
  tmp = f"{root}.tmp.{os.getpid()}{ext}"
  try:
    yield tmp
    os.replace(tmp, path)
  finally:
    with contextlib.suppress(FileNotFoundError):
      os.remove(tmp)


def write_json_atomic(path, obj: Any) -> None:
  with atomic(path) as tmp, open(tmp, "w") as f:
    json.dump(obj, f, indent=1)
    f.flush()
    os.fsync(f.fileno())


def read_json(path) -> Any | None:
  path = epath.Path(str(path))
  if not path.exists():
    return None
  return json.loads(path.read_text())


def append_text(path, text: str) -> None:
  """Appends to a local file; rewrites a cloud object with `text` added."""
  if not is_url(path):
    with open(path, "a") as f:
      f.write(text)
    return
  path = epath.Path(str(path))
  path.write_text((path.read_text() if path.exists() else "") + text)


def append_metrics(workdir, record: dict) -> None:
  append_text(resolve(workdir) / METRICS, json.dumps(record) + "\n")


def _metric_lines(path: epath.Path):
  for line in path.read_text().splitlines(keepends=True):
    try:
      yield line, json.loads(line)
    except json.JSONDecodeError:   # a line cut short by a kill
      continue


def read_metrics(workdir) -> list[dict]:
  """metrics.jsonl, ordered by step; where a resumed run logged a step again, the later
  record of each kind (train or eval) wins."""
  path = resolve(workdir) / METRICS
  if not path.exists():
    return []
  records = {}
  for _, rec in _metric_lines(path):
    if isinstance(rec, dict) and "step" in rec:
      kind = "eval" if any(k.startswith("eval_") for k in rec) else "train"
      records[(rec["step"], kind)] = rec
  return [records[k] for k in sorted(records, key=lambda k: (k[0], k[1] == "eval"))]


def trim_metrics(workdir, last_step: int) -> None:
  """Drops the records of steps after `last_step` (and lines cut short), atomically: a
  resume then logs those steps once, as it redoes them."""
  path = resolve(workdir) / METRICS
  if not path.is_file():
    return
  total = len(path.read_text().splitlines(keepends=True))
  kept = [line if line.endswith("\n") else line + "\n"
          for line, rec in _metric_lines(path)
          if isinstance(rec, dict) and rec.get("step", last_step + 1) <= last_step]
  if len(kept) != total:
    with atomic(path) as tmp, open(tmp, "w") as f:
      f.writelines(kept)


def _file_safe(text: str) -> str:
  return re.sub(r"[^A-Za-z0-9._-]+", "_", text).strip("_")


def report_path(workdir, data_dir: str, split: str, step: int, ten_crop: bool) -> str:
  """<workdir>/eval_<data>_<split>_<step>[_10crop].json: <data> is the prepared dataset's
  folder name, so that evaluations of other datasets never overwrite each other."""
  source = os.path.basename(os.path.normpath(data_dir)) if data_dir else "data"
  name = "_".join(_file_safe(p) or "x" for p in (source, split))
  return str(resolve(workdir) / f"eval_{name}_{step}{'_10crop' if ten_crop else ''}.json")


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


def _holder(path: epath.Path) -> tuple[str, str]:
  try:
    host, pid = path.read_text().split()
    return host, pid
  except (OSError, ValueError):   # unreadable, or half-written by a killed process
    return socket.gethostname(), "0"


def _take(path: epath.Path, me: str) -> bool:
  """Creates the lock file; False if it exists already."""
  if is_url(path):   # no atomic create on object storage: advisory (module docstring)
    if path.exists():
      return False
    path.write_text(me)
    return True
  try:
    fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
  except FileExistsError:
    return False
  with os.fdopen(fd, "w") as f:
    f.write(me)
  return True


@contextlib.contextmanager
def lock(workdir):
  """Holds `<workdir>/LOCK` for the duration of the block."""
  path = resolve(workdir) / LOCK_FILE
  me = f"{socket.gethostname()} {os.getpid()}\n"
  for _ in range(2):
    if _take(path, me):
      break
    host, pid = _holder(path)
    if host != socket.gethostname() or (pid.isdigit() and _alive(int(pid))):
      raise WorkdirBusy(f"workdir {resolve(workdir)} is in use by process {pid} on host "
                        f"{host} (remove {path} if that trainer is gone)") from None
    path.unlink()   # the holder died without releasing it
  else:
    raise WorkdirBusy(f"workdir {resolve(workdir)}: another trainer took {path} just now")
  try:
    yield
  finally:
    with contextlib.suppress(OSError):
      path.unlink()
