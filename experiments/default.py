"""Every config field, with the paper's ImageNet recipe as the defaults (§4, §5).

Experiments import this and change a few fields. Any field can be overridden on the command
line: `--config.batch_size=64 --config.model.lrn=False`.
"""
import ml_collections

from alexnet_jax import models


def get_config() -> ml_collections.ConfigDict:
  c = ml_collections.ConfigDict()
  c.seed = 0

  c.model = models.model_config("paper")  # see alexnet_jax/models.py PRESETS

  # Input (alexnet_jax/input_pipeline.py).
  c.data = ml_collections.ConfigDict()
  c.data.name = "imagenet2012"   # a tfds name, or 'folder' for <root>/<split>/<class>/<image>
  c.data.data_dir = ""           # tfds data_dir, or the folder root for 'folder'
  c.data.train_split = "train"   # tfds split syntax, slicing included: 'train[:90%]'
  c.data.eval_split = "validation"
  c.data.image_size = 227        # training crop and evaluation centre crop (§4.1)
  c.data.resize_size = 256       # shorter side before cropping (§2)
  c.data.pca_lighting = 0.1      # std of the PCA colour alphas (§4.1); 0 turns it off
  c.data.flip = True             # random horizontal flips (§4.1)
  c.data.input_scale = "paper"   # paper: 0-255 pixels minus the mean (§2) | standardized
  c.data.mean = (0.485, 0.456, 0.406)  # per-channel training-set mean, on a 0-1 scale (ImageNet)
  c.data.std = (0.229, 0.224, 0.225)   # used by 'standardized' only
  c.data.shuffle_buffer = 10_000

  # Optimisation (§5): SGD, momentum 0.9, weight decay 5e-4, lr 0.01, divided by 10 when
  # the validation error stops improving; about 90 epochs at batch 128.
  c.batch_size = 128             # global, over all devices and processes
  c.num_epochs = 90.0
  c.num_train_steps = -1         # > 0 overrides num_epochs
  c.learning_rate = 0.01
  c.momentum = 0.9
  c.weight_decay = 5e-4
  c.schedule = "plateau"         # plateau | step | cosine | constant
  c.plateau_patience = 2         # evaluations without improvement before lr /= 10
  c.plateau_factor = 0.1
  c.step_epochs = (30, 60, 80)   # 'step': divide by 10 at these epochs
  c.warmup_epochs = 0.0          # 'cosine': linear warm-up first

  # Devices (alexnet_jax/sharding.py): (data, model); 0 = derive from the devices present.
  c.mesh_shape = (0, 0)

  # Logging, evaluation and checkpoints, in steps.
  c.log_every_steps = 50
  c.eval_every_steps = 5000      # also at the end; drives the plateau schedule
  c.eval_batches = -1            # -1: the whole eval split
  c.checkpoint_every_steps = 5000
  c.keep_checkpoints = 3
  return c
