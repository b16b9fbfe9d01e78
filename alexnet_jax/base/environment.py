"""The two changes this project makes to its own process environment, both measured wins
(benchmarks/README.md), both made before the work they speed up can start, and both
logged by every launcher when they apply (`changes`, through launch/cli.py):

* XLA:CPU's convolution flag (`set_cpu_conv_flag`). XLA:CPU's default convolution path in
  jax 0.10 is 3-4x slower than PyTorch's; this flag restores the fast one. It must be in
  XLA_FLAGS before a backend starts, so `alexnet_jax/__init__.py` calls it on import: the
  library's own users (notebooks, the tests) get the fast path too. It only affects the
  CPU backend and changes no numbers (tests/test_xla_flags.py); a user's own
  `xla_cpu_experimental_ynn_fusion_type` wins.
* glibc's malloc on transparent huge pages (`reexecute_with_huge_pages`). XLA:CPU
  allocates a step's buffers afresh at every execution, which glibc maps and unmaps each
  time, so the kernel faults them in and zeroes them page by page; 2 MiB pages make that a
  small fraction. glibc reads `GLIBC_TUNABLES=glibc.malloc.hugetlb=1` (glibc 2.35+) only
  when a process starts, so `python -m launch.<name>` re-executes itself once, from
  `launch/__init__.py`, before anything heavy is imported. A `glibc.malloc.hugetlb` already
  in GLIBC_TUNABLES is left alone (`=0` turns this off).
"""
from __future__ import annotations

import os
import sys

CPU_CONV_FLAG = "--xla_cpu_experimental_ynn_fusion_type=-individual_convolution"
HUGE_PAGES = "glibc.malloc.hugetlb=1"


def set_cpu_conv_flag() -> None:
  """Adds CPU_CONV_FLAG to XLA_FLAGS unless the user set that option."""
  flags = os.environ.get("XLA_FLAGS", "")
  if "xla_cpu_experimental_ynn_fusion_type" not in flags:
    os.environ["XLA_FLAGS"] = f"{flags} {CPU_CONV_FLAG}".strip()


def glibc_version() -> tuple[int, ...]:
  try:
    name, version = (os.confstr("CS_GNU_LIBC_VERSION") or "").split()
    return tuple(int(v) for v in version.split(".")[:2]) if name == "glibc" else ()
  except (ValueError, OSError):   # not glibc, or no such confstr name here
    return ()


def environment_with_huge_pages(environ: dict[str, str],
                                glibc: tuple[int, ...] | None = None) -> dict[str, str] | None:
  """`environ` with HUGE_PAGES added to GLIBC_TUNABLES, or None where it needs no change:
  the setting is there already (whatever its value), or the C library is not glibc 2.35+."""
  glibc = glibc_version() if glibc is None else glibc
  tunables = environ.get("GLIBC_TUNABLES", "")
  if glibc < (2, 35) or "glibc.malloc.hugetlb" in tunables:
    return None
  return {**environ, "GLIBC_TUNABLES": ":".join(filter(None, [tunables, HUGE_PAGES]))}


def reexecute_with_huge_pages() -> None:
  """Replaces this process by itself with HUGE_PAGES set, where that changes anything."""
  env = environment_with_huge_pages(dict(os.environ))
  if env is not None:
    sys.stdout.flush()
    sys.stderr.flush()
    os.execve(sys.executable, [sys.executable, *sys.orig_argv[1:]], env)


def changes() -> list[str]:
  """One line for each of the two settings in effect in this process (set here or by the
  user: a re-executed launcher cannot tell)."""
  lines = []
  if CPU_CONV_FLAG in os.environ.get("XLA_FLAGS", "").split():
    lines.append(f"XLA_FLAGS has {CPU_CONV_FLAG} (XLA:CPU's fast convolutions)")
  if HUGE_PAGES in os.environ.get("GLIBC_TUNABLES", "").split(":"):
    lines.append(f"GLIBC_TUNABLES has {HUGE_PAGES} (malloc on huge pages; a launcher "
                 "re-executes itself to set it)")
  return lines
