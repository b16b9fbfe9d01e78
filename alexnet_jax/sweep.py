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

import csv
import dataclasses
import hashlib
import importlib.util
import json
import math
import os
import re
import time
import types
from typing import Any, Callable, Sequence

import ml_collections
import numpy as np
from absl import logging

from alexnet_jax import train

RESULT_FILE = "result.json"
METRICS_FILE = "metrics.jsonl"


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
  """Imports a sweep definition file (it need not be on the Python path)."""
  name = "sweep_" + re.sub(r"\W", "_", os.path.splitext(os.path.basename(path))[0])
  spec = importlib.util.spec_from_file_location(name, path)
  if spec is None or spec.loader is None:
    raise ValueError(f"cannot import sweep definition {path!r}")
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  if not callable(getattr(module, "get_sweep", None)):
    raise ValueError(f"sweep definition {path!r} has no get_sweep(base_cfg)")
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
  """A copy of `cfg` with dotted fields set; a field the config does not have is an error."""
  cfg = cfg.copy_and_resolve_references()
  for key, value in overrides.items():
    *parents, leaf = key.split(".")
    node = cfg
    for p in parents:
      node = node[p]
    if leaf not in node:
      raise KeyError(f"sweep override {key!r}: the config has no field {leaf!r}")
    node[leaf] = tuple(value) if isinstance(value, list) else value
  return cfg


def run_config(base_cfg: ml_collections.ConfigDict, run: Run) -> ml_collections.ConfigDict:
  return apply_overrides(base_cfg, {**run.overrides, "seed": run.seed})


def config_hash(cfg: ml_collections.ConfigDict) -> str:
  return hashlib.sha256(cfg.to_json_best_effort(sort_keys=True).encode()).hexdigest()[:16]


# --------------------------------------------------------------------------- running

def _write_json_atomic(path: str, obj: Any) -> None:
  tmp = f"{path}.tmp.{os.getpid()}"
  with open(tmp, "w") as f:
    json.dump(obj, f, indent=1)
    f.flush()
    os.fsync(f.fileno())
  os.replace(tmp, path)


def read_result(workdir: str) -> dict | None:
  path = os.path.join(workdir, RESULT_FILE)
  if not os.path.exists(path):
    return None
  with open(path) as f:
    return json.load(f)


def read_metrics(workdir: str) -> list[dict]:
  """metrics.jsonl, ordered by step; where a resumed run logged a step again, the later
  record of each kind (train or eval) wins."""
  path = os.path.join(workdir, METRICS_FILE)
  if not os.path.exists(path):
    return []
  records = {}
  with open(path) as f:
    for line in f:
      line = line.strip()
      if not line:
        continue
      try:
        rec = json.loads(line)
      except json.JSONDecodeError:   # a line cut short by a kill
        continue
      kind = "eval" if any(k.startswith("eval_") for k in rec) else "train"
      records[(rec["step"], kind)] = rec
  return [records[k] for k in sorted(records, key=lambda k: (k[0], k[1] == "eval"))]


def run_one(cfg: ml_collections.ConfigDict, run: Run, workdir: str,
            train_fn: Callable[[ml_collections.ConfigDict, str], dict]) -> dict:
  """Trains one run to the end (resuming if interrupted) and writes its result.json."""
  previous = read_metrics(workdir)
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
  records = read_metrics(workdir)
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
  _write_json_atomic(os.path.join(workdir, RESULT_FILE), result)
  return result


def run_sweep(base_cfg: ml_collections.ConfigDict, runs: Sequence[Run], root: str,
              train_fn: Callable[[ml_collections.ConfigDict, str], dict] | None = None
              ) -> list[dict]:
  """Runs every run without a result.json, in order; returns all runs' results."""
  train_fn = train_fn or train.train_and_evaluate
  os.makedirs(root, exist_ok=True)
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


# --------------------------------------------------------------------------- reports

def epochs_to_train_error(records: Sequence[dict], threshold: float) -> float | None:
  """The first logged epoch at which the training top-1 error (averaged over the logging
  window) is at or below `threshold`; None if never."""
  for r in records:
    if "train_top1_error" in r and r["train_top1_error"] <= threshold:
      return float(r["epoch"])
  return None


def _mean_std(values: Sequence[float]) -> tuple[float, float]:
  a = np.asarray(values, dtype=np.float64)
  if a.size == 0:
    return math.nan, math.nan
  return float(a.mean()), float(a.std(ddof=1)) if a.size > 1 else math.nan


def summarize(runs: Sequence[Run], root: str,
              thresholds: Sequence[float] = ()) -> list[dict]:
  """One row per variant, in sweep order, aggregated over the seeds that finished."""
  rows = []
  for variant in dict.fromkeys(r.variant for r in runs):
    vruns = [r for r in runs if r.variant == variant]
    results = [(r, read_result(os.path.join(root, r.name))) for r in vruns]
    done = [(r, res) for r, res in results if res is not None]
    ok = [(r, res) for r, res in done if res["status"] == "ok"]
    row = {"variant": variant, "overrides": json.dumps(vruns[0].overrides, default=list),
           "seeds": " ".join(str(r.seed) for r, _ in ok), "n": len(ok),
           "diverged": sum(res["status"] != "ok" for _, res in done),
           "missing": len(vruns) - len(done)}
    for key in ("top1_error", "top5_error"):
      row[f"{key}_mean"], row[f"{key}_std"] = _mean_std([res["metrics"][key] for _, res in ok])
    row["steps"], _ = _mean_std([res["step"] for _, res in ok])
    row["epochs"], _ = _mean_std([res["epoch"] for _, res in ok])
    row["wall_s_mean"], row["wall_s_std"] = _mean_std([res["wall_s"] for _, res in ok])
    for t in thresholds:
      reached = [epochs_to_train_error(read_metrics(os.path.join(root, r.name)), t)
                 for r, _ in ok]
      key = f"epochs_to_train_error_{t:g}"
      if ok and all(e is not None for e in reached):
        row[f"{key}_mean"], row[f"{key}_std"] = _mean_std(reached)
        row[f"{key}_note"] = ""
      else:
        row[f"{key}_mean"] = row[f"{key}_std"] = math.nan
        row[f"{key}_note"] = (f"not reached ({sum(e is not None for e in reached)}/{len(ok)} "
                              "seeds)" if ok else "")
    rows.append(row)
  return rows


def _pm(mean: float, std: float, scale: float = 1.0, digits: int = 2) -> str:
  if math.isnan(mean):
    return "–"
  if math.isnan(std):
    return f"{mean * scale:.{digits}f}"
  return f"{mean * scale:.{digits}f} ± {std * scale:.{digits}f}"


def write_csv(rows: Sequence[dict], path: str) -> None:
  if not rows:
    return
  fields = list(dict.fromkeys(k for row in rows for k in row))
  with open(path + ".tmp", "w", newline="") as f:
    writer = csv.DictWriter(f, fieldnames=fields)
    writer.writeheader()
    for row in rows:
      writer.writerow({k: (f"{v:.6g}" if isinstance(v, float) else v) for k, v in row.items()})
  os.replace(path + ".tmp", path)


def markdown_table(rows: Sequence[dict], thresholds: Sequence[float] = ()) -> str:
  head = ["variant", "seeds", "top-1 error (%)", "top-5 error (%)", "steps", "epochs",
          "wall time / run (s)"]
  head += [f"epochs to {t * 100:g}% train error" for t in thresholds]
  lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
  for row in rows:
    seeds = row["seeds"] or "none"
    if row["diverged"]:
      seeds += f" ({row['diverged']} diverged)"
    if row["missing"]:
      seeds += f" ({row['missing']} not run yet)"
    cells = [f"`{row['variant']}`", seeds,
             _pm(row["top1_error_mean"], row["top1_error_std"], 100),
             _pm(row["top5_error_mean"], row["top5_error_std"], 100),
             _pm(row["steps"], math.nan, digits=0), _pm(row["epochs"], math.nan),
             _pm(row["wall_s_mean"], row["wall_s_std"], digits=0)]
    for t in thresholds:
      key = f"epochs_to_train_error_{t:g}"
      cells.append(row[f"{key}_note"] or _pm(row[f"{key}_mean"], row[f"{key}_std"]))
    lines.append("| " + " | ".join(cells) + " |")
  return "\n".join(lines) + "\n"


def write_markdown(rows: Sequence[dict], path: str, title: str, notes: str = "",
                   thresholds: Sequence[float] = ()) -> None:
  text = f"# {title}\n\n"
  text += markdown_table(rows, thresholds)
  text += ("\nMean ± sample standard deviation over seeds of the final evaluation "
           "(validation/test split); wall time is the finishing invocation's.\n")
  if thresholds:
    text += ("Epochs to a training error: the first logging window whose mean training "
             "top-1 error is at or below it (Figure 1 of the paper uses 25%).\n")
  if notes:
    text += "\n" + notes.strip() + "\n"
  with open(path + ".tmp", "w") as f:
    f.write(text)
  os.replace(path + ".tmp", path)


def _mean_curve(runs: Sequence[Run], root: str, key: str) -> tuple[np.ndarray, np.ndarray]:
  """(epochs, mean of `key`) over the runs, at the steps that every run logged."""
  per_run = []
  for r in runs:
    recs = read_metrics(os.path.join(root, r.name))
    per_run.append({rec["step"]: (rec["epoch"], rec[key]) for rec in recs if key in rec})
  per_run = [c for c in per_run if c]
  if not per_run:
    return np.zeros(0), np.zeros(0)
  steps = sorted(set.intersection(*(set(c) for c in per_run)))
  epochs = np.array([per_run[0][s][0] for s in steps])
  values = np.array([np.mean([c[s][1] for c in per_run]) for s in steps])
  return epochs, values


def plot_curves(runs: Sequence[Run], root: str, path: str, title: str = "",
                thresholds: Sequence[float] = ()) -> None:
  """Validation top-1 error against epoch for each variant (mean over its seeds); with
  training-error thresholds, a second panel of training error as in the paper's Figure 1."""
  import matplotlib   # pylint: disable=import-outside-toplevel
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt   # pylint: disable=import-outside-toplevel

  panels = [("eval_top1_error", "validation top-1 error")]
  if thresholds:
    panels.append(("train_top1_error", "training top-1 error"))
  fig, axes = plt.subplots(1, len(panels), figsize=(6.5 * len(panels), 4.5), squeeze=False)
  for ax, (key, ylabel) in zip(axes[0], panels):
    for variant in dict.fromkeys(r.variant for r in runs):
      vruns = [r for r in runs if r.variant == variant]
      x, y = _mean_curve(vruns, root, key)
      if x.size:
        ax.plot(x, y, marker="o" if key.startswith("eval") else None, markersize=3,
                label=f"{variant} (n={len(vruns)})")
    if key.startswith("train"):
      for t in thresholds:
        ax.axhline(t, color="grey", linestyle="--", linewidth=0.8)
    ax.set_xlabel("epoch")
    ax.set_ylabel(ylabel)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
  if title:
    fig.suptitle(title)
  fig.tight_layout()
  fig.savefig(path + ".tmp.png", dpi=110)
  plt.close(fig)
  os.replace(path + ".tmp.png", path)


def write_reports(runs: Sequence[Run], root: str, title: str = "Sweep",
                  thresholds: Sequence[float] = (), notes: str = "") -> list[dict]:
  """results.csv, results.md and curves.png under `root`; returns the rows."""
  rows = summarize(runs, root, thresholds)
  write_csv(rows, os.path.join(root, "results.csv"))
  write_markdown(rows, os.path.join(root, "results.md"), title, notes, thresholds)
  plot_curves(runs, root, os.path.join(root, "curves.png"), title, thresholds)
  return rows
