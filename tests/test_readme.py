"""The README's "Quick start" (its two make commands, in a fresh clone, and the package
installed without TensorFlow) and "Train on your own images" (done as it says on a small
folder, in processes where `import tensorflow` fails), as a newcomer would type them."""
import glob
import json
import os
import re
import shlex
import shutil
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image
import processes

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# Only so that the test runs in seconds: a few steps of a small batch.
TINY = ["--config.num_train_steps=4", "--config.batch_size=8", "--config.log_every_steps=2",
        "--config.eval_every_steps=4", "--config.checkpoint_every_steps=4"]


def readme_section(section: str) -> str:
  text = open(os.path.join(ROOT, "README.md")).read()
  return text.split(f"## {section}\n", 1)[1].split("\n## ", 1)[0]


def readme_block(section: str) -> list[str]:
  """The lines of a README section's first bash block, continuations joined."""
  block = re.search(r"```bash\n(.*?)```", readme_section(section), re.S).group(1)
  return block.replace("\\\n", " ").splitlines()


def readme_commands(section: str) -> list[list[str]]:
  """The `python -m launch.*` commands of a README section's first bash block."""
  return [shlex.split(line.split(" | ")[0]) for line in readme_block(section)
          if line.startswith("python -m launch.")]


def norm(name: str) -> str:
  """A distribution's name as pip compares them."""
  return re.sub(r"[-_.]+", "-", name).lower()


def make(*args: str, cwd: str = ROOT, timeout: int = 300) -> subprocess.CompletedProcess:
  """`make ARGS` in `cwd`, with none of an outer make's or shell's settings."""
  env = {k: v for k, v in processes.child_env().items()
         if k not in ("MAKEFLAGS", "MFLAGS", "MAKELEVEL", "PYTHONPATH")}
  return subprocess.run(["make", *args], cwd=cwd, env=env, capture_output=True, text=True,
                        timeout=timeout, stdin=subprocess.DEVNULL)


def test_quick_start_is_two_make_commands_that_run_what_the_readme_says():
  assert readme_block("Quick start") == ["make quickstart", "make test"]
  prose = " ".join(readme_section("Quick start").split())
  train = make("-s", "-n", "quickstart", "PY=python").stdout.splitlines()[0]
  assert f"`{train.strip()}`" in prose, train
  test = make("-s", "-n", "test", "PY=python").stdout
  assert "python -m pytest -q" in test and "`python -m pytest -q`" in prose, test
  assert "make test" in open(os.path.join(ROOT, ".ci", "run")).read()


@pytest.mark.slow
def test_quick_start_in_a_fresh_clone_and_the_package_without_tensorflow(tmp_path):
  """`make quickstart` in a fresh clone makes .venv from requirements.txt (no TensorFlow)
  and trains; the package installs into that venv with nothing more to fetch, and from
  elsewhere imports every module, trains, evaluates and predicts; `make quickstart` again
  skips the install. (`make test` in a fresh clone is what CI runs; how it passes ARGS to
  pytest and fails when pytest does is the next test's, with a stand-in pytest.)"""
  if subprocess.run(["git", "-C", ROOT, "rev-parse"], capture_output=True).returncode:
    pytest.skip("not a git checkout")
  clone = str(tmp_path / "clone")
  subprocess.run(["git", "clone", "--quiet", ROOT, clone], check=True)
  short = "ARGS=" + " ".join(TINY)

  first = make("quickstart", short, cwd=clone, timeout=1800)
  assert first.returncode == 0, first.stdout[-2000:] + first.stderr[-3000:]
  assert "Installing requirements.txt into .venv" in first.stdout, first.stdout
  workdir = os.path.join(clone, "workdirs", "quickstart")
  assert f"checkpoints: {workdir}/checkpoints" in first.stdout, first.stdout
  assert os.listdir(os.path.join(workdir, "checkpoints")) == ["4"]

  python = os.path.join(clone, ".venv", "bin", "python")
  no_tf = subprocess.run([python, "-c", "import tensorflow"], capture_output=True, text=True)
  assert "No module named 'tensorflow'" in no_tf.stderr, no_tf.stderr

  # requirements.txt pins exactly what the package needs (pip and setuptools come with the
  # venv), and the package (as from a git URL) installs into that venv with nothing more.
  requirements = os.path.join(clone, "requirements.txt")
  report = str(tmp_path / "resolved.json")
  subprocess.run([python, "-m", "pip", "install", "--quiet", "--dry-run", "--ignore-installed",
                  "--report", report, "-c", requirements, clone], check=True)
  resolved = {(norm(p["metadata"]["name"]), p["metadata"]["version"])
              for p in json.load(open(report))["install"]}
  pins = [line.split("#")[0].split(";")[0] for line in open(requirements)]   # no markers
  pinned = {(norm(pin.split("==")[0]), pin.split("==")[1].strip()) for pin in pins if "==" in pin}
  venv_own = {p for p in resolved if p[0] in ("pip", "setuptools", "alexnet-jax")}
  assert resolved - venv_own == pinned, (resolved - venv_own ^ pinned)
  report = str(tmp_path / "install.json")
  subprocess.run([python, "-m", "pip", "install", "--quiet", "--report", report,
                  "-c", os.path.join(clone, "requirements.txt"), clone], check=True)
  installed = [p["metadata"]["name"] for p in json.load(open(report))["install"]]
  assert installed == ["alexnet-jax"], installed
  elsewhere = tmp_path / "elsewhere"
  elsewhere.mkdir()
  where = subprocess.run([python, "-c", "import alexnet_jax, launch; print(launch.__file__)"],
                         cwd=elsewhere, capture_output=True, text=True, check=True).stdout
  assert "site-packages" in where, where
  every_module = ("import importlib, pkgutil, alexnet_jax, experiments\n"
                  "for p in (alexnet_jax, experiments):\n"
                  "  for m in pkgutil.walk_packages(p.__path__, p.__name__ + '.'):\n"
                  "    importlib.import_module(m.name)\n")
  Image.fromarray(np.full((80, 80, 3), 200, np.uint8)).save(elsewhere / "image.png")
  env = processes.child_env()
  env.pop("PYTHONPATH", None)
  for argv in (["-c", every_module],
               ["-m", "launch.train", f"--config={clone}/experiments/quickstart.py",
                "--workdir=run", *TINY],
               ["-m", "launch.evaluate", "--workdir=run"],
               ["-m", "launch.predict", "--workdir=run", "image.png"]):
    proc = subprocess.run([python, *argv], cwd=elsewhere, env=env, capture_output=True,
                          text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
  assert glob.glob(str(elsewhere / "run" / "eval_*.json")), os.listdir(elsewhere / "run")
  assert "image.png" in proc.stdout, proc.stdout

  again = make("quickstart", short, cwd=clone)
  assert again.returncode == 0, again.stderr[-3000:]
  assert "Installing" not in again.stdout, again.stdout


@pytest.mark.slow
def test_make_remakes_the_venv_only_when_its_requirements_change(tmp_path, monkeypatch):
  """The Makefile's venv step with one small package per requirements file, and stand-ins
  for launch.train and pytest that print their arguments."""
  shutil.copy(os.path.join(ROOT, "Makefile"), tmp_path)
  (tmp_path / "launch").mkdir()
  (tmp_path / "launch" / "__init__.py").write_text("")
  (tmp_path / "launch" / "train.py").write_text("import sys; print('train', sys.argv[1:])\n")
  (tmp_path / "pytest.py").write_text("import os, sys; print('pytest', sys.argv[1:]); "
                                      "sys.exit(int(os.environ.get('CODE', '0')))\n")
  (tmp_path / "requirements.txt").write_text("six==1.17.0\n")
  (tmp_path / "requirements-test.txt").write_text("iniconfig==2.3.1\n")
  here = str(tmp_path)

  def versions() -> str:
    code = ("import importlib.metadata as m\nfor p in ('six', 'iniconfig'):\n  try: "
            "print(p, m.version(p))\n  except m.PackageNotFoundError: print(p, None)\n")
    return subprocess.run([str(tmp_path / ".venv" / "bin" / "python"), "-c", code],
                          capture_output=True, text=True, check=True).stdout.split()

  def ok(*args: str) -> str:
    proc = make(*args, cwd=here)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    return proc.stdout

  out = ok("quickstart", "ARGS=--config.seed=1")
  assert "Installing requirements.txt into .venv" in out, out
  assert ("train ['--config=experiments/quickstart.py', '--workdir=workdirs/quickstart', "
          "'--config.seed=1']") in out, out
  assert versions() == ["six", "1.17.0", "iniconfig", "None"]
  assert "Installing" not in ok("quickstart")
  out = ok("test", "ARGS=-k x")
  assert "Installing requirements.txt requirements-test.txt into .venv" in out, out
  assert "pytest ['-q', '-k', 'x']" in out, out
  assert versions() == ["six", "1.17.0", "iniconfig", "2.3.1"]
  assert "Installing" not in ok("test") + ok("quickstart")
  (tmp_path / "requirements.txt").write_text("six==1.16.0\n")
  assert "Installing" in ok("quickstart")
  assert versions() == ["six", "1.16.0", "iniconfig", "None"]   # made afresh
  monkeypatch.setenv("CODE", "5")
  failed = make("test", cwd=here)
  assert failed.returncode != 0 and "pytest collected no tests" in failed.stderr, failed


@pytest.mark.slow
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
    env = processes.child_env(PYTHONPATH=str(blocker.parent))
    proc = subprocess.run(argv, cwd=ROOT, capture_output=True, text=True, timeout=300, env=env)
    assert proc.returncode == 0, proc.stderr[-3000:]
  assert "blue" in proc.stdout or "green" in proc.stdout or "red" in proc.stdout, proc.stdout
  assert sorted(os.listdir(tmp_path / "runs" / "my_images" / "checkpoints")) == ["4"]
