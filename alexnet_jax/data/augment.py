"""Data augmentation on the device: pure JAX functions of a uint8 batch and a PRNG key.

What runs where, and why:
  host    §2: every image is brought once to a `resize_size` square (shorter side to
          `resize_size`, then the central square), stored as uint8 (alexnet_jax/base/records.py);
          batches travel to the devices as uint8, a quarter of the float32 bytes.
  device  §4.1, inside the jitted train step: a random `image_size` crop of the square, a
          random horizontal flip and PCA colour lighting, then the input scale. The paper did
          this on the CPU while the GPU trained; on the device it costs a few elementwise ops
          per pixel, it needs no host threads, and every random draw is a pure function of
          the step's key (same key, same batch: reproducible and resumable).

Images too small for a crop (`resize_size <= image_size`, e.g. CIFAR at 32) get the usual
small-image recipe instead: zero-pad by max(1, image_size // 8) black pixels each side (4 at
32) and take a random `image_size` crop. Evaluation takes the centre crop of the square, or
ten crops: its four corners and its centre, each also flipped left-right (§4.1).

Input scale (`data.input_scale`):
  'paper'         §2: raw 0-255 pixels minus the per-channel training-set mean (`mean`, on a
                  0-1 scale; the paper subtracted the mean *image*, of which the per-channel
                  mean is the usual approximation). The paper's N(0, 0.01) init and LRN
                  constants (k=2, alpha=1e-4) assume this scale.
  'standardized'  (pixels / 255 - mean) / std, the torchvision convention.
PCA lighting is a shift on the 0-1 scale, so it scales with the input like the pixels do.

Everything is batch-first and jit-able, with static shapes: images arrive as uint8
[B, R, R, 3], where R is the prepared size. Only JAX and numpy: no TensorFlow.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

# PCA lighting constants (fb.resnet.torch), RGB order, 0-1 scale. Rows of EIGVEC are the R, G
# and B components of the three eigenvectors' coordinates: shift = EIGVEC @ (alpha * EIGVAL).
EIGVAL = (0.2175, 0.0188, 0.0045)
EIGVEC = ((-0.5675, 0.7192, 0.4009),
          (-0.5808, -0.0045, -0.8140),
          (-0.5836, -0.6948, 0.4203))

INPUT_SCALES = ("paper", "standardized")


# ---------------------------------------------------------------------------------------------
# Input scale and colour.

def input_gain(data_cfg) -> np.ndarray:
  """Per-channel c with model input = (pixels / 255 + lighting shift - mean) * c:
  255 for 'paper' (0-255 pixels minus the mean, §2), 1 / std for 'standardized'."""
  if data_cfg.input_scale == "paper":
    return np.full(3, 255.0, np.float32)
  if data_cfg.input_scale == "standardized":
    return 1.0 / np.asarray(data_cfg.std, np.float32)
  raise ValueError(f"data.input_scale must be one of {INPUT_SCALES}, "
                   f"got {data_cfg.input_scale!r}")


def to_model_input(pixels: jax.Array, data_cfg, shift: jax.Array | float = 0.0) -> jax.Array:
  """0-255 pixels [..., 3] (any dtype) -> float32 model input, one multiply-add per pixel (§2).

  `shift` is the lighting shift on the 0-1 scale, broadcast against `pixels` ([B, 1, 1, 3]
  for one shift per image)."""
  gain = input_gain(data_cfg)
  offset = (shift - jnp.asarray(data_cfg.mean, jnp.float32)) * gain
  return pixels.astype(jnp.float32) * jnp.asarray(gain / 255.0) + offset


def from_model_input(images: jax.Array, data_cfg) -> jax.Array:
  """The inverse of `to_model_input` (no shift): model inputs -> uint8 pixels, for display."""
  x = images / input_gain(data_cfg) + jnp.asarray(data_cfg.mean, jnp.float32)
  return jnp.clip(jnp.round(x * 255.0), 0, 255).astype(jnp.uint8)


def pca_lighting_shift(alpha: jax.Array) -> jax.Array:
  """alpha [..., 3] -> RGB shift [..., 3] on a 0-1 scale: EIGVEC @ (alpha * EIGVAL) (§4.1).

  Written as a multiply and a sum, not a matmul: accelerators may run float32 matmuls at
  reduced precision (TF32), and this is 9 multiplies per image."""
  v = alpha * jnp.asarray(EIGVAL, jnp.float32)                        # [..., 3]
  return jnp.sum(jnp.asarray(EIGVEC, jnp.float32) * v[..., None, :], axis=-1)


# ---------------------------------------------------------------------------------------------
# Geometry.

def square_size(data_cfg) -> int:
  """The side of the §2 square that crops are taken from: `resize_size`, or `image_size`
  where that is larger (images no larger than the crop, CIFAR at 32)."""
  return max(int(data_cfg.resize_size), int(data_cfg.image_size))


def square(images: jax.Array, resize_size: int) -> jax.Array:
  """[B, R, R, 3] -> [B, resize_size, resize_size, 3] (§2): as is when R == resize_size,
  else resized on the device (linear, antialiased when shrinking) to float32 0-255."""
  b, r, _, c = images.shape
  if r == resize_size:
    return images
  return jax.image.resize(images.astype(jnp.float32), (b, resize_size, resize_size, c),
                          method="linear", antialias=r > resize_size)


def crop_flip(images: jax.Array, tops: jax.Array, lefts: jax.Array, flips: jax.Array,
              size: int) -> jax.Array:
  """[B, H, W, C] -> [B, size, size, C]: image i cropped at (tops[i], lefts[i]) and, where
  flips[i], mirrored left-right (§4.1). Offsets past H - size or W - size are clamped (as
  lax.dynamic_slice does)."""
  c = images.shape[-1]

  def crop(image, top, left):
    return jax.lax.dynamic_slice(image, (top, left, 0), (size, size, c))

  crops = jax.vmap(crop)(images, tops, lefts)                         # [B, S, S, C]
  return jnp.where(flips[:, None, None, None], crops[:, :, ::-1], crops)


# ---------------------------------------------------------------------------------------------
# Training (§4.1).

def train_canvas(images: jax.Array, data_cfg) -> jax.Array:
  """[B, R, R, 3] -> the square the training crops are taken from: the `resize_size`
  square (§2), or for small images (resize_size <= image_size) the `image_size` square
  zero-padded by max(1, image_size // 8) pixels each side."""
  size, resize_size = int(data_cfg.image_size), int(data_cfg.resize_size)
  if resize_size > size:
    return square(images, resize_size)                                # [B, R, R, 3]
  pad = max(1, size // 8)
  return jnp.pad(square(images, size), ((0, 0), (pad, pad), (pad, pad), (0, 0)))


def draw(key: jax.Array, batch: int, room: int, data_cfg):
  """-> (tops [B], lefts [B], flips [B], alphas [B, 3]) for one batch, all from `key`.

  Offsets uniform in [0, room]; flips with probability 1/2 if data_cfg.flip (else none);
  lighting alphas ~ N(0, pca_lighting) (§4.1; zeros when pca_lighting is 0)."""
  crop_key, flip_key, light_key = jax.random.split(key, 3)
  offsets = jax.random.randint(crop_key, (2, batch), 0, room + 1)     # [2, B]
  if data_cfg.flip:
    flips = jax.random.bernoulli(flip_key, 0.5, (batch,))
  else:
    flips = jnp.zeros((batch,), bool)
  sigma = float(data_cfg.pca_lighting)
  if sigma > 0:
    alphas = sigma * jax.random.normal(light_key, (batch, 3), jnp.float32)
  else:
    alphas = jnp.zeros((batch, 3), jnp.float32)
  return offsets[0], offsets[1], flips, alphas


def augment(canvas: jax.Array, tops: jax.Array, lefts: jax.Array, flips: jax.Array,
            alphas: jax.Array, data_cfg) -> jax.Array:
  """The deterministic half of `train_images`: crop, flip, PCA lighting shift (§4.1) and
  the input scale -> float32 [B, S, S, 3]."""
  crops = crop_flip(canvas, tops, lefts, flips, int(data_cfg.image_size))  # [B, S, S, 3]
  shift = pca_lighting_shift(alphas)[:, None, None, :]                # [B, 1, 1, 3]
  return to_model_input(crops, data_cfg, shift)


def train_images(images: jax.Array, key: jax.Array, data_cfg) -> jax.Array:
  """uint8 [B, R, R, 3] -> augmented float32 model input [B, S, S, 3] (§2, §4.1).

  A random S crop of the canvas (`train_canvas`), a random flip and PCA lighting per image,
  all drawn from `key`: the same key gives the same batch. With data_cfg.random_crop False
  the crop is the square's centre, as in evaluation."""
  if not data_cfg.get("random_crop", True):   # no translations: the centre crop (Figure 1)
    canvas = square(images, square_size(data_cfg))
    room = canvas.shape[1] - int(data_cfg.image_size)
    _, _, flips, alphas = draw(key, images.shape[0], room, data_cfg)
    centre = jnp.full((images.shape[0],), room // 2, jnp.int32)
    return augment(canvas, centre, centre, flips, alphas, data_cfg)
  canvas = train_canvas(images, data_cfg)
  room = canvas.shape[1] - int(data_cfg.image_size)
  return augment(canvas, *draw(key, images.shape[0], room, data_cfg), data_cfg)


# ---------------------------------------------------------------------------------------------
# Evaluation (§4.1).

# The ten crops' order (§4.1): these five, then the same five flipped left-right.
TEN_CROPS = ("top left", "top right", "bottom left", "bottom right", "centre")
CENTRE_CROP = TEN_CROPS.index("centre")   # the unflipped centre crop's index of the ten


def _corners_and_centre(images: jax.Array, size: int) -> list[tuple[int, int]]:
  """(top, left) of each of TEN_CROPS' five crops, in that order."""
  room = images.shape[1] - size
  at = {"top left": (0, 0), "top right": (0, room), "bottom left": (room, 0),
        "bottom right": (room, room), "centre": (room // 2, room // 2)}
  return [at[name] for name in TEN_CROPS]


def eval_images(images: jax.Array, data_cfg, ten_crop: bool = False) -> jax.Array:
  """uint8 [B, R, R, 3] -> float32 model input: the centre S crop of the square, [B, S, S, 3],
  or with `ten_crop` [B, 10, S, S, 3]: the five crops of TEN_CROPS, then the same five
  flipped left-right (§4.1)."""
  size = int(data_cfg.image_size)
  x = square(images, square_size(data_cfg))                           # [B, R, R, 3]
  spots = _corners_and_centre(x, size)
  if not ten_crop:
    top, left = spots[CENTRE_CROP]
    return to_model_input(x[:, top:top + size, left:left + size], data_cfg)
  crops = jnp.stack([x[:, t:t + size, l:l + size] for t, l in spots], axis=1)  # [B, 5, S, S, 3]
  crops = jnp.concatenate([crops, crops[:, :, :, ::-1]], axis=1)     # [B, 10, S, S, 3]
  return to_model_input(crops, data_cfg)
