"""Checkpoints with orbax: the train state plus a small JSON of loop state, in the workdir.

`<workdir>/checkpoints/<step>/` holds `state` (params, optimiser state, step; restored onto
whatever shardings the caller asks for, so a checkpoint from any mesh restores on any other),
`meta` (the plateau schedule's best validation error and count of bad evaluations) and
`data` (the input pipeline's position: grain's iterator state, one file per process). Orbax
writes each step into a temporary directory and renames it when complete, so a crash
mid-save never leaves a checkpoint that restores half-written; `latest_step` only sees
finished ones.
Kept: the newest `keep` checkpoints and the one with the lowest validation top-1 error.
"""
from __future__ import annotations

import os
from typing import Any

import grain
import jax
import orbax.checkpoint as ocp
from orbax.checkpoint import checkpoint_managers as policies

from alexnet_jax import workdir as workdir_lib

EVAL_METRIC = "eval_top1_error"


def checkpoint_dir(workdir: str) -> str:
  return workdir_lib.checkpoint_dir(workdir)


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
                               item_names=("state", "meta", "data"))


def save(manager: ocp.CheckpointManager, step: int, state: Any, meta: dict,
         metrics: dict | None = None, data: Any = None) -> None:
  """Writes step `step` (with `data`, the training batches' iterator, when given); raises
  OSError with the directory named if it cannot."""
  items = {"state": ocp.args.StandardSave(state), "meta": ocp.args.JsonSave(meta)}
  if data is not None:
    items["data"] = grain.checkpoint.CheckpointSave(data)
  try:
    manager.save(step, args=ocp.args.Composite(**items), metrics=metrics, force=True)
    manager.wait_until_finished()
  except Exception as e:  # orbax wraps I/O errors in several types
    raise OSError(f"could not write checkpoint {step} in {manager.directory}: {e}") from e


def best_step(manager: ocp.CheckpointManager) -> int | None:
  return manager.best_step()


def restore(manager: ocp.CheckpointManager, step: int, abstract_state: Any, data: Any = None
            ) -> tuple[Any, dict]:
  """State laid out as `abstract_state` (ShapeDtypeStructs with shardings), and the meta;
  `data`, the training batches' iterator, is set to where the checkpoint left it."""
  items = {"state": ocp.args.StandardRestore(abstract_state), "meta": ocp.args.JsonRestore()}
  if data is not None:
    if not os.path.isdir(os.path.join(manager.directory, str(step), "data")):
      raise ValueError(f"checkpoint {step} in {manager.directory} has no input pipeline state "
                       "(an older version wrote it); use a new workdir")
    items["data"] = grain.checkpoint.CheckpointRestore(data)
  try:
    out = manager.restore(step, args=ocp.args.Composite(**items))
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
