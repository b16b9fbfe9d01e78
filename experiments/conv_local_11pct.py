"""cuda-convnet's layers-conv-local-11pct CIFAR-10 net, the source of §3.3's "13% ... 11%"
(models.py preset 'conv_local_11pct': conv1, conv2, locally connected local3 and local4,
fc), trained as its layer-parameter file says: random 24x24 crops of the 32x32 images and
random flips (cuda-convnet's --crop-border=4), SGD with momentum 0.9 at epsW 0.001, batch
128, the layer file's init (N(0, initW), zero biases), 0-255 pixels minus the mean.

Its methodology: about 350 epochs on batches 1-4, 150 more on 1-5, then 10 epochs at
lr / 10 and 10 at lr / 100; here 500 epochs on all 50,000 training images and the same two
steps down. Evaluation: the centre 24x24 crop; `launch.evaluate --ten_crop` is
cuda-convnet's --multiview-test (the four corner crops and the centre one, each also
flipped, their softmax outputs averaged).

    python -m launch.train --config=experiments/conv_local_11pct.py --workdir=runs/11pct \\
        --config.data.data_dir=data/cifar10
    python -m launch.evaluate --workdir=runs/11pct --split=test --ten_crop

Not reproduced: the layer file's per-layer weight decay (wc 0 for conv1 and conv2, 0.004
for local3 and local4, 0.01 for fc10) is one decay here, 0.004 on every kernel (none on
biases, as there); its biases' learning rate is twice the weights' (epsB 0.002), here the
same; it subtracts the mean image, here the per-channel mean.
"""
from alexnet_jax.nn import models
from experiments import default


def get_config():
  c = default.get_config()
  c.model = models.model_config("conv_local_11pct")
  c.data.train_split = "train"
  c.data.eval_split = "test"
  c.data.image_size = 24         # random 24x24 crops of the 32x32 images
  c.data.resize_size = 32
  c.data.pca_lighting = 0.0
  c.data.mean = (0.4913, 0.4821, 0.4465)   # the JPEG copies' statistics (shared/data README)
  c.data.std = (0.2452, 0.2428, 0.2606)
  c.batch_size = 128
  c.learning_rate = 0.001
  c.momentum = 0.9
  c.weight_decay = 0.004
  c.schedule = "step"
  c.step_epochs = (500, 510)
  c.num_epochs = 520.0
  c.log_every_steps = 100
  c.eval_every_steps = 390
  c.checkpoint_every_steps = 390
  return c
