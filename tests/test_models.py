"""The model against the paper's tables (§3.5) and independent formulations."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from alexnet_jax.nn import lrn, models
import helpers


def _init(cfg, size, batch=2, seed=0):
  model = models.create_model(cfg, size)
  x = helpers.normal(seed, (batch, size, size, 3))
  return model, jax.jit(model.init)(jax.random.key(1), x), x


@pytest.mark.parametrize("size,padding", [(227, (0, 0)), (224, (1, 2))])
def test_conv1_padding_gives_55(size, padding):
  cfg = models.model_config("paper")
  assert models.conv1_padding(cfg, size) == padding
  assert models.output_size(cfg, size) == 6


@pytest.mark.slow
def test_paper_init():
  cfg = models.model_config("small", num_classes=3)
  params = jax.eval_shape(lambda: _init(cfg, 67)[1])  # shapes only
  assert params["params"]["fc8"]["kernel"].shape == (2048, 3)
  _, variables, _ = _init(cfg, 67)
  p = variables["params"]
  for name in ("conv2", "conv4", "conv5", "fc6", "fc7"):
    np.testing.assert_array_equal(p[name]["bias"], 1.0)
  for name in ("conv1", "conv3", "fc8"):
    np.testing.assert_array_equal(p[name]["bias"], 0.0)
  assert abs(float(jnp.std(p["fc6"]["kernel"])) - 0.01) < 5e-4
  caffe = models.model_config("small", num_classes=3, init_scheme="caffe")
  p = _init(caffe, 67)[1]["params"]
  np.testing.assert_array_equal(p["conv2"]["bias"], np.float32(0.1))
  assert abs(float(jnp.std(p["fc7"]["kernel"])) - 0.005) < 5e-4


@pytest.mark.slow
def test_two_towers_are_grouped_convolutions():
  """conv2/4/5 read only their tower's maps, LRN works per tower, conv3/fc read both.

  Oracle: the same network written with XLA's feature_group_count and LRN applied to
  each tower's half separately.
  """
  cfg = models.model_config("small", num_classes=4, towers=2, dropout=0.0)
  model, variables, x = _init(cfg, 99)
  p = variables["params"]
  assert p["conv2"]["kernel"].shape == (5, 5, 24, 128)   # 48 input maps / 2 towers
  assert p["conv3"]["kernel"].shape == (3, 3, 128, 192)  # reads both towers

  def conv(x, name, stride, pad, groups):
    y = jax.lax.conv_general_dilated(
        x, p[name]["kernel"], (stride, stride), [(pad, pad)] * 2 if isinstance(pad, int) else [pad] * 2,
        dimension_numbers=("NHWC", "HWIO", "NHWC"), feature_group_count=groups)
    return jax.nn.relu(y + p[name]["bias"])

  def norm(x):
    halves = jnp.split(x, 2, axis=-1)
    return jnp.concatenate([lrn.local_response_norm(h) for h in halves], axis=-1)

  pool = lambda x: jax.lax.reduce_window(x, -jnp.inf, jax.lax.max, (1, 3, 3, 1), (1, 2, 2, 1), "VALID")
  h = pool(norm(conv(x, "conv1", 4, models.conv1_padding(cfg, 99), 1)))
  h = pool(norm(conv(h, "conv2", 1, 2, 2)))
  h = conv(h, "conv3", 1, 1, 1)
  h = conv(h, "conv4", 1, 1, 2)
  h = pool(conv(h, "conv5", 1, 1, 2))
  h = h.reshape(h.shape[0], -1)
  for name in ("fc6", "fc7"):
    h = jax.nn.relu(h @ p[name]["kernel"] + p[name]["bias"])
  expected = h @ p["fc8"]["kernel"] + p["fc8"]["bias"]
  got = jax.jit(model.apply)(variables, x)
  np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-5)


@pytest.mark.slow
def test_dropout_only_in_training():
  cfg = models.model_config("small", num_classes=4, fc_features=(64, 64), dropout=0.5)
  model, variables, x = _init(cfg, 67)
  a = model.apply(variables, x)
  np.testing.assert_array_equal(a, model.apply(variables, x))
  t1 = model.apply(variables, x, train=True, rngs={"dropout": jax.random.key(0)})
  t2 = model.apply(variables, x, train=True, rngs={"dropout": jax.random.key(1)})
  assert not np.allclose(t1, t2)


def test_switches_change_the_function():
  base = models.model_config("small", num_classes=4, dropout=0.0)
  model, variables, x = _init(base, 67)
  ref = jax.jit(model.apply)(variables, x)
  for fields in ({"lrn": False}, {"activation": "tanh"}, {"pool_window": 2, "pool_stride": 2}):
    other = models.create_model(models.model_config("small", num_classes=4, dropout=0.0,
                                                    **fields), 67)
    assert not np.allclose(jax.jit(other.apply)(variables, x), ref), fields
  # §3.4: non-overlapping 2/2 pooling gives maps of the same size as 3/2 (the same
  # parameters fit both), so the comparison above is of the same weights.
  for size in (227, 67):
    assert (models.output_size(models.model_config("small", pool_window=2, pool_stride=2), size)
            == models.output_size(models.model_config("small"), size))


def test_bf16_compute_keeps_fp32_params():
  cfg = models.model_config("small", num_classes=4, dtype="bfloat16", dropout=0.0)
  model, variables, x = _init(cfg, 67)
  assert all(v.dtype == jnp.float32 for v in jax.tree.leaves(variables))
  out = jax.jit(model.apply)(variables, x)
  assert out.dtype == jnp.float32
  ref = models.create_model(models.model_config("small", num_classes=4, dropout=0.0), 67)
  np.testing.assert_allclose(out, jax.jit(ref.apply)(variables, x), rtol=0.05, atol=0.05)


@pytest.mark.parametrize("field,value,match", [
    ("activation", "gelu", "activation"),
    ("lrn_convention", "torch", "convention"),
    ("features", (96, 256), "widths"),
    ("towers", 3, "towers"),
    ("dtype", "float16", "dtype"),
])
def test_bad_config_is_a_clear_error(field, value, match):
  with pytest.raises(ValueError, match=match):
    models.create_model(models.model_config("paper", **{field: value}), 227)


def test_unknown_preset():
  with pytest.raises(ValueError, match="preset"):
    models.model_config("vgg")


@pytest.mark.parametrize("where", ["outputs", "inputs"])
def test_dropout_sits_on_the_outputs_of_fc6_and_fc7_or_on_their_inputs(where):
  """§4.2 drops fc6's and fc7's outputs; torchvision's 'owt' drops their inputs. With rate 1
  the dropped tensor is all zeros, so fc6's output stops depending on the image exactly
  when dropout sits on fc6's input."""
  cfg = models.model_config("small", num_classes=4, features=(8, 16, 16, 16, 16),
                            fc_features=(32, 32), dropout=1.0, dropout_at=where)
  model = models.create_model(cfg, 67)
  x = helpers.normal(0, (3, 67, 67, 3))
  params = jax.jit(model.init)(jax.random.key(1), x)
  _, out = model.apply(params, x, train=True, rngs={"dropout": jax.random.key(2)},
                       mutable=["intermediates"])
  fc6 = np.asarray(out["intermediates"]["fc6_out"][0])
  assert (np.ptp(fc6, axis=0).max() == 0) == (where == "inputs")
  assert models.model_config("owt").dropout_at == "inputs"
  assert models.model_config("paper").dropout_at == "outputs"


def test_the_default_config_starts_from_the_preset_it_is_given():
  from experiments import default
  owt = default.get_config("owt").model
  assert tuple(owt.features) == (64, 192, 384, 256, 256) and owt.towers == 1 and not owt.lrn
  assert tuple(default.get_config().model.features) == (96, 256, 384, 384, 256)
  assert "preset" not in default.get_config().model   # a starting point, not a field


@pytest.mark.parametrize("preset", sorted(models.PRESETS))
@pytest.mark.parametrize("lrn", [True, False])
def test_sown_names_are_what_the_model_sows_in_order(preset, lrn):
  """models.sown_names, which features and summary read, against the model itself."""
  cfg = models.model_config(preset, lrn=lrn)
  size = {"alexnet": 227}.get(cfg.arch, 32 if cfg.arch != "conv_local_11pct" else 24)
  model = models.create_model(cfg, size)
  images = jnp.zeros((1, size, size, 3))
  _, state = jax.eval_shape(lambda: model.init_with_output(
      jax.random.key(0), images, mutable=["params", "intermediates"]))
  names = models.sown_names(cfg.arch, len(cfg.fc_features), cfg.lrn)
  assert sorted(names) == sorted(state["intermediates"])
  assert names[0] == "conv1_out" and names[-1] == f"fc{len(cfg.features) + len(cfg.fc_features) + 1}_out"
  assert ("lrn1" in names) == (lrn and "lrn" in models.ARCHS[cfg.arch][0].post)
