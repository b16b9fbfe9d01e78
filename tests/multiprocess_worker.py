"""One process of the multi-process CPU tests (tests/test_multiprocess.py).

    python tests/multiprocess_worker.py PROCESS_ID NUM_PROCESSES PORT LOCAL_DEVICES \
        MESH WORKDIR DATA_DIR [FLAG ...]

Joins the job over gloo on 127.0.0.1 (when NUM_PROCESSES > 1) with LOCAL_DEVICES CPU
devices, and runs launch.train's training (`train.train_and_evaluate`) on the tiny
two-tower config with dropout, on mesh MESH ('data,model'), in WORKDIR: the real loader,
feed, collective checkpoint and logs. FLAGs are `field=value` config overrides.
"""
import faulthandler
import os
import signal
import sys

os.environ["XLA_FLAGS"] = (f"--xla_force_host_platform_device_count={sys.argv[4]}"
                           " --xla_backend_optimization_level=1")   # as conftest.py
os.environ["JAX_DEFAULT_PRNG_IMPL"] = "threefry2x32"   # the production PRNG, not the suite's
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from absl import logging  # noqa: E402

from alexnet_jax.programs import train
from alexnet_jax.run import distributed  # noqa: E402
import helpers  # noqa: E402


def config(data_dir, mesh, overrides):
  cfg = helpers.tiny_config(data_dir, num_train_steps=4, log_every_steps=1, eval_every_steps=4,
                            checkpoint_every_steps=4, eval_batches=-1,
                            mesh_shape=tuple(int(x) for x in mesh.split(",")))
  for item in overrides:
    field, value = item.split("=", 1)
    *parents, leaf = field.split(".")
    node = cfg
    for p in parents:
      node = node[p]
    node[leaf] = type(node[leaf])(value) if not isinstance(node[leaf], bool) else value == "1"
  return cfg


def main():
  faulthandler.register(signal.SIGUSR1, all_threads=True)   # the test's view of a hang
  pid, n, port, _, mesh, workdir, data_dir, *overrides = sys.argv[1:]
  pid, n = int(pid), int(n)
  logging.set_verbosity(logging.INFO)
  if n > 1:
    distributed.initialize(f"127.0.0.1:{port}", n, pid)
  train.train_and_evaluate(config(data_dir, mesh, overrides), workdir, allow_changes=True)


if __name__ == "__main__":
  main()
