"""AlexNet (Krizhevsky, Sutskever & Hinton, NIPS 2012) as a pure Flax linen module.

Architecture (§3.5, Figure 2), for a 227x227 input:

    conv1  96 x 11x11 /4   -> ReLU -> LRN -> maxpool 3/2     [B, 27, 27, 96]
    conv2 256 x 5x5, own tower  -> ReLU -> LRN -> maxpool 3/2 [B, 13, 13, 256]
    conv3 384 x 3x3, both towers -> ReLU                      [B, 13, 13, 384]
    conv4 384 x 3x3, own tower   -> ReLU                      [B, 13, 13, 384]
    conv5 256 x 3x3, own tower   -> ReLU -> maxpool 3/2       [B, 6, 6, 256]
    fc6 4096 -> ReLU -> dropout, fc7 4096 -> ReLU -> dropout, fc8 num_classes

(§4.2 puts dropout on the outputs of fc6 and fc7; torchvision's 'owt' model puts it on
their inputs instead, `dropout_at='inputs'`. Either way each example's mask is drawn from
its index in the global batch, so the masks are the same on every device layout.)

Towers (§3.2) are a modelling concept here: with `towers` = 2 every layer's output channels
are split in two halves, and conv2, conv4 and conv5 read only the half of their input that
their own tower produced (a grouped convolution). LRN also normalises within a tower, as
each GPU did (`lrn_across_towers` normalises over all maps instead, as Caffe's one-GPU
bvlc_alexnet does; inside shard_map each device then gathers both towers' maps for it).
The parameter layout is that of an ordinary grouped convolution (output
channels tower-major), so one checkpoint serves every device layout.

Placing a tower on a device is `sharding.py`'s business. This module only needs to know,
when it runs inside `shard_map`, the name of the mesh axis that holds the towers
(`model_axis`): it then holds one tower's share of every layer and gathers its inputs
across that axis where the paper's layers read both towers (conv3, fc6, fc7, fc8).
"""
from __future__ import annotations

import dataclasses
import functools
from typing import Any, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections

from alexnet_jax.nn import cpu_forms as cpu_forms_lib
from alexnet_jax.nn import lrn as lrn_lib
from alexnet_jax.nn import onednn as onednn_lib
from alexnet_jax.nn import pooling


@dataclasses.dataclass(frozen=True)
class ConvSpec:
  name: str
  kernel: int
  stride: int
  padding: int            # symmetric zero padding; conv1's comes from the config
  own_tower: bool         # True: reads only its own tower's input maps (grouped conv)
  post: tuple[str, ...]   # what follows the activation, in order: 'lrn', 'pool' (max),
                          # 'avgpool'
  local: bool = False     # True: locally connected (cuda-convnet's 'local' layer: one
                          # filter bank per output position, unshared, flax.linen.ConvLocal)
  ceil_pool: bool = False  # True: cuda-convnet's pooling output size,
                           # ceil((size - window) / stride) + 1: the last window overhangs
                           # the border and pools only the pixels it covers
  init_std: float = 0.01  # the weights' std under init_scheme='cuda_convnet' (initW)


# The layer tables. `features` in the config gives the widths.
ARCHS = {
    # §3.5 and Figure 2.
    "alexnet": (
        ConvSpec("conv1", 11, 4, 0, False, ("lrn", "pool")),
        ConvSpec("conv2", 5, 1, 2, True, ("lrn", "pool")),
        ConvSpec("conv3", 3, 1, 1, False, ()),
        ConvSpec("conv4", 3, 1, 1, True, ()),
        ConvSpec("conv5", 3, 1, 1, True, ("pool",)),
    ),
    # The paper's CIFAR-10 remark in §3.3 ("13% ... 11%") is cuda-convnet's
    # layers-conv-local-11pct net (example-layers/layers-conv-local-11pct.cfg, 2012-06-08):
    # conv1 64 5x5 pad 2, max pool 3/2, cross-map response norm (size 9), conv2 64 5x5
    # pad 2, response norm, max pool 3/2, local3 64 3x3 pad 1 and local4 32 3x3 pad 1
    # (locally connected), fc10; ReLU after every conv and local layer; on 24x24 crops:
    # [24, 24, 64] -> pool [12, 12] -> [12, 12, 64] -> pool [6, 6] -> [6, 6, 64] -> [6, 6, 32].
    "conv_local_11pct": (
        ConvSpec("conv1", 5, 1, 2, False, ("pool", "lrn"), ceil_pool=True, init_std=1e-4),
        ConvSpec("conv2", 5, 1, 2, False, ("lrn", "pool"), ceil_pool=True, init_std=0.01),
        ConvSpec("local3", 3, 1, 1, False, (), local=True, init_std=0.04),
        ConvSpec("local4", 3, 1, 1, False, (), local=True, init_std=0.04),
    ),
    # The same net with local3 and local4 as ordinary convolutions (conv3, conv4) and
    # VALID pooling, on 32x32 images: the ablations of experiments/results/cifar10/ used it
    # (it was the preset 'cifar').
    "conv_local_11pct_as_conv": (
        ConvSpec("conv1", 5, 1, 2, False, ("pool", "lrn")),
        ConvSpec("conv2", 5, 1, 2, True, ("lrn", "pool")),
        ConvSpec("conv3", 3, 1, 1, False, ()),
        ConvSpec("conv4", 3, 1, 1, True, ()),
    ),
    # Figure 1's "four-layer convolutional neural network": cuda-convnet's layers-18pct net
    # (example-layers/layers-18pct.cfg), four layers with weights as §3.5 counts AlexNet's
    # eight (5 conv + 3 fc; §3.3 though calls the conv-local-11pct net, five layers with
    # weights, "four-layer"): conv1 32 5x5 pad 2, max pool 3/2,
    # conv2 32 5x5 pad 2, average pool 3/2, conv3 64 5x5 pad 2, average pool 3/2, fc4 (the
    # file's fc10). Without the file's two within-map response normalisation layers (rnorm1,
    # rnorm2): Figure 1 employed "no regularization of any kind", and §3.3 presents
    # response normalisation as an aid to generalisation. On 32x32 images:
    # [32, 32, 32] -> [16, 16] -> [16, 16, 32] -> [8, 8] -> [8, 8, 64] -> [4, 4, 64].
    "layers_18pct_no_rnorm": (
        ConvSpec("conv1", 5, 1, 2, False, ("pool",), ceil_pool=True, init_std=1e-4),
        ConvSpec("conv2", 5, 1, 2, False, ("avgpool",), ceil_pool=True, init_std=0.01),
        ConvSpec("conv3", 5, 1, 2, False, ("avgpool",), ceil_pool=True, init_std=0.01),
    ),
}


# The names activations are sown under ("intermediates"), the one place they are made.

def out_name(layer: str) -> str:
  """The name a conv or fc layer's output (after its activation) is sown under: 'conv1_out'."""
  return layer + "_out"


def post_name(op: str, layer: str) -> str:
  """The name an op after `layer` is sown under: 'lrn1', 'pool1' (max or average)."""
  return ("pool" if op == "avgpool" else op) + layer[-1]


def fc_names(arch: str, hidden: int) -> list[str]:
  """The fully connected layers, numbered on from the conv layers, the last one the
  classifier: ['fc6', 'fc7', 'fc8'] for AlexNet with `hidden` = 2."""
  first = len(ARCHS[arch]) + 1
  return [f"fc{first + i}" for i in range(hidden + 1)]


def sown_names(arch: str, hidden: int, lrn: bool) -> list[str]:
  """Every name the model sows, in the order it computes them: each conv layer's output
  and the ops after it ('conv1_out', 'lrn1', 'pool1', ...), then each fc layer's output,
  the last one the logits."""
  names = []
  for spec in ARCHS[arch]:
    names.append(out_name(spec.name))
    names += [post_name(op, spec.name) for op in spec.post if op != "lrn" or lrn]
  return names + [out_name(n) for n in fc_names(arch, hidden)]

INIT_SCHEMES = ("paper", "caffe", "torch", "he", "cuda_convnet")
DTYPES = {"float32": jnp.float32, "bfloat16": jnp.bfloat16}   # model.dtype: compute dtype
_BIAS_ONE = {"conv2", "conv4", "conv5", "fc6", "fc7"}


def initializers(scheme: str, layer: str, fan_in: int, std: float = 0.01):
  """(kernel_init, bias_init) of a layer.

  'paper' (§5): N(0, 0.01) weights; biases 1 in conv2, conv4, conv5, fc6 and fc7 ("to
    accelerate the early stages of learning by providing the ReLUs with positive inputs"),
    0 elsewhere.
  'caffe': Caffe's bvlc_alexnet: N(0, 0.01), but N(0, 0.005) for fc6 and fc7, and biases
    0.1 where the paper has 1.
  'torch': PyTorch's default layer init, as torchvision's AlexNet gets it: weights and
    biases uniform in +-1/sqrt(fan_in).
  'he' (He et al. 2015): N(0, 2 / fan_in) weights, zero biases.
  'cuda_convnet': N(0, std) weights, `std` the layer file's initW (ConvSpec.init_std; 0.01
    for fully connected layers), zero biases, as cuda-convnet's CIFAR-10 nets.
  """
  if scheme == "cuda_convnet":
    return nn.initializers.normal(std), nn.initializers.zeros
  if scheme == "he":
    return nn.initializers.he_normal(), nn.initializers.zeros
  if scheme == "torch":
    bound = fan_in ** -0.5
    return (nn.initializers.variance_scaling(1 / 3, "fan_in", "uniform"),
            lambda key, shape, dtype=jnp.float32: jax.random.uniform(key, shape, dtype,
                                                                     -bound, bound))
  std = 0.005 if scheme == "caffe" and layer in ("fc6", "fc7") else 0.01
  one = {"paper": 1.0, "caffe": 0.1}[scheme]
  bias = one if layer in _BIAS_ONE else 0.0
  return nn.initializers.normal(std), nn.initializers.constant(bias)


def conv1_padding(cfg, image_size: int) -> int | tuple[int, int]:
  """conv1's padding (`cfg` a model config or an `AlexNet`): the one given, or with -1 the
  fewest pixels that make the 11x11/4 windows tile the padded input exactly.

  227 needs none (55x55 out); 224 needs 3, which go [1, 2] (top/left 1, bottom/right 2),
  so that 224 also gives 55x55.
  """
  if isinstance(cfg.conv1_padding, tuple) or cfg.conv1_padding >= 0:
    return cfg.conv1_padding
  spec = ARCHS[cfg.arch][0]
  if cfg.arch != "alexnet":
    return spec.padding
  total = -(image_size - spec.kernel) % spec.stride
  return (total // 2, total - total // 2)


class Conv(nn.Module):
  """A convolution whose output channels are split into `groups` towers.

  Each tower reads only its own 1/groups of the input channels. With groups > 1 the input
  and kernel are split and the convolutions concatenated, instead of XLA's
  feature_group_count, whose backward pass is slow on CPU (jax issue 13800). The kernel
  layout, [kh, kw, C_in / groups, C_out] with tower-major output channels, is the same.
  """
  features: int
  kernel: int
  stride: int
  padding: Any
  groups: int = 1
  init_scheme: str = "paper"   # see `initializers`
  init_std: float = 0.01       # 'cuda_convnet' only
  dtype: Any = jnp.float32
  onednn: bool = False         # bf16 by oneDNN (onednn.py)

  @nn.compact
  def __call__(self, x):
    cin = x.shape[-1]
    shape = (self.kernel, self.kernel, cin // self.groups, self.features)
    fan_in = shape[0] * shape[1] * shape[2]
    kernel_init, bias_init = initializers(self.init_scheme, self.name, fan_in, self.init_std)
    kernel = self.param("kernel", kernel_init, shape)
    bias = self.param("bias", bias_init, (self.features,))
    pad = self.padding if isinstance(self.padding, tuple) else (self.padding, self.padding)
    if self.onednn:   # towers as oneDNN's groups; the maps in f32 (onednn.py)
      return onednn_lib.conv(x, kernel, bias, stride=self.stride, padding=tuple(pad),
                              groups=self.groups)
    conv = lambda x, w: jax.lax.conv_general_dilated(
        x, w.astype(self.dtype), (self.stride, self.stride), (pad, pad),
        dimension_numbers=("NHWC", "HWIO", "NHWC"))
    x = x.astype(self.dtype)
    if self.groups == 1:
      y = conv(x, kernel)
    else:
      xs = jnp.split(x, self.groups, axis=-1)
      ws = jnp.split(kernel, self.groups, axis=-1)
      y = jnp.concatenate([conv(a, w) for a, w in zip(xs, ws)], axis=-1)
    return y + bias.astype(self.dtype)


class Dense(nn.Module):
  """nn.Dense's parameters ("kernel" [in, features], "bias") applied by oneDNN's bf16 matmul
  (onednn.dense), the output in f32: the fully connected layers where `AlexNet.onednn`."""
  features: int
  kernel_init: Any
  bias_init: Any

  @nn.compact
  def __call__(self, x):
    kernel = self.param("kernel", self.kernel_init, (x.shape[-1], self.features), jnp.float32)
    bias = self.param("bias", self.bias_init, (self.features,), jnp.float32)
    return onednn_lib.dense(x, kernel, bias)


class AlexNet(nn.Module):
  """The AlexNet family; see the module docstring. The defaults are the paper's model
  (the 'paper' preset), and every field but the last three is a model config field
  (`PRESETS`).

  The forward pass is the paper's Figure 2 read left to right: `conv_block` for conv1 ..
  conv5 (each its convolution, activation, LRN and pooling), then `head` for fc6 .. fc8.
  """
  arch: str = "alexnet"
  features: Sequence[int] = (96, 256, 384, 384, 256)
  fc_features: Sequence[int] = (4096, 4096)
  num_classes: int = 1000
  towers: int = 2
  conv1_padding: Any = -1         # pixels, (low, high), or -1: see `conv1_padding`
  lrn: bool = True
  lrn_n: int = 5
  lrn_k: float = 2.0
  lrn_alpha: float = 1e-4
  lrn_beta: float = 0.75
  lrn_convention: str = "paper"
  lrn_across_towers: bool = False   # True: LRN over all maps, as Caffe's bvlc_alexnet
  pool_window: int = 3
  pool_stride: int = 2
  activation: str = "relu"
  dropout: float = 0.5
  dropout_at: str = "outputs"     # of fc6 and fc7 (§4.2), or 'inputs' (torchvision)
  init_scheme: str = "paper"
  dtype: str = "float32"          # compute: 'float32' or 'bfloat16'; parameters stay float32
  model_axis: str | None = None   # set inside shard_map: the mesh axis holding the towers
  cpu_forms: bool = False         # the forms XLA:CPU runs fast (cpu_forms.py); create_model
                                  # sets it from the backend. The same numbers either way
  onednn: bool = False            # bf16 convolutions and fc layers by oneDNN (onednn.py);
                                  # create_model sets it where the CPU has bf16 instructions

  @property
  def _shards(self) -> int:
    """How many devices share each layer: the towers held elsewhere (1 outside shard_map)."""
    return 1 if self.model_axis is None else self.towers

  @property
  def _local_towers(self) -> int:
    """The towers this device holds: all of them outside shard_map, one inside."""
    return self.towers // self._shards

  def _gather(self, x):
    """Inputs of a layer that reads both towers: all towers' maps, in tower order."""
    if self.model_axis is None:
      return x
    return jax.lax.all_gather(x, self.model_axis, axis=x.ndim - 1, tiled=True, to="invarying")

  def _own_share(self, x, width: int):
    """This device's tower of all towers' maps `x` (its `width` channels); outside
    shard_map, `x` itself."""
    if self.model_axis is None:
      return x
    return jax.lax.dynamic_slice_in_dim(x, jax.lax.axis_index(self.model_axis) * width,
                                        width, axis=-1)

  def _act(self, x):
    """The non-linearity: ReLU (§3.1) or tanh, Figure 1's comparison."""
    return {"relu": nn.relu, "tanh": jnp.tanh}[self.activation](x)

  def _dropout(self, x, example_ids, train: bool, tower_share: bool):
    """Inverted dropout (§4.2), one mask per example from its index in the global batch
    (`example_ids`), so that no mesh changes the masks. With `tower_share`, `x` is this
    device's tower of the layer and takes its share of the whole layer's mask."""
    rate = self.dropout
    if not train or rate == 0:
      return x
    if rate >= 1:
      return jnp.zeros_like(x)
    key = self.make_rng("dropout")
    shards = self._shards if tower_share else 1
    width = x.shape[-1]
    keep = jax.vmap(lambda i: jax.random.bernoulli(jax.random.fold_in(key, i), 1.0 - rate,
                                                   (width * shards,)))(example_ids)
    if shards > 1:
      keep = self._own_share(keep, width)
    return jnp.where(keep, x / (1.0 - rate), 0).astype(x.dtype)

  def _conv(self, spec: ConvSpec, width: int, x, image_size: int):
    """A conv layer's weights applied (§3.5): a convolution whose towers each read only
    their own maps where `spec.own_tower` (§3.2), or cuda-convnet's locally connected layer."""
    dtype = DTYPES[self.dtype]
    pad = conv1_padding(self, image_size) if spec.name == "conv1" else spec.padding
    if spec.local:   # one filter bank per output position, unshared: [B, H, W, width]
      kernel_init, bias_init = initializers(self.init_scheme, spec.name,
                                            spec.kernel ** 2 * x.shape[-1], spec.init_std)
      return nn.ConvLocal(width, (spec.kernel, spec.kernel), spec.stride, [(pad, pad)] * 2,
                          kernel_init=kernel_init, bias_init=bias_init, dtype=dtype,
                          name=spec.name)(x)
    return Conv(width // self._shards, spec.kernel, spec.stride, pad,
                groups=self._local_towers if spec.own_tower else 1,
                init_scheme=self.init_scheme, init_std=spec.init_std, dtype=dtype,
                onednn=self.onednn, name=spec.name)(x)

  def _lrn(self, x, input_stored: bool):
    """Local response normalisation (§3.3), within each tower as on each GPU, or with
    `lrn_across_towers` over all towers' maps (gathered, normalised, this device's share
    kept)."""
    across = self.lrn_across_towers and self.towers > 1
    y = self._gather(x) if across else x
    y = lrn_lib.local_response_norm(
        y, n=self.lrn_n, k=self.lrn_k, alpha=self.lrn_alpha, beta=self.lrn_beta,
        convention=self.lrn_convention, groups=1 if across else self._local_towers,
        input_stored=input_stored, cpu_forms=self.cpu_forms)
    return self._own_share(y, x.shape[-1]) if across else y

  def _pool(self, op: str, x, ceil: bool):
    """Max pooling, overlapping with the paper's 3/2 windows (§3.4), or ('avgpool') average
    pooling; `ceil`: cuda-convnet's output size, the last window overhanging the border."""
    if op == "avgpool":
      return pooling.avg_pool(x, self.pool_window, self.pool_stride, ceil=ceil)
    pool = pooling.max_pool_ceil if ceil else pooling.max_pool
    return pool(x, self.pool_window, self.pool_stride, self.cpu_forms)

  def conv_block(self, spec: ConvSpec, width: int, x, image_size: int):
    """One of Figure 2's conv layers with what follows it: its input (both towers' maps
    for conv3, §3.2), the convolution, the activation, then LRN (§3.3) and pooling (§3.4)
    in `spec.post`'s order. Sows the activation ('conv1_out') and each op ('lrn1', 'pool1')."""
    if not spec.own_tower and spec.name != "conv1":
      x = self._gather(x)
    x = self._act(self._conv(spec, width, x, image_size))
    self.sow("intermediates", out_name(spec.name), x)
    h, w = x.shape[1:3]
    if self.cpu_forms and spec.post[:2] == ("lrn", "pool") and not spec.ceil_pool:
      # LRN (or, with it off, the pool alone) reads the pool's gradient as stored: see
      # pooling.pad_unread; the pool's output is the same
      x = pooling.pad_unread(x, self.pool_window, self.pool_stride)
    for i, op in enumerate(spec.post):
      if op == "lrn" and self.lrn:
        x = self._lrn(x, input_stored=i > 0 and spec.post[i - 1] == "pool")
        self.sow("intermediates", post_name(op, spec.name), x[:, :h, :w])
      elif op in ("pool", "avgpool"):
        x = self._pool(op, x, spec.ceil_pool)
        self.sow("intermediates", post_name(op, spec.name), x)
    return x

  def head(self, x, example_ids, train: bool):
    """The fully connected layers (§3.5): fc6 and fc7 with dropout on their outputs (§4.2;
    or inputs, torchvision's), each reading both towers' units, then fc8's logits
    [B, num_classes]. `x`: all towers' flattened maps [B, 6*6*256]."""
    dense = Dense if self.onednn else functools.partial(nn.Dense, dtype=DTYPES[self.dtype])
    *hidden, last = fc_names(self.arch, len(self.fc_features))
    for name, width in zip(hidden, self.fc_features):
      if self.dropout_at == "inputs":   # all towers' inputs: the same mask on every device
        x = self._dropout(x, example_ids, train, tower_share=False)
      kernel_init, bias_init = initializers(self.init_scheme, name, x.shape[-1])
      x = dense(width // self._shards, name=name, kernel_init=kernel_init,
                bias_init=bias_init)(x)
      x = self._act(x)
      self.sow("intermediates", out_name(name), x)
      if self.dropout_at == "outputs":
        x = self._dropout(x, example_ids, train, tower_share=True)
      x = self._gather(x)
    kernel_init, bias_init = initializers(self.init_scheme, last, x.shape[-1])
    x = dense(self.num_classes // self._shards, name=last, kernel_init=kernel_init,
              bias_init=bias_init)(x)
    x = self._gather(x).astype(jnp.float32)   # logits [B, num_classes]
    self.sow("intermediates", out_name(last), x)
    return x

  @nn.compact
  def __call__(self, images: jax.Array, *, train: bool = False,
               example_ids: jax.Array | None = None) -> jax.Array:
    """Logits [B, num_classes]. `example_ids` [B]: each example's index in the global
    batch, which its dropout masks are drawn from (default 0..B-1: one device)."""
    if example_ids is None:
      example_ids = jnp.arange(images.shape[0])
    x = images.astype(DTYPES[self.dtype])
    for spec, width in zip(ARCHS[self.arch], self.features):   # conv1 .. conv5
      x = self.conv_block(spec, width, x, images.shape[1])
    x = self._gather(x).reshape(x.shape[0], -1)   # flatten all towers' maps: [B, 6*6*256]
    return self.head(x, example_ids, train)


# The paper's model: every model config field, with the defaults of `AlexNet`'s fields
# (written once, there); model_axis is the mesh's business and cpu_forms and onednn the
# backend's, not the config's.
_PAPER = {f.name: f.default for f in dataclasses.fields(AlexNet)
          if f.name not in ("parent", "name", "model_axis", "cpu_forms", "onednn")}

PRESETS = {
    "paper": _PAPER,
    "paper_one_tower": {**_PAPER, "towers": 1},
    # torchvision's AlexNet, from "One weird trick for parallelizing CNNs" (Krizhevsky 2014).
    "owt": {**_PAPER, "features": (64, 192, 384, 256, 256), "towers": 1, "conv1_padding": 2,
            "lrn": False, "dropout_at": "inputs"},
    "small": {**_PAPER, "features": (48, 128, 192, 192, 128), "fc_features": (2048, 2048),
              "towers": 1},
    # cuda-convnet's CIFAR-10 nets (ARCHS above). Their cross-map response norm is
    # x / (1 + (scale / size) * sum of squares)^pow with size 9, scale 0.001, pow 0.75.
    "conv_local_11pct": {
        **_PAPER, "arch": "conv_local_11pct", "features": (64, 64, 64, 32), "fc_features": (),
        "towers": 1, "lrn_n": 9, "lrn_k": 1.0, "lrn_alpha": 1e-3, "lrn_convention": "caffe",
        "dropout": 0.0, "init_scheme": "cuda_convnet", "num_classes": 10},
    "conv_local_11pct_as_conv": {
        **_PAPER, "arch": "conv_local_11pct_as_conv", "features": (64, 64, 64, 32),
        "fc_features": (), "towers": 1, "lrn_n": 9, "lrn_k": 1.0, "lrn_alpha": 1e-3,
        "lrn_convention": "caffe", "dropout": 0.0, "num_classes": 10},
    "layers_18pct_no_rnorm": {
        **_PAPER, "arch": "layers_18pct_no_rnorm", "features": (32, 32, 64), "fc_features": (),
        "towers": 1, "lrn": False, "dropout": 0.0, "init_scheme": "cuda_convnet",
        "num_classes": 10},
}


def model_config(preset: str, **overrides: Any) -> ml_collections.ConfigDict:
  """A model config with every field set, from a named preset.

  The preset is where the fields start, not a field itself: a config that names one and
  sets other widths would be a trap. `--config=experiments/default.py:<preset>` picks one
  from the command line."""
  if preset not in PRESETS:
    raise ValueError(f"unknown model preset {preset!r}; choose from {sorted(PRESETS)}")
  fields = dict(PRESETS[preset])
  unknown = set(overrides) - set(fields)
  if unknown:
    raise ValueError(f"unknown model config fields {sorted(unknown)}")
  fields.update(overrides)
  return ml_collections.ConfigDict(fields)


def create_model(cfg: ml_collections.ConfigDict, image_size: int,
                 model_axis: str | None = None, cpu_forms: bool | None = None,
                 onednn: bool | None = None) -> AlexNet:
  """The AlexNet for a model config (see `PRESETS`) at a given input size. `cpu_forms`:
  the forms XLA:CPU runs fast; by default `cpu_forms.default()`, decided here, once.
  `onednn`: bf16 convolutions and fc layers by oneDNN; by default where the model computes
  in bf16 with the CPU's forms on a CPU backend and `onednn.available()`."""
  if cfg.activation not in ("relu", "tanh"):
    raise ValueError(f"model.activation must be 'relu' or 'tanh', got {cfg.activation!r}")
  if cfg.init_scheme not in INIT_SCHEMES:
    raise ValueError(f"model.init_scheme must be one of {INIT_SCHEMES}, got {cfg.init_scheme!r}")
  if cfg.dropout_at not in ("outputs", "inputs"):
    raise ValueError(f"model.dropout_at must be 'outputs' or 'inputs', got {cfg.dropout_at!r}")
  if cfg.arch not in ARCHS:
    raise ValueError(f"model.arch must be one of {sorted(ARCHS)}, got {cfg.arch!r}")
  if len(cfg.features) != len(ARCHS[cfg.arch]):
    raise ValueError(f"model.features needs {len(ARCHS[cfg.arch])} widths for arch "
                     f"{cfg.arch!r}, got {tuple(cfg.features)}")
  lrn_lib.effective_alpha(cfg.lrn_alpha, cfg.lrn_n, cfg.lrn_convention)  # validates
  for width in (*cfg.features, *cfg.fc_features):
    if width % cfg.towers:
      raise ValueError(f"model width {width} does not split into {cfg.towers} towers")
  if cfg.towers != 1 and any(spec.local for spec in ARCHS[cfg.arch]):
    raise ValueError(f"arch {cfg.arch!r} has locally connected layers, which take no towers; "
                     f"set model.towers=1, got {cfg.towers}")
  if cfg.dtype not in DTYPES:
    raise ValueError(f"model.dtype must be one of {sorted(DTYPES)}, got {cfg.dtype!r}")
  unknown = set(cfg) - set(_PAPER)
  if unknown:
    raise ValueError(f"unknown model config fields {sorted(unknown)}")
  fields = {**cfg.to_dict(), "features": tuple(cfg.features),
            "fc_features": tuple(cfg.fc_features)}
  if cpu_forms is None:
    cpu_forms = cpu_forms_lib.default()
  if onednn is None:
    onednn = (cfg.dtype == "bfloat16" and cpu_forms and jax.default_backend() == "cpu"
              and onednn_lib.available())
  elif onednn and not onednn_lib.available():
    raise ValueError("oneDNN's bf16 convolutions are not available here (a CPU with "
                     "avx512_bf16 or AMX, and `python -m alexnet_jax.nn.onednn`)")
  return AlexNet(**{**fields, "conv1_padding": conv1_padding(cfg, image_size)},
                 model_axis=model_axis, cpu_forms=cpu_forms, onednn=onednn)


def output_size(cfg: ml_collections.ConfigDict, image_size: int) -> int:
  """Spatial size of the last conv block's output, so a bad image size fails before jit."""
  size = image_size
  for spec in ARCHS[cfg.arch]:
    pad = conv1_padding(cfg, image_size) if spec.name == "conv1" else spec.padding
    pad = sum(pad) if isinstance(pad, tuple) else 2 * pad
    size = (size + pad - spec.kernel) // spec.stride + 1
    if size < 1:
      break
    for _ in [op for op in spec.post if op in ("pool", "avgpool")]:
      size = pooling.pooled_size(size, cfg.pool_window, cfg.pool_stride, spec.ceil_pool)
    if size < 1:
      break
  return size
