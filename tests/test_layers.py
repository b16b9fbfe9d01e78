"""The library's packages are layers: a module imports from its own package or from those
below it, never from above (alexnet_jax/__init__.py lists the order)."""
import ast
import os

import alexnet_jax

LIBRARY = os.path.dirname(alexnet_jax.__file__)


def _imports(path: str) -> set[str]:
  """The alexnet_jax packages a module imports, at any depth in the file."""
  found = set()
  for node in ast.walk(ast.parse(open(path).read(), path)):
    if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("alexnet_jax"):
      parts = node.module.split(".")
      if len(parts) > 1:
        found.add(parts[1])
      else:   # `from alexnet_jax import nn` imports a package by name
        found.update(alias.name for alias in node.names)
    elif isinstance(node, ast.Import):
      found.update(a.name.split(".")[1] for a in node.names
                   if a.name.startswith("alexnet_jax.") and a.name.count(".") >= 1)
  return found


def test_every_module_sits_in_a_layer_and_imports_downwards():
  rank = {package: i for i, package in enumerate(alexnet_jax.LAYERS)}
  assert sorted(rank) == sorted(d for d in os.listdir(LIBRARY)
                                if os.path.isfile(os.path.join(LIBRARY, d, "__init__.py")))
  assert [f for f in os.listdir(LIBRARY) if f.endswith(".py")] == ["__init__.py"]
  upward = []
  for package in rank:
    for name in sorted(os.listdir(os.path.join(LIBRARY, package))):
      if name.endswith(".py"):
        for imported in _imports(os.path.join(LIBRARY, package, name)):
          if rank.get(imported, -1) > rank[package]:
            upward.append(f"{package}/{name} imports {imported}")
  assert not upward, upward


def test_the_check_sees_an_upward_import(tmp_path):
  """The check above can fail: a module of the lowest layer importing a program."""
  module = tmp_path / "bad.py"
  module.write_text("from alexnet_jax.programs import train\n")
  assert _imports(str(module)) == {"programs"}
