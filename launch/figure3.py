"""The paper's Figure 3 measured (§6.1): conv1's colour specificity per tower, for several runs.

    python -m launch.figure3 --out=experiments/results/figure3 runs/t2_s0 runs/t2_s1 runs/t1_s0

For each workdir (named by its last folder): each conv1 kernel's colour index
(`alexnet_jax/programs/colour.py`), each tower's mean and spread, the gap between the towers and a
permutation p-value against random splits of the same kernels; a one-tower run is split
into two seeded random halves, the control.

Two measures. 'as_trained': the kernel as it is. 'learned': the kernel minus its
initialisation, which is rebuilt from the run's config and seed as training drew it
(`init_correlation`, the correlation of the kernel with it, shows that it is the one). The
initial noise scores 2/3 and weight decay removes little of it in a short run, so it can
hide what was learned; runs started from another workdir (`init_from`) have no 'learned'.

Writes to --out: `figure3.json` (every kernel's index, the statistics, the verdicts),
`figure3.md` (the tables and the verdicts' lines), `<run>_conv1.png` and
`<run>_conv1_learned.png` (the kernels, one block per tower or random half) and
`index.png`, `index_learned.png` (every run's indices by half).
"""
import json
import os
import sys

import jax
import numpy as np
from absl import flags

from alexnet_jax.data import augment
from alexnet_jax.nn import models
from alexnet_jax.programs import colour, inference, visualize
from launch import cli

_OUT = flags.DEFINE_string("out", None, "Folder for figure3.json, figure3.md and the PNGs.")
_STEP = flags.DEFINE_string("step", "latest", "latest, best, or a step number (every run).")
_PERMUTATIONS = flags.DEFINE_integer("permutations", 10000, "Random splits per run.")
_SEED = flags.DEFINE_integer("seed", 0, "Seeds the random halves of one-tower runs and the "
                             "random splits.")
_ALPHA = flags.DEFINE_float("alpha", 0.05, "Level of each run's permutation test.")

MEASURES = {"as_trained": "the kernels as trained",
            "learned": "the kernels minus their initialisation"}


def _initial_conv1(cfg) -> np.ndarray | None:
  """conv1's kernel as training initialised it (train.Trainer: model.init with the key of
  cfg.seed), or None for a run that started from another workdir's parameters."""
  if cfg.get("init_from"):
    return None
  size = cfg.data.image_size
  model = models.create_model(cfg.model, size)
  params = model.init(jax.random.key(cfg.seed), np.zeros((1, size, size, 3), np.float32))
  return np.asarray(params["params"]["conv1"]["kernel"], np.float32)


def _measure(workdir: str, name: str, out: str) -> tuple[dict, dict]:
  """One run's facts and its statistics by measure; its pictures written to `out`."""
  step = int(_STEP.value) if _STEP.value.isdigit() else _STEP.value
  restored = inference.load(workdir, step, devices=jax.local_devices()[:1])
  kernel = np.asarray(jax.device_get(restored.params["conv1"]["kernel"]), np.float32)
  towers = int(restored.cfg.model.towers)
  initial = _initial_conv1(restored.cfg)
  kernels = {"as_trained": kernel}
  facts = {"workdir": workdir, "step": restored.step, "towers": towers}
  if initial is not None:
    kernels["learned"] = kernel - initial
    facts["init_correlation"] = float(np.corrcoef(kernel.ravel(), initial.ravel())[0, 1])
  stats = {}
  for measure, k in kernels.items():
    index = colour.colour_index(k, augment.input_gain(restored.cfg.data))
    stats[measure] = s = colour.run_statistics(index, towers, seed=_SEED.value,
                                               permutations=_PERMUTATIONS.value)
    s["step"] = restored.step
    a, b = s["halves"]
    s["picture"] = f"{name}_conv1{'' if measure == 'as_trained' else '_' + measure}.png"
    visualize.save_kernel_figure(
        k[..., np.concatenate(s["half_kernels"])], 2, os.path.join(out, s["picture"]),
        title=f"{name}, conv1 at step {restored.step}, {MEASURES[measure]}: {s['split']}, "
              f"top and bottom\ncolour index {a['mean']:.2f} ± {a['std']:.2f} (top), "
              f"{b['mean']:.2f} ± {b['std']:.2f} (bottom)")
  return facts, stats


def main(argv):
  workdirs = argv[1:]
  names = [os.path.basename(os.path.normpath(w)) for w in workdirs]
  if not workdirs:
    cli.fail(ValueError("give one or more training workdirs after the flags"))
  if len(set(names)) != len(names):
    cli.fail(ValueError(f"the workdirs' last folders name the runs and must differ: {names}"))
  command = " ".join(["python -m launch.figure3", *sys.argv[1:]])
  report, text = {"command": command, "runs": {}}, [f"`{command}`\n"]
  try:
    cli.check_writable(os.path.join(_OUT.value, "figure3.json"), "--out")
    by_measure = {m: {} for m in MEASURES}
    for workdir, name in zip(workdirs, names):
      report["runs"][name], stats = _measure(workdir, name, _OUT.value)
      for measure, s in stats.items():
        by_measure[measure][name] = s
    for measure, runs in by_measure.items():
      if not runs:
        continue
      decision = colour.verdict(runs, _ALPHA.value)
      report[measure] = {"runs": runs, "verdict": decision}
      text += [f"## {MEASURES[measure].capitalize()} ('{measure}')\n",
               colour.markdown(runs, decision)]
      suffix = "" if measure == "as_trained" else "_" + measure
      visualize.save_index_figure(runs, os.path.join(_OUT.value, f"index{suffix}.png"))
    with open(os.path.join(_OUT.value, "figure3.json"), "w") as f:
      json.dump(report, f, indent=1)
    with open(os.path.join(_OUT.value, "figure3.md"), "w") as f:
      f.write("\n".join(text))
  except (ValueError, FileNotFoundError, OSError) as e:
    cli.fail(e)
  print("\n".join(text[1:]), end="")
  print(f"wrote {_OUT.value}/figure3.json, figure3.md and the pictures of {len(names)} runs")


if __name__ == "__main__":
  flags.mark_flags_as_required(["out"])
  cli.run(main, takes_args=True)
