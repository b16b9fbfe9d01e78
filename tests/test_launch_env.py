"""alexnet_jax/base/environment.py: `python -m launch.<name>` re-executes itself once with
glibc's malloc on transparent huge pages, keeps a user's own setting, does nothing off
glibc 2.35+, and logs the changes it runs with. (That a launcher really runs that way, with
its arguments: tests/test_benchmark.py.)"""
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
