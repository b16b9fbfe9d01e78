"""The paper's two-GPU layout on a mesh equals the single-device grouped model (§3.2)."""
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from alexnet_jax import models, sharding, train
from experiments import default

SIZE, BATCH = 67, 8


def tiny_config(mesh_shape=(1, 1), towers=2):
  cfg = default.get_config()
  cfg.model = models.model_config("small", num_classes=4, towers=towers, dropout=0.0,
                                  features=(16, 32, 48, 48, 32), fc_features=(64, 64))
  cfg.data.image_size = SIZE
  cfg.batch_size = BATCH
  cfg.schedule = "constant"
  cfg.learning_rate = 0.05
  cfg.mesh_shape = mesh_shape
  return cfg


def batches(n=3):
  rng = np.random.default_rng(0)
  return [{"image": rng.normal(size=(BATCH, SIZE, SIZE, 3)).astype(np.float32),
           "label": rng.integers(0, 4, BATCH).astype(np.int32),
           "mask": np.ones(BATCH, np.float32)} for _ in range(n)]


def single_device_reference(cfg, data):
  """Plain model.apply and optax on one device: no mesh, no shard_map."""
  model = models.create_model(cfg.model, SIZE)
  params = model.init(jax.random.key(cfg.seed), jnp.zeros((1, SIZE, SIZE, 3)))["params"]
  tx = train.paper_sgd(cfg.learning_rate, cfg.momentum, cfg.weight_decay)
  opt_state = tx.init(params)
  loss_fn = lambda p, b: train.cross_entropy(model.apply({"params": p}, b["image"]),
                                             b["label"], b["mask"])
  logits = model.apply({"params": params}, data[0]["image"])
  grads = jax.grad(loss_fn)(params, data[0])
  for b in data:
    updates, opt_state = tx.update(jax.grad(loss_fn)(params, b), opt_state, params)
    params = optax.apply_updates(params, updates)
  return logits, grads, params


def assert_trees_close(a, b, rtol):
  for (path, x), y in zip(jax.tree_util.tree_leaves_with_path(a), jax.tree.leaves(b)):
    scale = float(np.max(np.abs(y))) + 1e-12
    err = float(np.max(np.abs(np.asarray(x) - np.asarray(y)))) / scale
    assert err < rtol, (jax.tree_util.keystr(path), err)


@pytest.mark.parametrize("mesh_shape", [(1, 2), (2, 2), (4, 2), (8, 1)])
def test_mesh_matches_single_device(mesh_shape):
  cfg = tiny_config(mesh_shape)
  data = batches()
  ref_logits, ref_grads, ref_params = single_device_reference(cfg, data)

  trainer = train.Trainer(cfg)
  assert dict(trainer.mesh.shape) == {"data": mesh_shape[0], "model": mesh_shape[1]}
  state = trainer.init(jax.random.key(cfg.seed))
  if mesh_shape[1] == 2:   # each device holds one tower: half of every layer
    shard = state.params["conv2"]["kernel"].addressable_shards[0].data
    assert shard.shape == (5, 5, 8, 16)
    assert state.params["fc6"]["kernel"].sharding.spec == jax.sharding.PartitionSpec(None, "model")

  first = trainer.device_batch(data[0])
  logits = trainer.apply_fn(state.params, first["image"], None)
  assert_trees_close(logits, ref_logits, 1e-5)
  loss_fn = lambda p: train.cross_entropy(trainer.apply_fn(p, first["image"], None),
                                          first["label"], first["mask"])
  assert_trees_close(jax.jit(jax.grad(loss_fn))(state.params), ref_grads, 1e-5)

  for b in data:
    state, metrics = trainer.train_step(state, trainer.device_batch(b), jax.random.key(0))
  assert int(state.step) == 3
  assert_trees_close(state.params, ref_params, 1e-5)


def test_dropout_masks_differ_across_towers_and_data_shards():
  cfg = tiny_config((2, 2))
  cfg.model.dropout = 0.5
  trainer = train.Trainer(cfg)
  state = trainer.init(jax.random.key(0))
  b = trainer.device_batch(batches(1)[0])
  a1 = trainer.apply_fn(state.params, b["image"], jax.random.key(1), train=True)
  a2 = trainer.apply_fn(state.params, b["image"], jax.random.key(2), train=True)
  assert not np.allclose(a1, a2)


@pytest.mark.parametrize("mesh_shape,message", [
    ((3, 2), "needs 6 devices"),    # 6 of 8 devices is fine; 6 of 4 is not
    ((16, 1), "needs 16 devices"),
    ((2, 4), "must be 1 or model.towers=2"),
    ((3, 1), "not divisible by the 3 data-parallel"),
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
