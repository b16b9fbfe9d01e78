"""A training workdir's layout, its readers and writers, and its lock.

    <workdir>/run.json        the resolved config, code revision and class names (train)
    <workdir>/metrics.jsonl   one JSON line per log or evaluation record (train)
    <workdir>/checkpoints/    orbax checkpoints (checkpoint.py)
    <workdir>/events.out.*    TensorBoard scalars (events.py)
    <workdir>/eval_<data>_<split>_<step>[_10crop].json   evaluation reports (launch.evaluate)
    <workdir>/result.json     a sweep run's summary (sweep.py)
    <workdir>/LOCK            the host and pid of the trainer that owns it

Every other module reaches these files through this one. A second trainer on a workdir
stops with a one-line error naming the first; a lock whose process is gone (a kill -9 on
this host) is taken over.
"""
from __future__ import annotations

import contextlib
import json
import os
import re
import socket
from typing import Any

LOCK_FILE = "LOCK"
RUN_INFO = "run.json"
METRICS = "metrics.jsonl"
CHECKPOINTS = "checkpoints"
RESULT = "result.json"


def checkpoint_dir(workdir: str) -> str:
  return os.path.join(os.path.abspath(workdir), CHECKPOINTS)


@contextlib.contextmanager
def atomic(path: str):
  """Yields a temporary path beside `path` (same extension) to write; renames it to `path`
  when the block succeeds, so that `path` is never half a file."""
  root, ext = os.path.splitext(path)
  tmp = f"{root}.tmp.{os.getpid()}{ext}"
  try:
    yield tmp
    os.replace(tmp, path)
  finally:
    with contextlib.suppress(FileNotFoundError):
      os.remove(tmp)


def write_json_atomic(path: str, obj: Any) -> None:
  with atomic(path) as tmp, open(tmp, "w") as f:
    json.dump(obj, f, indent=1)
    f.flush()
    os.fsync(f.fileno())


def read_json(path: str) -> Any | None:
  if not os.path.exists(path):
    return None
  with open(path) as f:
    return json.load(f)


def read_run_info(workdir: str) -> dict:
  """run.json of a training workdir; FileNotFoundError naming the folder if it has none."""
  workdir = os.path.abspath(os.path.expanduser(workdir))
  if not os.path.isdir(workdir):
    raise FileNotFoundError(f"workdir {workdir} does not exist")
  path = os.path.join(workdir, RUN_INFO)
  if not os.path.isfile(path):
    raise FileNotFoundError(f"workdir {workdir} has no run.json: not a training workdir "
                            "(launch.train writes run.json and checkpoints/ there)")
  try:
    info = read_json(path)
  except json.JSONDecodeError as e:
    raise ValueError(f"{path} is not valid JSON: {e}") from None
  if not isinstance(info, dict) or not isinstance(info.get("config"), dict):
    raise ValueError(f"{path} has no 'config' object")
  return info


def write_run_info(workdir: str, info: dict) -> None:
  write_json_atomic(os.path.join(workdir, RUN_INFO), info)


def append_metrics(workdir: str, record: dict) -> None:
  with open(os.path.join(workdir, METRICS), "a") as f:
    f.write(json.dumps(record) + "\n")


def _metric_lines(path: str):
  with open(path) as f:
    for line in f:
      try:
        yield line, json.loads(line)
      except json.JSONDecodeError:   # a line cut short by a kill
        continue


def read_metrics(workdir: str) -> list[dict]:
  """metrics.jsonl, ordered by step; where a resumed run logged a step again, the later
  record of each kind (train or eval) wins."""
  path = os.path.join(workdir, METRICS)
  if not os.path.exists(path):
    return []
  records = {}
  for _, rec in _metric_lines(path):
    if isinstance(rec, dict) and "step" in rec:
      kind = "eval" if any(k.startswith("eval_") for k in rec) else "train"
      records[(rec["step"], kind)] = rec
  return [records[k] for k in sorted(records, key=lambda k: (k[0], k[1] == "eval"))]


def trim_metrics(workdir: str, last_step: int) -> None:
  """Drops the records of steps after `last_step` (and lines cut short), atomically: a
  resume then logs those steps once, as it redoes them."""
  path = os.path.join(workdir, METRICS)
  if not os.path.isfile(path):
    return
  with open(path) as f:
    total = sum(1 for _ in f)
  kept = [line if line.endswith("\n") else line + "\n"
          for line, rec in _metric_lines(path)
          if isinstance(rec, dict) and rec.get("step", last_step + 1) <= last_step]
  if len(kept) != total:
    with atomic(path) as tmp, open(tmp, "w") as f:
      f.writelines(kept)


def _file_safe(text: str) -> str:
  return re.sub(r"[^A-Za-z0-9._-]+", "_", text).strip("_")


def report_path(workdir: str, data_dir: str, split: str, step: int, ten_crop: bool) -> str:
  """<workdir>/eval_<data>_<split>_<step>[_10crop].json: <data> is the prepared dataset's
  folder name, so that evaluations of other datasets never overwrite each other."""
  source = os.path.basename(os.path.normpath(data_dir)) if data_dir else "data"
  name = "_".join(_file_safe(p) or "x" for p in (source, split))
  return os.path.join(workdir, f"eval_{name}_{step}{'_10crop' if ten_crop else ''}.json")


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
