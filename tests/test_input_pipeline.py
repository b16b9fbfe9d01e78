"""Input pipeline (alexnet_jax/input_pipeline.py) and the synthetic quick-start dataset."""
import hashlib
import io
import logging
import os

import numpy as np
from PIL import Image
import pytest
import tensorflow as tf
import tensorflow_datasets as tfds

from alexnet_jax import input_pipeline as ip
from alexnet_jax import synthetic
from experiments import default


def data_config(root, **overrides):
  c = default.get_config().data
  c.name = "folder"
  c.data_dir = str(root)
  c.image_size = 24
  c.resize_size = 28
  c.shuffle_buffer = 64
  c.input_scale = "standardized"
  for k, v in overrides.items():
    setattr(c, k, v)
  return c


def batches(ds):
  return list(ds.as_numpy_iterator())


def take(ds, n):
  it = ds.as_numpy_iterator()
  return [next(it) for _ in range(n)]


def real_images(bs):
  """Eval batches -> the unpadded images, one array each."""
  return [im for b in bs for im, m in zip(b["image"], b["mask"]) if m == 1]


def digest(image):
  return hashlib.sha1(np.round(image, 3).tobytes()).hexdigest()


def save(path, array, fmt="JPEG", mode=None):
  os.makedirs(os.path.dirname(path), exist_ok=True)
  img = Image.fromarray(array)
  if mode:
    img = img.convert(mode)
  img.save(path, fmt)


@pytest.fixture(scope="module")
def shapes(tmp_path_factory):
  """3 classes x (12 train, 5 test) learnable shapes at 32x32."""
  return synthetic.make_shapes_dataset(str(tmp_path_factory.mktemp("d") / "shapes"),
                                       num_classes=3, train_per_class=12, test_per_class=5,
                                       size=32)


# ------------------------------------------------------------------ synthetic


def test_shapes_dataset_is_complete_deterministic_and_idempotent(shapes, tmp_path):
  assert os.path.exists(os.path.join(shapes, synthetic.COMPLETE_MARKER))
  assert sorted(os.listdir(os.path.join(shapes, "train"))) == ["circle", "hstripes", "vstripes"]
  assert len(os.listdir(os.path.join(shapes, "test", "circle"))) == 5
  kw = dict(num_classes=3, train_per_class=12, test_per_class=5, size=32)
  again = synthetic.make_shapes_dataset(str(tmp_path / "again"), **kw)
  f = os.path.join("train", "vstripes", "0007.jpg")
  with open(os.path.join(shapes, f), "rb") as a, open(os.path.join(again, f), "rb") as b:
    assert a.read() == b.read()
  before = os.stat(os.path.join(again, f)).st_mtime_ns
  assert synthetic.make_shapes_dataset(again, **kw) == again      # no rewrite
  assert os.stat(os.path.join(again, f)).st_mtime_ns == before
  assert not [p for p in os.listdir(tmp_path) if ".tmp-" in p]   # no temporary leftovers


# ------------------------------------------------------------------ shapes, labels, slicing


def test_train_batches_shapes_dtypes_keys(shapes):
  c = data_config(shapes)
  ds = ip.create_split(c, "train", train=True, batch_size=8)
  for b in take(ds, 6):  # 36 examples: past one epoch, so it repeats
    assert set(b) == {"image", "label", "mask"}
    assert b["image"].shape == (8, 24, 24, 3) and b["image"].dtype == np.float32
    assert b["label"].shape == (8,) and b["label"].dtype == np.int32
    assert b["mask"].dtype == np.float32 and (b["mask"] == 1).all()
    assert set(b["label"]) <= {0, 1, 2}
  assert ip.num_examples(c, "train") == 36
  assert ip.class_names(c) == ["circle", "hstripes", "vstripes"]


def test_labels_follow_sorted_folder_names(tmp_path):
  colours = {"zebra": (0, 0, 255), "apple": (255, 0, 0), "mango": (0, 255, 0)}  # unsorted
  for name, rgb in colours.items():
    for i in range(3):
      save(str(tmp_path / "train" / name / f"{i}.png"), np.full((30, 40, 3), rgb, np.uint8), "PNG")
  c = data_config(tmp_path)
  assert ip.class_names(c) == ["apple", "mango", "zebra"]
  bs = batches(ip.create_split(c, "train", train=False, batch_size=4))
  images, labels = real_images(bs), [y for b in bs for y, m in zip(b["label"], b["mask"]) if m]
  assert len(labels) == 9 and sorted(labels) == [0, 0, 0, 1, 1, 1, 2, 2, 2]
  for image, label in zip(images, labels):
    rgb = image.mean((0, 1)) * np.array(c.std) + np.array(c.mean)   # undo the normalisation
    assert np.argmax(rgb) == label                                     # red, green, blue
  np.testing.assert_allclose(rgb[label], 1.0, atol=1e-4)


def test_slices_partition_the_split(shapes):
  c = data_config(shapes)
  first, second = ip._folder_examples(c, "train[:50%]"), ip._folder_examples(c, "train[50%:]")
  whole = ip._folder_examples(c, "train")
  assert set(first[0]).isdisjoint(second[0])
  assert sorted(first[0] + second[0]) == sorted(whole[0])
  assert ip.num_examples(c, "train[:50%]") + ip.num_examples(c, "train[50%:]") == 36
  assert ip.num_examples(c, "test[:4]") == 4
  assert ip.num_examples(c, "train[:50%]+test") == 18 + 15
  # A slice of the pseudo-randomly ordered list mixes the classes.
  assert len(set(first[1])) == 3
  bs = batches(ip.create_split(c, "test[:4]", train=False, batch_size=3))
  assert [b["mask"].sum() for b in bs] == [3, 1]


def test_eval_sees_every_example_once_and_processes_are_disjoint(shapes):
  c = data_config(shapes)
  single = batches(ip.create_split(c, "test", train=False, batch_size=4))   # 15 examples
  assert len(single) == 4 and [b["mask"].sum() for b in single] == [4, 4, 4, 3]
  assert (single[-1]["image"][3] == 0).all() and single[-1]["label"][3] == 0  # padding
  every = {digest(im) for im in real_images(single)}
  assert len(every) == 15
  parts = [batches(ip.create_split(c, "test", train=False, batch_size=4, process_index=p,
                                   process_count=2)) for p in range(2)]
  assert len(parts[0]) == len(parts[1]) == 2           # ceil(ceil(15 / 2) / 4): in step
  seen = [{digest(im) for im in real_images(p)} for p in parts]
  assert len(seen[0]) == 8 and len(seen[1]) == 7
  assert not seen[0] & seen[1] and seen[0] | seen[1] == every


def test_train_processes_read_disjoint_examples(shapes):
  c = data_config(shapes)
  seen = []
  for p in range(2):
    ds = ip.create_split(c, "train", train=True, batch_size=6, process_index=p, process_count=2)
    seen.append({digest(im) for b in take(ds, 3) for im in b["image"]})  # one epoch: 18
  assert len(seen[0]) == len(seen[1]) == 18 and not seen[0] & seen[1]


# ------------------------------------------------------------------ determinism, augmentation


def test_same_seed_same_batches_other_seed_other_batches(shapes):
  c = data_config(shapes)
  a = take(ip.create_split(c, "train", train=True, batch_size=8, seed=3), 5)
  b = take(ip.create_split(c, "train", train=True, batch_size=8, seed=3), 5)
  d = take(ip.create_split(c, "train", train=True, batch_size=8, seed=4), 5)
  for x, y in zip(a, b):
    np.testing.assert_array_equal(x["image"], y["image"])
    np.testing.assert_array_equal(x["label"], y["label"])
  assert not all(np.array_equal(x["label"], y["label"]) for x, y in zip(a, d))
  assert not np.allclose(a[0]["image"], d[0]["image"])
  # Epochs are reshuffled: batches 0-3 hold epoch 1's first 32, batch 5 epoch 2's.
  assert not np.array_equal(a[0]["label"], a[4]["label"][:8])


def test_skip_batches_resumes_the_same_sequence(shapes):
  for cache in (False, True):
    c = data_config(shapes)
    c.cache = cache
    whole = take(ip.create_split(c, "train", train=True, batch_size=8, seed=2), 7)
    resumed = take(ip.create_split(c, "train", train=True, batch_size=8, seed=2,
                                   skip_batches=4), 3)   # 32 of 36 done: across the epoch end
    for x, y in zip(whole[4:], resumed):
      np.testing.assert_array_equal(x["label"], y["label"])
      np.testing.assert_array_equal(x["image"], y["image"])
  e = batches(ip.create_split(c, "test", train=False, batch_size=4))
  r = batches(ip.create_split(c, "test", train=False, batch_size=4, skip_batches=2))
  assert len(r) == 2 and np.array_equal(r[0]["image"], e[2]["image"])


def test_prepare_generates_shapes_once_and_reads_them_as_a_folder(tmp_path):
  cfg = default.get_config()
  cfg.model.num_classes = 3
  cfg.data.name = "shapes"
  cfg.data.image_size, cfg.data.resize_size = 24, 28
  out = ip.prepare(cfg, str(tmp_path))
  assert cfg.data.name == "shapes"                      # the caller's config is untouched
  assert out.data.name == "folder" and out.data.data_dir == str(tmp_path / "shapes")
  assert os.path.exists(tmp_path / "shapes" / synthetic.COMPLETE_MARKER)
  assert ip.class_names(out.data) == ["circle", "hstripes", "vstripes"]
  assert ip.num_examples(out.data, "test") == 150
  with Image.open(tmp_path / "shapes" / "test" / "circle" / "0000.jpg") as im:
    assert im.size == (28, 28)
  assert ip.prepare(out, str(tmp_path)).data.data_dir == out.data.data_dir   # 'folder': as is
  with pytest.raises(ValueError, match="no_such_dataset_xyz"):
    cfg.data.name = "no_such_dataset_xyz"
    ip.prepare(cfg, str(tmp_path))


def test_pca_lighting_adds_one_colour_shift_per_image_with_the_right_statistics(shapes, tmp_path):
  sigma = 0.1
  plain = data_config(shapes, flip=False, pca_lighting=0.0)
  lit = data_config(shapes, flip=False, pca_lighting=sigma)
  n = 6
  a = take(ip.create_split(plain, "train", train=True, batch_size=32, seed=1), n)
  b = take(ip.create_split(lit, "train", train=True, batch_size=32, seed=1), n)
  std = np.array(plain.std, np.float32)
  shifts = []
  for x, y in zip(a, b):
    np.testing.assert_array_equal(x["label"], y["label"])   # same order, same crops
    delta = (y["image"] - x["image"]) * std                  # [B, S, S, 3] on the 0-1 scale
    per_image = delta.mean(axis=(1, 2))
    np.testing.assert_allclose(delta, np.broadcast_to(per_image[:, None, None], delta.shape),
                               atol=1e-5)                # one shift over the whole image
    shifts.append(per_image)
  shifts = np.concatenate(shifts)                            # [192, 3]
  basis = np.array(ip.EIGVEC) * np.array(ip.EIGVAL)          # shift = basis @ alpha
  alpha = np.linalg.solve(basis, shifts.T).T
  assert abs(alpha.mean()) < 0.03
  assert 0.085 < alpha.std() < 0.115, alpha.std()
  assert np.abs(np.corrcoef(alpha.T) - np.eye(3)).max() < 0.3
  # A flat colour stays exactly that colour, normalised, when pca_lighting=0.
  save(str(tmp_path / "train" / "a" / "0.png"), np.full((30, 40, 3), (200, 100, 50), np.uint8),
       "PNG")
  for pca in (0.0, sigma):
    t = take(ip.create_split(data_config(tmp_path, pca_lighting=pca), "train", train=True,
                             batch_size=4), 1)[0]["image"]
    want = (np.array([200, 100, 50]) / 255 - np.array(plain.mean)) / std
    assert (np.abs(t - want).max() < 1e-5) == (pca == 0)


def test_small_images_are_padded_and_cropped(tmp_path):
  save(str(tmp_path / "train" / "a" / "0.png"), np.full((16, 16, 3), 255, np.uint8), "PNG")
  c = data_config(tmp_path, image_size=16, resize_size=16, pca_lighting=0.0, mean=(0, 0, 0),
                  std=(1, 1, 1))
  images = np.concatenate([b["image"] for b in take(
      ip.create_split(c, "train", train=True, batch_size=8), 4)])
  assert images.shape == (32, 16, 16, 3)
  assert set(np.unique(images)) <= {0.0, 1.0}        # white image, black 2-pixel padding
  assert (images == 0).any()
  assert len({digest(im) for im in images}) > 5      # crops move around


def _column_ramp(path, height, width):
  """A PNG whose every pixel holds 5 x its column index (0, 5, 10, ...) in every channel."""
  ramp = np.broadcast_to((5 * np.arange(width, dtype=np.uint8))[None, :, None],
                         (height, width, 3)).copy()
  save(str(path), ramp, "PNG")


def test_paper_scale_is_raw_pixels_minus_the_mean_and_lighting_scales_with_it(tmp_path):
  save(str(tmp_path / "train" / "a" / "0.png"), np.full((30, 40, 3), (200, 100, 50), np.uint8),
       "PNG")
  mean = (0.5, 0.4, 0.3)
  want = np.array([200, 100, 50]) - 255 * np.array(mean)      # §2: 0-255 minus the mean
  plain = data_config(tmp_path, input_scale="paper", mean=mean, pca_lighting=0.0)
  train = take(ip.create_split(plain, "train", train=True, batch_size=4), 1)[0]["image"]
  np.testing.assert_allclose(train, np.broadcast_to(want, train.shape), atol=1e-4)
  evaluated = batches(ip.create_split(plain, "train", train=False, batch_size=1))[0]["image"]
  np.testing.assert_allclose(evaluated, np.broadcast_to(want, evaluated.shape), atol=1e-4)
  # The same PCA alphas shift the paper-scale input by 255 x the 0-1 shift, and the
  # standardised input by the 0-1 shift / std.
  std = np.array(plain.std)
  shift = {}
  for scale in ("paper", "standardized"):
    lit, dark = (take(ip.create_split(data_config(tmp_path, input_scale=scale, mean=mean,
                                                  pca_lighting=p), "train", train=True,
                                      batch_size=4, seed=3), 1)[0]["image"]
                 for p in (0.1, 0.0))
    shift[scale] = (lit - dark)[:, 0, 0]                          # [4, 3]
  assert np.abs(shift["paper"]).max() > 1.0
  np.testing.assert_allclose(shift["paper"] / 255, shift["standardized"] * std, atol=1e-5)
  with pytest.raises(ValueError, match="input_scale"):
    ip.input_gain(data_config(tmp_path, input_scale="raw"))
  # Display (features' neighbour grids) undoes either scale exactly.
  pixels = np.arange(0, 255, 5, dtype=np.uint8)[:51].reshape(17, 1, 3)
  for scale in ("paper", "standardized"):
    c = data_config(tmp_path, input_scale=scale, mean=mean)
    x = ip.to_model_input(tf.constant(pixels, tf.float32), c).numpy()
    np.testing.assert_array_equal(ip.from_model_input(x, c), pixels)


def test_section2_crops_come_from_the_central_square(tmp_path):
  """§2: shorter side to 256, then the central 256x256: on a wider image the training crops,
  flips and the ten crops all stay inside the central square's columns."""
  _column_ramp(tmp_path / "train" / "a" / "0.png", 28, 40)   # resize_size 28: square is 6..33
  c = data_config(tmp_path, input_scale="paper", mean=(0, 0, 0), pca_lighting=0.0)
  crops = np.concatenate([b["image"] for b in take(
      ip.create_split(c, "train", train=True, batch_size=16), 4)])     # [64, 24, 24, 3]
  lefts = {int(v) // 5 for v in crops.min(axis=(1, 2, 3))}
  rights = {int(v) // 5 for v in crops.max(axis=(1, 2, 3))}
  assert lefts == set(range(6, 11)) and rights == set(range(29, 34)), (lefts, rights)
  ten = ip.preprocess_eval_image_ten_crop(
      np.asarray(Image.open(tmp_path / "train" / "a" / "0.png")), c).numpy()
  assert [int(t.min()) // 5 for t in ten[:5]] == [6, 10, 6, 10, 8]    # corners of the square
  centre = ip.preprocess_eval_image(np.asarray(Image.open(tmp_path / "train" / "a" / "0.png")),
                                    c).numpy()
  np.testing.assert_array_equal(centre, ten[4])


# ------------------------------------------------------------------ ten crops


def test_ten_crop_corners_centre_and_flips(shapes):
  c = data_config(shapes)
  ten = batches(ip.create_split(c, "test", train=False, batch_size=4, ten_crop=True))
  one = batches(ip.create_split(c, "test", train=False, batch_size=4))
  assert len(ten) == len(one) == 4
  assert ten[0]["image"].shape == (4, 10, 24, 24, 3)
  for t, o in zip(ten, one):
    np.testing.assert_array_equal(t["image"][:, 5:], t["image"][:, :5, :, ::-1])
    np.testing.assert_allclose(t["image"][:, 4], o["image"], atol=1e-6)   # centre crop
    np.testing.assert_array_equal(t["mask"], o["mask"])
  image = np.arange(6 * 7 * 1).reshape(6, 7, 1)
  crops = ip.ten_crop(image, 4).numpy()
  np.testing.assert_array_equal(crops[0], image[:4, :4])
  np.testing.assert_array_equal(crops[1], image[:4, 3:])
  np.testing.assert_array_equal(crops[2], image[2:, :4])
  np.testing.assert_array_equal(crops[3], image[2:, 3:])
  np.testing.assert_array_equal(crops[4], image[1:5, 1:5])
  single = ip.preprocess_eval_image_ten_crop(np.zeros((40, 30), np.uint8), c)
  assert single.shape == (10, 24, 24, 3)


# ------------------------------------------------------------------ decoding


def _encoded(array, fmt, mode=None):
  buf = io.BytesIO()
  img = Image.fromarray(array)
  (img.convert(mode) if mode else img).save(buf, fmt)
  return buf.getvalue()


def test_decode_image_channel_counts():
  rgb = np.random.default_rng(0).integers(0, 256, (20, 30, 3), np.uint8)
  cases = {
      "grey jpeg": _encoded(rgb[..., 0], "JPEG"),
      "rgb jpeg": _encoded(rgb, "JPEG"),
      "cmyk jpeg": _encoded(rgb, "JPEG", "CMYK"),
      "grey png": _encoded(rgb[..., 0], "PNG"),
      "grey+alpha png": _encoded(rgb, "PNG", "LA"),
      "rgba png": _encoded(rgb, "PNG", "RGBA"),
  }
  for name, data in cases.items():
    image = ip.decode_image(tf.constant(data)).numpy()
    assert image.shape == (20, 30, 3) and image.dtype == np.uint8, name
    if name.startswith("grey"):
      assert (image[..., 0] == image[..., 1]).all() and (image[..., 1] == image[..., 2]).all()
  np.testing.assert_array_equal(ip.decode_image(cases["rgba png"]).numpy(), rgb)  # alpha dropped
  assert np.abs(ip.decode_image(cases["cmyk jpeg"]).numpy().astype(float) - rgb).mean() < 20
  for image in (rgb[..., 0], rgb[..., :1], rgb[..., :2], rgb, np.dstack([rgb, rgb[..., :1]])):
    assert ip.preprocess_eval_image(image, data_config("/x")).shape == (24, 24, 3)


def test_folder_with_odd_channels_and_corrupt_files(tmp_path, caplog):
  rgb = np.random.default_rng(1).integers(0, 256, (30, 36, 3), np.uint8)
  save(str(tmp_path / "train" / "a" / "grey.jpg"), rgb[..., 0])
  save(str(tmp_path / "train" / "a" / "rgba.png"), rgb, "PNG", "RGBA")
  save(str(tmp_path / "train" / "b" / "cmyk.jpg"), rgb, "JPEG", "CMYK")
  save(str(tmp_path / "train" / "b" / "rgb.jpeg"), rgb)
  whole = _encoded(rgb, "JPEG")
  with open(tmp_path / "train" / "b" / "truncated.jpg", "wb") as f:
    f.write(whole[:len(whole) // 2])
  with open(tmp_path / "train" / "a" / "notes.jpg", "w") as f:
    f.write("not an image\n")
  c = data_config(tmp_path)
  assert ip.num_examples(c, "train") == 6          # listed; two fail to decode
  ip.reset_skipped_count()
  with caplog.at_level(logging.WARNING):
    bs = batches(ip.create_split(c, "train", train=False, batch_size=4))
  assert ip.skipped_count() == 2
  assert "skipped 2 undecodable images" in caplog.text and "truncated.jpg" in caplog.text
  assert len(bs) == 2 and sum(b["mask"].sum() for b in bs) == 4
  assert all(b["image"].shape == (4, 24, 24, 3) for b in bs)
  # Training skips them too, over several epochs, without stopping.
  bs = take(ip.create_split(c, "train", train=True, batch_size=4), 5)
  assert len(bs) == 5 and np.isfinite(bs[-1]["image"]).all()
  assert ip.skipped_count() >= 2 + 2 * 5


def test_cache_option_gives_the_same_eval_batches(shapes):
  c = data_config(shapes)
  cached = data_config(shapes)
  cached.cache = True
  a = batches(ip.create_split(c, "test", train=False, batch_size=4))
  b = batches(ip.create_split(cached, "test", train=False, batch_size=4))
  for x, y in zip(a, b):
    np.testing.assert_array_equal(x["image"], y["image"])
  t = take(ip.create_split(cached, "train", train=True, batch_size=8), 6)
  assert t[-1]["image"].shape == (8, 24, 24, 3)


# ------------------------------------------------------------------ errors


def test_clear_errors(shapes, tmp_path):
  with pytest.raises(ValueError, match="no_such_dataset_xyz"):
    ip.create_split(data_config("", name="no_such_dataset_xyz"), "train", train=True,
                    batch_size=2)
  missing = str(tmp_path / "missing")
  with pytest.raises(ValueError, match=f"data.data_dir '{missing}' does not exist"):
    ip.num_examples(data_config(missing), "train")
  with pytest.raises(ValueError, match="data_dir must be set"):
    ip.class_names(data_config(""))
  with pytest.raises(ValueError, match="'validation'"):
    ip.create_split(data_config(shapes), "validation", train=False, batch_size=2)
  with pytest.raises(ValueError, match="test.:100."):
    ip.num_examples(data_config(shapes), "test[:100]")   # only 15 examples
  with pytest.raises(ValueError, match="ten_crop"):
    ip.create_split(data_config(shapes), "test", train=True, batch_size=2, ten_crop=True)


# ------------------------------------------------------------------ a tfds builder


class AlexnetTestTinyImages(tfds.core.GeneratorBasedBuilder):
  """10 train + 5 test images of one grey level each, written by the test."""
  VERSION = tfds.core.Version("1.0.0")

  def _info(self):
    return tfds.core.DatasetInfo(builder=self, features=tfds.features.FeaturesDict({
        "image": tfds.features.Image(shape=(None, None, 3)),
        "label": tfds.features.ClassLabel(names=["dark", "light"])}))

  def _split_generators(self, dl_manager):
    del dl_manager
    return {"train": self._generate_examples(10), "test": self._generate_examples(5)}

  def _generate_examples(self, n):
    for i in range(n):
      yield i, {"image": np.full((20, 26, 3), 20 * i, np.uint8), "label": int(i >= n // 2)}


def test_tfds_builder_source(tmp_path):
  AlexnetTestTinyImages(data_dir=str(tmp_path)).download_and_prepare()
  c = data_config(tmp_path, name="alexnet_test_tiny_images", mean=(0, 0, 0), std=(1, 1, 1))
  assert ip.class_names(c) == ["dark", "light"]
  assert ip.num_examples(c, "train[:40%]") == 4
  levels = []
  for p in range(2):
    bs = batches(ip.create_split(c, "train", train=False, batch_size=4, process_index=p,
                                 process_count=2))
    assert len(bs) == 2
    levels += [round(float(im.mean()) * 255) for im in real_images(bs)]
  assert sorted(levels) == [20 * i for i in range(10)]
  b = take(ip.create_split(c, "train", train=True, batch_size=4), 4)[-1]
  assert b["image"].shape == (4, 24, 24, 3) and b["label"].dtype == np.int32
  with pytest.raises(ValueError, match="'val'"):
    ip.num_examples(c, "val")


# ------------------------------------------------------------------ real data (CI only)


def test_real_cifar10():
  root = os.environ.get("ALEXNET_DATA_DIR")
  if not root:
    pytest.skip("ALEXNET_DATA_DIR is not set")
  c = data_config(os.path.join(root, "cifar10"), image_size=32, resize_size=32,
                  mean=(0.4913, 0.4821, 0.4465), std=(0.2452, 0.2428, 0.2606))
  assert ip.class_names(c) == ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog",
                               "horse", "ship", "truck"]
  assert ip.num_examples(c, "test[:1%]") == 100
  assert ip.num_examples(c, "train[:90%]") == 45_000
  bs = batches(ip.create_split(c, "test[:1%]", train=False, batch_size=64))
  assert len(bs) == 2 and sum(b["mask"].sum() for b in bs) == 100
  images = np.stack(real_images(bs))
  assert images.shape == (100, 32, 32, 3)
  assert abs(images.mean()) < 0.3 and 0.7 < images.std() < 1.3
  labels = np.concatenate([b["label"][b["mask"] == 1] for b in bs])
  assert len(set(labels)) >= 8
  t = take(ip.create_split(c, "train[:1%]", train=True, batch_size=64), 2)[-1]
  assert t["image"].shape == (64, 32, 32, 3) and abs(t["image"].mean()) < 0.5
