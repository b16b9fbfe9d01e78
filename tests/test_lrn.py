"""Local Response Normalization against tf.nn.local_response_normalization as the oracle.

TF's LRN is the paper's formula with depth_radius = n // 2 and bias = k; the 'caffe'
convention is the same with alpha / n. Gradients are checked by finite differences in float32:
the LRN computes in float32 whatever the input dtype, so float64 inputs would not make the
check any tighter (and jax_enable_x64 is global state). Its custom VJP has no forward mode.
"""
import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.test_util import check_grads

from alexnet_jax.nn.lrn import effective_alpha, local_response_norm

RTOL = 1e-5


def tf_lrn(x, *, n, k, alpha, beta, convention="paper"):
  """TF's LRN for any [..., C] array (TF wants 4-D; LRN is per pixel, so flatten the rest)."""
  # (imported here: it takes seconds, and only the worker that runs these tests needs it)
  import tensorflow as tf  # pylint: disable=import-outside-toplevel
  a = alpha if convention == "paper" else alpha / n
  x4 = tf.constant(np.asarray(x, np.float32).reshape(1, 1, -1, x.shape[-1]))
  y = tf.nn.local_response_normalization(x4, depth_radius=n // 2, bias=k, alpha=a, beta=beta)
  return y.numpy().reshape(x.shape)


def tf_lrn_grad(x, g, **kw):
  import tensorflow as tf  # pylint: disable=import-outside-toplevel
  xt = tf.constant(np.asarray(x, np.float32).reshape(1, 1, -1, x.shape[-1]))
  with tf.GradientTape() as tape:
    tape.watch(xt)
    a = kw["alpha"] if kw.get("convention", "paper") == "paper" else kw["alpha"] / kw["n"]
    y = tf.nn.local_response_normalization(xt, depth_radius=kw["n"] // 2, bias=kw["k"],
                                           alpha=a, beta=kw["beta"])
    loss = tf.reduce_sum(y * tf.constant(g.reshape(y.shape)))
  return tape.gradient(loss, xt).numpy().reshape(x.shape)


def jax_lrn(**kw):
  return jax.jit(functools.partial(local_response_norm, **kw))


def sample(shape, seed=0, scale=2.0):
  return np.random.default_rng(seed).standard_normal(shape).astype(np.float32) * scale


# The gradient's forms: a fresh activation with the portable or the CPU-only padding of t,
# or a pooling output read in place.
FORMS = {"fresh": dict(input_stored=False), "fresh_cpu_forms": dict(cpu_forms=True),
         "stored": dict(input_stored=True)}

# alpha large enough that the window sum matters (with the paper's 1e-4, d ~ k everywhere).
PARAMS = {"paper": dict(k=2.0, alpha=0.1, beta=0.75), "caffe": dict(k=1.0, alpha=0.5, beta=0.75)}


@pytest.mark.parametrize("convention", ["paper", "caffe"])
@pytest.mark.parametrize("n,c", [(1, 4), (3, 1), (3, 16), (5, 3), (5, 96), (7, 4), (7, 9)])
@pytest.mark.parametrize("stored", [False, True])   # a fresh activation / a pooling output
def test_matches_tensorflow(n, c, convention, stored):
  """Several windows, including wider than the channels (C < n) and wider than 2C."""
  kw = dict(n=n, convention=convention, **PARAMS[convention])
  x = sample((4, 3, 5, c), seed=n * 100 + c)
  np.testing.assert_allclose(jax_lrn(**kw, input_stored=stored)(x), tf_lrn(x, **kw),
                             rtol=RTOL, atol=1e-7)


@pytest.mark.parametrize("shape,beta", [((7,), 0.75), ((2, 9), 0.5), ((1, 3, 3, 8), 0.6),
                                        ((2, 2, 8), 1.0), ((5, 3, 8), 0.75),
                                        ((3, 2, 2, 2, 8), 0.3)])
@pytest.mark.parametrize("stored", [False, True])   # a fresh activation / a pooling output
def test_matches_tensorflow_shapes_and_betas(shape, beta, stored):
  """Any leading shape (including fewer than three leading rows) and any beta."""
  kw = dict(n=5, k=1.0, alpha=0.3, beta=beta)
  x = sample(shape, seed=len(shape))
  np.testing.assert_allclose(jax_lrn(**kw, input_stored=stored)(x), tf_lrn(x, **kw),
                             rtol=RTOL, atol=1e-7)


def test_channel_borders_by_hand():
  """b_i = a_i / (k + alpha * sum of a_j^2 over the window clipped to [0, C)), k=1, alpha=1,
  beta=1, n=3. Each row is its own pixel: a bleed of the window into the next or previous
  pixel would change rows 1 and 2 (their neighbours have large border channels)."""
  x = np.array([[1., 2., 3.], [3., 2., 1.], [10., 0., 0.], [0., 0., 5.]], np.float32)
  want = np.array([[1 / 6, 2 / 15, 3 / 14],     # d = 1+1+4, 1+1+4+9, 1+4+9
                   [3 / 14, 2 / 15, 1 / 6],
                   [10 / 101, 0, 0],
                   [0, 0, 5 / 26]], np.float32)
  for convention, alpha in [("paper", 1.0), ("caffe", 3.0)]:
    y = jax_lrn(n=3, k=1.0, alpha=alpha, beta=1.0, convention=convention)(x)
    np.testing.assert_allclose(y, want, rtol=1e-6)
  # A window wider than the channels covers all of them: d = 1 + 14 for [1, 2, 3].
  y = jax_lrn(n=5, k=1.0, alpha=1.0, beta=1.0)(x[:1])
  np.testing.assert_allclose(y, [[1 / 15, 2 / 15, 3 / 15]], rtol=1e-6)


@pytest.mark.parametrize("n,c,convention", [(1, 8, "paper"), (3, 2, "caffe"), (5, 3, "paper"),
                                            (5, 96, "caffe"), (7, 16, "paper")])
@pytest.mark.parametrize("form", FORMS)
def test_gradient_matches_tensorflow(n, c, convention, form):
  kw = dict(n=n, convention=convention, **PARAMS[convention])
  x, g = sample((4, 3, 3, c), seed=c), sample((4, 3, 3, c), seed=c + 1, scale=1.0)
  f = jax_lrn(**kw, **FORMS[form])
  dx = jax.jit(jax.grad(lambda x: jnp.sum(f(x) * g)))(x)
  np.testing.assert_allclose(dx, tf_lrn_grad(x, g, **kw), rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("shape,beta", [((4, 2, 3, 8), 0.75), ((2, 5), 0.5), ((6,), 0.6)])
@pytest.mark.parametrize("form", FORMS)
def test_check_grads(shape, beta, form):
  f = jax_lrn(n=5, k=1.0, alpha=0.3, beta=beta, **FORMS[form])
  check_grads(f, (sample(shape, seed=3, scale=1.0),), order=1, modes=["rev"], atol=2e-2,
              rtol=2e-2, eps=1e-2)


def test_groups_normalise_each_block_alone():
  kw = dict(n=5, k=2.0, alpha=0.1, beta=0.75)
  x, g = sample((3, 4, 4, 16), seed=7), sample((3, 4, 4, 16), seed=8)
  grouped = jax_lrn(groups=2, **kw)
  split = jax.jit(lambda x: jnp.concatenate(
      [local_response_norm(x[..., :8], **kw), local_response_norm(x[..., 8:], **kw)], -1))
  np.testing.assert_allclose(grouped(x), split(x), rtol=1e-6)
  grad = lambda f: jax.jit(jax.grad(lambda x: jnp.sum(f(x) * g)))
  np.testing.assert_allclose(grad(grouped)(x), grad(split)(x), rtol=1e-5, atol=1e-7)
  with pytest.raises(ValueError):
    local_response_norm(x, groups=3, **kw)


def test_jit_grad_vmap():
  kw = dict(n=5, k=2.0, alpha=0.1, beta=0.75)
  f = functools.partial(local_response_norm, **kw)
  xs = sample((3, 4, 2, 2, 8), seed=9)
  g = sample(xs.shape[1:], seed=10)
  want = tf_lrn(xs, **kw)
  np.testing.assert_allclose(jax.jit(jax.vmap(f))(xs), want, rtol=RTOL, atol=1e-7)
  np.testing.assert_allclose(jax.jit(jax.vmap(f, in_axes=1, out_axes=1))(xs), want, rtol=RTOL,
                             atol=1e-7)
  grad = jax.grad(lambda x: jnp.sum(f(x) * g))
  per_example = np.stack([tf_lrn_grad(x, g, **kw) for x in xs])
  np.testing.assert_allclose(jax.jit(jax.vmap(grad))(xs), per_example, rtol=1e-4, atol=1e-6)


def test_bfloat16_in_bfloat16_out():
  kw = dict(n=5, k=2.0, alpha=0.1, beta=0.75)
  x = jnp.asarray(sample((4, 3, 3, 16), seed=11), jnp.bfloat16)
  y = jax.jit(functools.partial(local_response_norm, **kw))(x)
  assert y.dtype == jnp.bfloat16
  want = tf_lrn(np.asarray(x.astype(jnp.float32)), **kw)
  np.testing.assert_allclose(y.astype(jnp.float32), want, rtol=1e-2, atol=1e-2)
  dx = jax.jit(jax.grad(lambda x: jnp.sum(local_response_norm(x, **kw).astype(jnp.float32))))(x)
  assert dx.dtype == jnp.bfloat16


@pytest.mark.parametrize("n", [0, -1, 2, 4])
def test_even_or_nonpositive_window_raises(n):
  with pytest.raises(ValueError):
    local_response_norm(jnp.ones((2, 8)), n=n)


def test_unknown_convention_raises():
  with pytest.raises(ValueError):
    local_response_norm(jnp.ones((2, 8)), convention="torch")
  with pytest.raises(ValueError):
    effective_alpha(1e-4, 5, "cuda-convnet")
  assert effective_alpha(1e-4, 5, "caffe") == pytest.approx(2e-5)
