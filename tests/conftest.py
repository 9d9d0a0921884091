"""Shared pytest setup for t5rank's tests."""

import os
import sys

import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("JAX_PLATFORMS", "cpu")
# The tests compile hundreds of small, short-lived XLA programs on CPU, where
# LLVM's optimisation of the generated code costs more compile time (about a
# third) than the tests win back at run time. Results are the same IEEE
# arithmetic; subprocesses (T5X runs, mesh workers) inherit the flags.
_FAST_COMPILE = (
  "--xla_backend_optimization_level=0",
  "--xla_llvm_disable_expensive_passes=true",
)
_xla_flags = os.environ.get("XLA_FLAGS", "").split()
os.environ["XLA_FLAGS"] = " ".join(
  _xla_flags + [f for f in _FAST_COMPILE if f not in _xla_flags]
)


def _forget_gin_main_configurables():
  """Drops gin's dynamic registrations of `__main__.*` functions.

  T5X's gin files configure `__main__.train` / `__main__.evaluate`. Tests stand
  in different functions under that name (T5X's own, or signature stand-ins), and
  gin keeps one configurable per name for the whole process, so each test
  starts without the previous test's.
  """
  config = sys.modules.get("gin.config")
  if config is None:
    return
  registry = config._REGISTRY  # pylint: disable=protected-access
  for selector, info in list(registry.items()):
    source = info.import_source
    if source and source[0].module == "__main__":
      registry.pop(selector)
      for fn in (info.wrapped, info.wrapper):
        config._INVERSE_REGISTRY.pop(fn, None)  # pylint: disable=protected-access


@pytest.fixture(autouse=True)
def _fresh_gin_main():
  _forget_gin_main_configurables()
  yield
  _forget_gin_main_configurables()
