"""Max pooling (pooling.py) against flax.linen.max_pool: values and gradients, ties included."""
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from alexnet_jax.nn import pooling
import helpers


@pytest.mark.parametrize("shape,window,stride", [
    ((2, 13, 13, 5), 3, 2),    # the paper's overlapping pooling (§3.4), odd size
    ((2, 12, 14, 3), 3, 2),    # even sizes: the last row and column belong to no window
    ((2, 12, 12, 4), 2, 2),    # non-overlapping, the §3.4 comparison
    ((1, 10, 10, 2), 3, 3),
])
@pytest.mark.parametrize("ties", [False, True])
@pytest.mark.parametrize("cpu_forms", [True, False])   # the phase gradient / select-and-scatter
def test_max_pool_and_its_gradient_equal_flax(shape, window, stride, ties, cpu_forms):
  x = helpers.normal(0, shape)
  if ties:   # few distinct values: most windows hold their maximum twice or more
    x = jnp.round(x)
  out_shape = nn.max_pool(x, (window, window), (stride, stride), "VALID").shape
  g = helpers.normal(1, out_shape)

  def loss(pool):
    return lambda x: jnp.sum(pool(x) * g)

  ours = lambda x: pooling.max_pool(x, window, stride, cpu_forms)
  theirs = lambda x: nn.max_pool(x, (window, window), (stride, stride), "VALID")
  np.testing.assert_array_equal(ours(x), theirs(x))
  grad_ours = jax.jit(jax.grad(loss(ours)))(x)
  grad_theirs = jax.jit(jax.grad(loss(theirs)))(x)
  np.testing.assert_allclose(grad_ours, grad_theirs, rtol=0, atol=1e-6)
  # Every window's gradient goes to one input, so the gradient sums to g's sum.
  np.testing.assert_allclose(jnp.sum(grad_ours), jnp.sum(g), rtol=1e-5)


def test_max_pool_gradient_in_bfloat16():
  x = helpers.normal(0, (2, 13, 13, 4)).astype(jnp.bfloat16)
  g = jnp.ones((2, 6, 6, 4), jnp.bfloat16)
  grad = jax.grad(lambda x: jnp.sum(pooling.max_pool(x, 3, 2, True) * g)
                  .astype(jnp.float32))(x)
  ref = jax.grad(lambda x: jnp.sum(nn.max_pool(x, (3, 3), (2, 2), "VALID") * g)
                 .astype(jnp.float32))(x)
  assert grad.dtype == jnp.bfloat16
  np.testing.assert_array_equal(np.asarray(grad, np.float32), np.asarray(ref, np.float32))


def test_the_cpu_gradient_has_no_select_and_scatter():
  """With cpu_forms the step compiles the fused phase gradient, not select-and-scatter
  (which XLA:CPU expands into iotas, a reduce-window and a scatter); other platforms keep
  it."""
  x = jnp.zeros((2, 13, 13, 4))
  hlo = jax.jit(jax.grad(lambda x: jnp.sum(pooling.max_pool(x, 3, 2, True)))).lower(x).as_text()
  assert "select_and_scatter" not in hlo and "scatter" not in hlo
  flax_hlo = jax.jit(jax.grad(lambda x: jnp.sum(nn.max_pool(x, (3, 3), (2, 2), "VALID")))
                     ).lower(x).as_text()
  assert "select_and_scatter" in flax_hlo   # the check can see it


@pytest.mark.parametrize("shape,window,stride,padded", [
    ((2, 55, 55, 3), 3, 2, (56, 56)),   # conv1's output in the paper model
    ((2, 27, 13, 3), 3, 2, (28, 14)),   # conv2's; a width of 13 -> 14
    ((2, 55, 55, 3), 2, 2, (55, 55)),   # 56 would give a 28th window: left alone
    ((2, 12, 12, 3), 3, 2, (12, 12)),   # already a multiple of the stride
])
def test_pad_unread_changes_neither_the_pool_nor_its_gradient(shape, window, stride, padded):
  x = helpers.normal(0, shape)
  g = helpers.normal(1, pooling.max_pool(x, window, stride).shape)

  def loss(pad):
    return lambda x: jnp.sum(pooling.max_pool(pad(x), window, stride, True) * g)

  assert pooling.pad_unread(x, window, stride).shape[1:3] == padded
  pad = lambda x: pooling.pad_unread(x, window, stride)
  np.testing.assert_array_equal(pooling.max_pool(pad(x), window, stride),
                                pooling.max_pool(x, window, stride))
  np.testing.assert_array_equal(jax.jit(jax.grad(loss(pad)))(x),
                                jax.jit(jax.grad(loss(lambda x: x)))(x))
