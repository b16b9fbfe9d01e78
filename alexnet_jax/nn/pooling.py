"""Max pooling (§3.4: overlapping 3x3 windows with stride 2), with a gradient that XLA:CPU
runs fast.

The forward pass is `lax.reduce_window`, as `flax.linen.max_pool`. The gradient is what
differs: JAX differentiates a max `reduce_window` into select-and-scatter, which XLA:CPU
expands into index arrays (iota) the size of the input, a reduce-window over (value, index)
pairs and a scatter: a large share of the paper step on a CPU (benchmarks/README.md).

With `cpu_forms` the gradient is written with strided slices and pads instead
(`phase_gradient`), which XLA:CPU fuses into two passes; GPUs and TPUs keep
select-and-scatter, which they run natively (the model passes its `cpu_forms` field):
  1. for every pooling window, the offset (0 .. w*w - 1, row-major) of its first maximum:
     one pass reading the w*w strided views of x;
  2. the input gradient: each input pixel collects, for each offset, the output gradient of
     the window whose first maximum it is. The pixels of one phase (row % stride, column %
     stride) are a grid that each offset reaches by a plain shift (an edge pad), so each
     phase is a sum of shifted arrays; the stride^2 phases are then interleaved (a stack
     and a reshape) and cropped to the input's size.
The first maximum in row-major order is where select-and-scatter sends a tie too, so the
gradients are the same (tests/test_pooling.py compares them with and without ties); the
speeds are in benchmarks/README.md.
"""
from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
from jax import lax


def _views(x: jax.Array, window: int, stride: int, out_h: int, out_w: int):
  """(row offset, column offset, x at that offset of every window [B, out_h, out_w, C])."""
  b, _, _, c = x.shape
  for di in range(window):
    for dj in range(window):
      end = (b, di + stride * (out_h - 1) + 1, dj + stride * (out_w - 1) + 1, c)
      yield di, dj, lax.slice(x, (0, di, dj, 0), end, (1, stride, stride, 1))


def _reduce_max(x: jax.Array, window: int, stride: int) -> jax.Array:
  # A Python -inf, as flax passes: JAX then knows this as a max pool and can differentiate it.
  return lax.reduce_window(x, -jnp.inf, lax.max, (1, window, window, 1), (1, stride, stride, 1),
                           "VALID")


@functools.partial(jax.custom_vjp, nondiff_argnums=(1, 2, 3))
def max_pool(x: jax.Array, window: int, stride: int, cpu_forms: bool = False) -> jax.Array:
  """[B, H, W, C] -> [B, (H - window) // stride + 1, (W - window) // stride + 1, C]: the max
  over each window x window patch, `stride` apart, no padding (VALID). `cpu_forms`: the
  gradient is `phase_gradient` (fast on XLA:CPU) rather than select-and-scatter; the
  values are the same."""
  return _reduce_max(x, window, stride)


def _max_pool_fwd(x, window, stride, cpu_forms):
  y = max_pool(x, window, stride, cpu_forms)
  return y, (x, y)


def phase_gradient(x: jax.Array, y: jax.Array, g: jax.Array, window: int, stride: int
                   ) -> jax.Array:
  """The input gradient of y = max_pool(x) for output gradient g, in two fused passes."""
  b, h, w, c = x.shape
  out_h, out_w = y.shape[1:3]
  views = list(_views(x, window, stride, out_h, out_w))
  index = jnp.int8 if len(views) < 127 else jnp.int32
  first = jnp.full(y.shape, len(views), index)   # offset of each window's first maximum
  for k in reversed(range(len(views))):
    first = jnp.where(views[k][2] == y, index(k), first)
  # Input pixel (stride * p + a, stride * q + b) is offset (di, dj) = (a, b) + stride * (u, v)
  # of window (p - u, q - v): each of the stride^2 phases (a, b) sums shifted windows' terms.
  zero = jnp.zeros((), g.dtype)
  hp, wp = -(-h // stride), -(-w // stride)
  phases = [[jnp.zeros((b, hp, wp, c), g.dtype) for _ in range(stride)] for _ in range(stride)]
  for k, (di, dj, _) in enumerate(views):
    (u, a), (v, bb) = divmod(di, stride), divmod(dj, stride)
    term = jnp.where(first == k, g, zero)
    phases[a][bb] = phases[a][bb] + lax.pad(
        term, zero, [(0, 0, 0), (u, hp - out_h - u, 0), (v, wp - out_w - v, 0), (0, 0, 0)])
  grad = jnp.stack([jnp.stack(row, axis=3) for row in phases], axis=2)  # [B, hp, s, wp, s, C]
  return grad.reshape(b, hp * stride, wp * stride, c)[:, :h, :w].astype(x.dtype)


def _max_pool_bwd(window, stride, cpu_forms, residuals, g):
  x, y = residuals

  def xla_gradient(x, y, g):   # select-and-scatter: native and fast on GPU and TPU
    del y
    return jax.vjp(lambda x: _reduce_max(x, window, stride), x)[1](g)[0]

  if cpu_forms:
    return (phase_gradient(x, y, g, window, stride),)
  return (xla_gradient(x, y, g),)


max_pool.defvjp(_max_pool_fwd, _max_pool_bwd)


def pad_unread(x: jax.Array, window: int, stride: int) -> jax.Array:
  """x with zero rows and columns added at the bottom and right, up to a multiple of
  `stride`, where no pooling window reads them (else x unchanged): max_pool's output is
  the same, and its gradient's phases then interleave into exactly x's shape, with no crop.

  For whatever runs between this pad and the pool (LRN in the paper model: 55 -> 56 and
  27 -> 28), the pool's gradient is then an array read as stored instead of through a crop,
  which a flat XLA:CPU loop pays for with index arithmetic on every element
  (benchmarks/README.md). The model pads, before LRN or with LRN off before the pool, when
  built with `cpu_forms`: GPUs keep the shapes their loop was measured with.
  """
  h, w = x.shape[1:3]
  ph, pw = -h % stride, -w % stride
  if (h + ph - window) // stride != (h - window) // stride or \
     (w + pw - window) // stride != (w - window) // stride:
    return x
  return jnp.pad(x, ((0, 0), (0, ph), (0, pw), (0, 0)))


def pooled_size(size: int, window: int, stride: int, ceil: bool = False) -> int:
  """Output size of a pool: (size - window) // stride + 1, or with `ceil` cuda-convnet's
  ceil((size - window) / stride) + 1 (layer.py's outputsX), whose last window may overhang
  the border: 24 -> 12 and 12 -> 6 with 3/2 windows, where VALID gives 11 and 5."""
  room = size - window
  return (-(-room // stride) if ceil else room // stride) + 1


def _overhang(x: jax.Array, window: int, stride: int) -> tuple[int, int]:
  """Rows and columns to add at the bottom and right for cuda-convnet's (ceil) output size."""
  h, w = x.shape[1:3]
  return tuple((pooled_size(n, window, stride, True) - 1) * stride + window - n for n in (h, w))


def max_pool_ceil(x: jax.Array, window: int, stride: int, cpu_forms: bool = False
                  ) -> jax.Array:
  """`max_pool` with cuda-convnet's output size: the overhanging windows' missing pixels
  are -inf, so each takes the max of the pixels it covers (and gets their gradient)."""
  ph, pw = _overhang(x, window, stride)
  return max_pool(jnp.pad(x, ((0, 0), (0, ph), (0, pw), (0, 0)), constant_values=-jnp.inf),
                  window, stride, cpu_forms)


def avg_pool(x: jax.Array, window: int, stride: int, ceil: bool = False) -> jax.Array:
  """[B, H, W, C] -> the mean over each window x window patch, `stride` apart; with `ceil`
  cuda-convnet's output size, an overhanging window averaging only the pixels it covers
  (cuda-convnet's AvgPooler divides by the window's clipped region size)."""
  ph, pw = _overhang(x, window, stride) if ceil else (0, 0)
  pads = ((0, 0), (0, ph), (0, pw), (0, 0))
  dims, strides = (1, window, window, 1), (1, stride, stride, 1)
  sums = lax.reduce_window(jnp.pad(x, pads), 0.0, lax.add, dims, strides, "VALID")
  ones = jnp.pad(jnp.ones((1, *x.shape[1:3], 1), x.dtype), pads)
  counts = lax.reduce_window(ones, 0.0, lax.add, dims, strides, "VALID")   # [1, h, w, 1]
  return sums / counts
