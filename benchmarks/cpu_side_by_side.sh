#!/bin/bash
# The README's CPU performance table in one run: alexnet_jax in fp32 and bf16 (with oneDNN's
# convolutions, and XLA's with ALEXNET_ONEDNN=0: alexnet_jax/nn/onednn.py) against every
# PyTorch configuration of the same net (eager and torch.compile, fp32 and bf16 autocast),
# for the paper net with and without LRN and the cifar net; then the loop, the loader and
# LRN alone. Each line is one JSON object or `key value` pairs, with the CPU's flags. Run it
# on a quiet machine (nothing else running: two cores are easily disturbed), from the
# repository root, with PyTorch in its own venv (benchmarks/requirements.txt):
#
#   TORCH_PYTHON=.venv-torch/bin/python bash benchmarks/cpu_side_by_side.sh
#
# The paper rows run twice, alternating the frameworks, so that a drift of the machine shows.
set -u
J="${PYTHON:-.venv/bin/python} -m launch.benchmark"
T="${TORCH_PYTHON:-.venv-torch/bin/python} benchmarks/torch_reference.py"
keys="cpu|glibc|gemm_|train_images|roofline|gflop_per_image|loop_|input_|lrn_fwd|batch_dtype|dtype|lrn |onednn"
uptime
jax_rows() {   # $1: the config and its flags (a --config first: absl refuses overrides
  # before it). bf16 twice: oneDNN's convolutions, XLA's
  for run in "float32 1" "bfloat16 1" "bfloat16 0"; do
    read -r dtype onednn <<< "$run"
    echo "== alexnet_jax $dtype $1 ALEXNET_ONEDNN=$onednn"
    ALEXNET_ONEDNN=$onednn $J $1 --what=train --warmup=1 --repeats=3 \
      --config.model.dtype=$dtype 2>&1 | grep -E "$keys|^[Ee]rror"
  done
}
torch_rows() {   # $@: flags for the torch reference
  for mode in "" "--compile" "--bf16" "--compile --bf16"; do
    $T "$@" $mode 2>&1 | tail -1
  done
}
for round in 1 2; do
  jax_rows ""
  jax_rows "--config.model.lrn=False"
  torch_rows --net paper --warmup 2 --repeats 3
  torch_rows --net paper --warmup 2 --repeats 3 --no-lrn
done
jax_rows "--config=experiments/cifar10.py"
jax_rows "--config=experiments/cifar10.py --config.model.lrn=False"
torch_rows --net cifar --image-size 32 --warmup 3 --repeats 10
torch_rows --net cifar --image-size 32 --warmup 3 --repeats 10 --no-lrn
$J --what=gemm,loop,input,lrn --warmup=2 --repeats=5 2>/dev/null | grep -E "$keys"
for w in 1 2; do
  $J --what=input --workers=$w --warmup=2 --repeats=10 2>/dev/null | grep -E "$keys"
done
uptime
