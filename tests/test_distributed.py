"""When a launch joins a multi-process job (distributed.should_initialize)."""
import pytest

from alexnet_jax.run import distributed


@pytest.fixture
def clean_env(monkeypatch):
  for var in ("JAX_COORDINATOR_ADDRESS", "SLURM_NTASKS"):
    monkeypatch.delenv(var, raising=False)
  return monkeypatch


def test_a_plain_launch_stays_one_process(clean_env):
  assert not distributed.should_initialize(None, None, None)


@pytest.mark.parametrize("args", [("host0:1234", None, None), (None, 2, None), (None, None, 0),
                                  (None, None, None, True)])
def test_flags_ask_for_a_job(clean_env, args):
  assert distributed.should_initialize(*args)


@pytest.mark.parametrize("var,value,joins", [
    ("JAX_COORDINATOR_ADDRESS", "host0:1234", True),
    ("SLURM_NTASKS", "4", True),     # srun with several tasks
    ("SLURM_NTASKS", "1", False),    # an interactive SLURM shell, one task
    ("SLURM_NTASKS", "", False),
])
def test_the_environment_is_detected(clean_env, var, value, joins):
  clean_env.setenv(var, value)
  assert distributed.should_initialize(None, None, None) is joins
