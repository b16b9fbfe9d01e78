#!/bin/bash
# cpu_side_by_side.sh's cifar-net rows, twice, alternating the frameworks: alexnet_jax in
# fp32 and bf16 against PyTorch eager, torch.compile, bf16 autocast eager and compiled, with
# LRN and without. From the repository root on a quiet machine:
#   TORCH_PYTHON=.venv/bin/python bash benchmarks/results/cpu_cifar_2026-12-06/run.sh
set -u
J="${PYTHON:-.venv/bin/python} -m launch.benchmark"
T="${TORCH_PYTHON:-.venv-torch/bin/python} benchmarks/torch_reference.py"
keys="cpu|train_images|dtype|lrn "
uptime
for round in 1 2; do
  for lrn in True False; do
    for dtype in float32 bfloat16; do
      echo "== round $round alexnet_jax cifar lrn=$lrn $dtype"
      $J --config=experiments/cifar10.py --what=train --warmup=3 --repeats=10 \
        --config.model.dtype=$dtype --config.model.lrn=$lrn 2>/dev/null | grep -E "$keys"
    done
    nolrn=""; [ $lrn = False ] && nolrn="--no-lrn"
    for mode in "" "--compile" "--bf16" "--compile --bf16"; do
      echo "== round $round torch cifar lrn=$lrn $mode"
      $T --net cifar --image-size 32 --warmup 3 --repeats 10 $nolrn $mode 2>&1 | tail -1
    done
  done
done
uptime
