"""run.json, the record of the config a workdir's checkpoints were trained with, and the
rule that a workdir belongs to one config.

A record is {"config": the resolved config, "revision": the code's git commit,
"class_names": in label order} (an imported net adds "imported_from"). Training writes it to
`<workdir>/run.json` once the run has started, and saves it with every checkpoint
(checkpoint.py, the step's metadata), so that:
- deleting run.json does not turn the same-run check off: the newest checkpoint's record is
  compared instead;
- a missing or damaged run.json is rebuilt from that record (the damaged file is kept as
  `run.json.damaged`), instead of blocking resume, predict and evaluate.
Checkpoints written before records travelled with them still restore; such a workdir relies
on run.json alone, as before.

A workdir without checkpoints belongs to no config: a run that failed before its first save
does not lock its workdir against the corrected command.
"""
from __future__ import annotations

import json
import os
import subprocess
from typing import Sequence

from absl import logging
from flax import traverse_util

from alexnet_jax.base import workdir as workdir_lib
from alexnet_jax.run import checkpoint

DAMAGED_SUFFIX = ".damaged"

# Fields that a rerun may change on a resume, with `allow_changes` (launch.train
# --resume_with_changes): how long, how often, where the same data is read from, and the
# mesh (checkpoints have one layout for every mesh, and the data order is the global
# batch's, whatever the mesh or the number of processes).
CHANGEABLE_ON_RESUME = ("num_epochs", "num_train_steps", "log_every_steps",
                        "eval_every_steps", "eval_batches", "checkpoint_every_steps",
                        "keep_checkpoints", "data.workers", "data.prefetch_thread",
                        "data.data_dir", "mesh_shape")


def code_revision() -> str:
  try:
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    return subprocess.run(["git", "-C", root, "rev-parse", "HEAD"], capture_output=True,
                          text=True, timeout=10).stdout.strip() or "unknown"
  except (OSError, subprocess.SubprocessError):
    return "unknown"


def make(cfg, class_names: Sequence[str], **extra) -> dict:
  """A record: the resolved config, the code revision, the class names (and `extra`)."""
  return {"config": json.loads(cfg.to_json_best_effort()), "revision": code_revision(),
          "class_names": list(class_names), **extra}


def write(workdir, info: dict) -> None:
  workdir_lib.write_json_atomic(workdir_lib.resolve(workdir) / workdir_lib.RUN_INFO, info)


def _read_file(path) -> dict:
  """run.json's record; ValueError when it is not one (cut short, not JSON, no config)."""
  try:
    info = workdir_lib.read_json(path)
  except (json.JSONDecodeError, UnicodeDecodeError) as e:
    raise ValueError(f"{path} is not valid JSON: {e}") from None
  if not isinstance(info, dict) or not isinstance(info.get("config"), dict):
    raise ValueError(f"{path} has no 'config' object")
  return info


def from_checkpoints(workdir) -> tuple[int, dict] | None:
  """(step, record) of the newest checkpoint that carries a record; None when none does."""
  directory = workdir_lib.resolve(workdir) / workdir_lib.CHECKPOINTS
  if not directory.is_dir():
    return None
  manager = checkpoint.create_manager(workdir, read_only=True)
  try:
    for step in sorted(manager.all_steps(), reverse=True):
      info = checkpoint.stored_run(manager, step)
      if info is not None:
        return step, info
    return None
  finally:
    manager.close()


def read(workdir, rebuild: bool = False) -> dict:
  """The workdir's record: run.json, or where it is missing or damaged the newest
  checkpoint's (a warning; with `rebuild` run.json is written again from it, the damaged
  file kept beside it). FileNotFoundError or ValueError, naming the way out, otherwise."""
  root = workdir_lib.resolve(workdir)
  if not root.is_dir():
    raise FileNotFoundError(f"workdir {root} does not exist")
  path = root / workdir_lib.RUN_INFO
  problem = None
  if path.is_file():
    try:
      return _read_file(path)
    except ValueError as e:
      problem = e
  found = from_checkpoints(root)
  if found is None:
    if problem:
      raise ValueError(f"{problem}; its checkpoints predate the copy of run.json that each "
                       f"now carries, so it cannot be rebuilt: restore the file or use a "
                       "new workdir") from None
    raise FileNotFoundError(f"workdir {root} has no run.json: not a training workdir "
                            "(launch.train writes run.json and checkpoints/ there)")
  step, info = found
  logging.warning("%s %s; using the config saved with checkpoint %d%s", path,
                  "is damaged" if problem else "is missing", step,
                  " and writing run.json again" if rebuild else "")
  if rebuild:
    if problem:   # kept, not lost: whatever it held may still matter to someone
      path.rename(str(path) + DAMAGED_SUFFIX)
    write(root, info)
  return info


def stored(workdir, has_checkpoints: bool, rebuild: bool = True) -> dict | None:
  """The record a rerun is checked against: None when the workdir holds no checkpoint
  (it belongs to no config yet) or no record at all (an old workdir without run.json).
  `rebuild`: see `read` (process 0 only, with several)."""
  if not has_checkpoints:
    return None
  try:
    return read(workdir, rebuild=rebuild)
  except FileNotFoundError:
    logging.warning("%s holds checkpoints but no run.json, and they predate the record each "
                    "now carries: the config cannot be checked", workdir_lib.resolve(workdir))
    return None


def check_same_run(workdir, old: dict | None, info: dict, allow_changes: bool = False) -> None:
  """A workdir belongs to one config: ValueError listing the fields where `info` differs
  from `old`, the workdir's record (`stored`). With `allow_changes`, differences in
  CHANGEABLE_ON_RESUME only are accepted (and run.json is then rewritten).

  Fields that the record lacks were added to the code after the run began; they take
  today's values, with a warning, so that a run resumes across an upgrade."""
  if old is None:
    return
  where = workdir_lib.resolve(workdir)
  before = {**traverse_util.flatten_dict(old["config"], sep="."),
            "class_names": old.get("class_names")}
  after = {**traverse_util.flatten_dict(info["config"], sep="."),
           "class_names": info["class_names"]}
  added = sorted(set(after) - set(before))
  changed = sorted(k for k in set(before) | set(after)
                   if k not in added and before.get(k) != after.get(k))
  changeable = set(CHANGEABLE_ON_RESUME)
  if after.get("schedule") == "cosine":   # its curve is laid over the run's length
    changeable -= {"num_epochs", "num_train_steps"}
  refused = [k for k in changed if not (allow_changes and k in changeable)]
  if refused:
    shown = "; ".join(f"{k}: {before.get(k, 'unset')!r} -> {after.get(k, 'unset')!r}"
                      for k in refused[:6])
    more = f" and {len(refused) - 6} more" if len(refused) > 6 else ""
    hint = ("" if allow_changes or set(refused) - changeable else
            " (pass --resume_with_changes to resume with these)")
    raise ValueError(f"workdir {where} holds checkpoints of another config "
                     f"({where / workdir_lib.RUN_INFO}): {shown}{more}; use a new "
                     f"workdir{hint}")
  if changed:
    logging.warning("resuming with changed fields: %s", ", ".join(changed))
  if added:
    logging.warning("%s predates the config fields %s; resuming with them as %s",
                    where / workdir_lib.RUN_INFO, ", ".join(added),
                    ", ".join(repr(after[k]) for k in added))
