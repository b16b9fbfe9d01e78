"""alexnet_jax/base/environment.py: `python -m launch.<name>` re-executes itself once with
glibc's malloc on transparent huge pages, keeps a user's own setting, does nothing off
glibc 2.35+, and logs the changes it runs with. (That a launcher really runs that way, with
its arguments: tests/test_benchmark.py.) And launch/cli.py's exit: garbage collected, the
rest frozen."""
import os
import subprocess
import sys

import pytest

from alexnet_jax.base import environment

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_huge_pages_join_the_other_tunables():
  assert environment.environment_with_huge_pages({"A": "1"}, glibc=(2, 36)) == {
      "A": "1", "GLIBC_TUNABLES": "glibc.malloc.hugetlb=1"}
  env = environment.environment_with_huge_pages({"GLIBC_TUNABLES": "glibc.malloc.arena_max=2"},
                                           glibc=(2, 35))
  assert env["GLIBC_TUNABLES"] == "glibc.malloc.arena_max=2:glibc.malloc.hugetlb=1"


@pytest.mark.parametrize("environ,glibc", [
    ({"GLIBC_TUNABLES": "glibc.malloc.hugetlb=0"}, (2, 36)),   # the user's choice stands
    ({"GLIBC_TUNABLES": "glibc.malloc.hugetlb=1"}, (2, 36)),   # already re-executed
    ({}, (2, 34)),   # glibc without the tunable
    ({}, ())])       # not glibc
def test_no_change_where_set_or_unsupported(environ, glibc):
  assert environment.environment_with_huge_pages(environ, glibc=glibc) is None


def test_a_launcher_logs_the_changes_it_runs_with():
  env = {k: v for k, v in os.environ.items() if k not in ("XLA_FLAGS", "GLIBC_TUNABLES")}
  proc = subprocess.run([sys.executable, "-m", "launch.curves"], capture_output=True,
                        text=True, cwd=ROOT, env=env, timeout=120)
  assert proc.stderr.strip().splitlines()[-1] == "error: name at least one training workdir"
  assert f"XLA_FLAGS has {environment.CPU_CONV_FLAG}" in proc.stderr, proc.stderr
  huge = "GLIBC_TUNABLES has glibc.malloc.hugetlb=1" in proc.stderr
  assert huge == (environment.glibc_version() >= (2, 35)), proc.stderr


def test_a_launchers_exit_finalises_its_garbage_and_freezes_the_rest(tmp_path):
  """launch/cli.py's exit handler: garbage left by `main` is collected (its finalisers run),
  and what is alive at exit is frozen, so the interpreter's last collections skip it (a
  cycle alive at exit is then not finalised, which Python never promised)."""
  script = tmp_path / "launcher.py"
  script.write_text(
      "import gc, sys\n"
      "from launch import cli\n"
      "class Finalised:\n"
      "  def __init__(self, path):\n"
      "    self.me, self.path = self, path\n"   # a cycle: only a collection ends it
      "  def __del__(self, gc=gc, open=open, str=str):\n"
      "    with open(self.path, 'w') as f:\n"
      "      f.write(str(gc.get_freeze_count()))\n"
      "ALIVE_AT_EXIT = Finalised(sys.argv[1] + '.alive')\n"
      "def main(argv):\n"
      "  Finalised(argv[1] + '.garbage')\n"
      "if __name__ == '__main__':\n"
      "  cli.run(main, takes_args=True, runs_xla=False)\n")
  out = str(tmp_path / "out")
  subprocess.run([sys.executable, str(script), out], check=True, timeout=60,
                 env=dict(os.environ, PYTHONPATH=ROOT))
  assert open(out + ".garbage").read() == "0"   # collected before the freeze
  assert not os.path.exists(out + ".alive")     # frozen: never walked again


def test_an_error_in_a_finaliser_at_exit_is_reported_as_itself(tmp_path):
  """launch/cli.py's unraisable hook still reports while the interpreter tears the modules
  down (it used to fail there itself, with an AttributeError in place of the error)."""
  script = tmp_path / "launcher.py"
  script.write_text(
      "import json\n"
      "class Broken:\n"
      "  def __del__(self):\n"
      "    raise ValueError('broken finaliser')\n"
      "json.left_at_exit = Broken()\n"   # imported before launch.cli: cleared after it
      "from launch import cli\n"
      "if __name__ == '__main__':\n"
      "  cli.run(lambda argv: None, runs_xla=False)\n")
  proc = subprocess.run([sys.executable, str(script)], capture_output=True, text=True,
                        timeout=60, env=dict(os.environ, PYTHONPATH=ROOT))
  assert "ValueError: broken finaliser" in proc.stderr, proc.stderr
  assert "AttributeError" not in proc.stderr, proc.stderr
