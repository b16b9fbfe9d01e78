"""Activations of any named layer, fc7 features and nearest neighbours (§6.1, Figure 4 right).

Layers by name (`layer_name`): conv1 ... conv5 after their ReLU (before LRN and pooling;
what LPIPS reads), fc6 and fc7 after their ReLU, and logits (fc8); the model's other sown
names (lrn1, pool1, pool2, pool5, ...) work too. `activations` returns them for images,
`layers_fn` is the jit-able, differentiable function of model inputs behind it.

The paper compares images by the Euclidean distance between their last hidden layer's
activations (fc7, 4096 post-ReLU values): images whose feature vectors are close count as
similar to the network, even when their pixels are not. `extract` computes those features
for a split of the run's dataset (evaluation preprocessing: centre crops), `nearest` finds
neighbours with numpy (fine for tens of thousands of images; a full ImageNet training set
would need a blocked search), and `save_grid` draws queries beside their neighbours.
"""
from __future__ import annotations

import time
from typing import Sequence

import jax
import numpy as np
from absl import logging
from tqdm import tqdm

from alexnet_jax.data import augment, loader
from alexnet_jax.nn import models
from alexnet_jax.programs.inference import Restored, readable_names


def _sown(model_cfg) -> list[str]:
  return models.sown_names(model_cfg.arch, len(model_cfg.fc_features), model_cfg.lrn)


def feature_layer(model_cfg) -> str:
  """The sown activation that feeds the classifier: the last hidden fully-connected layer
  ('fc7_out' for AlexNet), or for models without one the last conv block's output."""
  return _sown(model_cfg)[-2]


def layer_name(model_cfg, layer: str) -> str:
  """A layer's name ('conv1'..'conv5', 'fc6', 'fc7', 'logits', or a sown name such as
  'pool5') -> the name the model sows its activation under; ValueError listing them."""
  sown = _sown(model_cfg)
  layers = {n.removesuffix("_out"): n for n in sown if n.endswith("_out")}
  names = {**layers, "logits": sown[-1], **{n: n for n in sown if n not in layers.values()}}
  if layer in names:
    return names[layer]
  if layer in names.values():
    return layer
  raise ValueError(f"no layer {layer!r}; choose from {', '.join(names)}")


def layers_fn(restored: Restored, layers: Sequence[str]):
  """`(params, model inputs [B, S, S, 3]) -> {layer: activations}` (whole, not flattened:
  conv maps [B, H, W, C]), pure and differentiable, for use inside other JAX code."""
  model = models.create_model(restored.cfg.model, restored.cfg.data.image_size)
  sown = {layer: layer_name(restored.cfg.model, layer) for layer in layers}

  def fn(params, images):
    _, state = model.apply({"params": params}, images, mutable=["intermediates"])
    return {layer: state["intermediates"][name][0].astype(np.float32)
            for layer, name in sown.items()}

  return fn


def activations(restored: Restored, squares: np.ndarray, layers: Sequence[str] = ("fc7",)
                ) -> dict[str, np.ndarray]:
  """uint8 squares [N, R, R, 3] (`inference.load_images`) -> {layer: float32 [N, ...]} of
  their centre crops, in batches of the run's batch size."""
  fn = jax.jit(lambda params, x: layers_fn(restored, layers)(
      params, augment.eval_images(x, restored.cfg.data)))
  data, batch = restored.mesh.shape["data"], restored.cfg.batch_size
  out = {layer: [] for layer in layers}
  for start in range(0, len(squares), batch):
    chunk = np.asarray(squares[start:start + batch], np.uint8)
    n, padded = len(chunk), -(-len(chunk) // data) * data
    chunk = np.concatenate([chunk, np.zeros((padded - n, *chunk.shape[1:]), np.uint8)])
    got = jax.device_get(fn(restored.params, jax.device_put(chunk, restored.batch_sharding)))
    for layer in layers:
      out[layer].append(np.asarray(got[layer])[:n])
  return {layer: np.concatenate(v) for layer, v in out.items()}


def make_feature_fn(restored: Restored, layer: str | None = None):
  """jit `(params, uint8 squares [B, R, R, 3]) -> features [B, D]` of their centre crops,
  on the restored mesh: `layer` (default: the classifier's input, fc7) flattened.

  The plain model (towers as grouped convolutions) under jit: XLA splits it over the mesh
  as the parameters' shardings ask, so the sown activations come back whole.
  """
  cfg = restored.cfg
  layer = layer or feature_layer(cfg.model)
  fn = layers_fn(restored, [layer])

  def features(params, squares):
    x = fn(params, augment.eval_images(squares, cfg.data))[layer]
    return x.reshape(x.shape[0], -1)

  return jax.jit(features, out_shardings=restored.batch_sharding)


def extract(restored: Restored, split: str, *, data_dir: str | None = None,
            keep_images: int = 0, log_every: int = 50, progress: bool = False,
            layer: str | None = None) -> dict:
  """Features (`layer`, default fc7, flattened) of every example of `split`, in the
  evaluation order.

  Returns {'features': float32 [N, D], 'labels': int32 [N], 'images': uint8 [K, S, S, 3]
  (the first `keep_images` centre crops, for display), 'layer': the sown name, 'split': the
  opened split, for `images_at`}.
  """
  cfg = restored.cfg
  data_cfg, opened = restored.open_data(data_dir, split)
  layer = layer_name(cfg.model, layer) if layer else feature_layer(cfg.model)
  fn = make_feature_fn(restored, layer)
  feats, labels, images = [], [], []
  kept, t0 = 0, time.perf_counter()
  total = loader.num_eval_batches(len(opened), cfg.batch_size)
  batches = tqdm(loader.eval_batches(opened, cfg.batch_size), total=total,
                 disable=not progress, desc=f"features of {split}", unit="batch")
  for i, batch in enumerate(batches):
    real = batch["mask"] > 0
    images_in = restored.put({"image": batch["image"]})["image"]
    out = np.asarray(jax.device_get(fn(restored.params, images_in)))
    feats.append(out[real])
    labels.append(batch["label"][real])
    if kept < keep_images:
      take = batch["image"][real][:keep_images - kept]
      images.append(to_uint8(take, data_cfg))
      kept += len(take)
    if log_every > 0 and (i + 1) % log_every == 0:
      n = sum(len(f) for f in feats)
      logging.info("features: %d images of %s, %.1f images/s", n, split,
                   n / (time.perf_counter() - t0))
  size = int(data_cfg.image_size)
  return {"features": np.concatenate(feats), "labels": np.concatenate(labels).astype(np.int32),
          "images": (np.concatenate(images) if images
                     else np.zeros((0, size, size, 3), np.uint8)),
          "layer": layer, "split": opened}


def to_uint8(squares: np.ndarray, data_cfg) -> np.ndarray:
  """uint8 §2 squares -> their uint8 centre crops, as the model sees them, for display."""
  return np.asarray(augment.from_model_input(augment.eval_images(squares, data_cfg), data_cfg))


def images_at(source, data_cfg, indices: Sequence[int]) -> np.ndarray:
  """uint8 centre crops of the examples at `indices` of the opened split `source`, in the
  order given."""
  split = source.spec
  size = int(data_cfg.image_size)
  bad = [int(i) for i in indices if not 0 <= int(i) < len(source)]
  if bad:
    raise ValueError(f"split {split!r} has no examples at {bad[:5]}")
  if not len(indices):
    return np.zeros((0, size, size, 3), np.uint8)
  return to_uint8(np.stack([source[int(i)]["image"] for i in indices]), data_cfg)


def nearest(queries: np.ndarray, database: np.ndarray, n: int
            ) -> tuple[np.ndarray, np.ndarray]:
  """Indices [K, n] and Euclidean distances [K, n] of each query's n nearest database rows,
  nearest first."""
  queries = np.asarray(queries, np.float64)
  database = np.asarray(database, np.float64)
  n = min(n, len(database))
  d2 = ((queries ** 2).sum(1)[:, None] + (database ** 2).sum(1)[None, :]
        - 2.0 * queries @ database.T)                     # [K, N]
  d2 = np.maximum(d2, 0.0)
  idx = np.argsort(d2, axis=1, kind="stable")[:, :n]
  return idx, np.sqrt(np.take_along_axis(d2, idx, axis=1))


def same_class_share(query_features: np.ndarray, query_labels: np.ndarray,
                     database: np.ndarray, database_labels: np.ndarray, n: int,
                     block: int = 256) -> np.ndarray:
  """For each query, the share of its `n` nearest database rows (Euclidean) that have its
  label: [K] in [0, 1]. Queries go `block` at a time, so the distances stay small."""
  shares = []
  for start in range(0, len(query_features), block):
    idx, _ = nearest(query_features[start:start + block], database, n)
    labels = np.asarray(query_labels[start:start + block])[:, None]
    shares.append((np.asarray(database_labels)[idx] == labels).mean(axis=1))
  return np.concatenate(shares) if shares else np.zeros(0)


def pick_queries(labels: np.ndarray, count: int, seed: int = 0) -> np.ndarray:
  """`count` example indices of distinct classes where there are enough (one random
  example each of `count` random classes), else random examples: a row per class, as the
  paper's Figure 4 shows."""
  labels = np.asarray(labels)
  rng = np.random.default_rng(seed)
  classes = np.unique(labels)
  if len(classes) < count:
    return np.sort(rng.choice(len(labels), min(count, len(labels)), replace=False))
  picked = rng.choice(classes, count, replace=False)
  return np.array([rng.choice(np.flatnonzero(labels == c)) for c in picked])


def save_grid(path: str, queries: np.ndarray, neighbours: np.ndarray,
              query_titles: Sequence[str] | None = None,
              neighbour_titles: Sequence[Sequence[str]] | None = None) -> None:
  """A PNG with one row per query: the query (uint8 [K, S, S, 3]) then its neighbours
  (uint8 [K, n, S, S, 3]), as in the paper's Figure 4 (right)."""
  import matplotlib  # pylint: disable=g-import-not-at-top
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top

  k, n = neighbours.shape[:2]
  fig, axes = plt.subplots(k, n + 1, figsize=(1.4 * (n + 1), 1.5 * k), squeeze=False)
  for row in range(k):
    cells = [(queries[row], query_titles[row] if query_titles else "query")]
    cells += [(neighbours[row, j], neighbour_titles[row][j] if neighbour_titles else "")
              for j in range(n)]
    for col, (image, title) in enumerate(cells):
      ax = axes[row, col]
      ax.imshow(image)
      ax.set_xticks([])
      ax.set_yticks([])
      ax.set_title(title, fontsize=6, color="tab:red" if col == 0 else "black")
      if col == 0:
        for spine in ax.spines.values():
          spine.set_edgecolor("tab:red")
          spine.set_linewidth(2)
  fig.suptitle("queries (left) and their nearest training images by fc7 distance", fontsize=8)
  fig.tight_layout()
  fig.savefig(path, dpi=100)
  plt.close(fig)


def neighbour_grid(restored: Restored, query: dict, train: dict, *, neighbours: int,
                   queries: int, path: str) -> tuple[np.ndarray, np.ndarray]:
  """Queries (the first of `query`, from `extract(..., keep_images=queries)`) beside their
  nearest examples of `train` (from `extract`); writes the PNG, returns (indices, distances)."""
  k = min(queries, len(query["images"]))
  idx, dist = nearest(query["features"][:k], train["features"], neighbours)
  flat = images_at(train["split"], restored.cfg.data, idx.reshape(-1))
  names = readable_names(restored.class_names)
  save_grid(path, query["images"][:k], flat.reshape(*idx.shape, *flat.shape[1:]),
            [f"query: {names[query['labels'][i]]}" for i in range(k)],
            [[f"{names[train['labels'][j]]} ({d:.3g})" for j, d in zip(r, dr)]
             for r, dr in zip(idx, dist)])
  return idx, dist

