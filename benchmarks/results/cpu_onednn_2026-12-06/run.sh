#!/bin/bash
# bf16 with oneDNN's convolutions (alexnet_jax/nn/onednn.py) beside alexnet_jax fp32,
# alexnet_jax bf16 through XLA (ALEXNET_ONEDNN=0) and every PyTorch configuration, the paper
# net with LRN and without, then the cifar net. From the repository root, quiet machine:
#   TORCH_PYTHON=.venv/bin/python bash benchmarks/results/cpu_onednn_2026-12-06/run.sh
set -u
J="${PYTHON:-.venv/bin/python} -m launch.benchmark"
T="${TORCH_PYTHON:-.venv-torch/bin/python} benchmarks/torch_reference.py"
keys="cpu|train_images|dtype|lrn "
uptime
rows() {   # $1: net (paper or cifar); $2: lrn (True or False)
  local net=$1 lrn=$2 dtype onednn
  local cfg="" trc="--net paper --warmup 2 --repeats 3" j="--warmup=1 --repeats=3" nolrn=""
  if [ "$net" = cifar ]; then
    cfg="--config=experiments/cifar10.py"; j="--warmup=3 --repeats=10"
    trc="--net cifar --image-size 32 --warmup 3 --repeats 10"
  fi
  [ "$lrn" = False ] && nolrn="--no-lrn"
  for run in "float32 1" "bfloat16 1" "bfloat16 0"; do
    read -r dtype onednn <<< "$run"
    echo "== alexnet_jax $net lrn=$lrn $dtype onednn=$onednn"
    ALEXNET_ONEDNN=$onednn $J $cfg --what=train $j --config.model.dtype=$dtype \
      --config.model.lrn=$lrn 2>/dev/null | grep -E "$keys"
  done
  for mode in "" "--compile" "--bf16" "--compile --bf16"; do
    echo "== torch $trc $nolrn $mode"
    $T $trc $nolrn $mode 2>&1 | tail -1
  done
}
for net in paper cifar; do
  for lrn in True False; do
    rows $net $lrn
  done
done
uptime
