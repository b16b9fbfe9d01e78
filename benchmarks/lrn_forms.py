"""The paper model's training step traced with the CPU-only forms and without, on this backend.

A model built with `cpu_forms` (the default on the CPU) takes the forms that XLA:CPU runs
fast: `pooling.pad_unread` before LRN (or before the pool, with LRN off), LRN's t padded by
concatenation, and max pooling's phase gradient. This builds two steppers in one process,
one inside `cpu_forms.forced(True)` and one inside `forced(False)`, and times them alternately:
`--rounds` rounds of `--steps` steps dispatched back to back, medians reported.
`--no_lrn` times the model without LRN.

    python benchmarks/lrn_forms.py --steps=100 --rounds=5     # on a GPU
    python benchmarks/lrn_forms.py --steps=2 --rounds=3       # on the CPU
"""
import argparse
import statistics
import time

import jax

from alexnet_jax.nn import cpu_forms
from alexnet_jax.programs import benchmark
from experiments import imagenet_paper


def main():
  parser = argparse.ArgumentParser()
  parser.add_argument("--steps", type=int, default=100)
  parser.add_argument("--rounds", type=int, default=5)
  parser.add_argument("--no_lrn", action="store_true", help="the model without LRN")
  args = parser.parse_args()
  cfg = imagenet_paper.get_config()
  cfg.model.lrn = not args.no_lrn
  steppers, batch = {}, None
  for name in ("cpu_forms", "other_forms"):
    with cpu_forms.forced(name == "cpu_forms"):
      steppers[name] = s = benchmark.Stepper(cfg)
      batch = batch or s.trainer.device_batch(benchmark.random_batch(cfg, cfg.batch_size))
      for _ in range(3):   # built, traced and compiled inside the context
        jax.block_until_ready(s(batch))
  times = {name: [] for name in steppers}
  for _ in range(args.rounds):
    for name, s in steppers.items():
      t = time.perf_counter()
      for _ in range(args.steps):
        s(batch)
      jax.block_until_ready(s.sums)
      times[name].append((time.perf_counter() - t) / args.steps)
  print("backend", jax.default_backend(), jax.devices()[0].device_kind, "lrn", cfg.model.lrn)
  for name, ts in times.items():
    m = statistics.median(ts)
    print(f"{name:12s} {m * 1e3:9.2f} ms/step  {cfg.batch_size / m:9.1f} images/s  "
          f"(rounds: {', '.join(f'{t * 1e3:.2f}' for t in ts)})")


if __name__ == "__main__":
  main()
