"""The CPU a figure was measured on: its model, its cores and the instruction sets that
decide which kernels run (AVX2, AVX-512, avx512_bf16, AMX). The machines here change
between sessions (an AMD EPYC with avx512_bf16 and no AMX, an Intel Xeon with AMX), so
every benchmark records them beside its numbers. Standard library only: the PyTorch
reference, in its own venv, records the same."""
from __future__ import annotations

import os
import platform

FLAGS = ("avx2", "avx512f", "avx512_vnni", "avx512_bf16", "amx_tile", "amx_bf16")


def cpu() -> dict:
  """{'cpu': model name, 'cores': usable cores, 'cpu_flags': those of FLAGS it has}."""
  model, flags = platform.processor() or platform.machine(), set()
  try:
    with open("/proc/cpuinfo") as f:
      for line in f:
        if line.startswith("model name"):
          model = line.split(":", 1)[1].strip()
        elif line.startswith("flags"):
          flags = set(line.split(":", 1)[1].split())
  except OSError:   # not Linux: the model from platform, no flags
    pass
  cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
  return {"cpu": model, "cores": cores, "cpu_flags": [f for f in FLAGS if f in flags]}
