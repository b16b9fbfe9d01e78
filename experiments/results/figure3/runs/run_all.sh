#!/usr/bin/env bash
# Figure 3 runs (issue 34): three two-tower seeds and a one-tower control, 25 epochs each, niced.
cd /work/main
source .venv/bin/activate
for spec in "t2_s0 2 0" "t1_s0 1 0" "t2_s1 2 1" "t2_s2 2 2"; do
  set -- $spec
  nice -n 19 python -m launch.train --config=experiments/imagenette.py:cpu \
    --workdir=/work/fig3/runs/$1 --config.data.data_dir=/work/fig3/imagenette128 \
    --config.model.towers=$2 --config.seed=$3 --config.num_epochs=25 \
    > /work/fig3/$1.log 2>&1
  echo "$1 rc=$?" >> /work/fig3/done.txt
done
