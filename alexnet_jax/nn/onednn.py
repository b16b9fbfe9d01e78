"""bf16 convolutions and fc layers on a CPU's bf16 instructions: oneDNN through XLA's FFI.

XLA:CPU (jax 0.10) computes bf16 convolutions and matmuls in f32, so `model.dtype=bfloat16`
ran slower than f32 on a CPU (benchmarks/README.md "bf16 on a CPU"). oneDNN, the library
PyTorch's CPU convolutions use, has kernels for avx512_bf16 and AMX. `onednn.cc` wraps its
convolution and matmul, forward and both backward passes, as FFI handlers; `conv` is
`models.Conv` and `dense` `models.Dense` (§3.5) with them as their forward passes and
gradients. Inputs are rounded to bf16, outputs and gradients are f32, so the layers in
between (ReLU, LRN, pooling, dropout) run XLA's f32 loops.

The library is the registry's CPU-only build (`onednn-cpu-gomp`, in requirements.txt); the
C++ API header comes from `onednn-devel` (its wheel depends on the SYCL runtime, so it is
fetched without its dependencies, once, by `build`). `python -m alexnet_jax.nn.onednn`
builds the handlers with the system's C++ compiler (`make` does it with the venv) into
`$ALEXNET_ONEDNN_DIR` (default ~/.cache/alexnet_jax/onednn). Where the CPU has no bf16
instructions, or the handlers are not built, `available()` is False and the model keeps
XLA's layers: the same numbers within bf16's rounding (tests/test_onednn.py).
"""
from __future__ import annotations

import ctypes
import functools
import glob
import hashlib
import logging
import os
import site
import subprocess
import sys
import tempfile
import zipfile

import jax
import jax.numpy as jnp

from alexnet_jax.base import machine

HEADERS = "onednn-devel==2026.1.0"   # the C++ API header (oneDNN's v3 API and ABI)
SOURCE = os.path.join(os.path.dirname(__file__), "onednn.cc")
TARGETS = {"conv_forward": "AlexnetConvForward",
           "conv_backward_data": "AlexnetConvBackwardData",
           "conv_backward_weights": "AlexnetConvBackwardWeights",
           "dense_forward": "AlexnetDenseForward",
           "dense_backward_data": "AlexnetDenseBackwardData",
           "dense_backward_weights": "AlexnetDenseBackwardWeights"}
BF16_FLAGS = ("avx512_bf16", "amx_bf16")


def build_dir() -> str:
  return os.environ.get("ALEXNET_ONEDNN_DIR") or os.path.join(
      os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "alexnet_jax",
      "onednn")


def library_dir() -> str | None:
  """Where pip put onednn-cpu-gomp's libdnnl.so.3 (the environment's lib/), or None."""
  for prefix in (sys.prefix, site.getuserbase()):
    if os.path.exists(os.path.join(prefix, "lib", "libdnnl.so.3")):
      return os.path.join(prefix, "lib")
  return None


def _built_path(libdir: str) -> str:
  """The handlers' file for this source, jaxlib and oneDNN: a change to any rebuilds."""
  key = hashlib.sha256()
  for part in (open(SOURCE, "rb").read(), jax.__version__.encode(),
               os.path.realpath(os.path.join(libdir, "libdnnl.so.3")).encode()):
    key.update(part)
  return os.path.join(build_dir(), f"onednn-{key.hexdigest()[:16]}.so")


def _headers(into: str) -> str:
  """oneDNN's include/ directory, from the onednn-devel wheel (downloaded once per
  version of HEADERS)."""
  include = os.path.join(into, "include-" + HEADERS.split("==")[1])
  if os.path.exists(os.path.join(include, "oneapi", "dnnl", "dnnl.hpp")):
    return include
  with tempfile.TemporaryDirectory() as tmp:
    subprocess.run([sys.executable, "-m", "pip", "download", "--quiet", "--no-deps",
                    "--dest", tmp, HEADERS], check=True)
    (wheel,) = glob.glob(os.path.join(tmp, "*.whl"))
    with zipfile.ZipFile(wheel) as z:
      for name in z.namelist():
        if "/data/include/" in name and not name.endswith("/"):
          path = os.path.join(include, name.split("/data/include/", 1)[1])
          os.makedirs(os.path.dirname(path), exist_ok=True)
          with open(path, "wb") as f:
            f.write(z.read(name))
  return include


def build() -> str:
  """Compiles onednn.cc into build_dir() (once per source, jaxlib and oneDNN);
  returns the file. Needs the registry the first time (the header) and a C++ compiler."""
  libdir = library_dir()
  if libdir is None:
    raise FileNotFoundError("libdnnl.so.3 not found: pip install onednn-cpu-gomp "
                            "(requirements.txt)")
  target = _built_path(libdir)
  if os.path.exists(target):
    return target
  os.makedirs(build_dir(), exist_ok=True)
  include = _headers(build_dir())
  partial = f"{target}.{os.getpid()}.partial"
  subprocess.run([os.environ.get("CXX", "g++"), "-O2", "-std=c++17", "-shared", "-fPIC",
                  "-isystem", jax.ffi.include_dir(), "-isystem", include, SOURCE, f"-L{libdir}",
                  "-l:libdnnl.so.3", f"-Wl,-rpath,{libdir}", "-Wl,--no-undefined",
                  "-o", partial], check=True)
  os.replace(partial, target)
  return target


@functools.cache
def available() -> bool:
  """True where the CPU has bf16 instructions and the handlers are built and registered
  (decided once per process; `models.create_model` asks). ALEXNET_ONEDNN=0 says False, to
  compare with XLA's bf16."""
  flags = machine.cpu()["cpu_flags"]
  if os.environ.get("ALEXNET_ONEDNN") == "0" or not any(f in flags for f in BF16_FLAGS):
    return False
  libdir = library_dir()
  path = _built_path(libdir) if libdir else None
  if path is None or not os.path.exists(path):
    logging.info("bf16 convolutions: XLA's (oneDNN's are not built; `python -m "
                 "alexnet_jax.nn.onednn` builds them)")
    return False
  try:
    handlers = ctypes.cdll.LoadLibrary(path)
  except OSError as e:   # e.g. libdnnl.so.3 gone since the build
    logging.warning("bf16 convolutions: XLA's (oneDNN's do not load: %s)", e)
    return False
  for name, symbol in TARGETS.items():
    jax.ffi.register_ffi_target(f"alexnet_{name}",
                                jax.ffi.pycapsule(getattr(handlers, symbol)), platform="cpu")
  return True


def conv(x: jax.Array, kernel: jax.Array, bias: jax.Array, *, stride: int,
         padding: tuple[int, int], groups: int = 1) -> jax.Array:
  """A convolution layer's maps (§3.5) in f32, computed by oneDNN from bf16: x [N, H, W, C]
  rounded to bf16, kernel [kh, kw, C / groups, O] f32 (rounded to bf16 as `models.Conv`
  rounds it), `groups` towers each reading its own C / groups maps (§3.2), plus the f32
  bias. The gradients of x, kernel and bias come from oneDNN too, from the bf16-rounded
  gradient of the maps; they are accumulated in f32 and returned in f32.

  Inside shard_map the images vary over the mesh's data axis and the weights do not; all
  three are cast to the same varying axes first (an FFI call takes one set), so that
  autodiff sums the weights' gradients over the data axis, as for XLA's convolution."""
  return _conv(*_f32_on_same_axes(x, kernel, bias), (stride, *padding, groups))


def _f32_on_same_axes(*arrays):
  """The arrays in f32 (the primal types of the custom gradients below, so that theirs
  come back in f32), cast inside shard_map to the union of their varying manual axes."""
  axes = frozenset().union(*(jax.typeof(a).mat.varying for a in arrays))
  return [jax.lax.pcast(a, tuple(axes - jax.typeof(a).mat.varying), to="varying")
          .astype(jnp.float32) for a in arrays]


def _call(name, results, *args, **attributes):
  like = jax.typeof(args[0])   # the results vary over the arguments' axes
  avals = [like.update(shape=shape, dtype=jnp.dtype(jnp.float32)) for shape in results]
  return jax.ffi.ffi_call(f"alexnet_{name}", avals, vmap_method="sequential")(*args,
                                                                             **attributes)


def _geometry(geometry):
  stride, pad_lo, pad_hi, groups = geometry
  return dict(stride=stride, pad_lo=pad_lo, pad_hi=pad_hi, groups=groups)


@functools.partial(jax.custom_vjp, nondiff_argnums=(3,))
def _conv(x, kernel, bias, geometry):
  return _conv_forward(x, kernel, bias, geometry)[0]


def _conv_forward(x, kernel, bias, geometry):
  stride, pad_lo, pad_hi, _ = geometry
  kh, kw, _, out = kernel.shape
  h, w = ((n + pad_lo + pad_hi - k) // stride + 1 for n, k in zip(x.shape[1:3], (kh, kw)))
  x = x.astype(jnp.bfloat16)
  (y,) = _call("conv_forward", [(x.shape[0], h, w, out)], x, kernel, bias,
               **_geometry(geometry))
  return y, (x, kernel)


def _conv_backward(geometry, saved, dy):
  x, kernel = saved
  dy = dy.astype(jnp.bfloat16)
  (dx,) = _call("conv_backward_data", [x.shape], dy, kernel, **_geometry(geometry))
  dkernel, dbias = _call("conv_backward_weights", [kernel.shape, kernel.shape[-1:]], x, dy,
                         **_geometry(geometry))
  return dx, dkernel, dbias


_conv.defvjp(_conv_forward, _conv_backward)


def dense(x: jax.Array, kernel: jax.Array, bias: jax.Array) -> jax.Array:
  """A fully connected layer (§3.5), `x @ kernel + bias`, in f32 from bf16 by oneDNN's
  matmul: x [B, K] and kernel [K, N] rounded to bf16 (the kernel once for both passes that
  read it), the f32 bias; the gradients as `conv`'s (the bias's is the sum of the f32
  incoming gradient)."""
  return _dense(*_f32_on_same_axes(x, kernel, bias))


@jax.custom_vjp
def _dense(x, kernel, bias):
  return _dense_forward(x, kernel, bias)[0]


def _dense_forward(x, kernel, bias):
  x, kernel = x.astype(jnp.bfloat16), kernel.astype(jnp.bfloat16)
  (y,) = _call("dense_forward", [(x.shape[0], kernel.shape[1])], x, kernel, bias)
  return y, (x, kernel)


def _dense_backward(saved, dy):
  x, kernel = saved
  dbias = jnp.sum(dy, axis=0)
  dy = dy.astype(jnp.bfloat16)
  (dx,) = _call("dense_backward_data", [x.shape], dy, kernel)
  (dkernel,) = _call("dense_backward_weights", [kernel.shape], x, dy)
  return dx, dkernel, dbias


_dense.defvjp(_dense_forward, _dense_backward)


if __name__ == "__main__":
  print(build())
  print("bf16 convolutions and fc layers through oneDNN:", "yes" if available() else
        f"no (this CPU has none of {', '.join(BF16_FLAGS)})")
