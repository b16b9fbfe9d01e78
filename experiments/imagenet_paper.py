"""The paper's recipe on ImageNet (ILSVRC-2012), §4-§5: 227x227 crops of 256-pixel images,
two towers, batch 128, SGD momentum 0.9, weight decay 5e-4, lr 0.01 divided by 10 when the
validation error stops improving, about 90 epochs.

ImageNet is a manual download for tensorflow-datasets: place ILSVRC2012_img_train.tar and
ILSVRC2012_img_val.tar in <tfds_dir>/downloads/manual, build it (`tfds build imagenet2012
--data_dir=<tfds_dir>`), write the 256x256 squares once, and train from them:
    python -m launch.prepare --source=tfds:imagenet2012 --tfds_data_dir=<tfds_dir> \
        --out=data/imagenet
    python -m launch.train --config=experiments/imagenet_paper.py --workdir=runs/imagenet \
        --config.data.data_dir=data/imagenet
"""
from experiments import default


def get_config():
  c = default.get_config()
  c.eval_every_steps = 10_000   # about once per epoch (1,281,167 / 128 = 10,009 steps)
  c.checkpoint_every_steps = 10_000
  return c
