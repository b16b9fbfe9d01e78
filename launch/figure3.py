"""The paper's Figure 3 measured (§6.1): conv1's colour specificity per tower, for several runs.

    python -m launch.figure3 --out=experiments/results/figure3 runs/t2_s0 runs/t2_s1 runs/t1_s0

For each workdir (named by its last folder): each conv1 kernel's colour index
(`alexnet_jax/colour.py`), each tower's mean and spread, the gap between the towers and a
permutation p-value against random splits of the same kernels; a one-tower run is split
into two seeded random halves, the control. Writes to --out: `figure3.json` (every kernel's
index, the statistics, the verdict), `figure3.md` (the table and the verdict's line),
`<run>_conv1.png` (the kernels, one block per tower or random half) and `index.png` (every
run's indices by half).
"""
import json
import os
import sys

import jax
import numpy as np
from absl import flags

from alexnet_jax import augment, cli, colour, inference, visualize

_OUT = flags.DEFINE_string("out", None, "Folder for figure3.json, figure3.md and the PNGs.")
_STEP = flags.DEFINE_string("step", "latest", "latest, best, or a step number (every run).")
_PERMUTATIONS = flags.DEFINE_integer("permutations", 10000, "Random splits per run.")
_SEED = flags.DEFINE_integer("seed", 0, "Seeds the random halves of one-tower runs and the "
                             "random splits.")
_ALPHA = flags.DEFINE_float("alpha", 0.05, "Level of each run's permutation test.")


def _measure(workdir: str, name: str, out: str) -> dict:
  """One run's statistics, and its Figure 3 picture written to `out`."""
  step = int(_STEP.value) if _STEP.value.isdigit() else _STEP.value
  restored = inference.load(workdir, step, devices=jax.local_devices()[:1])
  kernel = np.asarray(jax.device_get(restored.params["conv1"]["kernel"]), np.float32)
  towers = int(restored.cfg.model.towers)
  index = colour.colour_index(kernel, augment.input_gain(restored.cfg.data))
  stats = colour.run_statistics(index, towers, seed=_SEED.value,
                                permutations=_PERMUTATIONS.value)
  a, b = stats["halves"]
  picture = f"{name}_conv1.png"
  visualize.save_kernel_figure(
      kernel[..., np.concatenate(stats["half_kernels"])], 2, os.path.join(out, picture),
      title=f"{name}, conv1 at step {restored.step}: {stats['split']}, top and bottom\n"
            f"colour index {a['mean']:.2f} ± {a['std']:.2f} (top), "
            f"{b['mean']:.2f} ± {b['std']:.2f} (bottom)")
  return {"workdir": workdir, "step": restored.step, "picture": picture, **stats}


def main(argv):
  cli.quiet_library_logs()
  workdirs = argv[1:]
  names = [os.path.basename(os.path.normpath(w)) for w in workdirs]
  if not workdirs:
    cli.fail(ValueError("give one or more training workdirs after the flags"))
  if len(set(names)) != len(names):
    cli.fail(ValueError(f"the workdirs' last folders name the runs and must differ: {names}"))
  try:
    cli.check_writable(os.path.join(_OUT.value, "figure3.json"), "--out")
    runs = {name: _measure(w, name, _OUT.value) for w, name in zip(workdirs, names)}
    decision = colour.verdict(runs, _ALPHA.value)
    command = " ".join(["python -m launch.figure3", *sys.argv[1:]])
    with open(os.path.join(_OUT.value, "figure3.json"), "w") as f:
      json.dump({"command": command, "runs": runs, "verdict": decision}, f, indent=1)
    with open(os.path.join(_OUT.value, "figure3.md"), "w") as f:
      f.write(f"`{command}`\n\n" + colour.markdown(runs, decision))
    visualize.save_index_figure(runs, os.path.join(_OUT.value, "index.png"))
  except (ValueError, FileNotFoundError, OSError) as e:
    cli.fail(e)
  print(colour.markdown(runs, decision), end="")
  print(f"wrote {_OUT.value}/figure3.json, figure3.md, index.png and "
        f"{len(runs)} conv1 pictures")


if __name__ == "__main__":
  flags.mark_flags_as_required(["out"])
  cli.run(main)
