"""ImageNet (ILSVRC-2012) as its users have it: the official tars and devkit, Kaggle's
layout, or an extracted copy, read as labelled inputs for `prepare` without TensorFlow.

Layouts, found under one folder `root` (`launch.prepare --source=imagenet:<root>`):
  image-net.org  `ILSVRC2012_img_train.tar` (a tar of 1,000 per-synset tars),
                 `ILSVRC2012_img_val.tar` (50,000 flat images) and
                 `ILSVRC2012_devkit_t12.tar.gz` (or the devkit extracted beside them).
                 Nothing is extracted: the tars are indexed once (their headers only) and
                 each image is read at its offset by the worker that decodes it.
  Kaggle         `ILSVRC/Data/CLS-LOC/train/<wnid>/*.JPEG`, a flat `ILSVRC/Data/CLS-LOC/val/`
                 and `LOC_val_solution.csv`.
  extracted      `train/<wnid>/*.JPEG` and a flat `val/` with the devkit or the CSV beside
                 them (or `val/<wnid>/*.JPEG`, already sorted).
A layout may hold one split only; the train tar and the Kaggle folders may be mixed with an
extracted val, and so on: each split is looked for in that order.

Labels are the index of the image's WordNet ID among the 1,000 sorted WNIDs (`imagenet.py`),
the order torchvision's and Caffe's ImageNet nets use, so that an imported net evaluates on
the prepared validation split with no remapping. A train image's WNID is its synset tar or
folder. A validation image's is proved from the devkit: line i of
`data/ILSVRC2012_validation_ground_truth.txt` is the `ILSVRC2012_ID` of
`ILSVRC2012_val_<i>.JPEG`, and `data/meta.mat`'s `synsets` map that ID to a WNID; the IDs
are the devkit's own order (by WordNet hierarchy), *not* the sorted-WNID order, which is the
classic mistake this module exists to avoid. Kaggle's CSV names the WNID directly (the
first token of `PredictionString`).

Every WNID must be one of the 1,000; a validation image the labels do not cover, a devkit
without its ground truth, and a truncated tar are one-line ValueErrors naming the file,
raised before anything is written. Split sizes other than ILSVRC-2012's are a warning
(subsets are fine). The splits are named 'train' and 'validation', as the configs expect.
"""
from __future__ import annotations

import csv
import functools
import io
import os
import re
import tarfile
from typing import NamedTuple

from absl import logging

from alexnet_jax.data import imagenet

PREFIX = "imagenet:"
TRAIN_TAR = "ILSVRC2012_img_train.tar"
VAL_TAR = "ILSVRC2012_img_val.tar"
DEVKIT = "ILSVRC2012_devkit_t12"
KAGGLE = os.path.join("ILSVRC", "Data", "CLS-LOC")
KAGGLE_CSV = "LOC_val_solution.csv"
GROUND_TRUTH = "data/ILSVRC2012_validation_ground_truth.txt"
META = "data/meta.mat"
SIZES = {"train": 1_281_167, "validation": 50_000}
_VAL_NAME = re.compile(r"ILSVRC2012_val_(\d{8})\.\w+$")

# An input, as prepare.Item: (name for the skipped list, label, where its bytes are).
Input = tuple[str, int, "str | TarMember"]


class TarMember(NamedTuple):
  """An image stored in a tar: read at its offset by the worker that decodes it, so that
  nothing is extracted and no image's bytes pass through the main process."""
  path: str
  offset: int
  size: int

  def read(self) -> bytes:
    with open(self.path, "rb") as f:
      data = os.pread(f.fileno(), self.size, self.offset)
    if len(data) != self.size:
      raise OSError(f"{self.path} ends inside this image (truncated tar)")
    return data


# ---------------------------------------------------------------- labels

@functools.lru_cache(maxsize=1)
def wnid_labels() -> dict[str, int]:
  """WNID -> label: its index among the 1,000 sorted WNIDs (one dict, not to be changed)."""
  return {wnid: i for i, wnid in enumerate(imagenet.synsets())}


def _label(wnid: str, where: str) -> int:
  labels = wnid_labels()
  if wnid not in labels:
    raise ValueError(f"{where}: {wnid!r} is not one of the 1,000 ILSVRC-2012 classes")
  return labels[wnid]


def read_devkit(devkit: str) -> tuple[dict[int, str], list[int]]:
  """The devkit (its .tar.gz, or the folder it extracts to) -> ({ILSVRC2012_ID: WNID} for
  the 1,000 leaf synsets, [the ILSVRC2012_ID of validation image 1, 2, ...])."""
  import scipy.io  # pylint: disable=import-outside-toplevel  # not in prepare's workers
  meta, truth = _devkit_file(devkit, META), _devkit_file(devkit, GROUND_TRUTH)
  try:
    synsets = scipy.io.loadmat(io.BytesIO(meta), squeeze_me=True)["synsets"]
    ids, wnids = synsets["ILSVRC2012_ID"], synsets["WNID"]
    leaves = synsets["num_children"] == 0
  except (ValueError, KeyError, TypeError) as e:
    raise ValueError(f"{devkit}: {META} is not the devkit's synsets table ({e})") from None
  id_to_wnid = {int(i): str(w) for i, w, leaf in zip(ids, wnids, leaves) if leaf}
  if set(id_to_wnid.values()) != set(imagenet.synsets()):
    raise ValueError(f"{devkit}: {META} lists {len(id_to_wnid)} leaf synsets, not the 1,000 "
                     "ILSVRC-2012 classes")
  try:
    ground_truth = [int(line) for line in truth.decode().split()]
  except ValueError:
    raise ValueError(f"{devkit}: {GROUND_TRUTH} holds something other than class IDs") from None
  unknown = sorted(set(ground_truth) - set(id_to_wnid))
  if unknown:
    raise ValueError(f"{devkit}: {GROUND_TRUTH} names IDs that {META} does not: {unknown[:5]}")
  return id_to_wnid, ground_truth


def _devkit_file(devkit: str, name: str) -> bytes:
  """`name` ('data/meta.mat') from the devkit tar.gz or folder; ValueError when missing."""
  if os.path.isdir(devkit):
    path = os.path.join(devkit, name)
    if not os.path.isfile(path):
      raise ValueError(f"devkit {devkit} has no {name}")
    with open(path, "rb") as f:
      return f.read()
  try:
    with tarfile.open(devkit, "r:*") as tar:
      for member in tar:
        if member.isfile() and member.name.endswith("/" + name):
          return tar.extractfile(member).read()
  except (tarfile.TarError, EOFError, OSError) as e:
    raise ValueError(f"devkit {devkit} cannot be read: {e}") from None
  raise ValueError(f"devkit {devkit} has no {name}")


def val_labels_from_devkit(devkit: str) -> dict[int, int]:
  """Validation image number (1-based) -> label, through the devkit's IDs and WNIDs."""
  id_to_wnid, ground_truth = read_devkit(devkit)
  labels = wnid_labels()
  return {i: labels[id_to_wnid[c]] for i, c in enumerate(ground_truth, start=1)}


def val_labels_from_csv(path: str) -> dict[int, int]:
  """Kaggle's LOC_val_solution.csv -> {validation image number: label}."""
  out = {}
  with open(path, newline="") as f:
    for row in csv.DictReader(f):
      try:
        number = int(_VAL_NAME.match(row["ImageId"] + ".JPEG").group(1))
        wnid = row["PredictionString"].split()[0]
      except (KeyError, AttributeError, IndexError, TypeError):
        raise ValueError(f"{path}: a row that is not 'ImageId,PredictionString': {row}") from None
      out[number] = _label(wnid, path)
  return out


# ---------------------------------------------------------------- the splits

def _tar_members(path: str, tar: tarfile.TarFile) -> list[tarfile.TarInfo]:
  """The files of an open tar (its file object `path`'s), each checked to lie inside the
  file, and the tar checked to end with its end-of-archive block: tarfile stops quietly at
  a header that a cut left half-written, which would drop the images after it."""
  size = os.path.getsize(path)
  try:
    members = [m for m in tar if m.isfile()]
  except (tarfile.TarError, EOFError) as e:
    raise ValueError(f"{path} is damaged or truncated: {e}") from None
  for m in members:
    if m.offset_data + m.size > size:
      raise ValueError(f"{path} is truncated: {m.name} ends past the end of the file")
  with open(path, "rb") as f:
    end = os.pread(f.fileno(), tarfile.BLOCKSIZE, tar.offset)
  if end != tarfile.NUL * tarfile.BLOCKSIZE:
    raise ValueError(f"{path} is truncated or damaged after {members[-1].name if members else 'its start'}")
  return members


def train_tar(path: str) -> list[Input]:
  """The train tar of per-synset tars, indexed without extracting anything."""
  inputs = []
  with open(path, "rb") as f:
    try:
      outer = tarfile.open(fileobj=f, mode="r:")
    except tarfile.TarError as e:
      raise ValueError(f"{path} is not a tar file: {e}") from None
    for synset in _tar_members(path, outer):
      wnid = os.path.splitext(os.path.basename(synset.name))[0]
      label = _label(wnid, f"{path}: {synset.name}")
      f.seek(synset.offset_data)
      try:
        inner = tarfile.open(fileobj=f, mode="r:")
      except tarfile.TarError as e:
        raise ValueError(f"{path}: {synset.name} is not a tar file: {e}") from None
      for m in _tar_members(path, inner):
        inputs.append((f"train/{wnid}/{os.path.basename(m.name)}", label,
                       TarMember(path, m.offset_data, m.size)))
  return inputs


def synset_folders(root: str, split: str = "train") -> list[Input]:
  """`<root>/<wnid>/<image>`: one folder per synset."""
  inputs = []
  for wnid in sorted(e.name for e in os.scandir(root) if e.is_dir()):
    label = _label(wnid, os.path.join(root, wnid))
    folder = os.path.join(root, wnid)
    inputs += [(f"{split}/{wnid}/{name}", label, os.path.join(folder, name))
               for name in sorted(e.name for e in os.scandir(folder) if e.is_file())]
  return inputs


def _val_inputs(named: list[tuple[str, "str | TarMember"]], labels: dict[int, int],
                where: str, label_file: str) -> list[Input]:
  inputs = []
  for name, source in named:
    match = _VAL_NAME.search(name)
    if match is None:
      raise ValueError(f"{where}: {name} is not named ILSVRC2012_val_<8 digits>, so its "
                       "label cannot be looked up")
    number = int(match.group(1))
    if number not in labels:
      raise ValueError(f"{where}: {name} has no label in {label_file}")
    inputs.append((f"validation/{os.path.basename(name)}", labels[number], source))
  return inputs


def val_tar(path: str, labels: dict[int, int], label_file: str) -> list[Input]:
  with open(path, "rb") as f:
    try:
      tar = tarfile.open(fileobj=f, mode="r:")
    except tarfile.TarError as e:
      raise ValueError(f"{path} is not a tar file: {e}") from None
    members = _tar_members(path, tar)
  return _val_inputs([(m.name, TarMember(path, m.offset_data, m.size)) for m in members],
                     labels, path, label_file)


def val_folder(root: str, labels: dict[int, int] | None, label_file: str) -> list[Input]:
  """A flat folder of validation images, labelled by `labels` (from `label_file`)."""
  if labels is None:
    raise ValueError(f"{root} holds the validation images unsorted, and no devkit "
                     f"({DEVKIT}.tar.gz) or {KAGGLE_CSV} beside them gives their labels")
  names = sorted(e.name for e in os.scandir(root) if e.is_file())
  return _val_inputs([(n, os.path.join(root, n)) for n in names], labels, root, label_file)


def _val_labels(root: str) -> tuple[dict[int, int] | None, str]:
  """The validation labels from whichever of the devkit (tar.gz or folder) and the Kaggle
  CSV is in `root`, and the file they came from."""
  for name in (f"{DEVKIT}.tar.gz", DEVKIT):
    path = os.path.join(root, name)
    if os.path.exists(path):
      return val_labels_from_devkit(path), path
  path = os.path.join(root, KAGGLE_CSV)
  if os.path.isfile(path):
    return val_labels_from_csv(path), path
  return None, ""


def _train(root: str) -> list[Input] | None:
  for path in (os.path.join(root, TRAIN_TAR), os.path.join(root, KAGGLE, "train"),
               os.path.join(root, "train")):
    if os.path.isfile(path):
      return train_tar(path)
    if os.path.isdir(path):
      return synset_folders(path)
  return None


def _validation(root: str) -> list[Input] | None:
  for path in (os.path.join(root, VAL_TAR), os.path.join(root, KAGGLE, "val"),
               os.path.join(root, "val")):
    if os.path.isfile(path):
      labels, label_file = _val_labels(root)
      if labels is None:
        raise ValueError(f"{path} needs the devkit ({DEVKIT}.tar.gz) or {KAGGLE_CSV} in "
                         f"{root} for its labels")
      return val_tar(path, labels, label_file)
    if os.path.isdir(path):
      if any(e.is_dir() for e in os.scandir(path)):   # sorted into synset folders already
        return synset_folders(path, "validation")
      return val_folder(path, *_val_labels(root))
  return None


def splits(root: str, wanted: list[str] | None = None) -> dict[str, list[Input]]:
  """{'train': inputs, 'validation': inputs} from whichever layout `root` holds (`wanted`:
  only those splits)."""
  if not os.path.isdir(root):
    raise ValueError(f"source {PREFIX}{root}: {root} is not a folder")
  unknown = set(wanted or ()) - set(SIZES)
  if unknown:
    raise ValueError(f"ImageNet has splits {', '.join(SIZES)}, not {', '.join(sorted(unknown))}")
  readers = {"train": _train, "validation": _validation}
  found = {split: readers[split](root) for split in (wanted or SIZES)}
  out = {split: inputs for split, inputs in found.items() if inputs is not None}
  missing = [split for split in (wanted or ()) if split not in out]
  if missing or not out:
    raise ValueError(f"{root} holds none of {TRAIN_TAR}, {VAL_TAR}, {KAGGLE}/train, "
                     f"{KAGGLE}/val, train/ or val/"
                     + (f" for split {', '.join(missing)}" if missing else ""))
  for split, inputs in out.items():
    if len(inputs) != SIZES[split]:
      logging.warning("prepare: ImageNet %s has %d images here, %+d against ILSVRC-2012's "
                      "%d (fine for a subset)", split, len(inputs), len(inputs) - SIZES[split],
                      SIZES[split])
  return out
