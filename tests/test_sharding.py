"""The paper's two-GPU layout on a mesh equals the single-device grouped model (§3.2)."""
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from alexnet_jax.data import augment
from alexnet_jax.nn import models
from alexnet_jax.programs import train
from alexnet_jax.run import sharding
from experiments import default

SIZE, SQUARE, BATCH = 67, 75, 8
KEY = jax.random.key(0, impl="threefry2x32")   # the production PRNG: sharding-invariant


def tiny_config(mesh_shape=(1, 1), towers=2):
  cfg = default.get_config()
  cfg.model = models.model_config("small", num_classes=4, towers=towers, dropout=0.0,
                                  features=(16, 32, 48, 48, 32), fc_features=(64, 64))
  cfg.data.image_size = SIZE
  cfg.data.resize_size = SQUARE
  cfg.batch_size = BATCH
  cfg.schedule = "constant"
  cfg.learning_rate = 0.05
  cfg.mesh_shape = mesh_shape
  return cfg


def batches(n=3):
  rng = np.random.default_rng(0)
  return [{"image": rng.integers(0, 256, (BATCH, SQUARE, SQUARE, 3), dtype=np.uint8),
           "label": rng.integers(0, 4, BATCH).astype(np.int32)} for _ in range(n)]


def single_device_reference(cfg, data):
  """Plain model.apply, augmentation and optax on one device: no mesh, no shard_map (one
  jit around it all, so that it compiles once rather than op by op, and the steps a scan,
  so that the step is compiled once rather than once per batch)."""
  model = models.create_model(cfg.model, SIZE)
  tx = train.paper_sgd(cfg.learning_rate, cfg.momentum, cfg.weight_decay)

  def loss_fn(p, images, labels):
    logits = model.apply({"params": p}, images)
    return optax.softmax_cross_entropy_with_integer_labels(logits, labels).mean()

  @jax.jit
  def reference(data):
    params = model.init(jax.random.key(cfg.seed), jnp.zeros((1, SIZE, SIZE, 3)))["params"]
    first = augment.eval_images(data["image"][0], cfg.data)
    logits = model.apply({"params": params}, first)
    grads = jax.grad(loss_fn)(params, first, data["label"][0])

    def step(carry, b):   # the step's key as train_step derives it
      params, opt_state = carry
      augment_key, _ = jax.random.split(jax.random.fold_in(KEY, b["step"]))
      images = augment.train_images(b["image"], augment_key, cfg.data)
      updates, opt_state = tx.update(jax.grad(loss_fn)(params, images, b["label"]), opt_state,
                                     params)
      return (optax.apply_updates(params, updates), opt_state), None

    (params, _), _ = jax.lax.scan(step, (params, tx.init(params)), data)
    return logits, grads, params

  stacked = jax.tree.map(lambda *x: np.stack(x), *data)
  return reference(dict(stacked, step=np.arange(len(data))))


@pytest.fixture(scope="module")
def reference():
  """The single-device run that every mesh is compared with (the same for all)."""
  data = batches()
  return data, single_device_reference(tiny_config(), data)


def assert_trees_close(a, b, rtol):
  for (path, x), y in zip(jax.tree_util.tree_leaves_with_path(a), jax.tree.leaves(b)):
    scale = float(np.max(np.abs(y))) + 1e-12
    err = float(np.max(np.abs(np.asarray(x) - np.asarray(y)))) / scale
    assert err < rtol, (jax.tree_util.keystr(path), err)


@pytest.mark.parametrize("mesh_shape", [(1, 2)] + [   # the paper's layout; the rest: slow
    pytest.param(shape, marks=pytest.mark.slow) for shape in ((2, 2), (4, 2), (8, 1))])
def test_mesh_matches_single_device(mesh_shape, reference):
  cfg = tiny_config(mesh_shape)
  data, (ref_logits, ref_grads, ref_params) = reference

  trainer = train.Trainer(cfg)
  assert dict(trainer.mesh.shape) == {"data": mesh_shape[0], "model": mesh_shape[1]}
  state = trainer.init(jax.random.key(cfg.seed))
  if mesh_shape[1] == 2:   # each device holds one tower: half of every layer
    shard = state.params["conv2"]["kernel"].addressable_shards[0].data
    assert shard.shape == (5, 5, 8, 16)
    assert state.params["fc6"]["kernel"].sharding.spec == jax.sharding.PartitionSpec(None, "model")

  first = trainer.device_batch(data[0])
  images = jax.jit(lambda x: augment.eval_images(x, cfg.data))(first["image"])
  logits = trainer.apply_fn(state.params, images, None)
  assert_trees_close(logits, ref_logits, 1e-5)
  loss_fn = lambda p: optax.softmax_cross_entropy_with_integer_labels(
      trainer.apply_fn(p, images, None), first["label"]).mean()
  assert_trees_close(jax.jit(jax.grad(loss_fn))(state.params), ref_grads, 1e-5)

  sums = trainer.zero_sums()
  for b in data:
    state, sums = trainer.train_step(state, sums, trainer.device_batch(b), KEY)
  assert int(state.step) == 3
  assert_trees_close(state.params, ref_params, 1e-5)


def test_dropout_masks_differ_across_towers_and_data_shards():
  """With the towers' weights made equal (fc8's classes 0-1 reading tower 0's fc7 half and
  2-3 tower 1's) and every row the same image, the outputs differ between towers and
  between data shards only through dropout: each device must draw its own masks."""
  cfg = tiny_config((2, 2))
  cfg.model.dropout = 0.5
  trainer = train.Trainer(cfg)
  params = trainer.init(jax.random.key(0)).params
  mirror = lambda x: jnp.concatenate([x[..., :x.shape[-1] // 2]] * 2, axis=-1)
  params = jax.tree.map(mirror, params)
  # fc8: classes 0-1 read only tower 0's half of fc7, classes 2-3 only tower 1's (fc7's
  # halves are equal but for their dropout masks).
  k = params["fc8"]["kernel"]
  n = k.shape[0] // 2
  params["fc8"]["kernel"] = k.at[n:, :2].set(0.0).at[:n, 2:].set(0.0).at[n:, 2:].set(k[:n, :2])
  params = jax.device_put(params, trainer.state_shardings.params)
  image = np.random.default_rng(0).normal(size=(1, SIZE, SIZE, 3)).astype(np.float32)
  x = jax.device_put(np.repeat(image, BATCH, 0), trainer.batch_sharding)
  plain = np.asarray(trainer.apply_fn(params, x, None))
  np.testing.assert_allclose(plain[:, :2], plain[:, 2:], rtol=1e-5)   # towers are equal
  out = np.asarray(trainer.apply_fn(params, x, KEY, train=True))
  assert not np.allclose(out[:, :2], out[:, 2:])                      # masks differ by tower
  half = BATCH // 2                                                   # shard 0 | shard 1
  assert not np.allclose(out[:half], out[half:])                      # and by data shard


@pytest.mark.slow
@pytest.mark.parametrize("dropout_at", ["outputs", "inputs"])
def test_dropout_masks_do_not_depend_on_the_mesh(dropout_at):
  """Each example's masks come from its index in the global batch: the training forward
  pass with dropout gives the same logits on one device and on any mesh."""
  outs = {}
  for mesh_shape in [(1, 1), (2, 2), (4, 2), (8, 1)]:
    cfg = tiny_config(mesh_shape)
    cfg.model.dropout, cfg.model.dropout_at = 0.5, dropout_at
    trainer = train.Trainer(cfg)
    params = trainer.init(jax.random.key(0)).params
    x = jax.device_put(np.random.default_rng(0).normal(size=(BATCH, SIZE, SIZE, 3)).astype(
        np.float32), trainer.batch_sharding)
    outs[mesh_shape] = np.asarray(trainer.apply_fn(params, x, KEY, train=True))
  plain = np.asarray(trainer.apply_fn(params, x, None))
  assert not np.allclose(outs[(1, 1)], plain, rtol=1e-3)   # dropout did act
  for mesh_shape, out in outs.items():
    np.testing.assert_allclose(out, outs[(1, 1)], rtol=1e-5, atol=1e-6, err_msg=str(mesh_shape))


@pytest.mark.parametrize("mesh_shape,message", [
    ((3, 2), "needs 6 devices"),    # 6 of 8 devices is fine; 6 of 4 is not
    ((16, 1), "needs 16 devices"),
    ((2, 4), "must be 1 or model.towers=2"),
])
def test_bad_mesh_is_a_clear_error_before_compiling(mesh_shape, message):
  cfg = tiny_config(mesh_shape)
  if mesh_shape == (3, 2):
    cfg.batch_size = 12
    assert sharding.mesh_shape(cfg, 8) == (3, 2)
    with pytest.raises(ValueError, match=message):
      sharding.mesh_shape(cfg, 4)
    return
  with pytest.raises(ValueError, match=message):
    train.Trainer(cfg)


def test_default_mesh_puts_towers_on_devices():
  assert sharding.mesh_shape(tiny_config((0, 0)), 8) == (4, 2)
  assert sharding.mesh_shape(tiny_config((0, 0), towers=1), 8) == (8, 1)
  assert sharding.mesh_shape(tiny_config((0, 0)), 1) == (1, 1)
