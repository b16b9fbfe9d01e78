"""colour.py: the colour-specificity index on constructed kernels, and the tower statistics."""
import numpy as np
import pytest

from alexnet_jax.programs import colour
import processes


def _gabor(size: int = 11, theta: float = 0.6, wavelength: float = 4.0) -> np.ndarray:
  """An oriented Gabor patch [size, size]: a grating under a Gaussian envelope."""
  r = np.arange(size) - size // 2
  y, x = np.meshgrid(r, r, indexing="ij")
  along = x * np.cos(theta) + y * np.sin(theta)
  return np.exp(-(x ** 2 + y ** 2) / (2 * (size / 4) ** 2)) * np.cos(2 * np.pi * along / wavelength)


def _kernels(*per_channel) -> np.ndarray:
  """Kernels from [kh, kw, 3] arrays -> [kh, kw, 3, C]."""
  return np.stack(per_channel, axis=-1)


def test_a_luminance_gabor_scores_0_and_a_red_green_one_1():
  g = _gabor()
  grey = np.stack([g, g, g], axis=-1)                     # the same pattern in R, G and B
  red_green = np.stack([g, -g, np.zeros_like(g)], axis=-1)  # red against green
  blue_yellow = np.stack([-g / 2, -g / 2, g], axis=-1)      # blue against red + green
  index = colour.colour_index(_kernels(grey, red_green, blue_yellow))
  np.testing.assert_allclose(index, [0.0, 1.0, 1.0], atol=1e-9)


def test_the_mean_is_not_luminance_but_a_colour_blob_is_colour():
  g = _gabor()
  grey = np.stack([g, g, g], axis=-1)
  red_blob = np.zeros((11, 11, 3))
  red_blob[..., 0] = 1.0                                  # red everywhere, nothing else
  index = colour.colour_index(_kernels(grey + 5.0, red_blob))
  np.testing.assert_allclose(index, [0.0, 1.0], atol=1e-9)


def test_noise_scores_about_two_thirds_and_mixtures_in_between():
  rng = np.random.default_rng(0)
  noise = rng.standard_normal((11, 11, 3, 400))
  index = colour.colour_index(noise)
  assert abs(index.mean() - 242 / 362) < 0.01
  g = _gabor()
  half = np.stack([g, g, g], axis=-1) + np.stack([g, -g, np.zeros_like(g)], axis=-1)
  # (2g, 0, g): luminance (3g)^2 / 3 = 3g^2 of the 5g^2 in all
  np.testing.assert_allclose(colour.colour_index(half[..., None]), [0.4], atol=1e-9)


def test_gain_scales_each_channel_before_the_index():
  g = _gabor()
  kernel = np.stack([g / 2, g, g], axis=-1)[..., None]   # grey once R is doubled
  assert colour.colour_index(kernel)[0] > 0.05
  np.testing.assert_allclose(colour.colour_index(kernel, gain=(2.0, 1.0, 1.0)), [0.0],
                             atol=1e-9)
  with pytest.raises(ValueError, match="RGB"):
    colour.colour_index(np.zeros((5, 5, 4, 8)))


def test_halves_are_the_towers_or_seeded_random_halves():
  first, second = colour.halves(8, towers=2)
  assert list(first) == [0, 1, 2, 3] and list(second) == [4, 5, 6, 7]
  a = colour.halves(48, towers=1, seed=3)
  b = colour.halves(48, towers=1, seed=3)
  c = colour.halves(48, towers=1, seed=4)
  assert all(np.array_equal(x, y) for x, y in zip(a, b))
  assert not np.array_equal(a[0], c[0])
  assert sorted(np.concatenate(a)) == list(range(48)) and len(a[0]) == 24


def test_fisher_p_pools_p_values():
  assert colour.fisher_p([0.3]) == pytest.approx(0.3)
  # two runs: chi^2_4 survival of -2 ln(0.05 * 0.2) = 9.21: 0.0561 (tables)
  assert colour.fisher_p([0.05, 0.2]) == pytest.approx(0.0561, abs=1e-4)
  assert colour.fisher_p([0.01, 0.01, 0.01]) < 0.001 < colour.fisher_p([0.5, 0.5, 0.01])


def _run(gap: float, seed: int = 0) -> np.ndarray:
  """48 kernel indices: tower 2 `gap` above tower 1, with some spread."""
  rng = np.random.default_rng(seed)
  return np.concatenate([0.4 + 0.05 * rng.standard_normal(24),
                         0.4 + gap + 0.05 * rng.standard_normal(24)])


def test_separated_towers_count_and_random_halves_do_not():
  runs = {f"t2_s{s}": colour.run_statistics(_run(0.3, s), towers=2, permutations=2000)
          for s in range(3)}
  runs["t1_s0"] = colour.run_statistics(_run(0.0, 9), towers=1, permutations=2000)
  for s in range(3):
    r = runs[f"t2_s{s}"]
    assert r["colour_half"] == 2 and r["gap"] == pytest.approx(0.3, abs=0.05)
    assert r["p_value"] < 0.001 and r["abs_gap"] > 2 * r["null_p95"]
  assert runs["t1_s0"]["abs_gap"] < 0.05 and runs["t1_s0"]["split"].startswith("random")
  decision = colour.verdict(runs)
  assert decision["every_run"] and decision["count"] == 3
  assert decision["chance_all"] == pytest.approx(0.05 ** 3)
  assert "3 of 3" in colour.markdown(runs, decision)


def test_one_run_without_a_gap_fails_the_verdict_and_renumbering_does_not():
  flipped = _run(0.3, 1)[::-1]   # tower 1 the colour tower: the GPUs renumbered
  runs = {"a": colour.run_statistics(_run(0.3, 0), towers=2, permutations=2000),
          "b": colour.run_statistics(flipped, towers=2, permutations=2000),
          "control": colour.run_statistics(_run(0.0, 9), towers=1, permutations=2000)}
  decision = colour.verdict(runs)
  assert decision["every_run"] and decision["colour_tower"] == {"a": 2, "b": 1}
  runs["c"] = colour.run_statistics(_run(0.0, 2), towers=2, permutations=2000)
  decision = colour.verdict(runs)
  assert not decision["every_run"] and decision["counted"]["c"] is False
  assert decision["count"] == 2


@pytest.mark.slow
def test_launch_figure3_measures_the_kernels_as_trained_and_what_was_learned(tmp_path):
  """Two workdirs whose conv1 is its initialisation plus known kernels (grey Gabors in
  tower 1, red-green ones in tower 2; a one-tower control mixing both), divided by the
  run's per-channel input gain. The learned part scores 0 and 1 per tower, a gap the
  control's halves do not reach; the kernels as trained score what colour_index gives
  them; the JSON, the tables and the pictures are written."""
  import json
  import os
  import subprocess
  import sys

  import jax
  from alexnet_jax.data import augment
  from alexnet_jax.nn import models
  from alexnet_jax.programs import pretrained
  import helpers

  cfg = helpers.tiny_config()   # 16 conv1 kernels; 'standardized' input: per-channel gains
  cfg.data.std = (0.2, 0.25, 0.4)
  gain = augment.input_gain(cfg.data).reshape(1, 1, 3, 1)
  grey = [np.stack([_gabor(theta=t)] * 3, -1) for t in np.linspace(0, 3, 8)]
  red_green = [np.stack([_gabor(theta=t), -_gabor(theta=t), np.zeros((11, 11))], -1)
               for t in np.linspace(0, 3, 8)]
  source = tmp_path / "weights.bin"
  source.write_bytes(b"constructed")
  workdirs, trained = [], {}
  for name, towers, kernels in [("t2", 2, grey + red_green),
                                ("t1", 1, [k for pair in zip(grey, red_green) for k in pair])]:
    cfg.model.towers = towers
    size = cfg.data.image_size
    params = jax.jit(models.create_model(cfg.model, size).init)(   # as training does
        jax.random.key(cfg.seed), np.zeros((1, size, size, 3), np.float32))["params"]
    params = jax.tree.map(np.asarray, params)
    learned = (_kernels(*kernels) / gain).astype(np.float32)
    params["conv1"]["kernel"] = trained[name] = params["conv1"]["kernel"] + learned
    workdirs.append(pretrained.write_workdir(str(tmp_path / name), cfg, params, str(source),
                                             "constructed"))
  out = tmp_path / "figure3"
  env = processes.child_env()
  root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
  proc = subprocess.run([sys.executable, "-m", "launch.figure3", f"--out={out}",
                         "--permutations=500", *workdirs], cwd=root, env=env,
                        capture_output=True, text=True, timeout=300)
  assert proc.returncode == 0, proc.stderr[-2000:]
  report = json.loads((out / "figure3.json").read_text())
  t2, t1 = report["learned"]["runs"]["t2"], report["learned"]["runs"]["t1"]
  assert [h["mean"] for h in t2["halves"]] == pytest.approx([0.0, 1.0], abs=1e-5)
  assert t2["colour_half"] == 2 and t2["p_value"] < 0.01
  assert t1["split"] == "random halves (seed 0)" and t1["abs_gap"] < t2["abs_gap"]
  assert report["learned"]["verdict"]["counted"] == {"t2": True}
  for name in ("t2", "t1"):
    np.testing.assert_allclose(report["as_trained"]["runs"][name]["index"],
                               colour.colour_index(trained[name], gain.ravel()), atol=1e-5)
    assert 0.2 < report["runs"][name]["init_correlation"] < 0.9
  text = (out / "figure3.md").read_text()
  assert "| t2 | 2 | towers |" in text and "minus their initialisation" in text
  for png in ("t2_conv1.png", "t1_conv1.png", "t2_conv1_learned.png", "index.png",
              "index_learned.png"):
    assert (out / png).stat().st_size > 1000
