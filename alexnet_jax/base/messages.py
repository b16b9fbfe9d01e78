"""Errors as the one line a user reads (`launch/cli.py` prints them as `error: <line>`).

Libraries raise messages of many lines (ml_collections' "did you mean" on a line of its
own) or of pages (orbax's and tensorstore's, gloo's): the library's own errors quote them
through `one_line`, and so do the launchers.
"""
from __future__ import annotations


def one_line(error: BaseException | str, limit: int | None = None) -> str:
  """The error's message with its whitespace and line breaks collapsed (a KeyError's key
  without repr's quotes). Past `limit` characters it keeps the start and the end, where
  the OS's reason for a failed write stands."""
  text = error.args[0] if isinstance(error, KeyError) and error.args else error
  line = " ".join(str(text).split()) or type(error).__name__
  if limit is None or len(line) <= limit:
    return line
  half = (limit - 5) // 2
  return f"{line[:half]} ... {line[-half:]}"
