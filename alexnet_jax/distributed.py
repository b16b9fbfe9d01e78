"""Joining a multi-process job through JAX's own runtime (`jax.distributed`).

Each process then sees every device of the job in `jax.devices()`, feeds only its own slice
of the global batch (`loader.train_batches(process_index=, process_count=)`), and
takes part in orbax's collective checkpoint writes; only process 0 writes logs.
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


def initialize(coordinator_address: str | None = None, num_processes: int | None = None,
               process_id: int | None = None) -> None:
  """`jax.distributed.initialize`; arguments left None are auto-detected by JAX (its
  environment variables, SLURM, TPU pods, MPI)."""
  # CPU-only jobs (and the CPU tests) need a cross-process collectives backend.
  jax.config.update("jax_cpu_collectives_implementation", "gloo")
  jax.distributed.initialize(coordinator_address=coordinator_address,
                             num_processes=num_processes, process_id=process_id)
  logging.info("joined a job of %d processes as process %d; %d devices in all, %d local",
               jax.process_count(), jax.process_index(), jax.device_count(),
               jax.local_device_count())
