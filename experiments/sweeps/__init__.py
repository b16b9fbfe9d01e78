"""Ablation sweeps (alexnet_jax/programs/sweep.py): each file's get_sweep(base_cfg) lists variants as
{dotted config field: value}, run for every seed in SEEDS.

    python -m launch.sweep --sweep=experiments/sweeps/lrn.py --root=/tmp/sweeps/lrn \
        --config=experiments/cifar10.py --config.data.data_dir=../shared/data/cifar10

They change only model fields that every preset has (lrn, pool_window/pool_stride,
activation, towers and features), so they apply to the cifar10, imagenette and
imagenet_paper configs alike.
"""
