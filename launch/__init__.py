"""Entry points, each run as `python -m launch.<name>` (its docstring shows how).

Started that way on Linux, a launcher first re-executes itself once with glibc's malloc
backing large allocations by transparent huge pages (`GLIBC_TUNABLES=glibc.malloc.hugetlb=1`,
glibc 2.35 or later). XLA:CPU allocates a step's buffers afresh at every execution, which
glibc maps and unmaps each time, so the kernel faults them in and zeroes them page by page;
2 MiB pages make that a small fraction (benchmarks/README.md has the figures). glibc reads
the setting only when a process starts, hence the re-execution, done here before anything
heavy is imported. A `glibc.malloc.hugetlb` already in GLIBC_TUNABLES is left alone (`=0`
turns this off).
"""
from __future__ import annotations

import os
import sys

HUGE_PAGES = "glibc.malloc.hugetlb=1"


def _glibc_version() -> tuple[int, ...]:
  try:
    name, version = (os.confstr("CS_GNU_LIBC_VERSION") or "").split()
    return tuple(int(v) for v in version.split(".")[:2]) if name == "glibc" else ()
  except (ValueError, OSError):   # not glibc, or no such confstr name here
    return ()


def environment_with_huge_pages(environ: dict[str, str],
                                glibc: tuple[int, ...] | None = None) -> dict[str, str] | None:
  """`environ` with HUGE_PAGES added to GLIBC_TUNABLES, or None where it needs no change:
  the setting is there already (whatever its value), or the C library is not glibc 2.35+."""
  glibc = _glibc_version() if glibc is None else glibc
  tunables = environ.get("GLIBC_TUNABLES", "")
  if glibc < (2, 35) or "glibc.malloc.hugetlb" in tunables:
    return None
  return {**environ, "GLIBC_TUNABLES": ":".join(filter(None, [tunables, HUGE_PAGES]))}


if sys.argv[:1] == ["-m"] and sys.executable:   # being imported by `python -m launch.<name>`
  _env = environment_with_huge_pages(dict(os.environ))
  if _env is not None:
    sys.stdout.flush()
    sys.stderr.flush()
    os.execve(sys.executable, [sys.executable, *sys.orig_argv[1:]], _env)
