"""Inputs named in one line: config files that do not load, sweep flags and definitions
(issue 25)."""


import pytest

from processes import assert_one_line_error, launch


# ------------------------------------------------------------- inputs named in one line

@pytest.mark.parametrize("text,message", [
    ("def get_config(:\n  pass\n", "syntax error at {path}:1: invalid syntax"),
    ("def get_config():\n  raise ValueError('no such preset')\n",
     "get_config() raised ValueError at {path}:2: no such preset"),
    ("def get_config():\n  return {}['model']\n", "get_config() raised KeyError at {path}:2: "
                                                  "model"),
    (None, "no such file"),
])
def test_a_config_file_that_does_not_load_is_named_in_one_line(tmp_path, text, message):
  path = tmp_path / "experiment.py"
  if text is not None:
    path.write_text(text)
  proc = launch("launch.train", f"--workdir={tmp_path / 'run'}", f"--config={path}")
  last = assert_one_line_error(proc, f"error: --config={path}: " + message.format(path=path))
  assert "bad config override" not in last


@pytest.mark.parametrize("flags,message", [
    (["--seeds=0,a"], "--seeds: 'a' is not an integer"),
    (["--train_error_thresholds=x"], "--train_error_thresholds: 'x' is not a number"),
    (["--sweep={tmp}/missing.py"], "sweep definition '{tmp}/missing.py': no such file"),
    (["--sweep={tmp}/broken.py"],
     "sweep definition '{tmp}/broken.py': syntax error at {tmp}/broken.py:2"),
    (["--report_only"], "--root {tmp}/root does not exist: there is nothing to report"),
])
def test_sweep_flags_and_definitions_are_one_line_errors(tmp_path, flags, message):
  (tmp_path / "broken.py").write_text("def get_sweep(cfg):\n  return [{}\n")
  flags = [f.format(tmp=tmp_path) for f in flags]
  if not any(f.startswith("--sweep=") for f in flags):
    flags.append("--sweep=experiments/sweeps/lrn.py")
  proc = launch("launch.sweep", f"--root={tmp_path / 'root'}", *flags)
  assert_one_line_error(proc, message.format(tmp=tmp_path))
