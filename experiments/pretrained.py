"""The configs of the pretrained AlexNets that `launch.import_weights` brings in, and the
starting point for fine-tuning them (alexnet_jax/programs/pretrained.py).

`:torchvision`  torchvision's AlexNet (the `owt` model, Krizhevsky 2014): 224 crops of
                images resized to 256 the way torchvision.transforms does it, then its
                ImageNet mean and std.
`:caffe`        Caffe's bvlc_alexnet (the paper's two towers, §3.2; LRN in Caffe's form, over
                all maps, k=1): 227 crops of the §2 256 square, 0-255 pixels minus Caffe's
                ImageNet mean (104.0, 116.7, 122.7 in Caffe's BGR order). The importer turns
                conv1's kernel from BGR to RGB, so images go in as RGB like everywhere here.

Fine-tune one on your own prepared folder (README, "Train on your own images"):
    python -m launch.train --config=experiments/pretrained.py:torchvision \
        --config.init_from=runs/torchvision_alexnet --workdir=runs/mine_ft \
        --config.data.data_dir=data/my_images --config.model.num_classes=3
The fine-tuning fields differ from the paper's recipe: a constant rate of 0.001, 10 epochs,
no PCA lighting.
"""
from experiments import default

TORCHVISION_MEAN = (0.485, 0.456, 0.406)
TORCHVISION_STD = (0.229, 0.224, 0.225)
CAFFE_MEAN_BGR = (104.00698793, 116.66876762, 122.67891434)   # ilsvrc_2012_mean, 0-255


def get_config(arg: str | None = None):
  if arg == "torchvision":
    c = default.get_config("owt")
    c.model.init_scheme = "torch"
    c.data.image_size = 224
    c.data.input_scale = "standardized"
    c.data.mean, c.data.std = TORCHVISION_MEAN, TORCHVISION_STD
    c.data.resize_convention = "torchvision"
  elif arg == "caffe":
    c = default.get_config("paper")
    c.model.init_scheme = "caffe"
    c.model.lrn_convention = "caffe"     # alpha / n (Caffe's LRN layer, as ONNX's LRN)
    c.model.lrn_k = 1.0
    c.model.lrn_across_towers = True     # one GPU in Caffe: LRN reads both towers' maps
    c.data.image_size = 227
    c.data.input_scale = "paper"
    c.data.mean = tuple(m / 255.0 for m in CAFFE_MEAN_BGR[::-1])   # RGB, 0-1 scale
  else:
    raise ValueError(f"experiments/pretrained.py takes 'torchvision' or 'caffe', got {arg!r}")
  c.data.resize_size = 256
  c.data.pca_lighting = 0.0
  c.batch_size = 32
  c.learning_rate = 0.001
  c.schedule = "constant"
  c.num_epochs = 10.0
  c.eval_every_steps = 500
  c.checkpoint_every_steps = 500
  return c
