"""Every config field, with the paper's ImageNet recipe as the defaults (§4, §5).

Experiments import this and change a few fields. Any field can be overridden on the command
line: `--config.batch_size=64 --config.model.lrn=False`.
"""
import ml_collections

from alexnet_jax.nn import models


def get_config(preset: str | None = None) -> ml_collections.ConfigDict:
  """`preset`: the model's starting point (alexnet_jax/nn/models.py PRESETS), 'paper' by
  default; on the command line `--config=experiments/default.py:owt`."""
  c = ml_collections.ConfigDict()
  c.seed = 0

  c.model = models.model_config(preset or "paper")

  # Input (alexnet_jax/data/dataset.py, loader.py; augmentation on the device: augment.py).
  c.data = ml_collections.ConfigDict()
  c.data.name = "prepared"       # 'prepared': data_dir is a `launch.prepare` output | 'tfds' |
                                 # 'shapes' (the quick start's generated data)
  c.data.data_dir = ""           # the prepared dataset's folder ('tfds': tfds's data_dir)
  c.data.tfds_name = ""          # 'tfds': a dataset built as ArrayRecord, e.g. 'cifar10'
  c.data.train_split = "train"   # a split, or a slice of one: 'train[:90%]', 'train[90%:]'
  c.data.eval_split = "validation"
  c.data.image_size = 227        # training crop and evaluation centre crop (§4.1)
  c.data.resize_size = 256       # the square that crops are taken from (§2); resized on the
                                 # device when the prepared squares have another size
  c.data.pca_lighting = 0.1      # std of the PCA colour alphas (§4.1); 0 turns it off
  c.data.flip = True             # random horizontal flips (§4.1)
  c.data.random_crop = True      # random image_size crops (§4.1); False: the centre crop
  c.data.input_scale = "paper"   # paper: 0-255 pixels minus the mean (§2) | standardized
  c.data.mean = (0.485, 0.456, 0.406)  # per-channel training-set mean, on a 0-1 scale (ImageNet)
  c.data.std = (0.229, 0.224, 0.225)   # used by 'standardized' only
  c.data.resize_convention = "paper"  # image files -> squares for predict/features: paper
                                 # (§2, bicubic) | torchvision (Resize + CenterCrop, bilinear)
  c.data.workers = -1            # loader processes; -1: none on <= 4 cores, else cores - 2
  c.data.prefetch_thread = True  # read and put batches on the devices from a background
                                 # thread (loader.DeviceIterator); False: the loop's thread

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

  # Fine-tuning (alexnet_jax/programs/finetune.py): start from another workdir's parameters.
  c.init_from = ""               # '<workdir>' or '<workdir>:<step>' (latest by default)
  c.freeze = ()                  # layers not trained (no update, no weight decay): ('conv1',)

  # Devices (alexnet_jax/run/sharding.py): (data, model); 0 = derive from the devices present.
  c.mesh_shape = (0, 0)

  # Logging, evaluation and checkpoints, in steps.
  c.log_every_steps = 50
  c.eval_every_steps = 5000      # also at the end; drives the plateau schedule
  c.eval_batches = -1            # -1: the whole eval split
  c.checkpoint_every_steps = 5000
  c.keep_checkpoints = 3
  return c
