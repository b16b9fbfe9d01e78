"""Local Response Normalization across channels (Krizhevsky et al. 2012, §3.3).

    b[i] = a[i] / (k + alpha' * sum_{j = max(0, i - n//2)}^{min(N - 1, i + n//2)} a[j]^2) ^ beta

The paper writes alpha' = alpha. cuda-convnet, Caffe and PyTorch divide alpha by the window
size (alpha' = alpha / n), so their published alpha is n times the paper's. `convention`
picks which reading of `alpha` is meant: 'paper' (alpha' = alpha, what
`tf.nn.local_response_normalization` computes) or 'caffe' (alpha' = alpha / n).

The window sum is the sum of n shifted copies of a^2 over a zero-padded channel axis, which
XLA fuses into a single pass over memory. The gradient is written by hand (a custom VJP)
so that the backward pass is one more fused pass instead of autodiff through the pad,
slices and power. `benchmark.py` and the README compare this with other formulations.
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


def _window_sum(x: jax.Array, n: int) -> jax.Array:
  """Sum over a window of n channels centred on each channel, clipped at the borders."""
  r = n // 2
  c = x.shape[-1]
  padded = jnp.pad(x, [(0, 0)] * (x.ndim - 1) + [(r, r)])
  return sum(padded[..., i:i + c] for i in range(n))


def _inv_pow(d: jax.Array, beta: float) -> jax.Array:
  """d ** -beta, with the paper's beta = 0.75 as two square roots instead of exp(log)."""
  if beta == 0.75:
    r = jax.lax.rsqrt(d)
    return r * jnp.sqrt(r)
  if beta == 0.5:
    return jax.lax.rsqrt(d)
  return d ** -beta


@functools.partial(jax.custom_vjp, nondiff_argnums=(1, 2, 3, 4))
def _lrn(x, n, k, alpha, beta):
  return x * _inv_pow(k + alpha * _window_sum(x * x, n), beta)


def _lrn_fwd(x, n, k, alpha, beta):
  return _lrn(x, n, k, alpha, beta), x


def _lrn_bwd(n, k, alpha, beta, x, g):
  # y_i = x_i d_i^-beta with d_i = k + alpha * sum_{j in W(i)} x_j^2, and j in W(i) <=> i in W(j):
  # dL/dx_j = g_j d_j^-beta - 2 alpha beta x_j sum_{i in W(j)} g_i x_i d_i^(-beta-1).
  d = k + alpha * _window_sum(x * x, n)
  p = _inv_pow(d, beta)
  t = g * x * p / d
  return (g * p - (2.0 * alpha * beta) * x * _window_sum(t, n),)


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
