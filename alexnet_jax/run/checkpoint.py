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

Each step also carries, in orbax's step metadata (`custom_metadata["run"]`), the run.json
record of the config that wrote it (run_info.py), so that the config guard holds and a lost
run.json can be rebuilt from the checkpoint itself. Checkpoints written before this have
none, and still restore.

This module is the one reader and writer of checkpoints: training, inference, fine-tuning
and the importers open managers, resolve steps, compare shapes and restore parameters here.
"""
from __future__ import annotations

import contextlib
import logging as py_logging
import re
from typing import Any, Sequence

import jax
import jax.numpy as jnp
import numpy as np
import orbax.checkpoint as ocp
from absl import logging
from etils import epath
from jax.experimental import multihost_utils
from orbax.checkpoint import checkpoint_managers as policies

from alexnet_jax.base import messages
from alexnet_jax.base import workdir as workdir_lib
from alexnet_jax.nn import models

EVAL_METRIC = "eval_top1_error"
DAMAGED = "damaged_checkpoints"
RUN = "run"   # the step metadata's key for the run.json record of the config that wrote it


class _QuietOrbax(py_logging.Filter):
  """Drops orbax warnings that say nothing to a user here: saves without an evaluation
  carry no metric by design, and predict and evaluate open workdirs read-only on purpose."""
  NOISE = ("Requested `tracked_metric`; did not provide metrics.",
           "Given directory is read only", "CheckpointManagerOptions.read_only=True")

  def filter(self, record: py_logging.LogRecord) -> bool:
    return not str(record.msg).startswith(self.NOISE)


_QUIET = _QuietOrbax()
py_logging.getLogger("absl").addFilter(_QUIET)   # orbax logs through absl


class Mismatch(ValueError):
  """The checkpoint is intact but holds another model's or optimiser's state."""


def create_manager(workdir, keep: int = 3, read_only: bool = False) -> ocp.CheckpointManager:
  """The workdir's manager. Its `checkpoints/` folder is made by the first save, not here,
  so that a run that fails before it starts leaves none behind."""
  preserve = policies.AnyPreservationPolicy([
      policies.LatestN(n=keep),
      policies.BestN(get_metric_fn=lambda m: m[EVAL_METRIC], reverse=True, n=1,
                     keep_checkpoints_without_metrics=False),
  ])
  options = ocp.CheckpointManagerOptions(
      # best_fn makes orbax record the metrics passed to save(); preservation and
      # best_step() (the "best" of resolve_step) use them.
      best_fn=lambda m: m[EVAL_METRIC], best_mode="min",
      preservation_policy=preserve, create=False, read_only=read_only,
      cleanup_tmp_directories=not read_only,   # saves a crash interrupted
      enable_async_checkpointing=False)
  return ocp.CheckpointManager(workdir_lib.checkpoint_dir(workdir), options=options,
                               item_names=("state", "meta"))


def open_steps(workdir) -> tuple[ocp.CheckpointManager, list[int]]:
  """A read-only manager of a workdir and its steps; FileNotFoundError when it has none."""
  directory = workdir_lib.checkpoint_dir(workdir)
  if not epath.Path(directory).is_dir():
    raise FileNotFoundError(f"no checkpoints in {workdir}: {directory} does not exist")
  manager = create_manager(workdir, read_only=True)
  steps = sorted(manager.all_steps())
  if not steps:
    manager.close()
    raise FileNotFoundError(f"no checkpoints in {directory}")
  return manager, steps


def resolve_step(manager: ocp.CheckpointManager, steps: Sequence[int], step: int | str) -> int:
  """'latest', 'best' (lowest validation top-1 error) or a step number -> a saved step."""
  where, available = manager.directory, ", ".join(map(str, steps))
  if isinstance(step, str) and step.strip().isdigit():
    step = int(step)
  if isinstance(step, (int, np.integer)) and not isinstance(step, bool):
    if step not in steps:
      raise ValueError(f"no checkpoint for step {step} in {where}; available steps: {available}")
    return int(step)
  if step == "latest":
    return steps[-1]
  if step == "best":   # orbax's, from the metrics each save recorded
    best = manager.best_step()
    if best is None:
      raise ValueError(f"no checkpoint in {where} has a recorded validation error, so none is "
                       f"'best'; available steps: {available}")
    return best
  raise ValueError(f"step must be 'latest', 'best' or a step number, got {step!r}")


def save(manager: ocp.CheckpointManager, step: int, state: Any, meta: dict,
         metrics: dict | None = None, run: dict | None = None) -> None:
  """Writes step `step`, with `run` (run.json's record) in its metadata; raises OSError
  with the directory named if it cannot."""
  items = {"state": ocp.args.StandardSave(state), "meta": ocp.args.JsonSave(meta)}
  try:
    manager.save(step, args=ocp.args.Composite(**items), metrics=metrics, force=True,
                 custom_metadata={RUN: run} if run else None)
    manager.wait_until_finished()
  except Exception as e:  # orbax wraps I/O errors in several types
    raise OSError(f"could not write checkpoint {step} in {manager.directory}: "
                  f"{failure_reason(e)}") from e


# What tensorstore appends to a failure: where in its source, and the whole spec (a JSON of
# hundreds of characters). Dropped, so that the OS's reason ends the line and survives it.
_TENSORSTORE_DETAIL = re.compile(r"\s*\[(?:source locations|tensorstore_spec)='.*?'\]", re.S)


def failure_reason(error: BaseException, limit: int = 300) -> str:
  """A failed save or restore in one line of at most `limit` characters, ending with the
  reason ('File too large', 'No space left on device') rather than tensorstore's spec."""
  return messages.one_line(_TENSORSTORE_DETAIL.sub("", str(error)) or repr(error), limit)


def stored_run(manager: ocp.CheckpointManager, step: int) -> dict | None:
  """The run.json record saved with `step`; None for a checkpoint written before steps
  carried one, or whose metadata cannot be read."""
  try:
    run = (manager.metadata(step).custom_metadata or {}).get(RUN)
  except Exception:  # pylint: disable=broad-except  # a damaged step: orbax raises several types
    return None
  return run if isinstance(run, dict) and isinstance(run.get("config"), dict) else None


# ------------------------------------------------------------------------ shapes

def abstract_params(model: models.AlexNet, image_size: int) -> Any:
  """The model's parameters as ShapeDtypeStructs: what a checkpoint's are compared with."""
  return jax.eval_shape(lambda: model.init(
      jax.random.key(0), jnp.zeros((1, image_size, image_size, 3)))["params"])


def leaf_shapes(tree) -> dict[str, tuple]:
  """'conv1/kernel' (or 'params/conv1/kernel' in a state) -> shape."""
  return {jax.tree_util.keystr(path, simple=True, separator="/"): tuple(leaf.shape)
          for path, leaf in jax.tree_util.tree_flatten_with_path(tree)[0]}


def stored_shapes(manager: ocp.CheckpointManager, step: int) -> dict[str, tuple]:
  """The shapes of the state saved at `step`, from its metadata (readable even where its
  arrays are not); OSError when the metadata itself is gone."""
  try:
    return leaf_shapes(ocp.StandardCheckpointHandler().metadata(
        epath.Path(manager.directory) / str(step) / "state").tree)
  except Exception as e:  # a missing or damaged folder: orbax raises several types
    raise OSError(failure_reason(e)) from e


def differences(there: dict[str, tuple], here: dict[str, tuple]
                ) -> list[tuple[str, tuple | None, tuple | None]]:
  """(name, shape there, shape here) of every array that differs, by name; None where it
  is absent. The one comparison of checkpoints, imported weights and models."""
  return [(name, there.get(name), here.get(name)) for name in sorted(set(there) | set(here))
          if there.get(name) != here.get(name)]


def describe(difference: tuple, there: str = "the checkpoint",
             here: str = "this config's model") -> str:
  """One difference from `differences` in words, naming its layer."""
  name, a, b = difference
  layer = _layer(name)
  if a is None:
    return f"layer {layer} ({name}) is in {here} but not in {there}"
  if b is None:
    return f"layer {layer} ({name}) is in {there} but not in {here}"
  return f"layer {layer}: {name} has shape {a} in {there} but {b} in {here}"


def _layer(name: str) -> str:
  parts = name.split("/")
  return parts[-2] if len(parts) > 1 else parts[0]


def _check_fits(manager: ocp.CheckpointManager, step: int, abstract_state: Any) -> None:
  """Mismatch naming the first array that differs, when the checkpoint's own metadata
  describes another state; OSError when the metadata itself is gone."""
  found = differences(stored_shapes(manager, step), leaf_shapes(abstract_state))
  if found:
    raise Mismatch(f"checkpoint {step} in {manager.directory} does not fit this "
                   f"configuration: {describe(found[0])} (a different model or optimiser "
                   "wrote it); use a new workdir")


@contextlib.contextmanager
def readable(manager: ocp.CheckpointManager, step: int, steps: Sequence[int]):
  """Reading a checkpoint whose files are damaged or missing (orbax and tensorstore raise
  many types, with pages of detail) is a ValueError of one line naming it."""
  try:
    yield
  except Exception as e:  # pylint: disable=broad-except
    others = ", ".join(str(s) for s in steps if s != step) or "none"
    raise ValueError(f"checkpoint {step} in {manager.directory} cannot be read: it is "
                     f"damaged or incomplete ({type(e).__name__}: {failure_reason(e, 200)}); other "
                     f"steps: {others} (--step)") from e


def restore_params(manager: ocp.CheckpointManager, step: int, target: Any) -> Any:
  """The parameters named in `target` (ShapeDtypeStructs with shardings, a subset of the
  checkpoint's) read from `step`, and nothing else: no optimiser state."""
  target = {"params": target}
  out = manager.restore(step, args=ocp.args.Composite(state=ocp.args.PyTreeRestore(
      item=target, restore_args=ocp.checkpoint_utils.construct_restore_args(target),
      partial_restore=True)))
  return out["state"]["params"]


def restore(manager: ocp.CheckpointManager, step: int, abstract_state: Any
            ) -> tuple[Any, dict]:
  """State laid out as `abstract_state` (ShapeDtypeStructs with shardings), and the meta.
  Mismatch when the checkpoint holds another state; OSError when it cannot be read."""
  _check_fits(manager, step, abstract_state)
  items = {"state": ocp.args.StandardRestore(abstract_state), "meta": ocp.args.JsonRestore()}
  try:
    out = manager.restore(step, args=ocp.args.Composite(**items))
  except Exception as e:  # lost or damaged array files: tensorstore's errors, several types
    raise OSError(failure_reason(e)) from e
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
