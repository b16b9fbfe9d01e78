"""cpu_forms: one value, decided when the model is built, picks the forms XLA:CPU runs fast
for LRN, pooling and the model alike; either way on any backend, with the same numbers."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from alexnet_jax.nn import cpu_forms, models, pooling
import helpers

SIZE = 67   # conv1 -> 15x15 (padded to 16 before the pool), conv2 -> 7x7 (to 8)


def _model(lrn: bool, cpu: bool | None = None):
  cfg = models.model_config("paper", features=(8, 8, 8, 8, 8), fc_features=(16, 16),
                            num_classes=4, lrn=lrn)
  return models.create_model(cfg, SIZE, cpu_forms=cpu)


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


def _padded_before_the_pools(model, images, params) -> bool:
  padded = [s[1:3] for s in _pads(lambda p: model.apply({"params": p}, images), params)]
  return (16, 16) in padded and (8, 8) in padded


def test_the_builder_takes_the_backends_forms_unless_forced_or_given():
  assert cpu_forms.default() == (jax.default_backend() == "cpu")
  assert _model(True).cpu_forms == cpu_forms.default()
  with cpu_forms.forced(False):
    assert not cpu_forms.default() and not _model(True).cpu_forms
    with cpu_forms.forced(True):
      assert cpu_forms.default() and _model(True).cpu_forms
    assert not cpu_forms.default()
    assert _model(True, cpu=True).cpu_forms   # an argument wins over the default
  assert cpu_forms.default() == (jax.default_backend() == "cpu")


@pytest.mark.slow
def test_the_forms_are_the_models_not_a_global_read_while_tracing():
  """A model built with one set of forms traces them inside `forced` of the other."""
  images = jnp.zeros((1, SIZE, SIZE, 3))
  for cpu in (True, False):
    model = _model(True, cpu)
    params = jax.eval_shape(model.init, jax.random.key(1), images)["params"]   # shapes only
    with cpu_forms.forced(not cpu):
      assert _padded_before_the_pools(model, images, params) == cpu


def test_pooling_gradient_follows_the_argument():
  x = jnp.zeros((2, 13, 13, 4))
  hlo = {cpu: jax.jit(jax.grad(lambda x: jnp.sum(pooling.max_pool(x, 3, 2, cpu)))
                      ).lower(x).as_text() for cpu in (True, False)}
  assert "select_and_scatter" not in hlo[True]
  assert "select_and_scatter" in hlo[False]


@pytest.mark.parametrize("lrn", [pytest.param(True, marks=pytest.mark.slow), False])
def test_model_pads_before_the_pool_with_or_without_lrn_and_gives_the_same_numbers(lrn):
  """With LRN off the pool reads the same padded activation as with it (issue 23: the
  LRN-off model pooled through a crop); the parameters, logits and gradients do not
  change."""
  images = helpers.normal(0, (2, SIZE, SIZE, 3))
  out = {}
  for cpu in (True, False):
    model = _model(lrn, cpu)
    params = jax.jit(model.init)(jax.random.key(1), images)["params"]
    assert _padded_before_the_pools(model, images, params) == cpu
    loss = lambda p: jnp.sum(model.apply({"params": p}, images) ** 2)
    out[cpu] = params, jax.jit(jax.value_and_grad(loss))(params)
  for a, b in zip(jax.tree.leaves(out[True][0]), jax.tree.leaves(out[False][0])):
    np.testing.assert_array_equal(a, b)
  np.testing.assert_allclose(out[True][1][0], out[False][1][0], rtol=1e-6)
  for a, b in zip(jax.tree.leaves(out[True][1][1]), jax.tree.leaves(out[False][1][1])):
    np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
