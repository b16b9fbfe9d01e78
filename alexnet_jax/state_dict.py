"""PyTorch `state_dict` files read as numpy arrays, without importing torch.

`torch.save` (PyTorch 1.6 and later, the format torchvision's weight files use) writes a
zip archive: `<name>/data.pkl`, a pickle whose tensors refer to storages by key, and
`<name>/data/<key>`, each storage's raw bytes (`<name>/byteorder` says which order, little
by default). `read` unpickles `data.pkl` with an unpickler that builds only what a
state_dict holds (ordered dicts, tensors as numpy views of their storages) and refuses
every other class, so a file cannot run code here, as `torch.load(weights_only=True)`.
"""
from __future__ import annotations

import collections
import pickle
import zipfile

import ml_dtypes
import numpy as np

_DTYPES = {
    "FloatStorage": np.float32, "DoubleStorage": np.float64, "HalfStorage": np.float16,
    "BFloat16Storage": ml_dtypes.bfloat16, "LongStorage": np.int64, "IntStorage": np.int32,
    "ShortStorage": np.int16, "CharStorage": np.int8, "ByteStorage": np.uint8,
    "BoolStorage": np.bool_,
}


class NotAStateDict(ValueError):
  """The file is not a state_dict that this module can read; the message names it."""


def _rebuild_tensor(storage, offset, size, stride, *unused):
  del unused   # requires_grad, backward hooks, metadata
  itemsize = storage.dtype.itemsize
  return np.lib.stride_tricks.as_strided(
      storage[offset:], shape=tuple(size), strides=tuple(s * itemsize for s in stride),
      writeable=False).copy()


def _rebuild_parameter(data, *unused):
  del unused
  return data


class _Unpickler(pickle.Unpickler):
  """data.pkl -> the state_dict, with storages read from the archive."""

  def __init__(self, file, archive: zipfile.ZipFile, prefix: str, byteorder: str, path: str):
    super().__init__(file)
    self._archive, self._prefix, self._order, self._path = archive, prefix, byteorder, path

  def find_class(self, module, name):
    allowed = {
        ("collections", "OrderedDict"): collections.OrderedDict,
        ("torch._utils", "_rebuild_tensor_v2"): _rebuild_tensor,
        ("torch._utils", "_rebuild_parameter"): _rebuild_parameter,
    }
    if (module, name) in allowed:
      return allowed[(module, name)]
    if module == "torch" and name in _DTYPES:
      return name
    raise NotAStateDict(f"{self._path}: holds a {module}.{name}, which a state_dict does not "
                        "(save model.state_dict(), not the model)")

  def persistent_load(self, pid):
    kind, storage_type, key, _location, numel = pid[:5]
    if kind != "storage" or storage_type not in _DTYPES:
      raise NotAStateDict(f"{self._path}: a storage of unknown type {storage_type!r}")
    dtype = np.dtype(_DTYPES[storage_type]).newbyteorder("<" if self._order == "little" else ">")
    data = np.frombuffer(self._archive.read(f"{self._prefix}data/{key}"), dtype, int(numel))
    return data.astype(data.dtype.newbyteorder("="))


def read(path: str) -> dict[str, np.ndarray]:
  """The arrays of a `torch.save(model.state_dict(), path)` file, by name.

  Raises:
    NotAStateDict: not a torch.save zip archive (including PyTorch's pre-1.6 format), or one
      that holds something other than a flat mapping of names to tensors.
  """
  try:
    archive = zipfile.ZipFile(path)
  except zipfile.BadZipFile:
    raise NotAStateDict(f"{path}: not a PyTorch state_dict file (not the zip archive that "
                        "torch.save writes; files from PyTorch before 1.6 must be loaded and "
                        "saved again with a newer torch)") from None
  with archive:
    pickles = [n for n in archive.namelist() if n.endswith("data.pkl")]
    if len(pickles) != 1:
      raise NotAStateDict(f"{path}: a zip archive, but not one that torch.save wrote "
                          "(no data.pkl)")
    prefix = pickles[0][:-len("data.pkl")]
    names = set(archive.namelist())
    order = (archive.read(prefix + "byteorder").decode().strip()
             if prefix + "byteorder" in names else "little")
    with archive.open(pickles[0]) as f:
      try:
        obj = _Unpickler(f, archive, prefix, order, path).load()
      except NotAStateDict:
        raise
      except Exception as e:  # pylint: disable=broad-except  # a damaged pickle
        raise NotAStateDict(f"{path}: cannot read its data.pkl: {e}") from None
  if not isinstance(obj, dict) or not all(isinstance(v, np.ndarray) for v in obj.values()):
    raise NotAStateDict(f"{path}: holds a {type(obj).__name__}, not a state_dict (a mapping "
                        "of parameter names to tensors)")
  return dict(obj)
