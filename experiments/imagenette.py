"""The paper model on Imagenette (10 easy ImageNet classes): the paper's pipeline and
optimiser at a size one machine can train.

With the tfds dataset (downloads where the machine can):
    python -m launch.train --config=experiments/imagenette.py --workdir=runs/imagenette
With a local folder <root>/train/<synset>/*.JPEG, holding out 10% for validation:
    python -m launch.train --config=experiments/imagenette.py --workdir=runs/imagenette \
        --config.data.name=folder --config.data.data_dir=../shared/data/imagenette \
        --config.data.train_split='train[:90%]' --config.data.eval_split='train[90%:]'
"""
from experiments import default


def get_config():
  c = default.get_config()
  c.model.num_classes = 10
  c.data.name = "imagenette/full-size-v2"
  c.data.train_split = "train"
  c.data.eval_split = "validation"
  c.num_epochs = 30.0
  c.eval_every_steps = 500
  c.checkpoint_every_steps = 500
  c.plateau_patience = 3
  return c
