"""evaluation.metric_sums against lax.top_k: the same top-1 and top-5 hits, ties included."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from alexnet_jax.programs import evaluation


@pytest.mark.parametrize("classes", [3, 10, 1000])
def test_top1_and_top5_errors_are_top_ks(classes):
  rng = np.random.default_rng(classes)
  logits = rng.normal(size=(512, classes)).astype(np.float32) * 0.3
  labels = rng.integers(0, classes, 512).astype(np.int32)
  rows = np.arange(512)
  logits[rows, labels] += 0.5   # the label near the top: hits at top-1, top-5 and neither
  for _ in range(3):            # ties with the label's logit, at lower and higher indices
    logits[rows[::2], rng.integers(0, classes, 256)] = logits[rows[::2], labels[::2]]
  logits[:8] = 0.0              # all tied
  mask = (rng.random(512) < 0.9).astype(np.float32)
  top = np.asarray(jax.lax.top_k(logits, min(5, classes))[1])
  hit1 = top[:, 0] == labels
  hit5 = (top == labels[:, None]).any(axis=-1)
  sums = evaluation.metric_sums(jnp.asarray(logits), jnp.asarray(labels), jnp.asarray(mask))
  assert float(sums["top1_error"]) == np.sum((1 - hit1) * mask)
  assert float(sums["top5_error"]) == np.sum((1 - hit5) * mask)
  assert float(sums["count"]) == mask.sum()
  if classes > 5:
    assert 0 < float(sums["top5_error"]) < float(sums["top1_error"]) < mask.sum()


def test_non_finite_logits_count_as_errors():
  """NaN compares False with everything, so a NaN row would rank its label first."""
  logits = jnp.asarray([[np.nan] * 10, [0.0] * 9 + [np.inf], [1.0] + [0.0] * 9])
  sums = evaluation.metric_sums(logits, jnp.asarray([0, 9, 0]), jnp.ones(3))
  assert float(sums["top1_error"]) == 2.0 and float(sums["top5_error"]) == 2.0
