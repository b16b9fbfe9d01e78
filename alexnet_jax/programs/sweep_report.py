"""A sweep's reports: results.csv, results.md and curves.png from its runs' result.json
and metrics.jsonl (mean and standard deviation over seeds, each variant's difference to the
first with its standard error and Welch's p-value, epochs to a training error).

Written atomically (a temporary file, then a rename), so a report is never half written.
"""
from __future__ import annotations

import csv
import json
import math
import os
from typing import Sequence

import numpy as np

from alexnet_jax.base import workdir as workdir_lib
from alexnet_jax.programs import visualize
from alexnet_jax.programs.sweep import Run, read_result


def epochs_to_train_error(records: Sequence[dict], threshold: float) -> float | None:
  """The first logged epoch at which the training top-1 error (averaged over the logging
  window) is at or below `threshold`; None if never."""
  for r in records:
    if "train_top1_error" in r and r["train_top1_error"] <= threshold:
      return float(r["epoch"])
  return None


def epochs_to_train_error_epoch_mean(records: Sequence[dict], threshold: float
                                     ) -> float | None:
  """The first whole epoch E whose mean training top-1 error, over the logging windows
  that end in (E - 1, E], is at or below `threshold`; None if never. Less at the mercy of
  one lucky window than `epochs_to_train_error`."""
  windows: dict[int, list[float]] = {}
  for r in records:
    if "train_top1_error" in r:
      windows.setdefault(math.ceil(round(r["epoch"], 6)), []).append(r["train_top1_error"])
  for epoch in sorted(windows):
    if np.mean(windows[epoch]) <= threshold:
      return float(epoch)
  return None


def last_train_error(records: Sequence[dict]) -> float | None:
  """The training top-1 error of the last logging window; None if none was logged."""
  errors = [r["train_top1_error"] for r in records if "train_top1_error" in r]
  return float(errors[-1]) if errors else None


def _mean_std(values: Sequence[float]) -> tuple[float, float]:
  a = np.asarray(values, dtype=np.float64)
  if a.size == 0:
    return math.nan, math.nan
  return float(a.mean()), float(a.std(ddof=1)) if a.size > 1 else math.nan


def summarize(runs: Sequence[Run], root: str,
              thresholds: Sequence[float] = ()) -> list[dict]:
  """One row per variant, in sweep order, aggregated over the seeds that finished."""
  rows, top1 = [], []
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
    top1.append([res["metrics"]["top1_error"] for _, res in ok])
    row.update(_against(top1[-1], top1[0]) if len(top1) > 1 else
               {"top1_diff": math.nan, "top1_diff_se": math.nan, "top1_diff_p": math.nan})
    row["steps"], _ = _mean_std([res["step"] for _, res in ok])
    row["epochs"], _ = _mean_std([res["epoch"] for _, res in ok])
    row["wall_s_mean"], row["wall_s_std"] = _mean_std([res["wall_s"] for _, res in ok])
    logs = [workdir_lib.read_metrics(os.path.join(root, r.name)) for r, _ in ok]
    last = [e for e in map(last_train_error, logs) if e is not None]
    row["last_train_top1_error_mean"], row["last_train_top1_error_std"] = _mean_std(last)
    for t in thresholds:
      reached = [epochs_to_train_error(records, t) for records in logs]
      by_epoch = [epochs_to_train_error_epoch_mean(records, t) for records in logs]
      for key, values in ((f"epochs_to_train_error_{t:g}", reached),
                          (f"epochs_to_train_error_{t:g}_epoch_mean", by_epoch)):
        if ok and all(e is not None for e in values):
          row[f"{key}_mean"], row[f"{key}_std"] = _mean_std(values)
          row[f"{key}_note"] = ""
        else:
          row[f"{key}_mean"] = row[f"{key}_std"] = math.nan
          row[f"{key}_note"] = (f"not reached ({sum(e is not None for e in values)}/"
                                f"{len(ok)} seeds)" if ok else "")
    rows.append(row)
  return rows


def _against(errors: Sequence[float], first: Sequence[float]) -> dict:
  """A variant's top-1 error against the first variant's (the sweep's baseline): the
  difference of the means, its standard error and the two-sided p-value of Welch's t-test,
  which does not assume the two spreads are equal. It ignores that runs of one seed share
  their data order, so it is the cautious test; a variant that changes the parameters'
  shapes also draws other initial weights from the same seed."""
  a, b = np.asarray(errors, np.float64), np.asarray(first, np.float64)
  if a.size < 2 or b.size < 2:
    diff = float(a.mean() - b.mean()) if a.size and b.size else math.nan
    return {"top1_diff": diff, "top1_diff_se": math.nan, "top1_diff_p": math.nan}
  se = math.sqrt(a.var(ddof=1) / a.size + b.var(ddof=1) / b.size)
  # Imported here: scipy.stats is a large part of `launch.sweep`'s start-up (and of every
  # import of this module), and only a report with two seeds per variant needs it.
  from scipy import stats  # pylint: disable=import-outside-toplevel
  p = float(stats.ttest_ind(a, b, equal_var=False).pvalue) if se > 0 else math.nan
  return {"top1_diff": float(a.mean() - b.mean()), "top1_diff_se": se, "top1_diff_p": p}


def _difference(row: dict) -> str:
  if math.isnan(row["top1_diff"]):
    return "–"
  text = f"{row['top1_diff'] * 100:+.2f}"
  if not math.isnan(row["top1_diff_se"]):
    text += f" ± {row['top1_diff_se'] * 100:.2f}"
  if not math.isnan(row["top1_diff_p"]):
    text += f" (p = {row['top1_diff_p']:.2g})"
  return text


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
  with workdir_lib.atomic(path) as tmp, open(tmp, "w", newline="") as f:
    writer = csv.DictWriter(f, fieldnames=fields)
    writer.writeheader()
    for row in rows:
      writer.writerow({k: (f"{v:.6g}" if isinstance(v, float) else v) for k, v in row.items()})


def markdown_table(rows: Sequence[dict], thresholds: Sequence[float] = ()) -> str:
  head = ["variant", "seeds", "top-1 error (%)", "against the first (points)",
          "top-5 error (%)", "steps", "epochs", "wall time / run (s)"]
  head += [h for t in thresholds for h in (f"epochs to {t * 100:g}% train error",
                                            f"whole epochs to {t * 100:g}% (epoch mean)")]
  head += ["last train top-1 error (%)"]
  lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
  for row in rows:
    seeds = row["seeds"] or "none"
    if row["diverged"]:
      seeds += f" ({row['diverged']} diverged)"
    if row["missing"]:
      seeds += f" ({row['missing']} not run yet)"
    cells = [f"`{row['variant']}`", seeds,
             _pm(row["top1_error_mean"], row["top1_error_std"], 100), _difference(row),
             _pm(row["top5_error_mean"], row["top5_error_std"], 100),
             _pm(row["steps"], math.nan, digits=0), _pm(row["epochs"], math.nan),
             _pm(row["wall_s_mean"], row["wall_s_std"], digits=0)]
    for t in thresholds:
      for key in (f"epochs_to_train_error_{t:g}", f"epochs_to_train_error_{t:g}_epoch_mean"):
        cells.append(row[f"{key}_note"] or _pm(row[f"{key}_mean"], row[f"{key}_std"]))
    cells.append(_pm(row["last_train_top1_error_mean"], row["last_train_top1_error_std"], 100))
    lines.append("| " + " | ".join(cells) + " |")
  return "\n".join(lines) + "\n"


def write_markdown(rows: Sequence[dict], path: str, title: str, notes: str = "",
                   thresholds: Sequence[float] = ()) -> None:
  text = f"# {title}\n\n"
  text += markdown_table(rows, thresholds)
  text += ("\nMean ± sample standard deviation over seeds of the final evaluation "
           "(validation/test split); against the first: the difference of the mean top-1 "
           "error to the first variant's, ± its standard error, and the two-sided p-value of "
           "Welch's t-test; wall time is the finishing invocation's; the last training error "
           "is the mean over the last logging window of training steps.\n")
  if thresholds:
    text += ("Epochs to a training error: the first logging window whose mean training "
             "top-1 error is at or below it (Figure 1 of the paper uses 25%); whole epochs: "
             "the first epoch whose windows' mean is.\n")
  if notes:
    text += "\n" + notes.strip() + "\n"
  with workdir_lib.atomic(path) as tmp, open(tmp, "w") as f:
    f.write(text)


def _mean_curve(runs: Sequence[Run], root: str, key: str) -> tuple[np.ndarray, np.ndarray]:
  """(epochs, mean of `key`) over the runs, at the steps that every run logged."""
  per_run = []
  for r in runs:
    recs = workdir_lib.read_metrics(os.path.join(root, r.name))
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
    visualize.label_epochs(ax, ylabel, fontsize=7)
  visualize.save_figure(fig, path, title)


def write_reports(runs: Sequence[Run], root: str, title: str = "Sweep",
                  thresholds: Sequence[float] = (), notes: str = "") -> list[dict]:
  """results.csv, results.md and curves.png under `root`; returns the rows."""
  rows = summarize(runs, root, thresholds)
  write_csv(rows, os.path.join(root, "results.csv"))
  write_markdown(rows, os.path.join(root, "results.md"), title, notes, thresholds)
  plot_curves(runs, root, os.path.join(root, "curves.png"), title, thresholds)
  return rows
