"""The offline quick start: a two-tower AlexNet learns a small generated shapes dataset
(alexnet_jax/data/synthetic.py; nothing is downloaded) in a few minutes on a 2-core CPU.

    python -m launch.train --config=experiments/quickstart.py --workdir=/tmp/alexnet_quickstart
"""
from alexnet_jax.nn import models
from experiments import default


def get_config():
  c = default.get_config()
  c.model = models.model_config("small", num_classes=4, towers=2, fc_features=(512, 512),
                               init_scheme="he")  # the paper's N(0, 0.01) needs far longer
  c.data.name = "shapes"          # generated into <workdir>/shapes on first use
  c.data.train_split = "train"
  c.data.eval_split = "test"
  c.data.image_size = 64
  c.data.resize_size = 72
  c.data.input_scale = "standardized"   # with the 'he' init; the paper's scale needs its init
  c.data.mean = (0.5, 0.5, 0.5)
  c.data.std = (0.25, 0.25, 0.25)
  c.batch_size = 32
  c.num_train_steps = 300
  c.schedule = "constant"
  c.learning_rate = 0.01
  c.log_every_steps = 25
  c.eval_every_steps = 100
  c.checkpoint_every_steps = 100
  return c
