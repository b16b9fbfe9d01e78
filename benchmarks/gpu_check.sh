#!/bin/bash
# Issue 11's GPU checks in one run: the paper model's step, the training loop against it
# (fp32 and bf16), the loader with several worker counts, and the real `launch.train` loop
# with and without the prefetch thread; then the CPU-only forms (alexnet_jax/nn/cpu_forms.py)
# against the others' (`benchmarks/lrn_forms.py`). QUICK=1 leaves out the loader's extra
# worker counts and the train run without the thread.
#
# Run from the repository root on a GPU machine whose Python has jax, flax, optax,
# orbax-checkpoint, absl, pillow and tensorboard; grain, array_record, portpicker and
# ml_collections may come as wheels in .whl/ (installed into /tmp/site first). Results go
# to $OUT (default /tmp/gpu_check): one JSON per benchmark, their logs in bench.log, the
# train runs' logs, machine.txt (8 files: what the device tool brings back), and a summary
# printed last.
#
# The wheels, for a CPython 3.12 machine, fetched where pip reaches PyPI:
#   pip download --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
#     --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 -d .whl \
#     grain==0.2.18 array_record==0.8.6 ml_collections==1.1.0 portpicker==1.6.0
#
#   WORKERS=12 bash benchmarks/gpu_check.sh
#   QUICK=1 WORKERS=12 bash benchmarks/gpu_check.sh                          # about 4 minutes
#   CONFIG=experiments/quickstart.py REPEATS=2 STEPS=30 LRN_FORMS="--steps=1 --rounds=1" \
#     bash benchmarks/gpu_check.sh                                          # a CPU dry run
set -u
OUT=${OUT:-/tmp/gpu_check}
WORKERS=${WORKERS:-12}
CONFIG=${CONFIG:-experiments/imagenet_paper.py}
REPEATS=${REPEATS:-100}
STEPS=${STEPS:-1500}
QUICK=${QUICK:-0}
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1 JAX_COMPILATION_CACHE_DIR=/tmp/jax_cache
if compgen -G ".whl/*.whl" >/dev/null; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
    --target /tmp/site .whl/*.whl || exit 1
  export PYTHONPATH=/tmp/site
fi
{ date -u; nproc; nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv;
  python3 -c "import jax, flax, optax, orbax.checkpoint, grain; print('jax', jax.__version__,
'flax', flax.__version__, 'optax', optax.__version__, jax.devices())"; } 2>&1 | tee "$OUT/machine.txt"

python3 -c "from alexnet_jax.data import synthetic
synthetic.make_prepared_shapes('/tmp/shapes', num_classes=4, size=256)" || exit 1

quiet() { grep -v '^[IW][0-9]\{4\} '; }   # absl's INFO/WARNING lines stay in the logs only
bench() {   # name, then flags
  local name=$1; shift
  timeout 180 python3 -m launch.benchmark --config="$CONFIG" --data_dir=/tmp/shapes --json="$OUT/$name.json" "$@" \
    > /tmp/bench.log 2>&1
  echo "== $name (exit $?)" | tee -a "$OUT/bench.log"; cat /tmp/bench.log >> "$OUT/bench.log"
  quiet < /tmp/bench.log | tail -40
}
bench fp32 --what=train,loop,input,gemm --workers="$WORKERS" --warmup=3 --repeats="$REPEATS"
bench bf16 --what=train,loop --workers="$WORKERS" --warmup=3 --repeats="$REPEATS" \
  --config.model.dtype=bfloat16
[ "$QUICK" = 1 ] || for w in 4 14; do bench "input_w$w" --what=input --workers=$w --warmup=5 --repeats="$REPEATS"; done

threads="True False"; [ "$QUICK" = 1 ] && threads=True
for thread in $threads; do   # the real loop, batches put from a background thread or not
  rm -rf /tmp/run
  timeout 150 python3 -m launch.train --config="$CONFIG" --workdir=/tmp/run \
    --config.data.data_dir=/tmp/shapes --config.data.eval_split=test \
    --config.model.num_classes=4 --config.data.workers="$WORKERS" \
    --config.data.prefetch_thread=$thread --config.num_train_steps="$STEPS" \
    --config.log_every_steps=$((STEPS / 15)) --config.eval_every_steps=$((STEPS * 2 / 3)) \
    --config.checkpoint_every_steps=$((STEPS * 2 / 3)) > "$OUT/train_thread_$thread.log" 2>&1
  echo "== launch.train, prefetch_thread=$thread (exit $?)"
  grep -E "images/s|eval|checkpoint|Error|error:" "$OUT/train_thread_$thread.log" | tail -25
done

echo "== the CPU-only forms against the others' on this backend" | tee -a "$OUT/bench.log"
PYTHONPATH=".:${PYTHONPATH:-}" timeout 240 python3 benchmarks/lrn_forms.py ${LRN_FORMS:---steps=100 --rounds=5} \
  2>&1 | quiet | tee -a "$OUT/bench.log"

echo "== summary"
python3 - "$OUT" <<'EOF'
import json, os, sys
out = sys.argv[1]
for name in ("fp32", "bf16", "input_w4", "input_w14"):
  path = os.path.join(out, name + ".json")
  if not os.path.exists(path):
    print(name, "no result"); continue
  r = json.load(open(path))
  keys = ("train_images_per_s", "step_images_per_s", "loop_images_per_s", "loop_over_step",
          "loop_inline_images_per_s", "loop_inline_over_step", "input_images_per_s",
          "input_images_per_s_per_worker", "gemm_gflop_per_s", "loop_workers", "input_workers")
  print(name, " ".join(f"{k}={r[k]:.4g}" if isinstance(r[k], float) else f"{k}={r[k]}"
                       for k in keys if k in r))
EOF
