import os
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from alexnet_jax.programs import visualize
from test_train import tiny_config, with_data
import processes

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_kernel_grid_places_each_tower_in_its_own_block():
  kernel = np.zeros((11, 11, 3, 96), np.float32)
  kernel[0, 0, 0, :] = 1.0          # one bright red pixel per kernel
  kernel[..., 48:] *= -1            # tower 2's kernels inverted
  image = visualize.kernel_grid(kernel, towers=2, columns=16)
  assert image.shape == (2 * 3 * 12 + 3, 16 * 12 - 1, 3)
  # Tower 1 first kernel: red at its top-left pixel (max after per-kernel scaling).
  np.testing.assert_allclose(image[0, 0], [1.0, 0.0, 0.0])
  # Tower 2 starts after 3 rows of tiles and the gap between towers; there it is the minimum.
  top = 3 * 12 + 3
  np.testing.assert_allclose(image[top, 0], [0.0, 1.0, 1.0])


def test_kernel_grid_rejects_non_rgb():
  with pytest.raises(ValueError, match="RGB"):
    visualize.kernel_grid(np.zeros((5, 5, 64, 64)), towers=1)


def test_launch_visualize_draws_a_two_tower_checkpoints_conv1(shapes_dir, tmp_path):
  """The entry point on a trained workdir: a PNG of the kernel grid's shape (plus the
  title), with the kernels' colours in it, not a blank canvas."""
  from alexnet_jax.programs import train
  cfg = with_data(tiny_config(num_train_steps=2, eval_every_steps=2, checkpoint_every_steps=2),
                  shapes_dir)
  train.train_and_evaluate(cfg, str(tmp_path))
  env = processes.child_env()
  proc = subprocess.run([sys.executable, "-m", "launch.visualize", f"--workdir={tmp_path}"],
                        cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
  assert proc.returncode == 0, proc.stderr[-2000:]
  with Image.open(tmp_path / "conv1_kernels.png") as im:
    pixels = np.asarray(im.convert("RGB"), np.float32)
  grid = visualize.kernel_grid(np.zeros((11, 11, 3, 16)), towers=2)   # 16 kernels, 2 towers
  ratio = pixels.shape[0] / pixels.shape[1]
  want = grid.shape[0] / grid.shape[1]
  assert want < ratio < want + 0.5, (ratio, want)   # the title adds a little height
  assert pixels.std(axis=(0, 1)).min() > 5          # colourful kernels, not a blank figure
