"""How colour-specific each conv1 kernel is, and whether the towers differ (§6.1, Figure 3).

§6.1: "The kernels on GPU 1 are largely color-agnostic, while the kernels on GPU 2 are
largely color-specific. This kind of specialization occurs during every run and is
independent of any particular random weight initialization (modulo a renumbering of the
GPUs)." This module turns the claim into numbers.

The index of a kernel w [kh, kw, 3] (`colour_index`):

    v = w - mean(w)                      (one scalar: the mean over all pixels and channels)
    index = sum_p |v_p - (v_p . u) u|^2 / sum_p |v_p|^2,   u = (1, 1, 1) / sqrt(3)

the share of the kernel's energy that lies off the luminance axis (R = G = B) at each
pixel p. Why this form:
* A kernel whose three channels are the same pattern (a grey edge or Gabor) responds only
  to brightness: 0. One whose channels oppose each other (red against green, blue against
  yellow) with no brightness pattern responds only to colour: 1.
* The scalar mean is removed first: it is the kernel's response to a uniform grey image,
  which says nothing about colour but would otherwise count as luminance energy and pull a
  colour blob (red everywhere, green and blue nowhere) from 1 down to 2/3. A per-channel
  mean is not removed: a kernel that is red minus green everywhere is colour-specific.
* A kernel of independent noise scores about 2/3 (two of every pixel's three directions are
  off the axis; 242/362 for 11x11), so an untrained conv1 sits at 2/3, colour-agnostic
  kernels below it and colour-specific ones above.
* The index is computed on the kernel as it acts on pixels: with `gain` (the per-channel
  factor of the model's input, `augment.input_gain`) the kernel is scaled by it first. The
  paper's input scale (0-255 minus the mean) has one gain for all channels, which changes
  nothing; torchvision's per-channel std would.

Tower statistics (`halves`): with two towers the first and the second half of conv1's
output channels (tower-major); with one tower, the control, a seeded random split of its
kernels into two halves. The gap is the second half's mean index minus the first's; its
size is what a renumbering of the GPUs leaves. `permutation_null` is the gap's distribution
over random equal splits of the same kernels: how far two halves differ by chance.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np

# Below this a kernel is all mean (or zero): no energy to share out.
_EPS = 1e-12


def colour_index(kernel: np.ndarray, gain: Sequence[float] | None = None) -> np.ndarray:
  """[kh, kw, 3, C] conv1 kernel (HWIO) -> [C] indices in [0, 1]: each kernel's share of
  energy off the luminance axis after removing its mean (module docstring). A kernel with
  no energy left scores 0."""
  w = np.asarray(kernel, np.float64)
  if w.ndim != 4 or w.shape[2] != 3:
    raise ValueError(f"expected an RGB conv1 kernel [kh, kw, 3, C], got shape {w.shape}")
  if gain is not None:
    w = w * np.asarray(gain, np.float64).reshape(1, 1, 3, 1)
  v = w - w.mean(axis=(0, 1, 2), keepdims=True)
  total = (v ** 2).sum(axis=(0, 1, 2))
  luminance = (v.sum(axis=2) ** 2).sum(axis=(0, 1)) / 3.0   # (v . u)^2 summed over pixels
  share = np.clip(1.0 - luminance / np.maximum(total, _EPS), 0.0, 1.0)   # rounding
  return np.where(total > _EPS, share, 0.0)


def halves(channels: int, towers: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
  """The kernels' indices in two halves: the two towers, or for one tower (the control) a
  random split seeded by `seed`."""
  if towers not in (1, 2):
    raise ValueError(f"towers must be 1 or 2, got {towers}")
  if channels % 2:
    raise ValueError(f"{channels} kernels do not split into two halves")
  order = np.arange(channels) if towers == 2 else \
      np.random.default_rng(seed).permutation(channels)
  return np.sort(order[:channels // 2]), np.sort(order[channels // 2:])


def summary(values: np.ndarray) -> dict:
  """Mean, spread (standard deviation, quartiles) and count of some indices."""
  values = np.asarray(values, np.float64)
  q1, median, q3 = np.percentile(values, [25, 50, 75])
  return {"n": int(values.size), "mean": float(values.mean()), "std": float(values.std()),
          "q1": float(q1), "median": float(median), "q3": float(q3)}


def permutation_null(index: np.ndarray, permutations: int, seed: int = 0) -> np.ndarray:
  """|gap| of `permutations` random equal splits of the kernels `index`: the gaps two
  halves show by chance."""
  index = np.asarray(index, np.float64)
  half = index.size // 2
  rng = np.random.default_rng(seed)
  orders = np.argsort(rng.random((permutations, index.size)), axis=1)
  first = index[orders[:, :half]].mean(axis=1)
  second = index[orders[:, half:2 * half]].mean(axis=1)
  return np.abs(second - first)


def run_statistics(index: np.ndarray, towers: int, *, seed: int = 0,
                   permutations: int = 10000) -> dict:
  """One run's halves (towers, or the control's random halves), their gap, and how that
  gap compares with random splits of the same kernels.

  'p_value': the share of random splits whose |gap| is at least this one's (counting this
  one, so never 0); 'null_p95': the 95th percentile of the random splits' |gap|;
  'half_kernels': the kernels (output channels) of each half."""
  index = np.asarray(index, np.float64)
  first, second = halves(index.size, towers, seed)
  a, b = summary(index[first]), summary(index[second])
  gap = b["mean"] - a["mean"]
  null = permutation_null(index, permutations, seed + 1)
  return {
      "towers": towers, "kernels": int(index.size),
      "split": "towers" if towers == 2 else f"random halves (seed {seed})",
      "halves": [a, b], "all": summary(index), "gap": gap, "abs_gap": abs(gap),
      "colour_half": 2 if gap > 0 else 1,
      "p_value": float((1 + np.sum(null >= abs(gap))) / (1 + permutations)),
      "null_p95": float(np.percentile(null, 95)), "permutations": permutations,
      "index": [round(float(v), 6) for v in index],
      "half_kernels": [first.tolist(), second.tolist()],
  }


def verdict(runs: dict[str, dict], alpha: float = 0.05) -> dict:
  """Is one tower more colour-specific than the other in every two-tower run, by more than
  the control's random halves differ? From `run_statistics` of each run (by name).

  A two-tower run counts if its |gap| exceeds the 95th percentile of the one-tower
  controls' random-halves |gap| (the largest, with several controls) and its own
  permutation p-value is below `alpha`. If the towers were no more than two random halves,
  a run would count with probability at most about `alpha`, so all n of them with about
  alpha^n ('chance_all'): the sign statistic of "every run". 'fisher_p' pools the runs'
  permutation p-values (Fisher's method): whether the towers differ at all, in some run,
  more than random halves do; weaker than "every run", and more sensitive."""
  seeds = {k: r for k, r in runs.items() if r["towers"] == 2}
  controls = {k: r for k, r in runs.items() if r["towers"] == 1}
  threshold = max((r["null_p95"] for r in controls.values()), default=None)
  counted = {k: bool(r["p_value"] < alpha and (threshold is None or r["abs_gap"] > threshold))
             for k, r in seeds.items()}
  return {
      "two_tower_runs": sorted(seeds), "controls": sorted(controls),
      "control_threshold": threshold, "alpha": alpha, "counted": counted,
      "count": sum(counted.values()), "every_run": bool(seeds) and all(counted.values()),
      "chance_all": alpha ** len(seeds) if seeds else None,
      "fisher_p": fisher_p([r["p_value"] for r in seeds.values()]) if seeds else None,
      "colour_tower": {k: r["colour_half"] for k, r in seeds.items()},
  }


def fisher_p(p_values: Sequence[float]) -> float:
  """Fisher's combined p-value: P(chi^2 with 2n degrees of freedom >= -2 sum ln p), in
  closed form for an even number of degrees of freedom."""
  half = -sum(np.log(p) for p in p_values)   # x / 2
  term, total = 1.0, 1.0
  for k in range(1, len(p_values)):
    term *= half / k
    total += term
  return float(np.exp(-half) * total)


def markdown(runs: dict[str, dict], decision: dict) -> str:
  """The per-run table and the verdict's line, as markdown."""
  def cell(s):
    return f"{s['mean']:.3f} ± {s['std']:.3f} (median {s['median']:.3f})"

  lines = ["| run | towers | halves | half 1 index | half 2 index | gap (2 - 1) | "
           "random splits' gap size, 95th pct | permutation p | step |",
           "| --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
  for name, r in runs.items():
    lines.append(f"| {name} | {r['towers']} | {r['split']} | {cell(r['halves'][0])} | "
                 f"{cell(r['halves'][1])} | {r['gap']:+.3f} | {r['null_p95']:.3f} | "
                 f"{r['p_value']:.4f} | {r.get('step', '')} |")
  threshold = decision["control_threshold"]
  lines += ["", f"Two-tower runs whose gap size exceeds the control's random halves "
            f"(95th percentile {'n/a, no control' if threshold is None else f'{threshold:.3f}'})"
            f" with permutation p < {decision['alpha']}: {decision['count']} of "
            f"{len(decision['two_tower_runs'])}"
            + (f" (the chance that all {len(decision['two_tower_runs'])} would, if the towers "
               f"were random halves: about {decision['chance_all']:.2g});"
               f" the p-values pooled (Fisher): {decision['fisher_p']:.3g}"
               if decision["chance_all"] is not None else "") + "."]
  return "\n".join(lines) + "\n"
