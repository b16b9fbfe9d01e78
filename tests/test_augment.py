"""On-device augmentation (alexnet_jax/data/augment.py): equal to the tf.data pipeline's maths for
the same draws, the draws themselves, sharding, and the display round trip."""
import subprocess
import sys

import jax
import jax.numpy as jnp
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P
import numpy as np
import pytest

from alexnet_jax.data import augment
from experiments import default

B, R, S = 4, 40, 32   # batch, prepared (= resize) size, crop size


def data_config(**overrides):
  c = default.get_config().data
  c.resize_size, c.image_size = R, S
  for k, v in overrides.items():
    setattr(c, k, v)
  return c


def squares(n=B, size=R, seed=0):
  return np.random.default_rng(seed).integers(0, 256, (n, size, size, 3), dtype=np.uint8)


def tolerance(c):
  return 1e-5 * float(np.max(augment.input_gain(c)))   # ~1e-5 of the pixel range, any scale


@pytest.fixture(scope="module")
def ip():
  """The retired tf.data pipeline's maths (tests/tf_reference.py), on TensorFlow's ops."""
  pytest.importorskip("tensorflow")
  import tf_reference  # pylint: disable=import-outside-toplevel
  return tf_reference


# ---------------------------------------------------------------------------------------------
# 1. The same maths as the tf.data pipeline.

def tf_train(ip, image, seed, c):
  """tf_reference._train_preprocess on one image, and the draws it made (recomputed with
  the same stateless calls): (output, top, left, flip, alpha)."""
  import tensorflow as tf  # pylint: disable=import-outside-toplevel
  seed = tf.constant(seed, tf.int64)
  preprocess = ip._train_preprocess  # pylint: disable=protected-access
  out = preprocess(tf.constant(image), seed, c).numpy()
  geometry_seed, light_seed = tf.unstack(tf.random.experimental.stateless_split(seed, 2))
  u = tf.random.stateless_uniform([3], geometry_seed).numpy()
  canvas = R if c.resize_size > c.image_size else S + 2 * max(1, S // 8)
  top, left = (u[:2] * np.float32(canvas - S + 1)).astype(np.int32)   # tf.cast truncates
  alpha = tf.random.stateless_normal([3], light_seed, stddev=float(c.pca_lighting)).numpy()
  return out, top, left, bool(c.flip and u[2] < 0.5), alpha


@pytest.mark.parametrize("scale", ["paper", "standardized"])
@pytest.mark.parametrize("small", [False, True], ids=["crop", "pad"])
def test_train_equals_tf(ip, scale, small):
  """`augment` with `_train_preprocess`'s own draws gives its output, for the §2 square's
  random crop and for the small-image pad-and-crop recipe."""
  c = data_config(input_scale=scale, resize_size=S if small else R)
  images = squares(8, S if small else R)
  seeds = [[7, i] for i in range(8)]
  tf_out, tops, lefts, flips, alphas = zip(*(tf_train(ip, x, s, c) for x, s in zip(images, seeds)))
  assert len(set(flips)) == 2 and len(set(tops)) > 1   # the draws exercise both paths
  got = jax.jit(lambda *a: augment.augment(augment.train_canvas(a[0], c), *a[1:], c))(
      images, np.array(tops), np.array(lefts), np.array(flips), np.array(alphas))
  np.testing.assert_allclose(got, np.stack(tf_out), rtol=0, atol=tolerance(c))


@pytest.mark.parametrize("scale", ["paper", "standardized"])
@pytest.mark.parametrize("small", [False, True], ids=["crop", "pad"])
def test_eval_equals_tf(ip, scale, small):
  """Centre crop and ten crops (§4.1) equal preprocess_eval_image(_ten_crop)."""
  import tensorflow as tf  # pylint: disable=import-outside-toplevel
  c = data_config(input_scale=scale, resize_size=S if small else R)
  images = squares(2, S if small else R)
  want = np.stack([ip.preprocess_eval_image(tf.constant(x), c).numpy() for x in images])
  want10 = np.stack([ip.preprocess_eval_image_ten_crop(tf.constant(x), c).numpy()
                     for x in images])
  np.testing.assert_allclose(augment.eval_images(images, c), want, rtol=0, atol=tolerance(c))
  got10 = augment.eval_images(images, c, ten_crop=True)
  assert got10.shape == (2, 10, S, S, 3)
  np.testing.assert_allclose(got10, want10, rtol=0, atol=tolerance(c))


@pytest.mark.parametrize("small", [False, True], ids=["crop", "pad"])
def test_the_centre_crop_is_the_ten_crops_centre_crop_index(small):
  """evaluation reads the single crop out of the ten at augment.CENTRE_CROP."""
  c = data_config(resize_size=S if small else R)
  images = squares(2, S if small else R)
  ten = augment.eval_images(images, c, ten_crop=True)
  np.testing.assert_array_equal(ten[:, augment.CENTRE_CROP], augment.eval_images(images, c))
  np.testing.assert_array_equal(ten[:, augment.CENTRE_CROP + 5],
                                augment.eval_images(images, c)[:, :, ::-1])
  if not small:   # the middle of the square; the corners differ from it
    m = (R - S) // 2
    np.testing.assert_array_equal(augment.eval_images(images, c), augment.to_model_input(
        jnp.asarray(images[:, m:m + S, m:m + S]), c))
    assert all(not np.array_equal(ten[:, i], ten[:, augment.CENTRE_CROP])
               for i in range(5) if i != augment.CENTRE_CROP)


@pytest.mark.parametrize("prepared", [48, 36])
def test_square_resize_close_to_tf(ip, prepared):
  """A prepared size other than resize_size: resized on the device like TF's §2 square
  (bilinear; antialiased when shrinking), to well under one grey level."""
  import tensorflow as tf  # pylint: disable=import-outside-toplevel
  images = squares(2, prepared)
  want = np.stack([ip._square(tf.constant(x), R).numpy()  # pylint: disable=protected-access
                   for x in images])
  got = augment.square(images, R)
  assert got.shape == (2, R, R, 3) and got.dtype == jnp.float32
  np.testing.assert_allclose(got, want, rtol=0, atol=0.01)


def test_constants_equal_tf(ip):
  assert augment.EIGVAL == ip.EIGVAL and augment.EIGVEC == ip.EIGVEC
  alpha = np.array([[0.3, -1.2, 2.0], [-0.1, 0.5, 0.0]], np.float32)
  want = [ip.pca_lighting_shift(a).numpy() for a in alpha]
  np.testing.assert_allclose(augment.pca_lighting_shift(alpha), want, rtol=1e-6, atol=1e-7)
  # §2: 0-255 pixels minus the mean; torchvision: (pixels / 255 - mean) / std.
  np.testing.assert_array_equal(augment.input_gain(data_config(input_scale="paper")), 255.0)
  c = data_config(input_scale="standardized")
  np.testing.assert_allclose(augment.input_gain(c), 1 / np.asarray(c.std), rtol=1e-6)


def test_bad_input_scale():
  with pytest.raises(ValueError, match="input_scale"):
    augment.input_gain(data_config(input_scale="raw"))


def test_no_tensorflow():
  code = "import sys, alexnet_jax.data.augment; assert 'tensorflow' not in sys.modules"
  subprocess.run([sys.executable, "-c", code], check=True)


# ---------------------------------------------------------------------------------------------
# 2. The draws.

def test_offsets_cover_the_range():
  """Uniform in [0, R - S], every value reached, none beyond."""
  tops, lefts, _, _ = augment.draw(jax.random.key(0), 2000, R - S, data_config())
  for offsets in (tops, lefts):
    counts = np.bincount(np.asarray(offsets), minlength=R - S + 1)
    assert len(counts) == R - S + 1 and counts.min() > 2000 / (R - S + 1) / 2
  assert not np.array_equal(tops, lefts)


def test_flips_per_image():
  _, _, flips, _ = augment.draw(jax.random.key(0), 2000, R - S, data_config())
  assert 0.45 < np.mean(flips) < 0.55
  firsts = np.asarray(flips).reshape(-1, B)       # batches of B: mixed within most of them
  assert np.mean(firsts.min(1) != firsts.max(1)) > 0.8


def test_lighting_alphas():
  _, _, _, alphas = augment.draw(jax.random.key(0), 2000, R - S, data_config(pca_lighting=0.1))
  assert alphas.shape == (2000, 3)
  np.testing.assert_allclose(np.std(alphas, 0), 0.1, rtol=0.1)
  assert np.abs(np.corrcoef(np.asarray(alphas).T) - np.eye(3)).max() < 0.1


def test_train_images_is_augment_of_the_draws():
  c, x = data_config(), squares()
  key = jax.random.key(3)
  want = augment.augment(augment.train_canvas(x, c), *augment.draw(key, B, R - S, c), c)
  np.testing.assert_array_equal(augment.train_images(x, key, c), want)


def test_same_key_same_batch():
  c, x = data_config(), squares()
  f = jax.jit(lambda x, k: augment.train_images(x, k, c))
  a, b = f(x, jax.random.key(1)), f(x, jax.random.key(1))
  assert a.shape == (B, S, S, 3) and a.dtype == jnp.float32
  np.testing.assert_array_equal(a, b)
  assert not np.allclose(a, f(x, jax.random.key(2)))


def test_flip_and_lighting_off():
  """flip=False and pca_lighting=0 give exactly the unflipped, unshifted crops."""
  c, x = data_config(flip=False, pca_lighting=0.0), squares()
  key = jax.random.key(5)
  tops, lefts, flips, alphas = augment.draw(key, B, R - S, c)
  assert not np.any(flips) and not np.any(alphas)
  plain = augment.to_model_input(augment.crop_flip(x, tops, lefts, flips, S), c)
  np.testing.assert_array_equal(augment.train_images(x, key, c), plain)


def test_crop_flip():
  x = squares(2)
  got = augment.crop_flip(x, np.array([0, 8]), np.array([3, 1]), np.array([False, True]), S)
  np.testing.assert_array_equal(got[0], x[0, 0:S, 3:3 + S])
  np.testing.assert_array_equal(got[1], x[1, 8:8 + S, 1:1 + S][:, ::-1])


# ---------------------------------------------------------------------------------------------
# 3. Sharding.

def test_sharded_equals_one_device():
  """A batch sharded over ('data',) gives the one-device values for the same threefry key,
  and stays sharded over data."""
  assert jax.config.jax_threefry_partitionable
  devices = jax.devices()
  assert len(devices) == 8, "tests/conftest.py sets 8 CPU devices"
  sharding = NamedSharding(Mesh(np.array(devices), ("data",)), P("data"))
  c, x = data_config(), squares(8)
  key = jax.random.key(0, impl="threefry2x32")
  f = jax.jit(lambda x, k: augment.train_images(x, k, c))
  one = f(jax.device_put(x, devices[0]), key)
  many = f(jax.device_put(x, sharding), key)
  np.testing.assert_array_equal(many, one)
  assert many.sharding.is_equivalent_to(sharding, many.ndim)


# ---------------------------------------------------------------------------------------------
# 4. Display round trip.

@pytest.mark.parametrize("scale", ["paper", "standardized"])
def test_from_model_input_round_trip(scale):
  c, x = data_config(input_scale=scale), squares()
  start = (R - S) // 2
  np.testing.assert_array_equal(augment.from_model_input(augment.eval_images(x, c), c),
                                x[:, start:start + S, start:start + S])
