"""The README's "Train on your own images" section, done as it says on a small folder, in
processes where `import tensorflow` fails: the training path runs on a JAX-only image."""
import glob
import os
import re
import shlex
import subprocess
import sys

import numpy as np
from PIL import Image

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# Only so that the test runs in seconds: a few steps of a small batch.
TINY = ["--config.num_train_steps=4", "--config.batch_size=8", "--config.log_every_steps=2",
        "--config.eval_every_steps=4", "--config.checkpoint_every_steps=4"]


def readme_commands(section: str) -> list[list[str]]:
  """The `python -m launch.*` commands of a README section's first bash block."""
  text = open(os.path.join(ROOT, "README.md")).read()
  body = text.split(f"## {section}\n", 1)[1].split("\n## ", 1)[0]
  block = re.search(r"```bash\n(.*?)```", body, re.S).group(1).replace("\\\n", " ")
  return [shlex.split(line.split(" | ")[0]) for line in block.splitlines()
          if line.startswith("python -m launch.")]


def test_train_on_your_own_images_as_the_readme_says(tmp_path):
  rng = np.random.default_rng(0)
  images = tmp_path / "my_images"
  for split, n in (("train", 12), ("val", 4)):
    for c, colour in enumerate(("red", "green", "blue")):
      os.makedirs(images / split / colour)
      for i in range(n):
        pixels = rng.integers(0, 60, (90, 120, 3)).astype(np.uint8)
        pixels[..., c] += 150
        Image.fromarray(pixels).save(images / split / colour / f"{i}.jpg")
  commands = readme_commands("Train on your own images")
  assert [c[2] for c in commands] == ["launch.prepare", "launch.train", "launch.predict"]
  blocker = tmp_path / "no_tf" / "tensorflow"
  blocker.mkdir(parents=True)
  (blocker / "__init__.py").write_text("raise ImportError('TensorFlow is blocked in this test')\n")

  def here(arg: str) -> list[str]:
    """The README's relative paths (my_images/..., runs/...) inside tmp_path."""
    key, _, value = arg.partition("=") if arg.startswith("--") else ("", "", arg)
    if not value.startswith(("my_images", "runs/", "data/")):
      return [arg]
    values = sorted(glob.glob(str(tmp_path / value))) or [str(tmp_path / value)]
    return [f"{key}={v}" if key else v for v in values]

  for command in commands:
    argv = [sys.executable] + [a for arg in command[1:] for a in here(arg)]
    if command[2] == "launch.train":
      argv += TINY
    env = {k: v for k, v in os.environ.items() if k != "XLA_FLAGS"}   # one CPU device
    env["PYTHONPATH"] = str(blocker.parent)
    proc = subprocess.run(argv, cwd=ROOT, capture_output=True, text=True, timeout=300, env=env)
    assert proc.returncode == 0, proc.stderr[-3000:]
  assert "blue" in proc.stdout or "green" in proc.stdout or "red" in proc.stdout, proc.stdout
  assert sorted(os.listdir(tmp_path / "runs" / "my_images" / "checkpoints")) == ["4"]
