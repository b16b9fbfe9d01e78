"""Entry points, each run as `python -m launch.<name>` (its docstring shows how); what they
share is launch/cli.py.

Run that way, a launcher first re-executes itself once with glibc's malloc on huge pages,
here, before anything heavy is imported (why: alexnet_jax/base/environment.py; each launcher
logs it when it applies).
"""
import sys

from alexnet_jax.base import environment

if sys.argv[:1] == ["-m"] and sys.executable:   # being imported by `python -m launch.<name>`
  environment.reexecute_with_huge_pages()
