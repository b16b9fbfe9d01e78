"""Joining a multi-process job through JAX's own runtime (`jax.distributed`).

Each process then sees every device of the job in `jax.devices()`, feeds only the rows of
the global batch that its devices hold (`sharding.feed`), and takes part in orbax's
collective checkpoint writes; only process 0 writes logs.

Which GPUs a process drives (`local_devices`):
  'auto'  JAX's default: under SLURM or Open MPI one GPU per task (its local rank), so
          launch one task per GPU (`srun --ntasks-per-node=8`); elsewhere every GPU.
  'all'   every GPU the process can see, for one task per node (`--ntasks-per-node=1`).
  '0,1'   these local GPU ids.
"""
from __future__ import annotations

import os

import jax
from absl import logging


def should_initialize(coordinator_address: str | None, num_processes: int | None,
                      process_id: int | None, force: bool = False) -> bool:
  """Whether this process is part of a multi-process job.

  True when told so (flags, `force`), when JAX's variables name a coordinator, or under a
  SLURM job step of several tasks; on a TPU pod pass --distributed and JAX finds the rest.
  """
  env = os.environ
  return bool(force or coordinator_address or num_processes or process_id is not None
              or env.get("JAX_COORDINATOR_ADDRESS")
              or int(env.get("SLURM_NTASKS", "1") or 1) > 1)


def local_device_ids(choice: str, environ=None) -> list[int] | None:
  """`local_devices` (module docstring) as `jax.distributed.initialize`'s argument: None
  leaves JAX's default, a list names the GPUs. ValueError for anything else."""
  environ = os.environ if environ is None else environ
  if choice == "auto":
    return None
  if choice == "all":
    visible = environ.get("CUDA_VISIBLE_DEVICES", "")
    if visible:
      return list(range(len(visible.split(","))))
    count = environ.get("SLURM_GPUS_ON_NODE", "")
    if count.isdigit():
      return list(range(int(count)))
    return []   # JAX restricts nothing when given no ids: every GPU
  try:
    return [int(i) for i in choice.split(",")]
  except ValueError:
    raise ValueError(f"--local_devices must be 'auto', 'all' or GPU ids like '0,1', "
                     f"got {choice!r}") from None


def initialize(coordinator_address: str | None = None, num_processes: int | None = None,
               process_id: int | None = None, local_devices: str = "auto") -> None:
  """`jax.distributed.initialize`; arguments left None are auto-detected by JAX (its
  environment variables, SLURM, TPU pods, MPI)."""
  ids = local_device_ids(local_devices)
  # CPU-only jobs (and the CPU tests) need a cross-process collectives backend.
  jax.config.update("jax_cpu_collectives_implementation", "gloo")
  jax.distributed.initialize(coordinator_address=coordinator_address,
                             num_processes=num_processes, process_id=process_id,
                             local_device_ids=ids)
  logging.info("joined a job of %d processes as process %d; %d devices in all, %d local",
               jax.process_count(), jax.process_index(), jax.device_count(),
               jax.local_device_count())
