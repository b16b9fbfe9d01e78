#!/bin/bash
# bf16 (oneDNN) training step with one or two OpenMP threads, on a quiet machine and beside
# one busy process (a Python loop on one core). run.txt: the paper net (09:23 UTC, warmup 1,
# repeats 3), then the cifar net (09:25 UTC, warmup 3, repeats 10), 2026-12-06.
cd "$(dirname "$0")/../../.."   # the repository root
J=".venv/bin/python -m launch.benchmark"
lscpu | grep "Model name"; grep -o -w -E "avx512_bf16|amx_bf16" /proc/cpuinfo | sort -u | tr '\n' ' '; echo; uptime
for net in "" "--config=experiments/cifar10.py"; do
  reps="--warmup=1 --repeats=3"; [ -n "$net" ] && reps="--warmup=3 --repeats=10"
  for hog in 0 1; do
    for omp in 2 1; do
      if [ $hog = 1 ]; then python3 -c "while True: pass" & HP=$!; fi
      echo "== net='$net' hog=$hog OMP_NUM_THREADS=$omp"
      OMP_NUM_THREADS=$omp $J $net --what=train $reps --config.model.dtype=bfloat16 2>/dev/null | grep -E "train_images|onednn"
      if [ $hog = 1 ]; then kill $HP; wait $HP 2>/dev/null; fi
    done
  done
done
