"""Figure 1 (§3.1) as the paper ran it: a four-layer convolutional net on CIFAR-10 with
ReLUs against the same net with tanh, "no regularization of any kind", each at the
learning rate that trains it fastest; the paper's ReLU net reaches 25% training error six
times sooner (in epochs) than its tanh net.

The net is cuda-convnet's layers-18pct (models.py preset 'layers_18pct_no_rnorm': conv 32,
32 and 64 maps of 5x5, pooling 3/2, fc; four layers with weights as §3.5 counts AlexNet's
eight; §3.3's "four-layer" conv-local-11pct net is the other reading, not run here)
with the layer file's init (`cuda_convnet`: N(0, initW), zero biases) at the paper's input
scale (0-255 minus the training mean). No regularisation: no weight decay, no dropout, no
augmentation (no crops, no flips, no lighting: every epoch sees the same 50,000 images)
and none of the net's response normalisation. SGD with momentum 0.9, batch 128, a constant
learning rate.

    python -m launch.train --config=experiments/figure1.py:relu --workdir=runs/figure1/relu \\
        --config.data.data_dir=data/cifar10
    python -m launch.train --config=experiments/figure1.py:tanh --workdir=runs/figure1/tanh \\
        --config.data.data_dir=data/cifar10

Each preset's learning rate is the best of experiments/sweeps/figure1_lr.py (the short
search, run from `:search`); experiments/results/figure1/ holds the search and the runs.
"""
from alexnet_jax.nn import models
from experiments import default

# Chosen by experiments/sweeps/figure1_lr.py (experiments/results/figure1/lr_search/): the
# rate with the lowest training error after SEARCH_EPOCHS.
LEARNING_RATES = {"relu": 0.003, "tanh": 0.01}
EPOCHS = {"relu": 10.0, "tanh": 60.0}   # each run's cap; the paper's tanh net took six times ReLU's
SEARCH_EPOCHS = 3.0


def get_config(arg: str | None = None):
  """`arg`: 'relu' (the default), 'tanh', or 'search' (the base of the learning-rate
  search, whose sweep sets the activation and the rate)."""
  arg = arg or "relu"
  if arg not in ("relu", "tanh", "search"):
    raise ValueError(f"experiments/figure1.py takes 'relu', 'tanh' or 'search', got {arg!r}")
  c = default.get_config()
  c.model = models.model_config("layers_18pct_no_rnorm",
                                activation="tanh" if arg == "tanh" else "relu")
  c.data.train_split = "train"
  c.data.eval_split = "test"
  c.data.image_size = 32
  c.data.resize_size = 32
  c.data.random_crop = False     # no augmentation of any kind
  c.data.flip = False
  c.data.pca_lighting = 0.0
  c.data.mean = (0.4913, 0.4821, 0.4465)   # the JPEG copies' statistics (shared/data README)
  c.data.std = (0.2452, 0.2428, 0.2606)
  c.weight_decay = 0.0
  c.momentum = 0.9
  c.batch_size = 128
  c.schedule = "constant"
  c.learning_rate = LEARNING_RATES.get(arg, 0.01)
  c.num_epochs = EPOCHS.get(arg, SEARCH_EPOCHS)
  c.log_every_steps = 39         # a tenth of an epoch (390 steps of 128): the curve's points
  c.eval_every_steps = 390
  c.checkpoint_every_steps = 390
  return c
