"""launch/__init__.py: `python -m launch.<name>` re-executes itself once with glibc's malloc
on transparent huge pages, keeps a user's own setting, and does nothing off glibc 2.35+.
(That a launcher really runs that way, with its arguments: tests/test_benchmark.py.)"""
import pytest

import launch


def test_huge_pages_join_the_other_tunables():
  assert launch.environment_with_huge_pages({"A": "1"}, glibc=(2, 36)) == {
      "A": "1", "GLIBC_TUNABLES": "glibc.malloc.hugetlb=1"}
  env = launch.environment_with_huge_pages({"GLIBC_TUNABLES": "glibc.malloc.arena_max=2"},
                                           glibc=(2, 35))
  assert env["GLIBC_TUNABLES"] == "glibc.malloc.arena_max=2:glibc.malloc.hugetlb=1"


@pytest.mark.parametrize("environ,glibc", [
    ({"GLIBC_TUNABLES": "glibc.malloc.hugetlb=0"}, (2, 36)),   # the user's choice stands
    ({"GLIBC_TUNABLES": "glibc.malloc.hugetlb=1"}, (2, 36)),   # already re-executed
    ({}, (2, 34)),   # glibc without the tunable
    ({}, ())])       # not glibc
def test_no_change_where_set_or_unsupported(environ, glibc):
  assert launch.environment_with_huge_pages(environ, glibc=glibc) is None
