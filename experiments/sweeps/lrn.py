"""§3.3: local response normalisation on and off. The paper: LRN lowers ImageNet top-1/top-5
error by 1.4%/1.2%, and a four-layer CIFAR-10 net's test error from 13% to 11%."""

SEEDS = (0, 1)


def get_sweep(base_cfg=None) -> list[dict]:
  del base_cfg
  return [{"model.lrn": True}, {"model.lrn": False}]
