"""What every launcher shares: one-line errors, and quiet logs by default.

* `run(main)` is `absl.app.run` with a flag parser that turns a bad flag or a bad config
  override (`--config.modle.lrn=False`, with ml_collections' "did you mean") into one line
  on stderr and exit status 2, instead of a traceback.
* `fail(error)` exits with `error: <message>` on one line; the traceback goes to the log
  only when the absl verbosity asks for it (`--v=1`).
* `quiet_library_logs()` hides the INFO lines of the libraries in `NOISY` (orbax logs about
  fifty per checkpoint) unless `--v=1`; their warnings and errors always show.
"""
from __future__ import annotations

import logging as py_logging
import sys
from typing import Callable, NoReturn

from absl import app, flags, logging

NOISY = ("/orbax/", "/etils/", "/jax/_src/", "/tensorflow_datasets/")


def _one_line(error: BaseException) -> str:
  text = error.args[0] if isinstance(error, KeyError) and error.args else str(error)
  return " ".join(str(text).split())


def parse_flags(argv: list[str]) -> list[str]:
  try:
    return flags.FLAGS(argv)
  except flags.Error as e:
    sys.stderr.write(f"error: {_one_line(e)} (--help lists the flags)\n")
  except (KeyError, AttributeError, ValueError, TypeError) as e:   # a config override
    text = _one_line(e)
    field = text.strip("\"'")
    if isinstance(e, (KeyError, AttributeError)) and field.isidentifier():   # no suggestion
      given = next((a for a in argv if f".{field}" in a.split("=")[0]), field)
      text = (f"no config field {field!r} ({given.split('=')[0]}); "
              "experiments/default.py lists them")
    sys.stderr.write(f"error: bad config override: {text}\n")
  sys.exit(2)


def run(main: Callable[[list[str]], None]) -> None:
  app.run(main, flags_parser=parse_flags)


def fail(error: BaseException) -> NoReturn:
  if logging.get_verbosity() >= logging.DEBUG:
    logging.exception("stopped")
  raise SystemExit(f"error: {_one_line(error)}") from None


def _keep(record: py_logging.LogRecord) -> bool:
  if record.levelno >= py_logging.WARNING or logging.get_verbosity() >= logging.DEBUG:
    return True
  return not any(part in record.pathname for part in NOISY)


def quiet_library_logs() -> None:
  """Installs the filter on absl's handler (idempotent)."""
  handler = logging.get_absl_handler()
  if _keep not in handler.filters:
    handler.addFilter(_keep)
