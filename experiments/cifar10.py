"""cuda-convnet's layers-conv-local-11pct CIFAR-10 net of the paper's §3.3 remark with its
locally connected layers as convolutions (models.py preset 'conv_local_11pct_as_conv';
experiments/conv_local_11pct.py is the net itself), on 32x32 images with pad-and-crop and
flips, at the paper's input scale (0-255 minus the training mean) with the paper's
N(0, 0.01) init: 30 epochs of batch 128, cosine schedule. experiments/results/cifar10/
holds its LRN and pooling ablations (experiments/sweeps/paper_claims.py).

    python -m launch.prepare --source=<cifar10 folder or tfds:cifar10> --size=32 \
        --out=data/cifar10
    python -m launch.train --config=experiments/cifar10.py --workdir=runs/cifar10 \
        --config.data.data_dir=data/cifar10
(a folder source is <root>/{train,test}/<class>/*.jpg.)
"""
from alexnet_jax.nn import models
from experiments import default


def get_config():
  c = default.get_config()
  c.model = models.model_config("conv_local_11pct_as_conv")
  c.data.train_split = "train"
  c.data.eval_split = "test"
  c.data.image_size = 32
  c.data.resize_size = 32
  c.data.pca_lighting = 0.0
  c.data.mean = (0.4913, 0.4821, 0.4465)   # the JPEG copies' statistics (shared/data README)
  c.data.std = (0.2452, 0.2428, 0.2606)
  c.batch_size = 128
  c.num_epochs = 30.0
  c.schedule = "cosine"
  c.warmup_epochs = 1.0
  c.learning_rate = 0.01
  c.log_every_steps = 100
  c.eval_every_steps = 390
  c.checkpoint_every_steps = 390
  return c
