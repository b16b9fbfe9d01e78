"""The paper's claims that a CIFAR-10 net can test, in one sweep against one baseline (ReLU,
LRN, overlapping 3/2 pooling), each variant changing one thing:

  §3.3  LRN off: the paper's four-layer CIFAR-10 net goes from 11% to 13% test error.
  §3.4  non-overlapping 2/2 pooling: 0.4% worse top-1 on ImageNet.
  §3.1  tanh: ReLU reaches 25% training error six times faster (Figure 1).
"""

SEEDS = (0, 1)
TRAIN_ERROR_THRESHOLDS = (0.25, 0.4, 0.5)


def get_sweep(base_cfg=None) -> list[dict]:
  del base_cfg
  return [{},
          {"model.lrn": False},
          {"model.pool_window": 2, "model.pool_stride": 2},
          {"model.activation": "tanh"}]


def label(overrides: dict) -> str:
  if "model.pool_window" in overrides:
    return f"pool={overrides['model.pool_window']}-{overrides['model.pool_stride']}"
  return ",".join(f"{k.split('.')[-1]}={v}" for k, v in overrides.items()) or "baseline"
