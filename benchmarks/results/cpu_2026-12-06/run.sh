#!/bin/bash
# One round of the paper-net rows of cpu_side_by_side.sh (the session had no time for two),
# on a quiet machine: alexnet_jax fp32 and bf16, then PyTorch eager/compiled x fp32/bf16.
J=".venv/bin/python -m launch.benchmark"
T=".venv/bin/python benchmarks/torch_reference.py"
for lrn in True False; do
  for dtype in float32 bfloat16; do
    echo "== alexnet_jax lrn=$lrn $dtype"
    $J --what=train --warmup=1 --repeats=3 --config.model.dtype=$dtype --config.model.lrn=$lrn \
      --json=benchmarks/results/cpu_2026-12-06/jax_lrn${lrn}_${dtype}.json 2>/dev/null \
      | grep -E "cpu|train_images"
  done
  nolrn=$([ $lrn = False ] && echo --no-lrn)
  for mode in "" "--compile" "--bf16" "--compile --bf16"; do
    $T --net paper --warmup 2 --repeats 3 $nolrn $mode 2>&1 | tail -1
  done
done
