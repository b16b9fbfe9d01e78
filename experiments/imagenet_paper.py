"""The paper's recipe on ImageNet (ILSVRC-2012), §4-§5: 227x227 crops of 256-pixel images,
two towers, batch 128, SGD momentum 0.9, weight decay 5e-4, lr 0.01 divided by 10 when the
validation error stops improving, about 90 epochs.

From the files image-net.org hands out (the train and val tars and the devkit, in one
folder; or Kaggle's layout), write the 256x256 squares once and train from them
(docs/imagenet.md):
    python -m launch.prepare --source=imagenet:<folder> --out=data/imagenet
    python -m launch.train --config=experiments/imagenet_paper.py --workdir=runs/imagenet \
        --config.data.data_dir=data/imagenet
"""
from experiments import default


def get_config():
  c = default.get_config()
  c.eval_every_steps = 10_000   # about once per epoch (1,281,167 / 128 = 10,009 steps)
  c.checkpoint_every_steps = 10_000
  return c
