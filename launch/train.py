"""Trains an experiment; rerunning the same command resumes from the latest checkpoint.

    python -m launch.train --config=experiments/quickstart.py --workdir=/tmp/quickstart
    python -m launch.train --config=experiments/cifar10.py --workdir=runs/cifar \\
        --config.data.data_dir=../shared/data/cifar10 --config.batch_size=64

Several processes (one per host, or per GPU) join one job through jax.distributed:
    python -m launch.train ... --coordinator_address=host0:1234 --num_processes=2 --process_id=0
Under SLURM (srun, several tasks) or with JAX_COORDINATOR_ADDRESS set this happens by
itself; on a TPU pod pass --distributed on every host. Under SLURM a task drives one GPU
(launch one task per GPU), or all of its node's with --local_devices=all (one task per node).

SIGTERM (sent by clusters before they stop a job) saves a checkpoint at the next step and
exits 0; rerunning the command resumes. A rerun must have the workdir's config (run.json);
--resume_with_changes also accepts changed lengths and intervals (run_info.CHANGEABLE_ON_RESUME).
"""
import jax
from absl import flags, logging
from ml_collections import config_flags

from alexnet_jax.base import workdir
from alexnet_jax.programs import train
from alexnet_jax.run import distributed
from launch import cli

_CONFIG = config_flags.DEFINE_config_file("config", None, "Experiment config file.",
                                          lock_config=True)
_WORKDIR = flags.DEFINE_string("workdir", None, "Directory for checkpoints and logs.")
_DISTRIBUTED = flags.DEFINE_bool("distributed", False,
                                 "Join a multi-process job (auto-detected where possible).")
_COORDINATOR = flags.DEFINE_string("coordinator_address", None,
                                   "host:port of process 0, for a multi-process job.")
_NUM_PROCESSES = flags.DEFINE_integer("num_processes", None, "Processes in the job.")
_PROCESS_ID = flags.DEFINE_integer("process_id", None, "This process's index in the job.")
_JOIN_TIMEOUT = flags.DEFINE_float(
    "join_timeout", distributed.JOIN_TIMEOUT_S, "Seconds to wait for every process of a "
    "multi-process job to join before giving up (the wait is logged as it goes).")
_LOCAL_DEVICES = flags.DEFINE_string(
    "local_devices", "auto", "GPUs this process drives: auto (one per task under SLURM or "
    "MPI, else all), all, or ids like 0,1.")
_RESUME_WITH_CHANGES = flags.DEFINE_bool(
    "resume_with_changes", False, "Resume although the config differs from run.json in "
    "fields that are safe to change (number of steps or epochs, intervals, data.data_dir).")


def main(argv):
  if distributed.should_initialize(_COORDINATOR.value, _NUM_PROCESSES.value,
                                   _PROCESS_ID.value, _DISTRIBUTED.value):
    distributed.initialize(_COORDINATOR.value, _NUM_PROCESSES.value, _PROCESS_ID.value,
                           _LOCAL_DEVICES.value, _JOIN_TIMEOUT.value)
  if jax.process_index() != 0:
    logging.set_verbosity(logging.WARNING)   # only process 0 logs progress
  logging.info("JAX process %d of %d, local devices %s", jax.process_index(),
               jax.process_count(), jax.local_devices())
  try:
    train.train_and_evaluate(_CONFIG.value, _WORKDIR.value, _RESUME_WITH_CHANGES.value)
  except (train.LossIsNotFinite, workdir.WorkdirBusy) as e:   # (cli.run: ValueError, OSError)
    cli.fail(e)


if __name__ == "__main__":
  flags.mark_flags_as_required(["config", "workdir"])
  cli.run(main, on_interrupt="rerun the same command to resume", wait_for_writes=True)
