"""One process of the two-process CPU test (tests/test_multiprocess.py).

    python tests/multiprocess_worker.py PROCESS_ID NUM_PROCESSES PORT OUT_JSON WORKDIR DATA_DIR

Trains 3 steps on one fixed global uint8 batch (each process feeds its own rows of it; the
crops, flips and lighting are drawn on the device from the step's key, threefry) and
writes the per-step losses; then runs train_and_evaluate for a few steps in WORKDIR so that
the checkpoint is written collectively.
"""
import json
import os
import sys

os.environ["XLA_FLAGS"] = "--xla_force_host_platform_device_count=1"
os.environ["JAX_DEFAULT_PRNG_IMPL"] = "threefry2x32"   # the production PRNG, not the suite's
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import jax  # noqa: E402
import numpy as np  # noqa: E402

from alexnet_jax import distributed, train  # noqa: E402
from test_train import tiny_config, with_data  # noqa: E402  (this script's folder is on the path)


def config(data_dir):
  cfg = with_data(tiny_config(num_train_steps=4, log_every_steps=2, eval_every_steps=4,
                              checkpoint_every_steps=4, eval_batches=1, mesh_shape=(0, 0)),
                  data_dir)
  cfg.model.towers = 1
  cfg.model.dropout = 0.0   # dropout masks depend on the device layout
  return cfg


def main():
  pid, n, port, out, workdir, data_dir = sys.argv[1:]
  pid, n = int(pid), int(n)
  if n > 1:
    distributed.initialize(f"127.0.0.1:{port}", n, pid)
  cfg = config(data_dir)
  trainer = train.Trainer(cfg)
  rng = np.random.default_rng(0)
  size = cfg.data.resize_size
  batch = {"image": rng.integers(0, 256, (16, size, size, 3), dtype=np.uint8),
           "label": rng.integers(0, 4, 16).astype(np.int32)}
  rows = slice(pid * 16 // n, (pid + 1) * 16 // n)   # this process's part of the global batch
  local = {k: v[rows] for k, v in batch.items()}
  state = trainer.init(jax.random.key(0))
  losses = []
  for _ in range(3):
    state, sums = trainer.train_step(state, trainer.zero_sums(), trainer.device_batch(local),
                                     jax.random.key(7))
    losses.append(float(sums["loss"]) / float(sums["count"]))
  final = train.train_and_evaluate(cfg, workdir)
  with open(out, "w") as f:
    json.dump({"losses": losses, "devices": jax.device_count(), "final": final}, f)


if __name__ == "__main__":
  main()
