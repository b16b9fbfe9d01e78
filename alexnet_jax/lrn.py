"""Local Response Normalization across channels (Krizhevsky et al. 2012, §3.3).

    b[i] = a[i] / (k + alpha' * sum_{j = max(0, i - n//2)}^{min(N - 1, i + n//2)} a[j]^2) ^ beta

The paper writes alpha' = alpha. cuda-convnet, Caffe and PyTorch divide alpha by the window
size (alpha' = alpha / n), so their published alpha is n times the paper's. `convention`
picks which reading of `alpha` is meant: 'paper' (alpha' = alpha, what
`tf.nn.local_response_normalization` computes) or 'caffe' (alpha' = alpha / n).

How it is computed. On XLA:CPU this is memory- and page-fault-bound (every fresh full-size
array costs a pass over memory and, with glibc's default malloc, ~0.1 s of page faults at the
conv1 size), so the aim is one fused, vectorised loop per direction and nothing stored:

* A shift along the channels is a slice of the *flattened* array that runs into the
  neighbouring pixel, where a channel mask zeroes it; the first and last row of the leading
  axis, whose slices would run off the array, go through a copy padded with one zero pixel.
  (`jnp.pad` + slices, `concatenate` or `reduce_window` make XLA either copy the padded array
  or emit scalar code; joining the pieces per pixel instead of per leading row also
  de-vectorises once XLA splits the loop over two threads.)
* The gradient is a custom VJP in one fused pass that recomputes d at each of the n window
  positions, with beta = 0.75 as rsqrt(d) * sqrt(rsqrt(d)) (`d ** -beta` is exp(log) and
  makes this pass ~6x slower).

Measured (/tmp/lrn_scratch/bench.py, not kept): jit(grad(sum(lrn(x) * g))) on the conv1
activation [128, 55, 55, 96] f32, median CPU ms of a single-core run (steadier than two-core
wall time on the shared 2-core machine): this 292; two passes storing t = g x d^-beta / d 392
(but 88 vs this 122 ms two-core wall with huge pages, GLIBC_TUNABLES=glibc.malloc.hugetlb=1,
where a fresh array is cheap); one pass over zero-padded copies 664; the previous pad +
shifted slices + custom VJP 772, its autodiff 1386; reduce_window 730 (autodiff 753);
cumsum 1398; banded [C, C] matmul 881; storing d or d^-beta in the forward 687 / 723;
channels-major transpose 1555; this with `**` 1934; 1-D convolution over channels ~4700.
Two cores, same hour: tf.nn.local_response_normalization 1884 ms, torch's 5054, this 275.
"""
from __future__ import annotations

import functools

import jax
import jax.numpy as jnp

CONVENTIONS = ("paper", "caffe")


def effective_alpha(alpha: float, n: int, convention: str) -> float:
  """The coefficient that multiplies the raw sum of squares."""
  if convention not in CONVENTIONS:
    raise ValueError(f"LRN convention must be one of {CONVENTIONS}, got {convention!r}")
  return alpha if convention == "paper" else alpha / n


def _shifts(flat: jax.Array, start: int, size: int, c: int):
  """take(s)[j] = flat[start + j + s], or 0 where channel j % c + s falls outside [0, c).

  Elements [start - c, start + size + c) of `flat` must exist. A shifted read that runs into
  the neighbouring pixel is zeroed by the channel mask, so it is a plain slice (XLA:CPU fuses
  and vectorises it, unlike a `pad` or `concatenate` with several users, which it copies).
  """
  channel = jax.lax.broadcasted_iota(jnp.int32, (size // c, c), 1).reshape(-1)

  def take(s: int) -> jax.Array:
    if abs(s) >= c:
      return jnp.zeros((size,), flat.dtype)
    v = jax.lax.slice(flat, (start + s,), (start + s + size,))
    if s == 0:
      return v
    return jnp.where(channel < c - s if s > 0 else channel >= -s, v, 0)

  return take


def _blockwise(fn, *arrays: jax.Array) -> jax.Array:
  """fn(take_0, take_1, ...) for same-shaped [..., C] arrays, take_i as in `_shifts`.

  fn returns a flat array; the result has the arrays' shape. Inner blocks (leading index
  1 .. A-2) are read in place; the first and last blocks, whose
  shifted slices would run off the array, go through a copy with a zero pixel either side.
  The pieces are joined along the leading axis, which XLA:CPU splits across threads without
  losing vectorisation (joining at pixel granularity is much slower).
  """
  shape, c = arrays[0].shape, arrays[0].shape[-1]
  blocks = [a.reshape(shape[0] if a.ndim > 1 else 1, -1) for a in arrays]
  a, row = blocks[0].shape

  def padded(b):
    return _shifts(jnp.pad(b.reshape(-1), (c, c)), c, b.size, c)

  if a < 3:
    return fn(*map(padded, blocks)).reshape(shape)
  inner = fn(*(_shifts(b.reshape(-1), row, (a - 2) * row, c) for b in blocks))
  ends = fn(*(padded(jnp.concatenate([b[:1], b[-1:]])) for b in blocks)).reshape(2, row)
  return jnp.concatenate([ends[:1], inner.reshape(a - 2, row), ends[1:]]).reshape(shape)


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
  return _blockwise(lambda xs: xs(0) * _powers(_denominator(xs, n, k, alpha), beta)[0], x)


def _lrn_fwd(x, n, k, alpha, beta):
  return _lrn(x, n, k, alpha, beta), x


def _lrn_bwd(n, k, alpha, beta, x, g):
  # y_i = x_i d_i^-beta with d_i = k + alpha * sum_{j in W(i)} x_j^2, and j in W(i) <=> i in W(j):
  # dL/dx_j = g_j d_j^-beta - 2 alpha beta x_j sum_{i in W(j)} g_i x_i d_i^(-beta-1).
  # One fused pass that recomputes d_i at each of the n window positions i rather than
  # storing g_i x_i d_i^(-beta-1) for a second pass (see the module docstring). d sums the
  # window in the reverse order of the forward pass: were the two d identical, XLA would merge
  # them when forward and backward share a jit and store d (and its powers) between them.
  r = n // 2

  def grad(xs, gs):
    d = lambda s: _denominator(lambda u: xs(s - u), n, k, alpha)
    window = sum(gs(s) * xs(s) * _powers(d(s), beta)[1] for s in range(-r, r + 1))
    return gs(0) * _powers(d(0), beta)[0] - (2.0 * alpha * beta) * xs(0) * window

  return (_blockwise(grad, x, g),)


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
