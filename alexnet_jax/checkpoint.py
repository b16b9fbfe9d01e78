"""Checkpoints with orbax: the train state plus a small JSON of loop state, in the workdir.

`<workdir>/checkpoints/<step>/` holds `state` (params, optimiser state, step; restored onto
whatever shardings the caller asks for, so a checkpoint from any mesh restores on any other)
and `meta` (the plateau schedule's best validation error and count of bad evaluations).
The loader's position needs no item of its own: one global batch a step, so it is the step,
the same for any number of processes (loader.py). Orbax
writes each step into a temporary directory and renames it when complete, so a crash
mid-save never leaves a checkpoint that restores half-written; the workdir may be local or
on cloud storage (`gs://...`), which orbax reaches through etils.epath and tensorstore.

A newest checkpoint that cannot be read (files lost or damaged later) is a warning, is moved
to `<workdir>/damaged_checkpoints/`, and the one before it is restored; one whose arrays do
not fit the run's state (another model or optimiser) is an error.
Kept: the newest `keep` checkpoints and the one with the lowest validation top-1 error.
"""
from __future__ import annotations

from typing import Any

import jax
import orbax.checkpoint as ocp
from absl import logging
from etils import epath
from jax.experimental import multihost_utils
from orbax.checkpoint import checkpoint_managers as policies

from alexnet_jax import messages
from alexnet_jax import workdir as workdir_lib

EVAL_METRIC = "eval_top1_error"
DAMAGED = "damaged_checkpoints"


class Mismatch(ValueError):
  """The checkpoint is intact but holds another model's or optimiser's state."""


def create_manager(workdir, keep: int = 3, read_only: bool = False) -> ocp.CheckpointManager:
  preserve = policies.AnyPreservationPolicy([
      policies.LatestN(n=keep),
      policies.BestN(get_metric_fn=lambda m: m[EVAL_METRIC], reverse=True, n=1,
                     keep_checkpoints_without_metrics=False),
  ])
  options = ocp.CheckpointManagerOptions(
      # best_fn makes orbax record the metrics passed to save(); preservation and
      # best_step() (the "best" of inference.resolve_step) use them.
      best_fn=lambda m: m[EVAL_METRIC], best_mode="min",
      preservation_policy=preserve, create=not read_only, read_only=read_only,
      cleanup_tmp_directories=not read_only,   # saves a crash interrupted
      enable_async_checkpointing=False)
  return ocp.CheckpointManager(workdir_lib.checkpoint_dir(workdir), options=options,
                               item_names=("state", "meta"))


def save(manager: ocp.CheckpointManager, step: int, state: Any, meta: dict,
         metrics: dict | None = None) -> None:
  """Writes step `step`; raises OSError with the directory named if it cannot."""
  items = {"state": ocp.args.StandardSave(state), "meta": ocp.args.JsonSave(meta)}
  try:
    manager.save(step, args=ocp.args.Composite(**items), metrics=metrics, force=True)
    manager.wait_until_finished()
  except Exception as e:  # orbax wraps I/O errors in several types
    raise OSError(f"could not write checkpoint {step} in {manager.directory}: "
                  f"{messages.one_line(e, 300)}") from e


def _leaf_shapes(tree) -> dict[str, tuple]:
  return {jax.tree_util.keystr(path, simple=True, separator="/"): tuple(leaf.shape)
          for path, leaf in jax.tree_util.tree_flatten_with_path(tree)[0]}


def _check_fits(manager: ocp.CheckpointManager, step: int, abstract_state: Any) -> None:
  """Mismatch naming the first array that differs, when the checkpoint's own metadata
  (readable even where its arrays are not) describes another state; OSError when the
  metadata itself is gone."""
  try:
    stored = _leaf_shapes(ocp.StandardCheckpointHandler().metadata(
        epath.Path(manager.directory) / str(step) / "state"))
  except Exception as e:  # a missing or damaged folder: orbax raises several types
    raise OSError(messages.one_line(e, 300)) from e
  wanted = _leaf_shapes(abstract_state)
  for name in sorted(set(stored) | set(wanted)):
    if stored.get(name) != wanted.get(name):
      have = stored.get(name, "nothing")
      raise Mismatch(
          f"checkpoint {step} in {manager.directory} does not fit this configuration: "
          f"{name} is {have} there and {wanted.get(name, 'absent')} here (a different "
          "model or optimiser wrote it); use a new workdir")


def restore(manager: ocp.CheckpointManager, step: int, abstract_state: Any
            ) -> tuple[Any, dict]:
  """State laid out as `abstract_state` (ShapeDtypeStructs with shardings), and the meta.
  Mismatch when the checkpoint holds another state; OSError when it cannot be read."""
  _check_fits(manager, step, abstract_state)
  items = {"state": ocp.args.StandardRestore(abstract_state), "meta": ocp.args.JsonRestore()}
  try:
    out = manager.restore(step, args=ocp.args.Composite(**items))
  except Exception as e:  # lost or damaged array files: tensorstore's errors, several types
    raise OSError(messages.one_line(e, 300)) from e
  if not isinstance(out.get("meta"), dict):
    raise OSError("its meta item is missing")
  return out["state"], out["meta"]


def restore_latest(manager: ocp.CheckpointManager, abstract_state: Any
                   ) -> tuple[int | None, Any, dict | None]:
  """(step, state, meta) of the newest checkpoint that restores; (None, None, None) when
  the workdir has none. Unreadable newer ones are logged, moved aside by process 0 (all
  processes wait for it) and skipped; a Mismatch is raised at once. ValueError when
  checkpoints exist but none can be read."""
  steps, failures = sorted(manager.all_steps(), reverse=True), []
  found = (None, None, None)
  for step in steps:
    try:
      found = (step, *restore(manager, step, abstract_state))
      break
    except OSError as e:
      logging.warning("checkpoint %d in %s cannot be read (%s); trying the one before it",
                      step, manager.directory, e)
      failures.append(step)
  if failures and found[0] is None:
    raise ValueError(f"no checkpoint in {manager.directory} can be read (steps "
                     f"{', '.join(map(str, failures))}); see the warnings above")
  if failures:
    _set_aside(manager, failures)
  return found


def _set_aside(manager: ocp.CheckpointManager, steps: list[int]) -> None:
  """Moves unreadable checkpoints to <workdir>/damaged_checkpoints/<step>, so that the run
  can write those steps again; nothing is deleted."""
  root = epath.Path(manager.directory)
  if jax.process_index() == 0:
    for step in steps:
      target = root.parent / DAMAGED / str(step)
      target.parent.mkdir(parents=True, exist_ok=True)
      if target.exists():
        target.rmtree()
      (root / str(step)).rename(target)
      logging.warning("moved unreadable checkpoint %d to %s", step, target)
  if jax.process_count() > 1:
    multihost_utils.sync_global_devices("alexnet_jax: damaged checkpoints set aside")
  manager.reload()


def abstract(tree: Any, shardings: Any) -> Any:
  return jax.tree.map(lambda x, s: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=s),
                      tree, shardings)
