"""Figure 1's learning-rate search (§3.1: "The learning rates for each network were chosen
independently to make training as fast as possible"): each activation of
experiments/figure1.py at rates a factor of about 3 apart, SEARCH_EPOCHS each, from the
config's 'search' base:

    python -m launch.sweep --sweep=experiments/sweeps/figure1_lr.py --root=runs/figure1_lr \\
        --config=experiments/figure1.py:search --config.data.data_dir=data/cifar10

The chosen rate is the one with the lowest training error in the last logging window
(`last train top-1 error`); a rate that diverges is reported as diverged. Where the best
rate is at an end of an activation's RATES, its grid is extended by a factor of 3 beyond it
(rerunning the sweep trains only the new rates): tanh's best of 0.001-0.01 was 0.01, so
tanh also runs 0.03.
"""

SEEDS = (0,)
TRAIN_ERROR_THRESHOLDS = (0.25, 0.5, 0.75)
RATES = {"relu": (0.001, 0.003, 0.01), "tanh": (0.001, 0.003, 0.01, 0.03)}


def get_sweep(base_cfg=None) -> list[dict]:
  del base_cfg
  return [{"model.activation": a, "learning_rate": lr} for a in RATES for lr in RATES[a]]
