"""The public surface of `t5rank` and the one-way doors between its rooms."""

import ast
import doctest
import inspect
import os
import pathlib
import subprocess
import sys

import pytest

import t5rank
from t5rank.ranking import lambdaweights
from t5rank.ranking import losses
from t5rank.ranking import metrics
from t5rank.ranking import t12n

ROOT = pathlib.Path(__file__).resolve().parents[1]

# Room -> top-level modules its files may not import (DESIGN.md, "Rooms and doors").
FORBIDDEN = {
  "t5rank/ranking": {"tensorflow", "seqio", "t5x", "flax", "gin", "tasks"},
  "t5rank/data": {"t5x", "flax", "tasks"},
}


def _imported_modules(path):
  tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
  for node in ast.walk(tree):
    if isinstance(node, ast.Import):
      for alias in node.names:
        yield alias.name, node.lineno
    elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
      yield node.module, node.lineno


@pytest.mark.parametrize("room", sorted(FORBIDDEN))
def test_rooms_import_only_leftwards(room):
  offenders = []
  for path in sorted((ROOT / room).rglob("*.py")):
    for module, line in _imported_modules(path):
      parts = module.split(".")
      top = parts[0]
      if top in FORBIDDEN[room]:
        offenders.append(f"{path.relative_to(ROOT)}:{line}: imports {module}")
      if (
        room == "t5rank/ranking"
        and top == "t5rank"
        and len(parts) > 1
        and (parts[1] not in ("ranking",))
      ):
        offenders.append(f"{path.relative_to(ROOT)}:{line}: imports {module}")
      if room == "t5rank/data" and module.startswith(
        ("t5rank.models", "t5rank.tasks", "t5rank.main")
      ):
        offenders.append(f"{path.relative_to(ROOT)}:{line}: imports {module}")
  assert not offenders, "\n".join(offenders)


def test_importing_the_ranking_library_loads_no_tensorflow_seqio_or_t5x():
  code = (
    "import sys, t5rank, t5rank.ranking.losses, t5rank.ranking.metrics, "
    "t5rank.ranking.t12n, t5rank.ranking.lambdaweights, t5rank.utils, "
    "t5rank.types; "
    "print(sorted(m for m in ('tensorflow', 'seqio', 't5x', 'flax') "
    "if m in sys.modules))"
  )
  result = subprocess.run(
    [sys.executable, "-c", code],
    capture_output=True,
    text=True,
    check=True,
    timeout=300,
    env={**os.environ, "JAX_PLATFORMS": "cpu"},
  )
  assert result.stdout.strip() == "[]"


@pytest.mark.parametrize(
  "module", [lambdaweights, losses, metrics, t12n], ids=lambda m: m.__name__
)
def test_every_public_ranking_function_is_exported_from_t5rank(module):
  public = {
    name
    for name, fn in vars(module).items()
    if inspect.isfunction(fn)
    and not name.startswith("_")
    and fn.__module__ == module.__name__
  }
  assert public, module.__name__
  assert public <= set(t5rank.__all__)
  for name in public:
    assert getattr(t5rank, name) is getattr(module, name)


def test_package_docstring_examples_run():
  result = doctest.testmod(t5rank, optionflags=doctest.NORMALIZE_WHITESPACE)
  assert result.attempted > 0
  assert result.failed == 0
