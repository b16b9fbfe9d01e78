"""Fine-tuning: a run that starts from another workdir's parameters, with layers frozen.

`init_from` = '<workdir>' or '<workdir>:<step>' (a step number, 'latest' or 'best'): any
workdir that training or `launch.import_weights` wrote, a folder or a `gs://` URL.
Parameters are restored by name (conv1 ... fc8) onto the new run's mesh, through
checkpoint.py's partial restore. The classifier, fc8, is initialised afresh (the config's
init_scheme) when its number of classes differs; every other difference in shape or in the
set of layers is a one-line error naming the layer. The optimiser starts afresh: momentum
at zero, the step at 0. Only a fresh run reads init_from: a workdir that holds
checkpoints resumes from its own.

`freeze` = layer names, e.g. ('conv1', 'conv2'): their parameters get no update and no
weight decay (optax.multi_transform sends them to set_to_zero), so they stay exactly as
restored.
"""
from __future__ import annotations

import functools
from typing import Any, Callable, Sequence

import jax
import ml_collections
import optax
from absl import logging
from flax import traverse_util

from alexnet_jax.base import workdir as workdir_lib
from alexnet_jax.run import checkpoint, run_info

_INPUT_FIELDS = ("input_scale", "mean", "std", "image_size", "resize_size")


def parse_init_from(spec: str) -> tuple[str, str]:
  """'<workdir>[:<step>]' -> (workdir, step), step 'latest' when not given."""
  head, sep, tail = spec.rpartition(":")
  if sep and head and (tail.isdigit() or tail in ("latest", "best")):
    return head, tail
  return spec, "latest"


def _classifier(names: Sequence[str]) -> str:
  """The last layer (fc8 for AlexNet): the one whose outputs are the classes."""
  layers = sorted({n.split("/")[0] for n in names},
                  key=lambda l: (l.startswith("fc"), int("".join(filter(str.isdigit, l)) or 0)))
  return layers[-1]


def restore_params(cfg: ml_collections.ConfigDict, params: Any) -> Any:
  """`params` (a fresh init, sharded for this run) with every layer restored from
  cfg.init_from (a folder or a URL), except a classifier whose number of classes differs.

  Raises:
    FileNotFoundError: init_from is not a workdir with checkpoints.
    ValueError: no such step; a layer missing on either side or of another shape.
  """
  source, step = parse_init_from(str(cfg.init_from))
  source = str(workdir_lib.resolve(source))
  info = run_info.read(source)
  manager, steps = checkpoint.open_steps(source)
  try:
    step = checkpoint.resolve_step(manager, steps, step)
    where = f"init_from {source} (checkpoint {step})"
    with checkpoint.readable(manager, step, steps):
      saved = checkpoint.stored_shapes(manager, step)
    saved = {k.removeprefix("params/"): v for k, v in saved.items() if k.startswith("params/")}
    flat = traverse_util.flatten_dict(params, sep="/")
    classifier = _classifier(flat)
    fresh = {}
    for difference in checkpoint.differences(saved, checkpoint.leaf_shapes(params)):
      name, there, here = difference
      if (name.split("/")[0] == classifier and there and here
          and here[:-1] == there[:-1]):   # another number of classes
        fresh[classifier] = f"{there[-1]} classes there, {here[-1]} here"
      else:
        raise ValueError(f"{where}: {checkpoint.describe(difference)}")
    kept = [k for k in flat if k.split("/")[0] not in fresh]
    target = traverse_util.unflatten_dict({
        k: jax.ShapeDtypeStruct(flat[k].shape, flat[k].dtype, sharding=flat[k].sharding)
        for k in kept}, sep="/")
    with checkpoint.readable(manager, step, steps):
      restored = traverse_util.flatten_dict(checkpoint.restore_params(manager, step, target),
                                            sep="/")
  finally:
    manager.close()
  layers = list(dict.fromkeys(k.split("/")[0] for k in kept))
  logging.info("%s: kept %s; not kept: %s", where, ", ".join(layers),
               "; ".join(f"{l} (re-initialised: {why})" for l, why in fresh.items()) or "none")
  _warn_about_input(info.get("config", {}).get("data", {}), cfg.data, source)
  return traverse_util.unflatten_dict({**flat, **restored}, sep="/")


def _warn_about_input(theirs: dict, ours, source: str) -> None:
  """A warning when this run feeds the net other input than it was trained on."""
  differ = [f for f in _INPUT_FIELDS
            if f in theirs and f in ours and _tuple(theirs[f]) != _tuple(ours[f])]
  if differ:
    logging.warning("init_from %s was trained with data.%s; this run uses %s "
                    "(experiments/pretrained.py has the imported nets' input)", source,
                    ", ".join(f"{f}={_tuple(theirs[f])}" for f in differ),
                    ", ".join(f"{f}={_tuple(ours[f])}" for f in differ))


def _tuple(v):
  return tuple(v) if isinstance(v, (list, tuple)) else v


def frozen(make_tx: Callable[..., optax.GradientTransformation], layers: Sequence[str]):
  """`make_tx` (same signature) whose transformation leaves the parameters of `layers`
  alone: no update, no weight decay. ValueError at init for a layer the model lacks."""
  layers = tuple(layers)
  if not layers:
    return make_tx

  def labels(params):
    names = list(params)
    unknown = [l for l in layers if l not in names]
    if unknown:
      raise ValueError(f"freeze: no layer {unknown[0]!r} in the model (layers: "
                       f"{', '.join(names)})")
    return {name: jax.tree.map(lambda _, n=name: "frozen" if n in layers else "trained", sub)
            for name, sub in params.items()}

  @functools.wraps(make_tx)
  def tx(*args, **kwargs):
    return optax.multi_transform({"trained": make_tx(*args, **kwargs),
                                  "frozen": optax.set_to_zero()}, labels)

  return tx
