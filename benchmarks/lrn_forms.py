"""The paper model's training step with LRN's two CPU-only forms and without, on this backend.

`models.py` pads LRN's input by the row and column no pooling window reads
(`pooling.pad_unread`) and `lrn.py` pads the backward pass's t by concatenation, both on the
CPU only. This builds two steppers in one process, one traced with the CPU forms and one
with the other platforms' (a pad, no `pad_unread`), and times them alternately: `--rounds`
rounds of `--steps` steps dispatched back to back, medians reported.

    python benchmarks/lrn_forms.py --steps=100 --rounds=5     # on a GPU
    python benchmarks/lrn_forms.py --steps=2 --rounds=3       # on the CPU
"""
import argparse
import contextlib
import statistics
import time
import types

import jax

from alexnet_jax import benchmark, lrn, models
from experiments import imagenet_paper


def _copy(module, **overrides):
  space = types.SimpleNamespace(**{k: getattr(module, k) for k in dir(module)
                                   if not k.startswith("__")})
  space.__dict__.update(overrides)
  return space


@contextlib.contextmanager
def forms(cpu: bool):
  """Traces the model with the CPU's forms (cpu=True) or the others' on any backend."""
  def platform_dependent(*args, cpu, default):   # lax's, with the branch chosen here
    return (cpu if use_cpu else default)(*args)

  use_cpu, saved = cpu, (models.jax, lrn.jax)
  models.jax = _copy(jax, default_backend=lambda: "cpu" if use_cpu else "other")
  lrn.jax = _copy(jax, lax=_copy(jax.lax, platform_dependent=platform_dependent))
  try:
    yield
  finally:
    models.jax, lrn.jax = saved


def main():
  parser = argparse.ArgumentParser()
  parser.add_argument("--steps", type=int, default=100)
  parser.add_argument("--rounds", type=int, default=5)
  args = parser.parse_args()
  cfg = imagenet_paper.get_config()
  steppers, batch = {}, None
  for name in ("cpu_forms", "other_forms"):
    with forms(cpu=name == "cpu_forms"):
      steppers[name] = s = benchmark._Stepper(cfg)
      batch = batch or s.trainer.device_batch(benchmark._random_batch(cfg, cfg.batch_size))
      for _ in range(3):   # traced and compiled inside the context
        jax.block_until_ready(s(batch))
  times = {name: [] for name in steppers}
  for _ in range(args.rounds):
    for name, s in steppers.items():
      t = time.perf_counter()
      for _ in range(args.steps):
        s(batch)
      jax.block_until_ready(s.sums)
      times[name].append((time.perf_counter() - t) / args.steps)
  print("backend", jax.default_backend(), jax.devices()[0].device_kind)
  for name, ts in times.items():
    m = statistics.median(ts)
    print(f"{name:12s} {m * 1e3:9.2f} ms/step  {cfg.batch_size / m:9.1f} images/s  "
          f"(rounds: {', '.join(f'{t * 1e3:.2f}' for t in ts)})")


if __name__ == "__main__":
  main()
