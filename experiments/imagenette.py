"""The paper's recipe on Imagenette (10 easy ImageNet classes): the paper's model, input
scale, augmentation and optimiser at a size one machine can train.

From a folder <root>/train/<synset>/*.JPEG (or --source=tfds:imagenette/full-size-v2),
holding out 10% of train for validation (the default splits):
    python -m launch.prepare --source=<root> --out=data/imagenette
    python -m launch.train --config=experiments/imagenette.py --workdir=runs/imagenette \
        --config.data.data_dir=data/imagenette

`--config=experiments/imagenette.py:cpu` is the same recipe shrunk for a 2-core CPU: half
the paper's widths (48-128-192-192-128, fc 2048-2048, two towers), 112x112 crops of
128x128 images (§2's 227 of 256, halved), 15 epochs; experiments/results/imagenette/ holds
a run of it.

Init: with the paper's N(0, 0.01) and biases of 1 (§5), the `cpu` size never started: 98%
of fc7's ReLUs died in the first two epochs (all by the end) and the loss stayed at ln 10
for 40. Caffe's variant (biases 0.1) started at epoch 3.6; PyTorch's default init ('torch',
which torchvision's AlexNet uses) starts at once at the paper's input scale, so it is the
default here (experiments/results/imagenette/). `--config.model.init_scheme=paper` selects
the paper's.
"""
from experiments import default


def get_config(arg: str | None = None):
  c = default.get_config()
  c.model.num_classes = 10
  c.model.init_scheme = "torch"
  c.data.train_split = "train[:90%]"
  c.data.eval_split = "train[90%:]"
  c.num_epochs = 30.0
  c.eval_every_steps = 500
  c.checkpoint_every_steps = 500
  c.plateau_patience = 3
  if arg == "cpu":
    c.model.features = (48, 128, 192, 192, 128)
    c.model.fc_features = (2048, 2048)
    c.data.image_size = 112
    c.data.resize_size = 128
    c.num_epochs = 15.0
    c.schedule = "cosine"
    c.warmup_epochs = 1.0
    c.log_every_steps = 20
    c.eval_every_steps = 133     # about an epoch of 90% of Imagenette (8,522 / 64)
    c.checkpoint_every_steps = 133
    c.batch_size = 64
  elif arg:
    raise ValueError(f"experiments/imagenette.py takes no argument or 'cpu', got {arg!r}")
  return c
