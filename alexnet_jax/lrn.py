"""Local Response Normalization across channels (Krizhevsky et al. 2012, §3.3).

    b[i] = a[i] / (k + alpha' * sum_{j = max(0, i - n//2)}^{min(N - 1, i + n//2)} a[j]^2) ^ beta

The paper writes alpha' = alpha. cuda-convnet, Caffe and PyTorch divide alpha by the window
size (alpha' = alpha / n), so their published alpha is n times the paper's. `convention`
picks which reading of `alpha` is meant: 'paper' (alpha' = alpha, what
`tf.nn.local_response_normalization` computes) or 'caffe' (alpha' = alpha / n).

How it is computed (it is memory-bound, so what counts is how many full-size arrays XLA:CPU
writes and whether its loops vectorise):

* A channel shift is a slice of the *flattened* [pixels * C] array, masked where it runs into
  the neighbouring pixel; only the first and last pixel, whose slices would fall off the array,
  go through a zero-padded copy. `jnp.pad` + slices (or `concatenate`, `reduce_window`) instead
  makes XLA either materialise the padded array or emit scalar code: it never fuses a pad or
  concatenate that has more than one user.
* The gradient is a custom VJP in two fused passes, t = g a d^-beta / d, then
  da = g d^-beta - 2 alpha' beta a sum_window(t), recomputing d in the second pass; an
  optimization barrier keeps XLA from sharing d between the passes (which would store it).
* beta = 0.75 is rsqrt(d) * sqrt(rsqrt(d)); `d ** -beta` lowers to a much slower exp(log).

Forward + backward on the conv1 activation [128, 55, 55, 96] f32, 2-core CPU, median ms
(`/tmp/lrn_scratch/bench.py` at the time of writing; the machine was shared, see commit):
MEASUREMENTS
"""
from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np

CONVENTIONS = ("paper", "caffe")


def effective_alpha(alpha: float, n: int, convention: str) -> float:
  """The coefficient that multiplies the raw sum of squares."""
  if convention not in CONVENTIONS:
    raise ValueError(f"LRN convention must be one of {CONVENTIONS}, got {convention!r}")
  return alpha if convention == "paper" else alpha / n


def _shifter(a: jax.Array):
  """For a [R, C] array, take(s) is rows 1..R-2 flattened, shifted by s channels:
  take(s)[m * C + c] = a[m + 1, c + s], and 0 where c + s is outside [0, C).

  A shift is a slice of the flattened array that runs into the neighbouring row; the mask
  zeroes those elements. Everything stays 1-D: XLA:CPU vectorises 1-D slices and an iota
  mask, but not the index arithmetic of reshaping slices back to [R - 2, C].
  """
  rows, c = a.shape
  flat = a.reshape(-1)
  size = (rows - 2) * c
  channel = jax.lax.broadcasted_iota(jnp.int32, (rows - 2, c), 1).reshape(-1)

  def take(s: int) -> jax.Array:
    if abs(s) >= c:
      return jnp.zeros((size,), a.dtype)
    v = jax.lax.slice(flat, (c + s,), (c + s + size,))
    if s == 0:
      return v
    return jnp.where((channel + s >= 0) & (channel + s < c), v, 0)

  return take


def _per_pixel(fn, *arrays: jax.Array) -> jax.Array:
  """fn(take_0, take_1, ...) for same-shaped [..., C] arrays, take_i as in `_shifter`."""
  shape, c = arrays[0].shape, arrays[0].shape[-1]
  rows = [a.reshape(-1, c) for a in arrays]
  pad_row = lambda a: jnp.pad(a, ((1, 1), (0, 0)))
  if rows[0].shape[0] <= 2:
    return fn(*(_shifter(pad_row(a)) for a in rows)).reshape(shape)
  inner = fn(*(_shifter(a) for a in rows))   # pixels 1 .. M-2
  ends = fn(*(_shifter(pad_row(jnp.concatenate([a[:1], a[-1:]]))) for a in rows))
  return jnp.concatenate([ends[:c], inner, ends[c:]]).reshape(shape)


def _denominator(take, n: int, k: float, alpha: float) -> jax.Array:
  return k + alpha * sum(take(s) * take(s) for s in range(-(n // 2), n // 2 + 1))


def _powers(d: jax.Array, beta: float) -> tuple[jax.Array, jax.Array]:
  """(d ** -beta, d ** -beta / d), without exp(log) for the common beta = 0.75 and 0.5."""
  if beta == 0.75:
    r = jax.lax.rsqrt(d)
    p = r * jnp.sqrt(r)
    return p, p * r * r
  if beta == 0.5:
    r = jax.lax.rsqrt(d)
    return r, r * r * r
  p = d ** -beta
  return p, p / d


@functools.partial(jax.custom_vjp, nondiff_argnums=(1, 2, 3, 4))
def _lrn(x, n, k, alpha, beta):
  return _per_pixel(lambda xs: xs(0) * _powers(_denominator(xs, n, k, alpha), beta)[0], x)


def _lrn_fwd(x, n, k, alpha, beta):
  return _lrn(x, n, k, alpha, beta), x


def _lrn_bwd(n, k, alpha, beta, x, g):
  # y_i = x_i d_i^-beta with d_i = k + alpha * sum_{j in W(i)} x_j^2, and j in W(i) <=> i in W(j):
  # dL/dx_j = g_j d_j^-beta - 2 alpha beta x_j sum_{i in W(j)} g_i x_i d_i^(-beta-1).
  t = _per_pixel(
      lambda xs, gs: gs(0) * xs(0) * _powers(_denominator(xs, n, k, alpha), beta)[1], x, g)
  t, x = jax.lax.optimization_barrier((t, x))   # recompute d below rather than store it

  def grad(xs, gs, ts):
    window = sum(ts(s) for s in range(-(n // 2), n // 2 + 1))
    p = _powers(_denominator(xs, n, k, alpha), beta)[0]
    return gs(0) * p - (2.0 * alpha * beta) * xs(0) * window

  return (_per_pixel(grad, x, g, t),)


_lrn.defvjp(_lrn_fwd, _lrn_bwd)


def local_response_norm(x: jax.Array, *, n: int = 5, k: float = 2.0, alpha: float = 1e-4,
                        beta: float = 0.75, convention: str = "paper",
                        groups: int = 1) -> jax.Array:
  """LRN over the last (channel) axis of `x`, for any odd window `n`.

  `groups` > 1 normalises each contiguous block of C / groups channels on its own: with two
  towers each GPU in the paper normalised only over the kernel maps it held.
  Arithmetic runs in float32 whatever the input dtype; the result has the input's dtype.
  """
  if n < 1 or n % 2 == 0:
    raise ValueError(f"LRN window n must be a positive odd integer, got {n}")
  a = effective_alpha(alpha, n, convention)
  c = x.shape[-1]
  if c % groups:
    raise ValueError(f"LRN: {c} channels do not split into {groups} groups")
  y = x.astype(jnp.float32)
  if groups > 1:
    y = y.reshape(*x.shape[:-1], groups, c // groups)
  y = _lrn(y, n, float(k), float(a), float(beta))
  return y.reshape(x.shape).astype(x.dtype)
