"""A per-layer table of an AlexNet: output shape, parameters and forward FLOPs per image.

Shapes come from tracing the model (`jax.eval_shape`, nothing is computed), so the table
is the model's own account of itself, checked in tests against the paper's §3.5 figures.
FLOPs count the multiply-adds of convolutions and fully-connected layers as 2 each; ReLU,
LRN and pooling are a fraction of a percent of the total and are not counted.
"""
from __future__ import annotations

import dataclasses
import math

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from alexnet_jax.nn import models


@dataclasses.dataclass(frozen=True)
class Row:
  layer: str
  shape: tuple[int, ...]   # output shape for one image
  params: int
  flops: int               # forward, per image


def layer_table(cfg: ml_collections.ConfigDict, image_size: int) -> list[Row]:
  model = models.create_model(cfg, image_size)
  images = jnp.zeros((1, image_size, image_size, 3), jnp.float32)

  def trace():
    variables = model.init(jax.random.key(0), images)
    _, state = model.apply(variables, images, mutable=["intermediates"])
    return variables["params"], state["intermediates"]

  params, acts = jax.eval_shape(trace)
  local = {s.name for s in models.ARCHS[cfg.arch] if s.local}
  rows = []
  for sown in models.sown_names(cfg.arch, len(cfg.fc_features), cfg.lrn):   # network order
    (out,) = acts[sown]
    name = sown.removesuffix("_out")
    shape = tuple(out.shape[1:])
    p = params.get(name, {})
    n_params = sum(math.prod(v.shape) for v in jax.tree.leaves(p))
    flops = 0
    if name in local:   # locally connected: every weight once per image
      flops = 2 * math.prod(p["kernel"].shape)
    elif "kernel" in p:   # conv: 2 * kh*kw*cin/groups * cout per output pixel; dense: 2*in*out
      flops = 2 * math.prod(p["kernel"].shape) * math.prod(shape[:-1])
    rows.append(Row(name, shape, n_params, flops))
  return rows


def format_table(rows: list[Row], title: str = "") -> str:
  lines = [title] if title else []
  lines.append(f"{'layer':<8}{'output shape':>18}{'params':>14}{'MFLOPs':>12}")
  lines.append("-" * 52)
  for r in rows:
    shape = "x".join(map(str, r.shape))
    params = f"{r.params:,}" if r.params else ""
    flops = f"{r.flops / 1e6:,.1f}" if r.flops else ""
    lines.append(f"{r.layer:<8}{shape:>18}{params:>14}{flops:>12}")
  lines.append("-" * 52)
  total_p = sum(r.params for r in rows)
  total_f = sum(r.flops for r in rows)
  lines.append(f"total parameters: {total_p:,}")
  lines.append(f"forward FLOPs per image: {total_f / 1e9:.3f} G ({total_f:,})")
  return "\n".join(lines)


def layer_signal(model_cfg: ml_collections.ConfigDict, data_cfg: ml_collections.ConfigDict,
                 images, seed: int = 0, params=None) -> list[dict]:
  """Per weight layer, at initialisation (`seed`) or at a trained net's `params`: how much
  its pre-activation output varies with the image (the per-channel standard deviation over
  images and positions, as an rms over channels) against its bias (rms over channels), and
  the share of its channels that a ReLU shuts for every image and position (`dead`: they
  pass nothing forward and no gradient back; None for the logits and for tanh nets), for
  uint8 squares `images` fed as evaluation feeds them.

  Where `signal / bias` is small, the layer's output is nearly its bias whatever the image,
  and the gradients below it say little about the input: the paper's biases of 1 in conv2,
  conv4, conv5, fc6 and fc7 (§5) drown a narrow net's shrinking signal this way."""
  from alexnet_jax.data import augment  # pylint: disable=import-outside-toplevel
  size = int(data_cfg.image_size)
  model = models.create_model(model_cfg, size)
  x = jax.jit(lambda images: augment.eval_images(images, data_cfg))(jnp.asarray(images))
  if params is None:
    params = jax.jit(model.init)(jax.random.key(seed), x[:1])["params"]

  @jax.jit   # one program: run op by op, each layer's ops would compile one by one
  def outputs(params, x):
    _, state = model.apply({"params": params}, x, capture_intermediates=True,
                           mutable=["intermediates"])
    return {name: out["__call__"][0] for name, out in state["intermediates"].items()
            if name in params and "bias" in params[name]}

  maps = jax.device_get(outputs(params, x))
  names = [n for n in params if n in maps]
  rows = []
  for name in names:
    out = np.asarray(maps[name], np.float32)
    out = out.reshape(-1, out.shape[-1])
    signal = float(np.sqrt(np.mean(np.var(out, axis=0))))
    bias = float(np.sqrt(np.mean(np.square(np.asarray(params[name]["bias"], np.float32)))))
    relu = model_cfg.activation == "relu" and name != names[-1]
    rows.append({"layer": name, "signal": signal, "bias": bias,
                 "ratio": signal / bias if bias else math.inf,
                 "dead": float(np.mean(np.all(out <= 0, axis=0))) if relu else None})
  return rows
