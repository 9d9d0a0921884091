"""The install pins agree: setup.py's extras, requirements-t5x.txt, README, CI.

T5X's own requirements pull flax, optax, seqio and clu from GitHub HEAD and
tensorflow-cpu next to tensorflow, so T5X, AirIO and jestimator are installed
from pinned commits with ``--no-deps`` and everything else comes from PyPI
through the ``t5x`` extra at the versions t5rank is tested with.
"""

import os
import re
import runpy
import sys
import types
from unittest import mock

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
REQUIREMENTS = "requirements-t5x.txt"
MAIN_JOB = (
  f'pip install -e ".[t5x]" && pip install --no-deps -r {REQUIREMENTS}'
  " && t5rank-demo"
)
GIT_PINNED = {
  "t5x": "https://github.com/google-research/t5x",
  "airio": "https://github.com/google/airio",
  "jestimator": "https://github.com/google-research/jestimator",
}
# The registry versions the T5X stack is tested with.
KNOWN_TO_WORK = {
  "jax": "0.10.2",
  "jaxlib": "0.10.2",
  "flax": "0.12.8",
  "optax": "0.2.8",
  "orbax-checkpoint": "0.12.8",
  "chex": "0.1.92",
  "seqio": "0.0.20",
  "clu": "0.0.12",
  "grain": "0.2.12",
  "tensorflow": "2.21.0",
  "tensorflow-text": "2.21.1",
  "tensorflow-datasets": "4.9.10",
  "tensorboard": "2.21.0",
  "tensorstore": "0.1.86",
  "fiddle": "0.3.1",
  "gin-config": "0.5.0",
}
_NAME = re.compile(r"^\s*([A-Za-z0-9][A-Za-z0-9._-]*)")


def _read(name: str) -> str:
  with open(os.path.join(ROOT, name), encoding="utf-8") as f:
    return f.read()


@pytest.fixture(scope="module")
def setup_kwargs() -> dict:
  """The keyword arguments setup.py passes to setuptools.setup."""
  captured = {}
  cwd = os.getcwd()
  os.chdir(ROOT)
  try:
    # A stand-in setuptools: the test needs only the arguments, not a build.
    fake = types.SimpleNamespace(
      setup=lambda **kw: captured.update(kw), find_packages=lambda **kw: []
    )
    with mock.patch.dict(sys.modules, {"setuptools": fake}):
      runpy.run_path(os.path.join(ROOT, "setup.py"), run_name="__main__")
  finally:
    os.chdir(cwd)
  return captured


def _name(requirement: str) -> str:
  return _NAME.match(requirement).group(1).lower().replace("_", "-")


def _requirement_lines(text: str) -> list[str]:
  return [
    line.strip()
    for line in text.splitlines()
    if line.strip() and not line.strip().startswith("#")
  ]


def test_no_extra_installs_from_a_url(setup_kwargs):
  requirements = list(setup_kwargs["install_requires"])
  for extra in setup_kwargs["extras_require"].values():
    requirements += extra
  from_urls = [r for r in requirements if "@" in r or "git+" in r]
  assert not from_urls, f"setup.py installs from URLs: {from_urls}"


def test_t5x_extra_pins_the_versions_known_to_work(setup_kwargs):
  pins = {}
  for requirement in setup_kwargs["extras_require"]["t5x"]:
    match = re.fullmatch(
      r"\s*([A-Za-z0-9._-]+)\s*==\s*([A-Za-z0-9.]+)\s*", requirement
    )
    if match:
      pins[_name(match.group(1))] = match.group(2)
  assert pins == KNOWN_TO_WORK
  names = {_name(r) for r in setup_kwargs["extras_require"]["t5x"]}
  assert "tensorflow-cpu" not in names and "tfds-nightly" not in names
  # What T5X, AirIO and jestimator import beyond the pinned stack.
  assert {"absl-py", "cached-property", "jaxtyping"} <= names


def test_python_requires_at_least_3_11(setup_kwargs):
  assert setup_kwargs["python_requires"] == ">=3.11"
  assert sys.version_info >= (3, 11)


def test_requirements_file_pins_t5x_airio_jestimator_to_full_commits():
  lines = _requirement_lines(_read(REQUIREMENTS))
  pinned = {}
  for line in lines:
    match = re.fullmatch(
      r"([a-z0-9_-]+) @ git\+(https://github\.com/[\w.-]+/[\w.-]+)"
      r"@([0-9a-f]{40})",
      line,
    )
    assert match, f"{REQUIREMENTS}: {line!r} is not 'name @ git+URL@<sha>'"
    pinned[match.group(1)] = match.group(2)
  assert pinned == GIT_PINNED
  assert "cc342d4" in _read(REQUIREMENTS)  # The T5X commit t5rank is tested at.


def test_readme_main_job_installs_extra_then_pinned_requirements():
  readme = _read("README.md")
  blocks = re.findall(r"```sh\n(.*?)```", readme, flags=re.S)
  assert blocks and MAIN_JOB in blocks[0].splitlines()
  assert "--no-deps" in _read(REQUIREMENTS)  # The file says how to install it.


def test_ci_installs_from_pypi_only():
  ci = _read(".ci/run")
  assert REQUIREMENTS not in ci and "git+" not in ci
  assert re.search(r'pip install -q -e "\.\[data,test\]"', ci)
