"""ILSVRC-2012 as users download it (ilsvrc.py): miniatures of the official tars and devkit
and of Kaggle's layout, built here, prepared, and every label checked against the WNID its
image came from."""
import csv
import io
import os
import subprocess
import sys
import tarfile

import numpy as np
import pytest
import scipy.io
from PIL import Image

from alexnet_jax.data import ilsvrc, imagenet, prepare
from test_prepare import ROOT, _read

SYNSETS = imagenet.synsets()
TRAIN_WNIDS = [SYNSETS[i] for i in (3, 200, 517, 998)]
# The devkit's ILSVRC2012_IDs: a fixed shuffle of the 1,000 WNIDs, so that an ID is not the
# sorted index (the order the real devkit has is by WordNet hierarchy, as unrelated).
DEVKIT_ORDER = [SYNSETS[i] for i in np.random.default_rng(7).permutation(1000)]
VAL_WNIDS = [TRAIN_WNIDS[i % 4] for i in range(6)] + [SYNSETS[640]]


def _colour(n):
  """Image n's solid colour: far enough from every other for a decoded image to name it."""
  return (40 + 30 * (n % 7), 40 + 30 * (n // 7 % 7), 60 + 40 * (n // 49))


def _jpeg(n, mode="RGB", fmt="JPEG", size=(50, 40)):
  colour = _colour(n) if mode != "L" else (_colour(n)[0],) * 3
  image = Image.new("RGB", size, colour)
  buffer = io.BytesIO()
  image.convert(mode).save(buffer, fmt, quality=95)
  return buffer.getvalue()


def _add(tar, name, data):
  info = tarfile.TarInfo(name)
  info.size = len(data)
  tar.addfile(info, io.BytesIO(data))


def _train_images():
  """{(wnid, file name): (image number, bytes)}: three per synset, among them a CMYK JPEG,
  a greyscale one and a PNG under a .JPEG name (as in the real train set)."""
  images, n = {}, 0
  odd = {1: dict(mode="CMYK"), 5: dict(mode="L"), 9: dict(fmt="PNG")}
  for wnid in TRAIN_WNIDS:
    for i in range(3):
      images[wnid, f"{wnid}_{100 + i}.JPEG"] = n, _jpeg(n, **odd.get(n, {}))
      n += 1
  return images


def _val_images():
  return {f"ILSVRC2012_val_{i:08d}.JPEG": (100 + i, _jpeg(100 + i, size=(60, 45)))
          for i in range(1, len(VAL_WNIDS) + 1)}


def _meta_mat():
  """meta.mat as the devkit has it: a struct array `synsets` whose leaves are IDs 1-1000 in
  DEVKIT_ORDER, followed by inner nodes of the hierarchy (num_children > 0)."""
  fields = ["ILSVRC2012_ID", "WNID", "words", "gloss", "num_children", "children",
            "wordnet_height", "num_train_images"]
  rows = [(i, w, f"words {w}", "gloss", 0, np.zeros((0,), np.uint8), 0, 1300)
          for i, w in enumerate(DEVKIT_ORDER, start=1)]
  rows += [(1001 + k, f"n9999999{k}", "an inner node", "gloss", 2, np.array([1, 2]), 1, 0)
           for k in range(3)]
  synsets = np.zeros((len(rows), 1), dtype=[(f, "O") for f in fields])
  for r, row in enumerate(rows):
    for f, value in zip(fields, row):
      synsets[r, 0][f] = value
  buffer = io.BytesIO()
  scipy.io.savemat(buffer, {"synsets": synsets})
  return buffer.getvalue()


def _devkit(path, ground_truth=True):
  with tarfile.open(path, "w:gz") as tar:
    _add(tar, "ILSVRC2012_devkit_t12/data/meta.mat", _meta_mat())
    if ground_truth:
      ids = [DEVKIT_ORDER.index(w) + 1 for w in VAL_WNIDS]
      _add(tar, "ILSVRC2012_devkit_t12/" + ilsvrc.GROUND_TRUTH,
           "".join(f"{i}\n" for i in ids).encode())


def official(root, val_images=None):
  """ILSVRC2012_img_train.tar (a tar of per-synset tars), _img_val.tar and the devkit."""
  os.makedirs(root, exist_ok=True)
  with tarfile.open(root / ilsvrc.TRAIN_TAR, "w") as outer:
    for wnid in TRAIN_WNIDS:
      inner = io.BytesIO()
      with tarfile.open(fileobj=inner, mode="w") as tar:
        for (w, name), (_, data) in _train_images().items():
          if w == wnid:
            _add(tar, name, data)
      _add(outer, f"{wnid}.tar", inner.getvalue())
  with tarfile.open(root / ilsvrc.VAL_TAR, "w") as tar:
    for name, (_, data) in (val_images or _val_images()).items():
      _add(tar, name, data)
  _devkit(root / f"{ilsvrc.DEVKIT}.tar.gz")
  return root


def kaggle(root):
  base = root / "ILSVRC" / "Data" / "CLS-LOC"
  for (wnid, name), (_, data) in _train_images().items():
    os.makedirs(base / "train" / wnid, exist_ok=True)
    (base / "train" / wnid / name).write_bytes(data)
  os.makedirs(base / "val")
  for name, (_, data) in _val_images().items():
    (base / "val" / name).write_bytes(data)
  with open(root / ilsvrc.KAGGLE_CSV, "w", newline="") as f:
    writer = csv.writer(f)
    writer.writerow(["ImageId", "PredictionString"])
    for i, wnid in enumerate(VAL_WNIDS, start=1):
      writer.writerow([f"ILSVRC2012_val_{i:08d}", f"{wnid} 1 2 30 40 {wnid} 5 6 20 30"])
  return root


def _check_labels(out):
  """Every record's label is the sorted index of the WNID of the image it was made from,
  recognised by its colour."""
  by_number = {n: wnid for (wnid, _), (n, _) in _train_images().items()}
  by_number.update({n: VAL_WNIDS[int(name[15:23]) - 1]
                    for name, (n, _) in _val_images().items()})
  colours = {n: np.array(_colour(n)) for n in by_number}
  seen = set()
  for split, count in (("train", 12), ("validation", len(VAL_WNIDS))):
    rows = _read(out, split)
    assert len(rows) == count
    for image, label in rows:
      mean = image.reshape(-1, 3).mean(0)
      grey = np.ptp(mean) < 4   # the greyscale image keeps only its red as grey
      n = min(colours, key=lambda k: np.abs(
          (colours[k] if not grey else colours[k][0]) - mean).sum())
      assert label == SYNSETS.index(by_number[n]), (split, n, label)
      seen.add(n)
  assert seen == set(by_number)


def test_official_tars_and_devkit(tmp_path):
  out = tmp_path / "out"
  info = prepare.prepare(f"imagenet:{official(tmp_path / 'ilsvrc')}", str(out), size=32,
                         workers=1, examples_per_shard=5)
  assert info["class_names"] == SYNSETS
  assert set(info["splits"]) == {"train", "validation"}
  assert info["skipped"] == {"train": [], "validation": []}
  _check_labels(out)


def test_kaggle_layout_with_workers(tmp_path):
  out = tmp_path / "out"
  prepare.prepare(f"imagenet:{kaggle(tmp_path / 'kaggle')}", str(out), size=32, workers=2,
                  examples_per_shard=5)
  _check_labels(out)


def test_extracted_layout_with_the_devkit_folder(tmp_path):
  """train/<wnid>/ and a flat val/ beside an extracted devkit."""
  root = kaggle(tmp_path / "k")
  os.rename(root / "ILSVRC" / "Data" / "CLS-LOC" / "train", root / "train")
  os.rename(root / "ILSVRC" / "Data" / "CLS-LOC" / "val", root / "val")
  os.remove(root / ilsvrc.KAGGLE_CSV)
  _devkit(tmp_path / "devkit.tar.gz")
  with tarfile.open(tmp_path / "devkit.tar.gz") as tar:
    tar.extractall(root, filter="data")
  out = tmp_path / "out"
  prepare.prepare(f"imagenet:{root}", str(out), size=32, workers=1)
  _check_labels(out)


def test_bad_inputs_fail_in_one_line_before_anything_is_written(tmp_path):
  root = official(tmp_path / "ilsvrc")
  out = tmp_path / "out"
  # a devkit without its ground truth
  _devkit(root / f"{ilsvrc.DEVKIT}.tar.gz", ground_truth=False)
  with pytest.raises(ValueError, match="has no data/ILSVRC2012_validation_ground_truth.txt"):
    prepare.prepare(f"imagenet:{root}", str(out), size=32, workers=1)
  assert not [f for f in os.listdir(out) if f.endswith(".array_record")]
  _devkit(root / f"{ilsvrc.DEVKIT}.tar.gz")
  # a validation image the ground truth does not cover
  extra = {**_val_images(), "ILSVRC2012_val_00000099.JPEG": (199, _jpeg(199))}
  official(tmp_path / "ilsvrc2", val_images=extra)
  with pytest.raises(ValueError, match="ILSVRC2012_val_00000099.JPEG has no label"):
    prepare.prepare(f"imagenet:{tmp_path / 'ilsvrc2'}", str(tmp_path / "out2"), size=32)
  # a train tar cut inside an image, and one cut inside a header
  data = (root / ilsvrc.TRAIN_TAR).read_bytes()
  with tarfile.open(root / ilsvrc.TRAIN_TAR) as tar:
    last = tar.getmembers()[-1]
  for cut in (len(data) // 2, last.offset + 100):
    (root / ilsvrc.TRAIN_TAR).write_bytes(data[:cut])
    with pytest.raises(ValueError, match=r"ILSVRC2012_img_train.tar is (damaged or )?truncated"):
      prepare.prepare(f"imagenet:{root}", str(out), size=32, workers=1)
  assert not [f for f in os.listdir(out) if f.endswith(".array_record")]


def test_a_prepared_split_survives_a_failure_and_a_rerun_resumes(tmp_path):
  """Validation prepared first; then the train tar turns out cut: the validation shards
  stay, and once the tar is whole again the rerun writes only the train split."""
  root = official(tmp_path / "ilsvrc")
  out = tmp_path / "out"
  prepare.prepare(f"imagenet:{root}", str(out), size=32, splits=["validation"], workers=1)
  written = {f: os.stat(out / f).st_mtime_ns for f in os.listdir(out) if "validation" in f}
  whole = (root / ilsvrc.TRAIN_TAR).read_bytes()
  with tarfile.open(root / ilsvrc.TRAIN_TAR) as tar:
    last = tar.getmembers()[-1]
  (root / ilsvrc.TRAIN_TAR).write_bytes(whole[:last.offset_data + 700])   # in its first image
  with pytest.raises(ValueError, match="truncated"):
    prepare.prepare(f"imagenet:{root}", str(out), size=32, workers=1)
  (root / ilsvrc.TRAIN_TAR).write_bytes(whole)
  prepare.prepare(f"imagenet:{root}", str(out), size=32, workers=1)
  assert {f: os.stat(out / f).st_mtime_ns for f in written} == written
  _check_labels(out)


def test_launcher_warns_on_split_sizes_and_refuses_a_bucket(tmp_path):
  root = official(tmp_path / "ilsvrc")
  run = subprocess.run([sys.executable, "-m", "launch.prepare", f"--source=imagenet:{root}",
                        f"--out={tmp_path / 'out'}", "--size=32", "--workers=1"],
                       cwd=ROOT, capture_output=True, text=True, timeout=120)
  assert run.returncode == 0, run.stderr[-2000:]
  assert "ImageNet train has 12 images here, -1281155 against ILSVRC-2012's" in run.stderr
  bucket = subprocess.run([sys.executable, "-m", "launch.prepare", f"--source=imagenet:{root}",
                           "--out=gs://bucket/imagenet"], cwd=ROOT, capture_output=True,
                          text=True, timeout=120)
  assert bucket.returncode != 0
  assert "writes a local folder" in bucket.stderr.strip().splitlines()[-1]
  assert not os.path.exists(os.path.join(ROOT, "gs:"))
