"""Shared pytest setup for t5rank's tests."""

import os
import shutil
import socket
import subprocess
import sys
import tempfile

import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("JAX_PLATFORMS", "cpu")
# The tests compile hundreds of small, short-lived XLA programs on CPU, where
# LLVM's optimisation of the generated code costs more compile time (about a
# third) than the tests win back at run time, and XLA:CPU's newer MLIR fusion
# emitters compile about twice as slowly as its elemental emitters (ranking
# tests: 9.4 to 6.7 minutes with them off). Results are the same IEEE
# arithmetic; subprocesses (T5X runs, mesh workers) inherit the flags.
_FAST_COMPILE = (
  "--xla_backend_optimization_level=0",
  "--xla_llvm_disable_expensive_passes=true",
  "--xla_cpu_use_fusion_emitters=false",
)
_xla_flags = os.environ.get("XLA_FLAGS", "").split()
os.environ["XLA_FLAGS"] = " ".join(
  _xla_flags + [f for f in _FAST_COMPILE if f not in _xla_flags]
)
# One persistent JAX compilation cache for the run: the tests compile the same
# programs many times (each fresh jit of the same function, the same eager op
# at the same shape), in both xdist workers and in subprocesses, which all
# inherit this environment from the process that starts the run. Set
# JAX_COMPILATION_CACHE_DIR yourself to keep a cache across runs.
_OWN_COMPILATION_CACHE = None
if "JAX_COMPILATION_CACHE_DIR" not in os.environ:
  _OWN_COMPILATION_CACHE = tempfile.mkdtemp(prefix="t5rank-tests-jax-cache-")
  os.environ["JAX_COMPILATION_CACHE_DIR"] = _OWN_COMPILATION_CACHE
  os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0")
  os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES", "-1")


def pytest_unconfigure(config):
  """The process that made the compilation cache removes it at the end."""
  del config
  if _OWN_COMPILATION_CACHE is not None:
    shutil.rmtree(_OWN_COMPILATION_CACHE, ignore_errors=True)


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


@pytest.fixture(scope="session")
def run_jax_processes():
  """Runs a worker script as several JAX processes at once, as hosts would.

  Process ``i`` of ``n`` gets the arguments ``i n port *args`` (``port`` a
  free local port for the ``jax.distributed`` coordinator) and this run's
  environment on CPU, without a device count (the worker sets its own). Every
  process must exit 0; returns their standard outputs.
  """

  def run(worker, num_processes, args, timeout=900):
    with socket.socket() as sock:
      sock.bind(("localhost", 0))
      port = sock.getsockname()[1]
    env = dict(os.environ, JAX_PLATFORMS="cpu")
    env["XLA_FLAGS"] = " ".join(
      flag
      for flag in env.get("XLA_FLAGS", "").split()
      if not flag.startswith("--xla_force_host_platform_device_count")
    )
    procs = [
      subprocess.Popen(
        [sys.executable, worker, str(i), str(num_processes), str(port)]
        + [str(arg) for arg in args],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
      )
      for i in range(num_processes)
    ]
    try:
      logs = [p.communicate(timeout=timeout) for p in procs]
    finally:
      for p in procs:
        if p.poll() is None:
          p.kill()
    for p, (_, err) in zip(procs, logs):
      assert p.returncode == 0, err[-4000:]
    return [out for out, _ in logs]

  return run
