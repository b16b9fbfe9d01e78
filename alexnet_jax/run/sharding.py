"""Devices: the (data, model) mesh and the paper's two-GPU layout on it (§3.2).

The paper put one tower on each of two GPUs: each held half the kernels of every layer
(48/128/192/192/128 conv maps, 2048/2048 fc6/fc7 neurons). Here the `model` mesh axis has
one device per tower and the `data` axis splits the batch:

* every parameter's last axis (output channels, tower-major) is split over `model`, so a
  device holds exactly its tower's kernels and biases; the layout on disk is the same for
  every mesh;
* the forward pass runs under `jax.shard_map`: each device runs `AlexNet` with
  `model_axis='model'`, which keeps conv2, conv4 and conv5 local and gathers the towers'
  maps across `model` before conv3, fc6, fc7 and fc8;
* the loss, gradients and optimiser update are ordinary `jax.jit` code over the global
  arrays; differentiating through `shard_map` gives each device its tower's gradients, and
  the mean over the `data`-sharded batch averages gradients over `data`.

Several processes (one per host, or one per GPU): the mesh is built by `jax`'s mesh_utils,
so it follows the device topology, and where each process's devices divide into towers a
process holds whole data rows (a hybrid mesh: the towers' gathers stay inside a host). With
one device per process the two towers of a row live in two processes. Either way a process
reads the rows of the global batch that its devices hold (`feed`): processes that share a
data row read the same examples, and `put_batch` names the global shape, so a process that
fed the wrong number of rows raises instead of training on mismatched halves.

Model code never names a device; this module is the only place that does.
"""
from __future__ import annotations

import collections
import functools
from typing import NamedTuple

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from jax.experimental import mesh_utils
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

from alexnet_jax.nn import models

DATA, MODEL = "data", "model"


def mesh_shape(cfg: ml_collections.ConfigDict, num_devices: int | None = None) -> tuple[int, int]:
  """The (data, model) shape for a config, checked against the devices and towers.

  `cfg.mesh_shape` entries of 0 are derived: `model` is the number of towers when the
  devices divide into towers (1 otherwise), and `data` takes the remaining devices.
  Raises ValueError, before anything is compiled, when the mesh cannot work.
  """
  n = jax.device_count() if num_devices is None else num_devices
  towers = cfg.model.towers
  data, model = cfg.mesh_shape
  explicit = data > 0 and model > 0
  if model == 0:
    model = towers if n % towers == 0 and (data == 0 or data * towers <= n) else 1
  if data == 0:
    data = max(1, n // model)
  if data < 1 or model < 1:
    raise ValueError(f"mesh_shape {tuple(cfg.mesh_shape)} must have positive entries")
  if data * model > n or (not explicit and data * model != n):
    raise ValueError(f"mesh_shape (data={data}, model={model}) needs {data * model} devices, "
                     f"but {n} are present")
  if model not in (1, towers):
    raise ValueError(f"the model axis holds one tower per device, so it must be 1 or "
                     f"model.towers={towers}, got {model}")
  if model > 1 and cfg.model.num_classes % model:
    raise ValueError(f"model.num_classes={cfg.model.num_classes} does not split over "
                     f"{model} towers (fc8 is split by class)")
  return data, model


def make_mesh(cfg: ml_collections.ConfigDict, devices=None) -> Mesh:
  """The (data, model) mesh over `devices` (all by default); an explicit smaller mesh_shape
  takes the first data * model of them. See the module docstring for the layout."""
  devices = list(jax.devices() if devices is None else devices)
  data, model = mesh_shape(cfg, len(devices))
  devices = devices[:data * model]
  per_process = collections.Counter(d.process_index for d in devices)
  local = min(per_process.values())
  if len(per_process) > 1 and len(set(per_process.values())) == 1 and local % model == 0:
    grid = mesh_utils.create_hybrid_device_mesh(
        (local // model, model), (len(per_process), 1), devices, process_is_granule=True,
        allow_split_physical_axes=True)
  else:
    grid = mesh_utils.create_device_mesh((data, model), devices,
                                         allow_split_physical_axes=True)
  return Mesh(grid, (DATA, MODEL))


class Feed(NamedTuple):
  """Which part of each global batch a process reads: the `index`-th of `count` equal,
  consecutive blocks of rows. Processes whose devices share data rows share a feed."""
  index: int
  count: int


@functools.lru_cache(maxsize=None)
def feed(mesh: Mesh, process_index: int | None = None) -> Feed:
  """This process's `Feed` on `mesh` (process `process_index`'s, when given).

  ValueError, the same on every process, when some process's devices do not hold a
  consecutive block of data rows of the same size as every other's."""
  rows = collections.defaultdict(set)
  for i, row in enumerate(mesh.devices):
    for device in row:
      rows[device.process_index].add(i)
  data = mesh.shape[DATA]
  feeds = {}
  for p, held in rows.items():
    n, first = len(held), min(held)
    if held != set(range(first, first + n)) or first % n or data % n:
      raise ValueError(f"process {p} holds data rows {sorted(held)} of the mesh's {data}; "
                       "each process must hold a consecutive block of rows of one size "
                       "(set --config.mesh_shape to fit the devices per process)")
    feeds[p] = Feed(first // n, data // n)
  if len({f.count for f in feeds.values()}) > 1:
    raise ValueError(f"processes hold different numbers of data rows: {feeds}")
  return feeds[jax.process_index() if process_index is None else process_index]


def param_spec(mesh: Mesh, x) -> P:
  """Output channels (the last axis) are tower-major: split them over `model`.

  Scalars (step, learning rate), and everything on a mesh without towers, are replicated.
  """
  if mesh.shape[MODEL] == 1 or np.ndim(x) == 0:
    return P()
  return P(*([None] * (np.ndim(x) - 1)), MODEL)


def param_shardings(mesh: Mesh, tree):
  """Shardings for parameters, or for a whole train state (optimiser leaves shaped like
  parameters follow them)."""
  return jax.tree.map(lambda x: NamedSharding(mesh, param_spec(mesh, x)), tree)


def batch_sharding(mesh: Mesh) -> NamedSharding:
  return NamedSharding(mesh, P(DATA))


def replicated(mesh: Mesh) -> NamedSharding:
  return NamedSharding(mesh, P())


def put_batch(batch_sharding: NamedSharding, batch: dict) -> dict:
  """A process's numpy rows of the global batch (its `feed`) -> global arrays sharded over
  `data` (dtypes kept: uint8 images cross as uint8, a quarter of float32's traffic)."""
  count = feed(batch_sharding.mesh).count
  out = {}
  for k, v in batch.items():
    v = np.asarray(v)
    out[k] = jax.make_array_from_process_local_data(
        batch_sharding, v, global_shape=(v.shape[0] * count, *v.shape[1:]))
  return out


def make_apply_fn(model: models.AlexNet, mesh: Mesh):
  """`apply(params, images, rng, train) -> logits` of `model` (models.create_model's) with
  its towers laid out on `mesh`.

  `images` is [B, H, W, 3] sharded over `data`; `logits` [B, classes] likewise. With
  train=True, each example's dropout masks come from `rng` and its index in the global
  batch (models.AlexNet._dropout), so they are the same on every mesh.
  """
  towers_on_devices = mesh.shape[MODEL] > 1
  if towers_on_devices:   # each device computes its own tower: conv2/4/5 stay local
    model = model.clone(model_axis=MODEL)

  def local(params, images, rng, train):
    rngs, b = None, images.shape[0]
    if train:
      rngs = {"dropout": rng}
    example_ids = jax.lax.axis_index(DATA) * b + jnp.arange(b)
    return model.apply({"params": params}, images, train=train, rngs=rngs,
                       example_ids=example_ids)

  @functools.partial(jax.jit, static_argnames="train")
  def apply(params, images, rng, train: bool = False):
    specs = jax.tree.map(functools.partial(param_spec, mesh), params)
    fn = jax.shard_map(functools.partial(local, train=train), mesh=mesh,
                       in_specs=(specs, P(DATA), P()), out_specs=P(DATA))
    return fn(params, images, rng)

  return apply
