"""oneDNN's bf16 convolutions (alexnet_jax/nn/onednn.py): the same numbers as XLA's bf16
convolutions, within bf16's rounding, for every conv layer of the paper's net, with towers
on one device and on several; and XLA's form wherever oneDNN's is not there."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from alexnet_jax.base import machine
from alexnet_jax.nn import models, onednn
from alexnet_jax.programs import train
from alexnet_jax.run import sharding
from experiments import default
import helpers

needs_onednn = pytest.mark.skipif(
    not onednn.available(),
    reason="oneDNN's bf16 convolutions need a CPU with avx512_bf16 or AMX and a build "
           "(python -m alexnet_jax.nn.onednn)")

# (input size, in maps, out maps, kernel, stride, padding, towers): §3.5's conv1 at 227 and
# at 224 (its padding uneven), conv2 and conv4 (two towers), conv3, batch 3.
LAYERS = [(227, 3, 96, 11, 4, (0, 0), 1), (224, 3, 96, 11, 4, (2, 1), 1),
          (27, 96, 256, 5, 1, (2, 2), 2), (13, 256, 384, 3, 1, (1, 1), 1),
          (13, 384, 384, 3, 1, (1, 1), 2)]


def _relative(a, b):
  a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
  return float(np.linalg.norm(a - b) / np.linalg.norm(b))


def _rounded(a):
  """a rounded to bf16, in f32: what both bf16 forms compute from."""
  return a.astype(jnp.bfloat16).astype(jnp.float32)


def _assert_matches_f32(mine, reference, args, seed, names):
  """mine(*args) equal to the f32 reference of the same bf16 inputs (both accumulate in
  f32), and its gradients within bf16's rounding of the incoming gradient."""
  y = mine(*args)
  assert y.dtype == jnp.float32 and y.shape == reference(*args).shape
  assert _relative(y, reference(*args)) < 1e-5
  dy = helpers.normal(seed, y.shape)
  grads = [jax.jit(jax.grad(lambda *a, f=f: jnp.sum(f(*a) * dy), argnums=(0, 1, 2)))(*args)
           for f in (mine, reference)]
  for name, got, want in zip(names, *grads):
    assert got.dtype == want.dtype and got.shape == want.shape, name
    assert _relative(got, want) < 8e-3, name   # bf16 keeps 8 bits: 2^-8 = 3.9e-3 a value


def _conv_f32(x, kernel, bias, stride, padding, groups):
  """The layer in f32 from bf16-rounded images and kernels."""
  x, kernel = _rounded(x), _rounded(kernel)
  return jax.lax.conv_general_dilated(
      x, kernel, (stride, stride), (padding, padding), dimension_numbers=("NHWC", "HWIO", "NHWC"),
      feature_group_count=groups, precision="highest") + bias


@needs_onednn
@pytest.mark.parametrize("size,cin,cout,kernel,stride,padding,groups", LAYERS)
def test_each_paper_layer_and_its_gradients_match_f32(size, cin, cout, kernel, stride,
                                                      padding, groups):
  """Equal to f32 of the same bf16 inputs, gradients within bf16's rounding, as XLA's bf16
  gradients are."""
  seed = size + cin
  x = helpers.normal(seed, (3, size, size, cin))
  w = helpers.normal(seed + 1, (kernel, kernel, cin // groups, cout), 0.05)
  b = helpers.normal(seed + 2, (cout,))
  mine = jax.jit(lambda x, w, b: onednn.conv(x, w, b, stride=stride, padding=padding,
                                                  groups=groups))
  reference = jax.jit(lambda x, w, b: _conv_f32(x, w, b, stride, padding, groups))
  _assert_matches_f32(mine, reference, (x, w, b), seed + 3, ("images", "kernel", "bias"))


def _paper(dtype, **kwargs):
  return models.create_model(models.model_config("paper", dtype=dtype, dropout=0.0), 67,
                             **kwargs)


@needs_onednn
@pytest.mark.slow   # the towers' test below keeps a whole net in the quick loop
def test_a_bf16_paper_net_on_onednn_is_as_close_to_f32_as_xla_bf16():
  """The whole net, two towers on one device: logits and every parameter's gradient are
  no further from f32 than XLA's bf16 form is (oneDNN keeps the maps in f32)."""
  f32 = _paper("float32")
  x = helpers.normal(0, (4, 67, 67, 3))
  labels = jnp.arange(4)
  params = jax.jit(f32.init)(jax.random.key(1), x)["params"]

  def run(model):
    def loss(params):
      logits = model.apply({"params": params}, x)
      return -jnp.mean(jax.nn.log_softmax(logits)[jnp.arange(4), labels]), logits
    (_, logits), grads = jax.jit(jax.value_and_grad(loss, has_aux=True))(params)
    return logits, grads

  fast, xla = _paper("bfloat16"), _paper("bfloat16", onednn=False)
  assert fast.onednn and not xla.onednn
  want, want_grads = run(f32)
  got, got_grads = run(fast)
  base, base_grads = run(xla)
  assert _relative(got, want) <= max(_relative(base, want), 1e-3)
  for (path, g), w, b in zip(jax.tree_util.tree_leaves_with_path(got_grads),
                             jax.tree.leaves(want_grads), jax.tree.leaves(base_grads)):
    assert _relative(g, w) <= 1.5 * _relative(b, w) + 1e-3, jax.tree_util.keystr(path)


@needs_onednn
def test_towers_on_two_devices_compute_what_one_device_does():
  """The two-GPU layout (§3.2) on a (2, 2) mesh: each device's share of every layer through
  oneDNN; the logits and the gradients (the weights' summed over the data axis) equal to
  one device's."""
  model = _paper("bfloat16")
  x = helpers.normal(0, (4, 67, 67, 3))
  params = jax.jit(model.init)(jax.random.key(1), x)["params"]
  mesh = jax.sharding.Mesh(np.array(jax.devices()[:4]).reshape(2, 2),
                           (sharding.DATA, sharding.MODEL))
  on_mesh = sharding.make_apply_fn(model, mesh)
  (one, one_grads), (two, two_grads) = (
      (jax.jit(f)(params), jax.jit(jax.grad(lambda p, f=f: jnp.sum(jnp.sin(f(p)))))(params))
      for f in (lambda p: model.apply({"params": p}, x),
                lambda p: on_mesh(p, x, jax.random.key(2))))
  np.testing.assert_allclose(np.asarray(two), np.asarray(one), rtol=2e-3, atol=2e-3)
  for (path, got), want in zip(jax.tree_util.tree_leaves_with_path(two_grads),
                               jax.tree.leaves(one_grads)):
    assert _relative(got, want) < 1e-2, jax.tree_util.keystr(path)


def test_without_bf16_instructions_the_model_keeps_xla_and_training_says_why(monkeypatch,
                                                                             caplog):
  monkeypatch.setattr(machine, "cpu", lambda: {"cpu": "test", "cores": 2,
                                               "cpu_flags": ["avx2", "avx512f"]})
  onednn.available.cache_clear()
  try:
    assert not onednn.available()
    assert not _paper("bfloat16").onednn
    with pytest.raises(ValueError, match="oneDNN's bf16 convolutions are not available"):
      _paper("bfloat16", onednn=True)
    cfg = default.get_config()
    cfg.model.dtype = "bfloat16"
    with caplog.at_level("WARNING"):
      train.validate(cfg)
    assert train.BF16_ON_CPU in caplog.text
  finally:
    onednn.available.cache_clear()


@needs_onednn
def test_float32_and_the_gpu_forms_never_take_onednn(caplog):
  assert not _paper("float32").onednn
  assert not _paper("bfloat16", cpu_forms=False).onednn
  cfg = default.get_config()
  cfg.model.dtype = "bfloat16"
  with caplog.at_level("WARNING"):
    train.validate(cfg)
  assert train.BF16_ON_CPU not in caplog.text


@needs_onednn
@pytest.mark.parametrize("inputs,outputs", [(9216, 2048), (4096, 4096), (4096, 1000)])
def test_fc_layers_and_their_gradients_match_f32(inputs, outputs):
  """fc6 (one tower's half), fc7 and fc8 (§3.5) by oneDNN's matmul, batch 5: equal to f32
  of the same bf16 inputs; gradients within bf16's rounding of the incoming gradient."""
  seed = inputs + outputs
  x = helpers.normal(seed, (5, inputs))
  w = helpers.normal(seed + 1, (inputs, outputs), 0.01)
  b = helpers.normal(seed + 2, (outputs,))
  reference = jax.jit(lambda x, w, b: jnp.dot(_rounded(x), _rounded(w), precision="highest")
                      + b)
  _assert_matches_f32(jax.jit(onednn.dense), reference, (x, w, b), seed + 3,
                      ("inputs", "kernel", "bias"))
