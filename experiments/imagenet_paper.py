"""The paper's recipe on ImageNet (ILSVRC-2012), §4-§5: 227x227 crops of 256-pixel images,
two towers, batch 128, SGD momentum 0.9, weight decay 5e-4, lr 0.01 divided by 10 when the
validation error stops improving, about 90 epochs.

ImageNet is a manual download for tensorflow-datasets: place ILSVRC2012_img_train.tar and
ILSVRC2012_img_val.tar in <data_dir>/downloads/manual and run with
--config.data.data_dir=<data_dir>; tfds prepares the dataset on first use.
"""
from experiments import default


def get_config():
  c = default.get_config()
  c.data.name = "imagenet2012"
  c.eval_every_steps = 10_000   # about once per epoch (1,281,167 / 128 = 10,009 steps)
  c.checkpoint_every_steps = 10_000
  return c
