"""Checkpoints with orbax: the train state plus a small JSON of loop state, in the workdir.

`<workdir>/checkpoints/<step>/` holds `state` (params, optimiser state, step; restored onto
whatever shardings the caller asks for, so a checkpoint from any mesh restores on any other)
and `meta` (the plateau schedule's best validation error and count of bad evaluations). Orbax writes each step
into a temporary directory and renames it when complete, so a crash mid-save never leaves a
checkpoint that restores half-written; `latest_step` only sees finished ones.
Kept: the newest `keep` checkpoints and the one with the lowest validation top-1 error.
"""
from __future__ import annotations

import os
from typing import Any

import jax
import orbax.checkpoint as ocp
from orbax.checkpoint import checkpoint_managers as policies

EVAL_METRIC = "eval_top1_error"


def checkpoint_dir(workdir: str) -> str:
  return os.path.join(os.path.abspath(workdir), "checkpoints")


def create_manager(workdir: str, keep: int = 3, read_only: bool = False) -> ocp.CheckpointManager:
  preserve = policies.AnyPreservationPolicy([
      policies.LatestN(n=keep),
      policies.BestN(get_metric_fn=lambda m: m[EVAL_METRIC], reverse=True, n=1,
                     keep_checkpoints_without_metrics=False),
  ])
  options = ocp.CheckpointManagerOptions(
      # best_fn makes orbax record the metrics passed to save(); preservation uses them.
      best_fn=lambda m: m[EVAL_METRIC], best_mode="min",
      preservation_policy=preserve, create=not read_only, read_only=read_only,
      cleanup_tmp_directories=not read_only,   # saves a crash interrupted
      enable_async_checkpointing=False)
  return ocp.CheckpointManager(checkpoint_dir(workdir), options=options,
                               item_names=("state", "meta"))


def save(manager: ocp.CheckpointManager, step: int, state: Any, meta: dict,
         metrics: dict | None = None) -> None:
  """Writes step `step`; raises OSError with the directory named if it cannot."""
  try:
    manager.save(step, args=ocp.args.Composite(state=ocp.args.StandardSave(state),
                                               meta=ocp.args.JsonSave(meta)),
                 metrics=metrics, force=True)
    manager.wait_until_finished()
  except Exception as e:  # orbax wraps I/O errors in several types
    raise OSError(f"could not write checkpoint {step} in {manager.directory}: {e}") from e


def best_step(manager: ocp.CheckpointManager) -> int | None:
  return manager.best_step()


def restore(manager: ocp.CheckpointManager, step: int, abstract_state: Any) -> tuple[Any, dict]:
  """State laid out as `abstract_state` (ShapeDtypeStructs with shardings), and the meta."""
  try:
    out = manager.restore(step, args=ocp.args.Composite(
        state=ocp.args.StandardRestore(abstract_state), meta=ocp.args.JsonRestore()))
  except ValueError as e:
    raise ValueError(
        f"checkpoint {step} in {manager.directory} does not fit this configuration (a "
        f"different model, optimiser or schedule wrote it); use a new workdir. "
        f"orbax: {str(e).splitlines()[0]}") from e
  return out["state"], out["meta"]


def restore_meta(manager: ocp.CheckpointManager, step: int) -> dict:
  return manager.restore(step, args=ocp.args.Composite(meta=ocp.args.JsonRestore()))["meta"]


def abstract(tree: Any, shardings: Any) -> Any:
  return jax.tree.map(lambda x, s: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=s),
                      tree, shardings)
