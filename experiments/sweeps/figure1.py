"""Figure 1 (§3.1): the four-layer net of experiments/figure1.py with ReLUs and with tanh,
each at the learning rate its search chose (figure1.LEARNING_RATES, from
experiments/sweeps/figure1_lr.py), trained to its epoch cap (figure1.EPOCHS; at least 40
for tanh); the report gives the epochs each takes to 25% training error and plots training
error against epochs, the paper's layout (the paper: ReLU six times faster).

    python -m launch.sweep --sweep=experiments/sweeps/figure1.py --root=runs/figure1 \\
        --config=experiments/figure1.py:search --config.data.data_dir=data/cifar10

Each run is `launch.train --config=experiments/figure1.py:<activation>`.
"""
from experiments import figure1

SEEDS = (0,)
TRAIN_ERROR_THRESHOLDS = (0.25,)


def get_sweep(base_cfg=None) -> list[dict]:
  del base_cfg
  return [{"model.activation": a, "learning_rate": figure1.LEARNING_RATES[a],
           "num_epochs": figure1.EPOCHS[a]} for a in ("relu", "tanh")]


def label(overrides: dict) -> str:
  return overrides["model.activation"]
