"""cpu_forms.py: one switch picks the forms XLA:CPU runs fast, for LRN, pooling and the
model alike; forced either way on any backend, with the same numbers."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from alexnet_jax import cpu_forms, models, pooling

SIZE = 67   # conv1 -> 15x15 (padded to 16 before the pool), conv2 -> 7x7 (to 8)


def _model(lrn: bool):
  cfg = models.model_config("paper", features=(8, 8, 8, 8, 8), fc_features=(16, 16),
                            num_classes=4, lrn=lrn)
  return models.create_model(cfg, SIZE)


def _pads(fn, *args) -> list[tuple[int, ...]]:
  """The output shapes of the `pad` operations in fn's jaxpr, nested jaxprs included
  (outside custom_vjp rules, which LRN's pads are in)."""
  def walk(jaxpr):
    for e in jaxpr.eqns:
      if e.primitive.name == "pad":
        yield tuple(e.outvars[0].aval.shape)
      for v in e.params.values():
        inner = getattr(v, "jaxpr", v)
        if hasattr(inner, "eqns"):
          yield from walk(inner)
  return list(walk(jax.make_jaxpr(fn)(*args).jaxpr))


def test_active_follows_the_backend_unless_forced():
  assert cpu_forms.active() == (jax.default_backend() == "cpu")
  with cpu_forms.forced(False):
    assert not cpu_forms.active()
    with cpu_forms.forced(True):
      assert cpu_forms.active()
    assert not cpu_forms.active()
  assert cpu_forms.active() == (jax.default_backend() == "cpu")


def test_pooling_gradient_follows_the_switch():
  x = jnp.zeros((2, 13, 13, 4))
  hlo = {}
  for cpu in (True, False):
    with cpu_forms.forced(cpu):
      hlo[cpu] = jax.jit(jax.grad(lambda x: jnp.sum(pooling.max_pool(x, 3, 2)))
                         ).lower(x).as_text()
  assert "select_and_scatter" not in hlo[True]
  assert "select_and_scatter" in hlo[False]


@pytest.mark.parametrize("lrn", [True, False])
def test_model_pads_before_the_pool_with_or_without_lrn_and_gives_the_same_numbers(lrn):
  """With LRN off the pool reads the same padded activation as with it (issue 23: the
  LRN-off model pooled through a crop); the logits and gradients do not change."""
  model = _model(lrn)
  images = jax.random.normal(jax.random.key(0), (2, SIZE, SIZE, 3))
  params = model.init(jax.random.key(1), images)["params"]
  loss = lambda p: jnp.sum(model.apply({"params": p}, images) ** 2)
  out = {}
  for cpu in (True, False):
    with cpu_forms.forced(cpu):
      forward = lambda p: model.apply({"params": p}, images)
      padded = [s[1:3] for s in _pads(forward, params)]
      assert ((16, 16) in padded and (8, 8) in padded) == cpu, padded
      out[cpu] = jax.jit(jax.value_and_grad(loss))(params)
  np.testing.assert_allclose(out[True][0], out[False][0], rtol=1e-6)
  for a, b in zip(jax.tree.leaves(out[True][1]), jax.tree.leaves(out[False][1])):
    np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
