"""§3.3 x §3.4: LRN on/off crossed with overlapping (3/2) or non-overlapping (2/2) pooling,
a 2x2 grid."""
import itertools

SEEDS = (0, 1)


def get_sweep(base_cfg=None) -> list[dict]:
  del base_cfg
  return [{"model.lrn": lrn, "model.pool_window": window, "model.pool_stride": 2}
          for lrn, window in itertools.product((True, False), (3, 2))]


def label(overrides: dict) -> str:
  return (f"lrn={overrides['model.lrn']},"
          f"pool={overrides['model.pool_window']}-{overrides['model.pool_stride']}")
