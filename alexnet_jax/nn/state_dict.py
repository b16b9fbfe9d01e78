"""PyTorch `state_dict` files read as numpy arrays, without importing torch.

`torch.save` (PyTorch 1.6 and later) writes a zip archive: `<name>/data.pkl`, a pickle
whose tensors refer to storages by key, and `<name>/data/<key>`, each storage's raw bytes
(`<name>/byteorder` says which order, little by default). Before 1.6 (and with
`_use_new_zipfile_serialization=False`) it wrote one stream: pickles of a magic number, the
protocol version and system info, the object, and the sorted storage keys, then each
storage as an int64 element count and its bytes. `read` takes both. It unpickles with an
unpickler that builds only what a state_dict holds (ordered dicts, tensors as numpy arrays
of their storages) and refuses every other class, so a file cannot run code here, as
`torch.load(weights_only=True)`.
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


_LEGACY_MAGIC = 0x1950A86A20F9469CFC6C


class NotAStateDict(ValueError):
  """The file is not a state_dict that this module can read; the message names it."""


class _Storage:
  """A storage's dtype, element count and (once read) elements."""

  def __init__(self, dtype, numel: int):
    self.dtype, self.numel, self.data = np.dtype(dtype), int(numel), None


class _Tensor:
  """A tensor as pickled: a view of a storage whose bytes may come after the pickle."""

  def __init__(self, storage: _Storage, offset: int, size, stride):
    self.storage, self.offset, self.size, self.stride = storage, offset, tuple(size), stride

  def array(self) -> np.ndarray:
    itemsize = self.storage.dtype.itemsize
    return np.lib.stride_tricks.as_strided(
        self.storage.data[self.offset:], shape=self.size,
        strides=tuple(s * itemsize for s in self.stride), writeable=False).copy()


def _rebuild_tensor(storage, offset, size, stride, *unused):
  del unused   # requires_grad, backward hooks, metadata
  return _Tensor(storage, offset, size, stride)


def _rebuild_parameter(data, *unused):
  del unused
  return data


class _Unpickler(pickle.Unpickler):
  """A pickle of a state_dict -> it, with `_Storage`s by key in `storages`; `read_storage`
  (key, dtype) -> the bytes when they are at hand (zip), else None (legacy: after it)."""

  def __init__(self, file, read_storage, path: str):
    super().__init__(file)
    self._read, self._path, self.storages = read_storage, path, {}

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
    if len(pid) > 5 and pid[5] is not None:
      raise NotAStateDict(f"{self._path}: holds storage views; save a state_dict of a model")
    if key not in self.storages:
      storage = _Storage(_DTYPES[storage_type], numel)
      storage.data = self._read(key, storage.dtype, storage.numel)
      self.storages[key] = storage
    return self.storages[key]


def _from_bytes(data: bytes, dtype: np.dtype, numel: int, order: str) -> np.ndarray:
  raw = np.frombuffer(data, dtype.newbyteorder("<" if order == "little" else ">"), numel)
  return raw.astype(dtype)


def _read_zip(archive: zipfile.ZipFile, path: str):
  pickles = [n for n in archive.namelist() if n.endswith("data.pkl")]
  if len(pickles) != 1:
    raise NotAStateDict(f"{path}: a zip archive, but not one that torch.save wrote "
                        "(no data.pkl)")
  prefix = pickles[0][:-len("data.pkl")]
  order = (archive.read(prefix + "byteorder").decode().strip()
           if prefix + "byteorder" in archive.namelist() else "little")
  read = lambda key, dtype, numel: _from_bytes(archive.read(f"{prefix}data/{key}"), dtype,
                                               numel, order)
  with archive.open(pickles[0]) as f:
    return _Unpickler(f, read, path).load()


def _read_legacy(f, path: str):
  try:
    magic = pickle.load(f)
  except Exception:  # pylint: disable=broad-except  # any bytes at all
    magic = None
  if magic != _LEGACY_MAGIC:
    raise NotAStateDict(f"{path}: not a PyTorch state_dict file (neither the zip archive "
                        "that torch.save writes nor its pre-1.6 format)")
  pickle.load(f)                                  # protocol version
  order = "little" if pickle.load(f).get("little_endian", True) else "big"
  unpickler = _Unpickler(f, lambda key, dtype, numel: None, path)
  obj = unpickler.load()
  for key in pickle.load(f):                      # storages, in this order, after the pickle
    storage = unpickler.storages[key]
    numel = int(np.frombuffer(f.read(8), "<i8" if order == "little" else ">i8")[0])
    storage.data = _from_bytes(f.read(numel * storage.dtype.itemsize), storage.dtype, numel,
                               order)
  return obj


ZIP_MAGIC = b"PK\x03\x04"   # a zip archive's first bytes, still there when its end is cut off
PICKLE_MAGIC = b"\x80"       # pickle protocol 2+: PyTorch's pre-1.6 format


def _head(path: str) -> bytes:
  with open(path, "rb") as f:
    return f.read(len(ZIP_MAGIC))


def is_torch_file(path: str) -> bool:
  """Whether `path` starts as a file that torch.save wrote (zip or pickle), even when it is
  cut short; OSError when it cannot be read."""
  return _head(path).startswith((ZIP_MAGIC, PICKLE_MAGIC))


def read(path: str) -> dict[str, np.ndarray]:
  """The arrays of a `torch.save(model.state_dict(), path)` file, by name.

  Raises:
    NotAStateDict: not a file that torch.save wrote, or one that holds something other than
      a flat mapping of names to tensors.
    OSError: the file cannot be read.
  """
  try:
    if zipfile.is_zipfile(path):
      with zipfile.ZipFile(path) as archive:
        obj = _read_zip(archive, path)
    elif _head(path).startswith(ZIP_MAGIC):   # a zip without its end: zipfile says no zip
      raise NotAStateDict(f"{path}: a damaged PyTorch archive: it starts as the zip file that "
                          "torch.save writes but its end is missing or corrupt (cut short "
                          "by a download or a copy?); fetch or save it again")
    else:
      with open(path, "rb") as f:
        obj = _read_legacy(f, path)
  except (NotAStateDict, OSError):
    raise
  except Exception as e:  # pylint: disable=broad-except  # a damaged or cut-short file
    raise NotAStateDict(f"{path}: cannot be read as a state_dict: {e}") from None
  if not isinstance(obj, dict) or not all(isinstance(v, _Tensor) for v in obj.values()):
    raise NotAStateDict(f"{path}: holds a {type(obj).__name__}, not a state_dict (a mapping "
                        "of parameter names to tensors)")
  try:
    return {name: tensor.array() for name, tensor in obj.items()}
  except (TypeError, ValueError) as e:   # storages missing or too short
    raise NotAStateDict(f"{path}: its tensors do not fit their storages: {e}") from None
