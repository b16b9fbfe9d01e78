import numpy as np
import pytest

from alexnet_jax import visualize
from test_train import shapes_dir, tiny_config, with_data  # noqa: F401 (fixture)


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


def test_figure_from_a_two_tower_checkpoint(shapes_dir, tmp_path):
  import jax
  from alexnet_jax import inference, train
  cfg = with_data(tiny_config(num_train_steps=2, eval_every_steps=2, checkpoint_every_steps=2),
                  shapes_dir)
  train.train_and_evaluate(cfg, str(tmp_path))
  restored = inference.load(str(tmp_path), "latest", devices=jax.local_devices()[:1])
  kernel = np.asarray(restored.params["conv1"]["kernel"])
  assert kernel.shape == (11, 11, 3, 16)
  visualize.save_kernel_figure(kernel, restored.cfg.model.towers, str(tmp_path / "k.png"))
  assert (tmp_path / "k.png").stat().st_size > 1000
