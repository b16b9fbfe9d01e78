"""The tf.data pipeline's image maths, kept as the oracle for augment.py (tests only).

Until the training path moved to the device, alexnet_jax/input_pipeline.py ran these
TensorFlow functions on the host for every image (§2 square, §4.1 crops, flips and PCA
lighting, the input scale). tests/test_augment.py checks that the JAX functions compute
the same for the same crop offsets, flips and lighting draws.
"""
import tensorflow as tf

from alexnet_jax.data.augment import input_gain  # the scale's constants, not its maths

# PCA lighting constants (fb.resnet.torch), RGB order, 0-1 scale. Rows of EIGVEC are the R, G
# and B components of the three eigenvectors' coordinates: shift = EIGVEC @ (alpha * EIGVAL).
EIGVAL = (0.2175, 0.0188, 0.0045)
EIGVEC = ((-0.5675, 0.7192, 0.4009),
          (-0.5808, -0.0045, -0.8140),
          (-0.5836, -0.6948, 0.4203))

def _to_rgb(image: tf.Tensor) -> tf.Tensor:
  """[H, W] or [H, W, C] with C in 1..4 -> [H, W, 3]: grey (and grey+alpha) tiled, alpha dropped."""
  image = tf.convert_to_tensor(image)
  if image.shape.rank == 2:
    image = image[..., None]
  c = tf.shape(image)[-1]
  image = tf.cond(c < 3, lambda: tf.tile(image[..., :1], [1, 1, 3]), lambda: image[..., :3])
  image.set_shape([None, None, 3])
  return image


def _resize_shorter(image: tf.Tensor, size: int) -> tf.Tensor:
  """uint8/float [H, W, 3] -> float32 0-255 [H', W', 3] with min(H', W') == size, aspect kept."""
  shape = tf.shape(image)
  shorter = tf.minimum(shape[0], shape[1])

  def resize():
    scale = size / tf.cast(shorter, tf.float32)
    new_size = tf.maximum(size, tf.cast(tf.round(tf.cast(shape[:2], tf.float32) * scale),
                                        tf.int32))
    # Antialiasing matters only when shrinking, and costs 2x (up) to 5x (down) plain bilinear.
    return tf.cond(shorter < size,
                   lambda: tf.image.resize(image, new_size, method="bilinear"),
                   lambda: tf.image.resize(image, new_size, method="bilinear", antialias=True))

  return tf.cond(tf.equal(shorter, size), lambda: tf.cast(image, tf.float32), resize)


def _centre_crop(image: tf.Tensor, size: int) -> tf.Tensor:
  shape = tf.shape(image)
  return tf.slice(image, tf.stack([(shape[0] - size) // 2, (shape[1] - size) // 2, 0]),
                  [size, size, -1])


def ten_crop(image: tf.Tensor, size: int) -> tf.Tensor:
  """[H, W, C] (H, W >= size) -> [10, size, size, C]: top-left, top-right, bottom-left,
  bottom-right, centre, then the same five flipped left-right (§4.1)."""
  image = tf.convert_to_tensor(image)
  shape = tf.shape(image)
  h, w = shape[0], shape[1]
  crop = lambda top, left: tf.slice(  # pylint: disable=unnecessary-lambda-assignment
      image, tf.stack([top, left, 0]), [size, size, -1])
  crops = tf.stack([crop(0, 0), crop(0, w - size), crop(h - size, 0), crop(h - size, w - size),
                    _centre_crop(image, size)])             # [5, S, S, C]
  return tf.concat([crops, crops[:, :, ::-1]], axis=0)      # [10, S, S, C]


def to_model_input(pixels: tf.Tensor, data_cfg, shift: tf.Tensor | float = 0.0) -> tf.Tensor:
  """0-255 float pixels [..., 3] -> what the model sees, as one multiply-add per pixel."""
  gain = input_gain(data_cfg)
  offset = (shift - tf.constant(data_cfg.mean, tf.float32)) * gain
  return pixels * tf.constant(gain / 255.0) + offset


def _square(image: tf.Tensor, size: int) -> tf.Tensor:
  """§2: shorter side to `size`, then the central size x size crop -> float32 0-255."""
  return _centre_crop(_resize_shorter(image, size), size)


def pca_lighting_shift(alpha: tf.Tensor) -> tf.Tensor:
  """alpha [3] -> RGB shift [3] on a 0-1 scale: EIGVEC @ (alpha * EIGVAL) (§4.1)."""
  return tf.linalg.matvec(tf.constant(EIGVEC, tf.float32), alpha * tf.constant(EIGVAL, tf.float32))


def _train_preprocess(image: tf.Tensor, seed: tf.Tensor, data_cfg) -> tf.Tensor:
  """uint8 [H, W, 3] -> normalised float32 [S, S, 3]; `seed` is a stateless seed [2].

  Written with few, vectorised ops: tf.data runs this per image, and on 32x32 images the
  per-op overhead, not the arithmetic, sets the throughput.
  """
  size = int(data_cfg.image_size)
  resize_size = int(data_cfg.resize_size)
  geometry_seed, light_seed = tf.unstack(tf.random.experimental.stateless_split(seed, 2))
  if resize_size > size:
    image = _square(image, resize_size)                   # [R, R, 3], §2
  else:  # small images: pad-and-crop (see the module docstring)
    image = _resize_shorter(image, size)
    pad = max(1, size // 8)
    image = tf.pad(image, [[pad, pad], [pad, pad], [0, 0]])
  u = tf.random.stateless_uniform([3], geometry_seed)  # crop top, crop left, flip
  room = tf.cast(tf.shape(image)[:2] - size + 1, tf.float32)
  top_left = tf.cast(u[:2] * room, tf.int32)
  image = tf.slice(image, tf.concat([top_left, [0]], 0), [size, size, 3])  # [S, S, 3]
  if data_cfg.flip:
    image = tf.cond(u[2] < 0.5, lambda: tf.reverse(image, [1]), lambda: image)
  shift = 0.0
  if data_cfg.pca_lighting > 0:
    alpha = tf.random.stateless_normal([3], light_seed, stddev=float(data_cfg.pca_lighting))
    shift = pca_lighting_shift(alpha)
  return to_model_input(image, data_cfg, shift)


def _eval_square(image: tf.Tensor, data_cfg) -> tf.Tensor:
  size = int(data_cfg.image_size)
  return _square(_to_rgb(image), max(int(data_cfg.resize_size), size))


def preprocess_eval_image(image_uint8_hwc, data_cfg) -> tf.Tensor:
  """Decoded uint8 image, any channel count -> model input float32 [S, S, 3], centre crop."""
  image = _centre_crop(_eval_square(image_uint8_hwc, data_cfg), int(data_cfg.image_size))
  return to_model_input(image, data_cfg)


def preprocess_eval_image_ten_crop(image_uint8_hwc, data_cfg) -> tf.Tensor:
  """Decoded uint8 image, any channel count -> model input float32 [10, S, S, 3]: the
  corners and centre of the §2 square, and their mirror images (§4.1)."""
  crops = ten_crop(_eval_square(image_uint8_hwc, data_cfg), int(data_cfg.image_size))
  return to_model_input(crops, data_cfg)
