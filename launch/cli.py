"""What every launcher shares, so that each is its flags and one call to the library.

* `run(main)` is `absl.app.run` with the launchers' preamble: quiet library logs, the
  environment changes logged, arguments after the flags refused (unless the launcher takes
  files), a ValueError or OSError as one line. Its flag parser turns a bad flag or a bad
  config override (`--config.modle.lrn=False`, with ml_collections' "did you mean";
  `--config.mesh_shape=abc`) into one line on stderr and exit status 2, instead of a
  traceback. A config file that does not load (missing, a syntax error, a `get_config` that
  raises) is named as such, with its line. Ctrl-C (SIGINT) is one line too, exit status
  130, within seconds. At exit, the garbage is collected and the rest frozen, so that the
  interpreter does not walk every object again (`_collect_and_freeze`).
* `check_writable(path, flag)` makes the folder of an output and checks that a file can be
  written there, before the work that produces it.
* `fail(error)` exits with `error: <message>` on one line; the traceback goes to the log
  only when the absl verbosity asks for it (`--v=1`).
* `quiet_library_logs()` hides the INFO lines of the libraries in `NOISY` (orbax logs about
  fifty per checkpoint) unless `--v=1`; their warnings and errors always show.
"""
from __future__ import annotations

import atexit
import gc
import logging as py_logging
import os
import signal
import sys
import threading
import time
from typing import Any, Callable, NoReturn

from absl import app, flags, logging
from etils import epath

from alexnet_jax.base import environment, messages, pyfile

NOISY = ("/orbax/", "/etils/", "/jax/_src/", "/tensorflow_datasets/", "/gcsfs/", "/fsspec/")
CONFIG_FLAG = "config"
FIXED_LENGTH = {"mesh_shape": 2}   # tuple fields whose length is part of their meaning


def parse_flags(argv: list[str]) -> list[str]:
  try:
    defaults = _load_config_file(argv)
  except ValueError as e:
    sys.stderr.write(f"error: {messages.one_line(e)}\n")
    sys.exit(2)
  try:
    rest = flags.FLAGS(argv)
    _check_override_types(argv, defaults)
    return rest
  except flags.Error as e:
    sys.stderr.write(f"error: {messages.one_line(e)} (--help lists the flags)\n")
  except (KeyError, AttributeError, ValueError, TypeError) as e:   # a config override
    text = messages.one_line(e)
    field = text.strip("\"'")
    if isinstance(e, (KeyError, AttributeError)) and field.isidentifier():   # no suggestion
      given = next((a for a in argv if f".{field}" in a.split("=")[0]), field)
      text = (f"no config field {field!r} ({given.split('=')[0]}); "
              "experiments/default.py lists them")
    sys.stderr.write(f"error: bad config override: {text}\n")
  sys.exit(2)


def _config_arg(argv: list[str]) -> str | None:
  """The --config file named in `argv`, else the flag's default; None without the flag."""
  if CONFIG_FLAG not in flags.FLAGS:
    return None
  default = flags.FLAGS[CONFIG_FLAG].default
  given = default if isinstance(default, str) else None
  for i, arg in enumerate(argv[1:], 1):   # the last one wins, as in absl
    if arg.startswith(f"--{CONFIG_FLAG}="):
      given = arg.split("=", 1)[1]
    elif arg == f"--{CONFIG_FLAG}" and i + 1 < len(argv):
      given = argv[i + 1]
  return given


def _load_config_file(argv: list[str]) -> Any:
  """The --config file's `get_config()` before absl parses it, so that a file that does not
  load is a ValueError naming it (and the line), not a traceback or a 'bad override'."""
  arg = _config_arg(argv)
  if not arg:   # the flag's default file, loaded when the flag was defined
    default = flags.FLAGS[CONFIG_FLAG].default if CONFIG_FLAG in flags.FLAGS else None
    return default.copy_and_resolve_references() if hasattr(
        default, "copy_and_resolve_references") else None
  path, _, params = arg.partition(":")
  where = f"--{CONFIG_FLAG}={arg}"
  module = pyfile.load(path, where)
  if not callable(getattr(module, "get_config", None)):
    raise ValueError(f"{where}: the file has no get_config()")
  try:
    return module.get_config(*([params] if params else []))
  except Exception as e:  # pylint: disable=broad-except
    raise ValueError(f"{where}: get_config() raised {pyfile.described(e, path)}") from None


def _check_override_types(argv: list[str], defaults: Any) -> None:
  """ValueError for an override that turned a tuple of integers into something else
  (`--config.mesh_shape=abc` parses as ('abc',))."""
  if defaults is None or CONFIG_FLAG not in flags.FLAGS:
    return
  cfg, seen = flags.FLAGS[CONFIG_FLAG].value, set()
  for arg in reversed(argv[1:]):   # the last override of a field is the one to name
    name = arg.split("=", 1)[0]
    if not name.startswith(f"--{CONFIG_FLAG}.") or name in seen:
      continue
    seen.add(name)
    keys = name[len(CONFIG_FLAG) + 3:].split(".")
    default, value = defaults, cfg
    for key in keys:
      default, value = default[key], value[key]
    if not (isinstance(default, tuple) and default and _ints(default)):
      continue
    length = FIXED_LENGTH.get(keys[-1])
    if not (isinstance(value, tuple) and _ints(value)) or (length and len(value) != length):
      kind = f"{length} integers" if length else "integers"
      raise ValueError(f"{arg}: {'.'.join(keys)} must be a tuple of {kind}, like "
                       f"{name}=({','.join(map(str, default))}); got {value!r}")


def _ints(values: tuple) -> bool:
  return all(isinstance(v, int) and not isinstance(v, bool) for v in values)


INTERRUPT_GRACE_S = 10   # seconds a launcher may take to stop after Ctrl-C before it is ended
_interrupt = {"said": False, "grace": None}


def run(main: Callable[[list[str]], None], on_interrupt: str = "",
        wait_for_writes: bool = False, takes_args: bool = False,
        runs_xla: bool = True) -> None:
  """`app.run(main)` with what every launcher needs first: quiet library logs, a line for
  each change of the process environment (alexnet_jax/base/environment.py; both are for XLA,
  so not where it does not run: `runs_xla`), and a refusal of arguments after the flags
  unless `takes_args`. A ValueError or OSError out of `main` is one line (`fail`); so is a
  bad flag (`parse_flags`).

  Ctrl-C ends it with one line (`on_interrupt` adds to it, e.g. how to resume) and exit
  status 130, within INTERRUPT_GRACE_S seconds. With `wait_for_writes` (launchers that
  write checkpoints or shards) it first lets writes in flight finish."""
  def main_with_preamble(argv: list[str]) -> None:
    quiet_library_logs()
    for line in environment.changes() if runs_xla else ():
      logging.info("environment: %s", line)
    if not takes_args and len(argv) > 1:
      raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    try:
      main(argv)
    except (ValueError, OSError) as e:
      fail(e)

  atexit.register(_collect_and_freeze)
  line = f"error: interrupted (Ctrl-C){'; ' + on_interrupt if on_interrupt else ''}\n"
  _interrupt["line"] = line
  _interrupt["grace"] = None if wait_for_writes else INTERRUPT_GRACE_S
  signal.signal(signal.SIGINT, _on_sigint)
  try:
    app.run(main_with_preamble, flags_parser=parse_flags)
  except KeyboardInterrupt:
    _say_interrupted()
    if wait_for_writes:
      _let_writers_finish()
    _end_after(INTERRUPT_GRACE_S)   # should leftover threads hold up the interpreter's exit
    sys.exit(130)


def _collect_and_freeze() -> None:
  """`run`'s exit handler: collects the garbage (so that what it holds is closed and
  flushed) and freezes what is still alive, so that the interpreter's final collections skip
  the objects jax, flax and orbax hold rather than walk them all again: every launcher
  exits sooner (benchmarks/README.md, "A launcher's exit")."""
  gc.collect()
  gc.freeze()


def _on_sigint(signum, frame) -> None:
  """Python's own Ctrl-C (KeyboardInterrupt in the main thread), plus a deadline: a
  KeyboardInterrupt can be lost (raised inside a finaliser, or caught by library code),
  and a read-only launcher then ran on to the end and exited 0."""
  del signum, frame
  if _interrupt["grace"] is not None:
    _end_after(_interrupt["grace"])
    _interrupt["grace"] = None   # one deadline, from the first Ctrl-C
  raise KeyboardInterrupt


def _say_interrupted() -> None:
  if not _interrupt["said"]:
    _interrupt["said"] = True
    sys.stderr.write(_interrupt["line"])
    sys.stderr.flush()


def _end_after(seconds: float) -> None:
  """Ends the process (one line, exit status 130) in `seconds` unless it has exited."""
  def end():
    _say_interrupted()
    sys.stdout.flush()
    os._exit(130)  # pylint: disable=protected-access
  timer = threading.Timer(seconds, end)
  timer.daemon = True
  timer.start()


def _let_writers_finish(seconds: float = 120) -> None:
  """Waits (up to `seconds`, or until a second Ctrl-C) for the threads that are still
  writing, such as orbax's commit of a checkpoint whose save the Ctrl-C interrupted: once
  the interpreter shuts down they can no longer schedule work, and fail with tracebacks."""
  deadline = time.monotonic() + seconds
  try:
    for thread in threading.enumerate():
      if thread is not threading.current_thread() and not thread.daemon:
        thread.join(max(0.0, deadline - time.monotonic()))
  except KeyboardInterrupt:
    pass


def check_writable(path: str, flag: str) -> None:
  """Makes the folder of `path` and checks that a file can be written there (and that `path`
  is not a folder): OSError (one line, naming `flag`) before any work is done for it."""
  target = epath.Path(path)
  probe = target.parent / f".{target.name}.write-test-{os.getpid()}"
  try:
    target.parent.mkdir(parents=True, exist_ok=True)
    if target.is_dir():
      raise IsADirectoryError(21, "it is a folder")
    probe.write_bytes(b"")
    probe.unlink()
  except OSError as e:
    raise OSError(f"{flag} {path}: cannot be written: {e.strerror or e}") from e


def fail(error: BaseException) -> NoReturn:
  if logging.get_verbosity() >= logging.DEBUG:
    logging.exception("stopped")
  raise SystemExit(f"error: {messages.one_line(error)}") from None


def _keep(record: py_logging.LogRecord) -> bool:
  if logging.get_verbosity() >= logging.DEBUG:
    return True
  noisy = any(part in record.pathname for part in NOISY)
  if record.exc_info and (noisy or "/asyncio/" in record.pathname):
    return False   # orbax's error that it then raises (ours is one line), or its leftovers
  return record.levelno >= py_logging.WARNING or not noisy


def _quiet_unraisable(unraisable, report=sys.__unraisablehook__) -> None:
  """After a failed checkpoint write, tensorstore's pending callbacks find orbax's event
  loop closed, and each would print a traceback of that: dropped unless --v=1. Anything
  else goes to Python's own hook (`report`, bound here: while the interpreter shuts down,
  this module's globals may already be None)."""
  try:
    if (unraisable.exc_type is RuntimeError
        and str(unraisable.exc_value) == "Event loop is closed"
        and logging.get_verbosity() < logging.DEBUG):
      return
  except AttributeError:   # absl's logging module is being torn down
    pass
  report(unraisable)


def quiet_library_logs() -> None:
  """Installs the filter on absl's handler (idempotent)."""
  handler = logging.get_absl_handler()
  if _keep not in handler.filters:
    handler.addFilter(_keep)
  sys.unraisablehook = _quiet_unraisable
