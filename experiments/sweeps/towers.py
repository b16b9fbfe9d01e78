"""§3.2: two towers (the paper's two GPUs) against one tower with half the kernels.

The paper compares its two-GPU net with "a net with half as many kernels in each
convolutional layer trained on one GPU", and footnote 2 adds that the one-GPU net keeps the
full width of the last convolutional layer and of the fully-connected layers, so that the two
nets have about as many parameters. The paper reports that two towers lower top-1/top-5
error by 1.7%/1.2%.

The widths come from the base config, so that the sweep is right for any preset:
  two towers: model.towers=2, model.features = the config's widths;
  one tower:  model.towers=1, every conv width halved except the last (HALVE_LAST_CONV).
"""

SEEDS = (0, 1)
HALVE_LAST_CONV = False   # True: halve every conv layer, not as in footnote 2


def get_sweep(base_cfg) -> list[dict]:
  features = tuple(int(f) for f in base_cfg.model.features)
  if any(f % 2 for f in features):
    raise ValueError(f"the towers sweep needs even widths, got model.features={features}")
  halved = tuple(f // 2 for f in features)
  if not HALVE_LAST_CONV:
    halved = halved[:-1] + features[-1:]
  return [{"model.towers": 2, "model.features": features},
          {"model.towers": 1, "model.features": halved}]


def label(overrides: dict) -> str:
  widths = "-".join(str(f) for f in overrides["model.features"])
  return f"towers={overrides['model.towers']},features={widths}"
