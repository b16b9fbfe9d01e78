"""The 1000 ImageNet (ILSVRC 2012) classes in label order, from a small file shipped here.

`imagenet_classes.txt` is the public ImageNet class index (synset and a short name per
line), in the order of sorted synsets that torchvision's and Caffe's ImageNet nets use.
Nothing is downloaded.
"""
from __future__ import annotations

import functools
import os

CLASSES_FILE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "imagenet_classes.txt")


@functools.lru_cache(maxsize=1)
def classes() -> tuple[tuple[str, str], ...]:
  """((synset, name), ...) for labels 0..999: (('n01440764', 'tench'), ...)."""
  with open(CLASSES_FILE) as f:
    rows = [line.rstrip("\n").split(" ", 1) for line in f if not line.startswith("#")]
  assert len(rows) == 1000, f"{CLASSES_FILE} holds {len(rows)} classes, not 1000"
  return tuple((synset, name) for synset, name in rows)


def synsets() -> list[str]:
  """The class names a workdir of an imported ImageNet net holds: its synsets, in order."""
  return [synset for synset, _ in classes()]


def names() -> dict[str, str]:
  """synset -> short name ('n01440764' -> 'tench')."""
  return dict(classes())
