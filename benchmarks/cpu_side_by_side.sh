#!/bin/bash
# The README's CPU performance tables in one run: alexnet_jax against PyTorch (paper and
# cifar nets, with and without LRN), then the loop, the loader and LRN alone. Run it on a
# quiet machine (nothing else running: two cores are easily disturbed), from the repository
# root, with PyTorch in its own venv (benchmarks/requirements.txt):
#
#   TORCH_PYTHON=.venv-torch/bin/python bash benchmarks/cpu_side_by_side.sh
set -u
J="${PYTHON:-.venv/bin/python} -m launch.benchmark"
T="${TORCH_PYTHON:-.venv-torch/bin/python} benchmarks/torch_reference.py"
keys="glibc|gemm_|train_images|roofline|gflop_per_image|loop_|input_|lrn_fwd|batch_dtype"
uptime
for round in 1 2; do   # the paper nets twice, alternating the two frameworks
  $J --what=gemm,train --warmup=1 --repeats=3 2>/dev/null | grep -E "$keys"
  $J --what=train --warmup=1 --repeats=3 --config.model.lrn=False 2>/dev/null | grep -E "$keys"
  $T --net paper --warmup 1 --repeats 3 2>&1 | tail -1
  $T --net paper --warmup 1 --repeats 3 --no-lrn 2>&1 | tail -1
done
$J --config=experiments/cifar10.py --what=train --warmup=2 --repeats=10 2>/dev/null | grep -E "$keys"
$J --config=experiments/cifar10.py --what=train --warmup=2 --repeats=10 \
  --config.model.lrn=False 2>/dev/null | grep -E "$keys"
$T --net cifar --image-size 32 --warmup 2 --repeats 10 2>&1 | tail -1
$T --net cifar --image-size 32 --warmup 2 --repeats 10 --no-lrn 2>&1 | tail -1
$J --what=loop,input,lrn --warmup=2 --repeats=5 2>/dev/null | grep -E "$keys"
for w in 1 2; do
  $J --what=input --workers=$w --warmup=2 --repeats=10 2>/dev/null | grep -E "$keys"
done
uptime
