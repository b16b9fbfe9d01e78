"""Python files loaded by path: experiment configs (`--config=experiments/x.py`, through
launch/cli.py) and sweep definitions (`sweep.load_definition`). Neither need be on the
Python path, and a file that does not load is one line naming the file and its line."""
from __future__ import annotations

import importlib.util
import os
import re
import traceback
import types

from alexnet_jax.base import messages


def load(path: str, what: str) -> types.ModuleType:
  """The module of the file at `path`. ValueError of one line, starting with `what` (how
  the user named the file), when it is missing, not Python, or raises as it loads."""
  if not os.path.isfile(path):
    raise ValueError(f"{what}: no such file")
  name = "_file_" + re.sub(r"\W", "_", os.path.splitext(os.path.basename(path))[0])
  spec = importlib.util.spec_from_file_location(name, path)
  if spec is None or spec.loader is None:
    raise ValueError(f"{what}: not a Python file")
  module = importlib.util.module_from_spec(spec)
  try:
    spec.loader.exec_module(module)
  except SyntaxError as e:
    raise ValueError(f"{what}: syntax error at {e.filename}:{e.lineno}: {e.msg}") from None
  except Exception as e:  # pylint: disable=broad-except  # whatever the file's code raises
    raise ValueError(f"{what}: loading it raised {described(e, path)}") from None
  return module


def described(error: BaseException, path: str) -> str:
  """'ValueError at experiments/x.py:12: message', at the deepest line of `path` in the
  error's traceback (the file's function that raised, called from elsewhere)."""
  lines = [f for f in traceback.extract_tb(error.__traceback__)
           if os.path.abspath(f.filename) == os.path.abspath(path)]
  at = f" at {path}:{lines[-1].lineno}" if lines else ""
  return f"{type(error).__name__}{at}: {messages.one_line(error)}"
