"""prepare: §2's fixed-size squares written as `records` shards; resumable, skipping bad files."""
import os
import subprocess
import sys

import numpy as np
import pytest
from array_record.python.array_record_module import ArrayRecordReader
from PIL import Image

from alexnet_jax.base import records
from alexnet_jax.data import prepare

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
COLOURS = {"cat": (255, 0, 0), "dog": (0, 255, 0), "fox": (0, 0, 255)}


def _save(path, image, fmt=None):
  os.makedirs(os.path.dirname(path), exist_ok=True)
  image.save(path, fmt)


def _folder(root, per_class=(("train", 5), ("test", 2))):
  """3 classes of solid-colour 40x30 PNGs, so that a decoded image names its class."""
  for split, n in per_class:
    for name, colour in COLOURS.items():
      for i in range(n):
        _save(str(root / split / name / f"{i}.png"), Image.new("RGB", (40, 30), colour))
  return root


def _read(out, split):
  """All records of a split, in order: [(image, label)]."""
  info = records.read_info(str(out))
  result = []
  for path in records.split_files(str(out), info, split):
    reader = ArrayRecordReader(path, "readahead_buffer_size:0")
    for i in range(reader.num_records()):
      result.append(records.decode(reader.read([i])[0], info["encoding"], info["image_size"]))
    reader.close()
  return result


def _mtimes(out):
  return {f: os.stat(out / f).st_mtime_ns for f in os.listdir(out)}


def test_folder_labels_sizes_and_info(tmp_path):
  out = tmp_path / "out"
  info = prepare.prepare(str(_folder(tmp_path / "src")), str(out), size=16, workers=1,
                         examples_per_shard=4)
  assert info["class_names"] == ["cat", "dog", "fox"]
  assert info["splits"]["train"]["num_examples"] == 15
  assert info["splits"]["train"]["class_counts"] == [5, 5, 5]
  assert info["splits"]["train"]["files"] == [records.shard_name("train", i, 4) for i in range(4)]
  assert info["splits"]["test"]["class_counts"] == [2, 2, 2]
  assert records.read_info(str(out)) == info
  for split in ("train", "test"):
    for image, label in _read(out, split):
      assert image.shape == (16, 16, 3) and image.dtype == np.uint8
      assert tuple(image[8, 8]) == COLOURS[info["class_names"][label]]


def test_labels_are_the_union_over_splits(tmp_path):
  src = tmp_path / "src"
  _save(str(src / "train" / "b" / "0.png"), Image.new("RGB", (8, 8)))
  _save(str(src / "test" / "a" / "0.png"), Image.new("RGB", (8, 8)))
  info = prepare.prepare(str(src), str(tmp_path / "out"), size=8, workers=1)
  assert info["class_names"] == ["a", "b"]
  assert info["splits"]["train"]["class_counts"] == [0, 1]
  assert _read(tmp_path / "out", "test")[0][1] == 0


def test_shorter_side_resize_then_central_crop():
  wide = np.zeros((20, 60, 3), np.uint8)   # thirds: red | green | blue
  wide[:, :20, 0], wide[:, 20:40, 1], wide[:, 40:, 2] = 255, 255, 255
  for image in (wide, wide.transpose(1, 0, 2)):   # and the same image standing up
    out = np.asarray(records.square(Image.fromarray(image), 10)).astype(int)
    assert out.shape == (10, 10, 3)      # 20x60 -> 10x30 -> the middle 10x10
    inner = out[2:-2, 2:-2]
    assert (inner[..., 1] == 255).all() and (inner[..., [0, 2]] == 0).all()
    assert (out[..., 1] > 200).all() and (out[..., [0, 2]] < 40).all()  # bicubic edges only


def test_square_of_the_size_is_bit_exact(tmp_path):
  pixels = np.random.default_rng(0).integers(0, 256, (32, 32, 3), np.uint8)
  _save(str(tmp_path / "src" / "train" / "a" / "0.png"), Image.fromarray(pixels))
  prepare.prepare(str(tmp_path / "src"), str(tmp_path / "out"), size=32, workers=1)
  np.testing.assert_array_equal(_read(tmp_path / "out", "train")[0][0], pixels)


def test_modes_become_rgb(tmp_path):
  src = tmp_path / "src" / "train"
  _save(str(src / "0grey" / "0.png"), Image.new("L", (8, 8), 100))
  _save(str(src / "1greyalpha" / "0.png"), Image.new("LA", (8, 8), (50, 60)))
  _save(str(src / "2palette" / "0.png"), Image.new("RGB", (8, 8), (204, 0, 0)).convert("P"))
  _save(str(src / "3rgba" / "0.png"), Image.new("RGBA", (8, 8), (10, 20, 30, 40)))
  _save(str(src / "4cmyk" / "0.jpg"), Image.new("CMYK", (8, 8), (0, 0, 0, 0)), "JPEG")
  expected = [(100,) * 3, (50,) * 3, (204, 0, 0), (10, 20, 30), (255,) * 3]
  info = prepare.prepare(str(tmp_path / "src"), str(tmp_path / "out"), size=8, workers=1)
  assert info["splits"]["train"]["num_examples"] == 5 and not info["skipped"]["train"]
  for image, label in _read(tmp_path / "out", "train"):
    np.testing.assert_allclose(image.reshape(-1, 3), [expected[label]] * 64, atol=2)


def _bad_files(split_dir):
  jpeg = split_dir / "a" / "good.jpg"
  noise = np.random.default_rng(0).integers(0, 256, (64, 64, 3), np.uint8)
  _save(str(jpeg), Image.fromarray(noise), "JPEG")   # half of it is in the pixel data
  data = jpeg.read_bytes()
  (split_dir / "a" / "truncated.jpg").write_bytes(data[: len(data) // 2])
  (split_dir / "a" / "empty.jpg").write_bytes(b"")
  (split_dir / "a" / "text.jpg").write_text("not a picture\n")


def test_undecodable_files_are_skipped_and_listed(tmp_path):
  _bad_files(tmp_path / "src" / "train")
  out = tmp_path / "out"
  info = prepare.prepare(str(tmp_path / "src"), str(out), size=8, workers=2)
  assert info["splits"]["train"]["num_examples"] == 1
  reasons = dict(info["skipped"]["train"])
  assert set(reasons) == {os.path.join("train", "a", f) for f in
                          ("truncated.jpg", "empty.jpg", "text.jpg")}
  assert reasons[os.path.join("train", "a", "truncated.jpg")] == "truncated image"
  assert reasons[os.path.join("train", "a", "empty.jpg")] == "empty file"
  assert "not an image" in reasons[os.path.join("train", "a", "text.jpg")]
  listed = (out / prepare.SKIPPED_FILE).read_text().splitlines()
  assert sorted(line.split("\t")[0] for line in listed) == sorted(reasons)


def test_rerun_is_a_no_op_and_a_deleted_shard_is_rewritten_alone(tmp_path):
  src, out = _folder(tmp_path / "src"), tmp_path / "out"
  kwargs = dict(size=8, workers=1, examples_per_shard=4)
  info = prepare.prepare(str(src), str(out), **kwargs)
  before = _mtimes(out)
  assert prepare.prepare(str(src), str(out), **kwargs) == info
  assert _mtimes(out) == before
  lost = info["splits"]["train"]["files"][1]
  os.remove(out / lost)
  (out / (lost + ".tmp")).write_bytes(b"half")  # as a crash in the middle of it leaves it
  assert prepare.prepare(str(src), str(out), **kwargs) == info
  after = _mtimes(out)
  assert {f for f in after if after[f] != before.get(f)} == {lost, lost + ".json"}
  assert set(after) == set(before)
  assert len(_read(out, "train")) == 15


@pytest.mark.parametrize("change, word", [({"size": 16}, "image_size"),
                                          ({"encoding": "jpeg"}, "encoding"),
                                          ({"examples_per_shard": 2}, "examples_per_shard")])
def test_other_options_raise(tmp_path, change, word):
  src, out = _folder(tmp_path / "src", (("train", 1),)), tmp_path / "out"
  kwargs = dict(size=8, workers=1, examples_per_shard=4)
  prepare.prepare(str(src), str(out), **kwargs)
  with pytest.raises(ValueError, match=word):
    prepare.prepare(str(src), str(out), **{**kwargs, **change})


def test_other_source_raises(tmp_path):
  out = tmp_path / "out"
  prepare.prepare(str(_folder(tmp_path / "a", (("train", 1),))), str(out), size=8, workers=1)
  with pytest.raises(ValueError, match="source"):
    prepare.prepare(str(_folder(tmp_path / "b", (("train", 1),))), str(out), size=8, workers=1)


def test_order_mixes_classes(tmp_path):
  src = tmp_path / "src"
  for c in range(3):
    for i in range(20):
      _save(str(src / "train" / f"c{c}" / f"{i}.png"), Image.new("L", (4, 4)))
  prepare.prepare(str(src), str(tmp_path / "out"), size=4, workers=1)
  labels = [label for _, label in _read(tmp_path / "out", "train")]
  assert sorted(labels) == sorted([0, 1, 2] * 20)
  assert len(set(labels[:6])) > 1


def test_launcher_error_is_one_line(tmp_path):
  result = subprocess.run(
      [sys.executable, "-m", "launch.prepare", f"--source={tmp_path / 'missing'}",
       f"--out={tmp_path / 'out'}"], cwd=ROOT, capture_output=True, text=True, timeout=120,
      check=False)
  assert result.returncode != 0
  assert result.stderr.strip().count("\n") == 0, result.stderr
  assert result.stderr.startswith("error:") and "missing" in result.stderr


def test_tfds_mock(tmp_path):
  """tfds:<name> via tfds.testing.mock_data (random 32x32 images, no files read)."""
  tfds = pytest.importorskip("tensorflow_datasets")
  data_dir = tmp_path / "tfds"
  with tfds.testing.mock_data(num_examples=5, data_dir=str(data_dir)):
    builder = tfds.builder("cifar10", data_dir=str(data_dir))
    split = tfds.core.SplitInfo(name="test", shard_lengths=[5], num_bytes=0)
    builder.info.set_splits(tfds.core.SplitDict([split]))
    os.makedirs(builder.data_dir)
    builder.info.write_to_directory(builder.data_dir)
    info = prepare.prepare("tfds:cifar10", str(tmp_path / "out"), size=32, workers=1,
                           tfds_data_dir=str(data_dir))
  assert len(info["class_names"]) == 10 and list(info["splits"]) == ["test"]
  assert info["splits"]["test"]["num_examples"] == 5
  assert all(img.shape == (32, 32, 3) for img, _ in _read(tmp_path / "out", "test"))


def test_tfds_not_prepared_is_an_error(tmp_path):
  pytest.importorskip("tensorflow_datasets")
  with pytest.raises(ValueError, match="is not built in"):
    prepare.prepare("tfds:cifar10", str(tmp_path / "out"), tfds_data_dir=str(tmp_path))


def _ramp(scale=1.0, offset=0.0, dtype=np.float64):
  """16x16 values i * scale + offset for i = 0..255, row by row."""
  return (np.arange(256, dtype=np.float64).reshape(16, 16) * scale + offset).astype(dtype)


def _lab(rgb):
  from PIL import ImageCms
  to_lab = ImageCms.buildTransform(ImageCms.createProfile("sRGB"), ImageCms.createProfile("LAB"),
                                   "RGB", "LAB")
  return ImageCms.applyTransform(Image.new("RGB", (16, 16), rgb), to_lab)


def _palette(rgb):
  return Image.new("RGB", (16, 16), rgb).convert("P", palette=Image.ADAPTIVE)


RAMP = np.repeat(np.arange(256).reshape(16, 16, 1), 3, axis=2)   # what every ramp becomes
COLOUR = (200, 30, 60)
# Every mode that PIL opens from a file (Pillow 13): (name, file, image, expected RGB, atol).
MODES = [
    ("I;16 png", "png", lambda: Image.fromarray(_ramp(257, dtype=np.uint16)), RAMP, 0),
    ("I;16 tiff", "tif", lambda: Image.fromarray(_ramp(257, dtype=np.uint16)), RAMP, 0),
    ("I;16B tiff", "tif", lambda: Image.fromarray(_ramp(257, dtype=">u2")), RAMP, 0),
    ("I 16-bit pgm", "pgm", lambda: Image.fromarray(_ramp(257, dtype=np.uint16)), RAMP, 0),
    ("I 32-bit tiff", "tif", lambda: Image.fromarray(_ramp(2**22, -2**29, np.int32)), RAMP, 0),
    ("F 0-1 tiff", "tif", lambda: Image.fromarray(_ramp(1 / 255, dtype=np.float32)), RAMP, 0),
    ("F any range tiff", "tif", lambda: Image.fromarray(_ramp(10.0, -500, np.float32)), RAMP, 0),
    ("1 png", "png", lambda: Image.new("1", (16, 16), 1), np.full((16, 16, 3), 255), 0),
    ("L png", "png", lambda: Image.fromarray(_ramp(dtype=np.uint8)), RAMP, 0),
    ("LA png", "png", lambda: Image.new("LA", (16, 16), (90, 10)), np.full((16, 16, 3), 90), 0),
    ("P png", "png", lambda: _palette(COLOUR), COLOUR, 0),
    ("PA tiff", "tif", lambda: _palette(COLOUR).convert("PA"), COLOUR, 0),
    ("RGBA png", "png", lambda: Image.new("RGBA", (16, 16), (*COLOUR, 7)), COLOUR, 0),
    ("CMYK tiff", "tif", lambda: Image.new("RGB", (16, 16), COLOUR).convert("CMYK"), COLOUR, 0),
    ("YCbCr tiff", "tif", lambda: Image.new("RGB", (16, 16), COLOUR).convert("YCbCr"), COLOUR,
     3),
    ("LAB tiff", "tif", lambda: _lab(COLOUR), COLOUR, 3),
]


@pytest.mark.parametrize("name,ext,make,expected,atol", MODES, ids=[m[0] for m in MODES])
def test_every_mode_is_read_as_8_bit_rgb_by_prepare_and_predict(tmp_path, name, ext, make,
                                                                 expected, atol):
  """High bit depths are scaled to 0-255, not clipped (an I;16 ramp is no longer all white);
  prepare and predict (inference.load_image) read a file the same way."""
  from alexnet_jax.programs import inference
  path = tmp_path / "src" / "train" / "a" / f"0.{ext}"
  _save(str(path), make())
  with Image.open(path) as opened:
    assert opened.mode == name.split()[0]   # the file holds the mode under test
  info = prepare.prepare(str(tmp_path / "src"), str(tmp_path / "out"), size=16, workers=0)
  assert info["splits"]["train"]["num_examples"] == 1, info["skipped"]
  (stored, _), = _read(tmp_path / "out", "train")
  np.testing.assert_allclose(stored, np.broadcast_to(expected, (16, 16, 3)), atol=atol)
  np.testing.assert_array_equal(inference.load_image(str(path), 16), stored)
