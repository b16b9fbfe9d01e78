"""Ablation sweeps: a grid of config overrides x seeds, each variant its own training run.

A sweep definition is a Python file (experiments/sweeps/<name>.py) with

    def get_sweep(base_cfg) -> list[dict]   # variants as {dotted config field: value}
    SEEDS = (0, 1)                          # default seeds; the grid is variants x seeds
    def label(overrides) -> str             # optional: a short readable variant name
    TRAIN_ERROR_THRESHOLDS = (0.25,)        # optional: report epochs to reach these
                                            # training errors (the paper's Figure 1)

`run_sweep` trains every (variant, seed) in `<root>/<variant>,seed=<seed>` through
`train.train_and_evaluate`, one after another. A finished run leaves `result.json`
(written atomically) and is skipped by a rerun; an interrupted one has no `result.json` and
resumes from its latest checkpoint. `write_reports` then writes `<root>/results.csv`,
`<root>/results.md` (mean ± std over seeds) and `<root>/curves.png`.
"""
from __future__ import annotations

import dataclasses
import hashlib
import os
import re
import time
import types
from typing import Any, Callable, Sequence

import ml_collections
from absl import logging

from alexnet_jax.base import pyfile
from alexnet_jax.base import workdir as workdir_lib
from alexnet_jax.programs import train



@dataclasses.dataclass(frozen=True)
class Run:
  """One training run of a sweep: a variant's overrides plus a seed."""
  variant: str             # the name shared by all seeds, e.g. 'lrn=False,pool=3-2'
  overrides: dict          # {dotted config field: value}, without the seed
  seed: int

  @property
  def name(self) -> str:   # the run's directory under the sweep root
    return f"{self.variant},seed={self.seed}"


# ------------------------------------------------------------------------ definitions

def load_definition(path: str) -> types.ModuleType:
  """Imports a sweep definition file; ValueError (one line, naming the file and the line)
  when it is missing, does not import, or has no get_sweep."""
  what = f"sweep definition {path!r}"
  module = pyfile.load(path, what)
  if not callable(getattr(module, "get_sweep", None)):
    raise ValueError(f"{what} has no get_sweep(base_cfg)")
  return module


def _format_value(value: Any) -> str:
  if isinstance(value, (tuple, list)):
    return "-".join(_format_value(v) for v in value)
  if isinstance(value, float):
    return f"{value:g}"
  return str(value)


def default_label(overrides: dict) -> str:
  """'model.lrn': False, 'model.features': (8, 16) -> 'lrn=False,features=8-16'."""
  if not overrides:
    return "base"
  return ",".join(f"{k.rsplit('.', 1)[-1]}={_format_value(v)}" for k, v in overrides.items())


def safe_name(name: str) -> str:
  """A directory name: letters, digits and . _ = , + - only; never '.' or '..'."""
  name = re.sub(r"[^A-Za-z0-9._=,+-]", "_", name).strip(".") or "base"
  return name[:200]


def make_runs(definition: types.ModuleType, base_cfg: ml_collections.ConfigDict,
              seeds: Sequence[int] | None = None) -> list[Run]:
  """The grid: every variant of `definition` for every seed (the definition's SEEDS by
  default), seed-major, each checked to apply to `base_cfg`."""
  variants = definition.get_sweep(base_cfg)
  label = getattr(definition, "label", default_label)
  seeds = tuple(getattr(definition, "SEEDS", (0,)) if seeds is None else seeds)
  if not seeds:
    raise ValueError("a sweep needs at least one seed")
  named = {}
  for overrides in variants:
    overrides = {k: tuple(v) if isinstance(v, list) else v for k, v in overrides.items()}
    apply_overrides(base_cfg, overrides)   # fails early on a field the config lacks
    name = safe_name(label(overrides))
    if name in named:
      raise ValueError(f"two variants are both named {name!r}")
    named[name] = overrides
  # Seed-major: every variant once before any twice, so a sweep cut short is still a
  # complete comparison over fewer seeds.
  return [Run(name, overrides, int(s)) for s in seeds for name, overrides in named.items()]


def apply_overrides(cfg: ml_collections.ConfigDict, overrides: dict
                    ) -> ml_collections.ConfigDict:
  """A copy of `cfg` with dotted fields set (`ConfigDict.update_from_flattened_dict`,
  lists as tuples); a field the config does not have is a KeyError, not a new field."""
  cfg = cfg.copy_and_resolve_references()
  was_locked = cfg.is_locked
  cfg.lock()
  try:
    cfg.update_from_flattened_dict(
        {k: tuple(v) if isinstance(v, list) else v for k, v in overrides.items()})
  except KeyError as e:
    detail = str(e.args[0]).split(" Other fields present")[0]   # not the whole config
    raise KeyError(f"a sweep override names no field of the config: {detail}") from None
  finally:
    if not was_locked:
      cfg.unlock()
  return cfg


def run_config(base_cfg: ml_collections.ConfigDict, run: Run) -> ml_collections.ConfigDict:
  return apply_overrides(base_cfg, {**run.overrides, "seed": run.seed})


def config_hash(cfg: ml_collections.ConfigDict) -> str:
  return hashlib.sha256(cfg.to_json_best_effort(sort_keys=True).encode()).hexdigest()[:16]


# --------------------------------------------------------------------------- running

def read_result(workdir: str) -> dict | None:
  return workdir_lib.read_json(os.path.join(workdir, workdir_lib.RESULT))


def run_one(cfg: ml_collections.ConfigDict, run: Run, workdir: str,
            train_fn: Callable[[ml_collections.ConfigDict, str], dict]) -> dict:
  """Trains one run to the end (resuming if interrupted) and writes its result.json."""
  previous = workdir_lib.read_metrics(workdir)
  resumed_from = max((r["step"] for r in previous), default=0)
  t0 = time.time()
  status, metrics = "ok", None
  try:
    metrics = train_fn(cfg, workdir)
  except train.LossIsNotFinite as e:
    # A diverged run is a result of the ablation (e.g. a too-high rate for tanh), not a
    # reason to lose the rest of the sweep; anything else propagates.
    logging.warning("run %s diverged: %s", run.name, e)
    status = "diverged"
  wall = time.time() - t0
  records = workdir_lib.read_metrics(workdir)
  result = {
      "name": run.name, "variant": run.variant, "seed": run.seed,
      "overrides": {k: list(v) if isinstance(v, tuple) else v for k, v in run.overrides.items()},
      "status": status,
      "metrics": {k: float(v) for k, v in (metrics or {}).items()},
      "step": max((r["step"] for r in records), default=0),
      "epoch": max((r["epoch"] for r in records), default=0.0),
      "wall_s": wall,          # this (the finishing) invocation only
      "resumed_from_step": resumed_from,
      "config_hash": config_hash(cfg),
      "finished_at": time.strftime("%Y-%m-%dT%H:%M:%S"),
  }
  workdir_lib.write_json_atomic(os.path.join(workdir, workdir_lib.RESULT), result)
  return result


def run_sweep(base_cfg: ml_collections.ConfigDict, runs: Sequence[Run], root: str,
              train_fn: Callable[[ml_collections.ConfigDict, str], dict] | None = None
              ) -> list[dict]:
  """Runs every run without a result.json, in order; returns all runs' results."""
  train_fn = train_fn or train.train_and_evaluate
  for run in runs:   # every variant's configuration errors before the first one trains
    train.validate(run_config(base_cfg, run))
  workdir_lib.resolve(root).mkdir(parents=True, exist_ok=True)   # a folder or a gs:// URL
  results = []
  for i, run in enumerate(runs):
    workdir = os.path.join(root, run.name)
    result = read_result(workdir)
    cfg = run_config(base_cfg, run)
    if result is not None:
      logging.info("sweep [%d/%d] %s: finished before, skipped", i + 1, len(runs), run.name)
      if result.get("config_hash", config_hash(cfg)) != config_hash(cfg):
        logging.warning("%s finished with a different config than this sweep's (see its "
                        "run.json); delete the directory to train it again", workdir)
    else:
      logging.info("sweep [%d/%d] %s: training", i + 1, len(runs), run.name)
      result = run_one(cfg, run, workdir, train_fn)
      logging.info("sweep [%d/%d] %s: %s, top-1 error %s, %.0f s", i + 1, len(runs), run.name,
                   result["status"], result["metrics"].get("top1_error"), result["wall_s"])
    results.append(result)
  return results
