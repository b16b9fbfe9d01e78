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
import sys
import threading
from typing import Callable, NoReturn

import jax
from absl import logging

from alexnet_jax.base import messages


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


JOIN_TIMEOUT_S = 300   # JAX's own default wait for the job's processes to connect
JOIN_LOG_EVERY_S = 30   # at most; a third of the timeout when that is shorter
# A process silent this long is dead to the others (JAX's default: 100 s). Collectives fail
# at once when a peer dies, but the checkpoint's barriers wait for this verdict.
HEARTBEAT_TIMEOUT_S = 30


def initialize(coordinator_address: str | None = None, num_processes: int | None = None,
               process_id: int | None = None, local_devices: str = "auto",
               join_timeout: float = JOIN_TIMEOUT_S) -> None:
  """`jax.distributed.initialize`; arguments left None are auto-detected by JAX (its
  environment variables, SLURM, TPU pods, MPI).

  While the other processes have not joined, says every JOIN_LOG_EVERY_S seconds whom it
  waits for and where; after `join_timeout` seconds it ends the process with one line
  (`_give_up`), since JAX's own deadline aborts it from C++ with a page of stack trace
  that blames "another task" that died.
  """
  ids = local_device_ids(local_devices)
  if not join_timeout > 0:
    raise ValueError(f"--join_timeout must be positive, got {join_timeout:g}")
  # CPU-only jobs (and the CPU tests) need a cross-process collectives backend.
  jax.config.update("jax_cpu_collectives_implementation", "gloo")
  where = coordinator_address or os.environ.get("JAX_COORDINATOR_ADDRESS") or (
      "the coordinator JAX detects (SLURM, MPI or TPU)")
  joined = threading.Event()
  threading.Thread(target=_watch_join, daemon=True, args=(
      joined, where, num_processes, process_id, join_timeout)).start()
  try:
    jax.distributed.initialize(coordinator_address=coordinator_address,
                               num_processes=num_processes, process_id=process_id,
                               local_device_ids=ids,
                               initialization_timeout=int(join_timeout) + 60,
                               heartbeat_timeout_seconds=HEARTBEAT_TIMEOUT_S)
  finally:
    joined.set()
  logging.info("joined a job of %d processes as process %d; %d devices in all, %d local",
               jax.process_count(), jax.process_index(), jax.device_count(),
               jax.local_device_count())


def _others(num_processes: int | None, process_id: int | None) -> str:
  if num_processes is None or process_id is None:
    return "the job's other processes"
  others = [str(i) for i in range(num_processes) if i != process_id]
  return f"process{'es' if len(others) > 1 else ''} {', '.join(others)}"


def _watch_join(joined: threading.Event, where: str, num_processes: int | None,
                process_id: int | None, timeout: float) -> None:
  """The join's progress in the log, and its end in one line (the module's `initialize`).
  Until every process has connected, none can tell which others have: it names them all."""
  me = "this process" if process_id is None else f"process {process_id}"
  of = f" of {num_processes}" if num_processes else ""
  every, waited = min(JOIN_LOG_EVERY_S, timeout / 3), 0.0
  while not joined.wait(min(every, timeout - waited)):
    waited = min(waited + every, timeout)
    if waited >= timeout:
      _give_up(f"{_others(num_processes, process_id)} never joined the job ({me}{of}, "
               f"coordinator {where}, --join_timeout={timeout:g} s): check that every "
               "process was started with the same --coordinator_address and --num_processes, "
               "that process 0 runs on that host and port, and that the port is reachable")
    logging.warning("%s%s: waiting for %s to join the job at the coordinator %s (%.0f s of "
                    "--join_timeout=%g)", me, of, _others(num_processes, process_id), where,
                    waited, timeout)


def exit_if_peer_lost(error: BaseException | None,
                      last_checkpoint: Callable[[], str]) -> None:
  """After a failed collective (`error`, or its cause) in a job of several processes: one
  line naming the lost process, the last checkpoint (`last_checkpoint()` says which) and
  how to resume, and the end of this process.

  It exits at once (os._exit): a normal exit shuts down JAX's distributed client, which
  waits for the dead process and then aborts with a stack trace, and so does the client's
  error poller once the coordinator notices the death (HEARTBEAT_TIMEOUT_S)."""
  while error is not None and not _collective_failed(error):
    error = error.__cause__ or error.__context__   # a checkpoint's write wraps it
  if error is None or jax.process_count() < 2:
    return
  others = _others(jax.process_count(), jax.process_index())
  lost = others if jax.process_count() == 2 else f"one of {others}"
  _give_up(f"lost {lost} of the job ({messages.one_line(error, 160)}). {last_checkpoint()} "
           "Rerun the same command on every host to resume from it")


PEER_GONE = ("Gloo", "NCCL", "Connection reset", "Connection closed", "heartbeat",
             "UNAVAILABLE")


def _collective_failed(error: BaseException) -> bool:
  """An error that says a peer is gone: a collective's (XLA raises it as JaxRuntimeError,
  orbax's synchronisation re-raises gloo's as a ValueError) or the coordinator's verdict.
  Other runtime errors, such as a device out of memory, are not a lost process."""
  text = str(error)[:300]
  return any(marker in text for marker in PEER_GONE)


def _give_up(line: str) -> NoReturn:
  """`error: line` on stderr, then the end of the process, exit status 1, with no clean-up
  (see `exit_if_peer_lost`)."""
  sys.stdout.flush()
  sys.stderr.write(f"error: {line}\n")
  sys.stderr.flush()
  os._exit(1)  # pylint: disable=protected-access
