"""Which checkpoints orbax keeps: the newest K and the best by validation top-1 error."""
import jax.numpy as jnp

from alexnet_jax.run import checkpoint


def test_keeps_latest_and_best(tmp_path):
  manager = checkpoint.create_manager(str(tmp_path), keep=2)
  for step, error in [(1, 0.5), (2, 0.3), (3, None), (4, 0.6), (5, 0.7), (6, None)]:
    metrics = None if error is None else {checkpoint.EVAL_METRIC: error}
    checkpoint.save(manager, step, {"w": jnp.full(3, float(step))}, {"bad_evals": step}, metrics)
  assert manager.all_steps() == [2, 5, 6]
  assert manager.best_step() == 2
  reader = checkpoint.create_manager(str(tmp_path), read_only=True)
  assert reader.best_step() == 2   # read back from the checkpoints' own metadata
  abstract = {"w": jnp.zeros(3)}
  state, meta = checkpoint.restore(reader, 2, abstract)
  assert meta == {"bad_evals": 2} and float(state["w"][0]) == 2.0


def test_best_step_ties_go_to_the_later_step_and_none_without_metrics(tmp_path):
  """What inference's `--step=best` relies on."""
  manager = checkpoint.create_manager(str(tmp_path / "a"), keep=5)
  for step, error in [(1, 0.4), (2, 0.2), (3, 0.2), (4, None)]:
    metrics = None if error is None else {checkpoint.EVAL_METRIC: error}
    checkpoint.save(manager, step, {"w": jnp.zeros(1)}, {}, metrics)
  assert checkpoint.create_manager(str(tmp_path / "a"), read_only=True).best_step() == 3
  manager = checkpoint.create_manager(str(tmp_path / "b"))
  checkpoint.save(manager, 1, {"w": jnp.zeros(1)}, {}, None)
  assert checkpoint.create_manager(str(tmp_path / "b"), read_only=True).best_step() is None


def test_orbax_warns_neither_about_saves_without_metrics_nor_read_only_readers(tmp_path,
                                                                               caplog):
  """Saves between evaluations carry no metric, and predict and evaluate open workdirs
  read-only, both on purpose: orbax's warnings about them would only alarm."""
  manager = checkpoint.create_manager(str(tmp_path))
  checkpoint.save(manager, 1, {"w": jnp.zeros(1)}, {}, None)
  reader = checkpoint.create_manager(str(tmp_path), read_only=True)
  assert reader.all_steps() == [1]
  warnings = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
  assert warnings == []
