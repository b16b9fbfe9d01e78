"""Local Response Normalization across channels (Krizhevsky et al. 2012, §3.3).

    b[i] = a[i] / (k + alpha' * sum_{j = max(0, i - n//2)}^{min(N - 1, i + n//2)} a[j]^2) ^ beta

The paper writes alpha' = alpha. cuda-convnet and Caffe publish the same alpha = 1e-4 for
AlexNet but divide it by the window size when they compute (alpha' = alpha / n), as PyTorch
does, so the same published number normalises n times more weakly there. `convention`
picks which reading of `alpha` is meant: 'paper' (alpha' = alpha, what
`tf.nn.local_response_normalization` computes) or 'caffe' (alpha' = alpha / n).

How it is computed. On XLA:CPU this is memory-bound, so the aim is few fused, vectorised
passes and nothing stored: x is copied once with a zero pixel either side, so that a shift
along the channels is a plain slice of that copy (a channel mask zeroes what runs into the
neighbouring pixel), and the gradient is a custom VJP of two fused passes, each computing
the denominator in its own order so that XLA does not store rsqrt(d). Each form, and the
speed it was chosen for, is in benchmarks/README.md ("LRN's forms").
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
  the neighbouring pixel is zeroed by the channel mask, so it is a plain slice of a
  materialised array, which XLA:CPU fuses and vectorises.
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


def _denominator(take, n: int, k: float, alpha: float, order: int = 0) -> jax.Array:
  """k + alpha * (window sum of squares), summed from the `order`-th shift on. Each pass
  uses its own order, so that XLA does not merge the passes' rsqrt(d) into one value, which
  XLA:CPU stores (it does not copy an rsqrt into several fusions) instead of recomputing."""
  shifts = list(range(-(n // 2), n // 2 + 1))
  shifts = shifts[order % n:] + shifts[:order % n]
  return k + alpha * sum(take(s) * take(s) for s in shifts)


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


def _pad_pixels(x: jax.Array) -> jax.Array:
  """x [..., C] -> flat [(P + 2) * C]: x's P pixels with a zero pixel either side.

  Padded as rows of C, not as one flat vector: XLA:CPU loops over the pad's output shape,
  and a flat 1-D loop reading [N, H, W, C] operands pays a division per element to find
  each one's pixel; a [P + 2, C] loop runs along contiguous channels."""
  c = x.shape[-1]
  return jnp.pad(x.reshape(-1, c), ((1, 1), (0, 0))).reshape(-1)


def _concat_pixels(x: jax.Array) -> jax.Array:
  """`_pad_pixels` as a concatenation."""
  zero = jnp.zeros((1, x.shape[-1]), x.dtype)
  return jnp.concatenate([zero, x.reshape(-1, x.shape[-1]), zero]).reshape(-1)


def _padded_shifts(x: jax.Array):
  """`_shifts` of x flattened, read from one copy of it padded with a zero pixel either side.

  The copy is the point: it is the only pass that evaluates x's producer (in the model the
  bias add and ReLU, whose per-channel bias XLA:CPU cannot vectorise when it is read through
  a flat shifted slice), and every shifted read after it is a plain vectorised load.
  """
  c = x.shape[-1]
  return _shifts(_pad_pixels(x), c, x.size, c)


@functools.partial(jax.custom_vjp, nondiff_argnums=(1, 2, 3, 4, 5))
def _lrn(x, n, k, alpha, beta, cpu_forms):
  xs = _padded_shifts(x)
  return (xs(0) * _powers(_denominator(xs, n, k, alpha), beta)[0]).reshape(x.shape)


def _lrn_fwd(x, n, k, alpha, beta, cpu_forms):
  return _lrn(x, n, k, alpha, beta, cpu_forms), x


def _lrn_bwd(n, k, alpha, beta, cpu_forms, x, g):
  r, c = n // 2, x.shape[-1]
  xs = _padded_shifts(x)
  g0 = g.reshape(-1)
  t = g0 * xs(0) * _powers(_denominator(xs, n, k, alpha, 1), beta)[1]
  # With cpu_forms t is padded by concatenation, not a pad: XLA fuses t's computation into
  # either, and its CPU loop for a pad tests every element for the border (benchmarks/
  # README.md). Other platforms keep the pad they were measured with.
  ts = _shifts((_concat_pixels if cpu_forms else _pad_pixels)(t.reshape(-1, c)),
               c, x.size, c)
  # The window's centre term t is recomputed here rather than read back: XLA simplifies the
  # centre slice of the padded t to t itself, which would make t's rsqrt(d) a value shared by
  # two passes, which XLA:CPU then stores instead of fusing.
  p, q = _powers(_denominator(xs, n, k, alpha, 2), beta)
  window = g0 * xs(0) * q + sum(ts(s) for s in range(-r, r + 1) if s)
  return ((g0 * p - (2.0 * alpha * beta) * xs(0) * window).reshape(x.shape),)


_lrn.defvjp(_lrn_fwd, _lrn_bwd)


# For an input that is already stored (LRN after max pooling, as in the
# `conv_local_11pct_as_conv` net's first block), the padded copy above is a pass with nothing
# to save: read it in place instead. Inner rows of the leading axis are sliced directly; the
# first and last rows, whose shifted slices would run off the array, go through a small
# padded copy (faster in the step: benchmarks/README.md).

def _in_place(fn, *arrays: jax.Array) -> jax.Array:
  """fn(take_0, take_1, ...) for same-shaped [A, ..., C] arrays read in place."""
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


@functools.partial(jax.custom_vjp, nondiff_argnums=(1, 2, 3, 4))
def _lrn_stored(x, n, k, alpha, beta):   # one form on every backend
  return _in_place(lambda xs: xs(0) * _powers(_denominator(xs, n, k, alpha), beta)[0], x)


def _lrn_stored_fwd(x, n, k, alpha, beta):
  return _lrn_stored(x, n, k, alpha, beta), x


def _lrn_stored_bwd(n, k, alpha, beta, x, g):
  r = n // 2
  t = _in_place(lambda xs, gs: gs(0) * xs(0) * _powers(_denominator(xs, n, k, alpha), beta)[1],
                x, g)

  def grad(xs, gs, ts):
    window = sum(ts(s) for s in range(-r, r + 1))
    d = _denominator(xs, n, k, alpha)
    return gs(0) * _powers(d, beta)[0] - (2.0 * alpha * beta) * xs(0) * window

  return (_in_place(grad, x, g, t),)


_lrn_stored.defvjp(_lrn_stored_fwd, _lrn_stored_bwd)


def local_response_norm(x: jax.Array, *, n: int = 5, k: float = 2.0, alpha: float = 1e-4,
                        beta: float = 0.75, convention: str = "paper",
                        groups: int = 1, input_stored: bool = False,
                        cpu_forms: bool = False) -> jax.Array:
  """LRN over the last (channel) axis of `x`, for any odd window `n`.

  `groups` > 1 normalises each contiguous block of C / groups channels on its own: with two
  towers each GPU in the paper normalised only over the kernel maps it held.
  `input_stored`: `x` is an array XLA stores anyway (a pooling output), rather than a fresh
  activation: read it in place. `cpu_forms`: the gradient's forms that XLA:CPU runs fast.
  The same values either way; only the speed differs.
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
  constants = (n, float(k), float(a), float(beta))
  y = _lrn_stored(y, *constants) if input_stored else _lrn(y, *constants, bool(cpu_forms))
  return y.reshape(x.shape).astype(x.dtype)
