"""The paper's architecture claims that a CIFAR-10 net can test, in one sweep against one
baseline (ReLU, LRN, overlapping 3/2 pooling), each variant changing one thing:

  §3.3  LRN off: the paper's four-layer CIFAR-10 net goes from 11% to 13% test error.
  §3.4  non-overlapping 2/2 pooling: 0.4% worse top-1 on ImageNet.

Three seeds per variant, so that the difference to the baseline can be set against the seed
spread. §3.1's ReLU-against-tanh claim is Figure 1's, measured as the paper measured it (no
regularisation, each activation's own learning rate): experiments/sweeps/figure1.py.
"""

SEEDS = (0, 1, 2)
TRAIN_ERROR_THRESHOLDS = (0.3, 0.4, 0.5)


def get_sweep(base_cfg=None) -> list[dict]:
  del base_cfg
  return [{},
          {"model.lrn": False},
          {"model.pool_window": 2, "model.pool_stride": 2}]


def label(overrides: dict) -> str:
  if "model.pool_window" in overrides:
    return f"pool={overrides['model.pool_window']}-{overrides['model.pool_stride']}"
  return ",".join(f"{k.split('.')[-1]}={v}" for k, v in overrides.items()) or "baseline"
