"""Tests of the gin folder as package data (`t5rank.main.gin_dir`)."""

import doctest
import os
import subprocess
import sys
import zipfile

import pytest

from t5rank import main

GIN_DIR = main.gin_dir()
CHECKOUT_ROOT = os.path.dirname(GIN_DIR)


def test_main_docstring_examples():
  assert doctest.testmod(main).failed == 0


def test_gin_dir_holds_the_gin_folders():
  for folder in ("models", "losses", "runs", "meshes", "demo"):
    assert os.path.isdir(os.path.join(GIN_DIR, folder)), folder


def test_gin_folder_is_not_a_python_package():
  """A package named `gin` would take gin-config's name."""
  for root, _, names in os.walk(GIN_DIR):
    assert not [n for n in names if n.endswith(".py")], root


def test_bare_import_gin_in_checkout_root_gives_gin_config():
  """`python -c` in the checkout puts the root, holding gin/, on sys.path."""
  code = (
    "import gin, os, sys; "
    "print(sys.path[0] == '', callable(gin.configurable), "
    f"os.path.dirname(gin.__file__) != {GIN_DIR!r})"
  )
  result = subprocess.run(
    [sys.executable, "-c", code],
    cwd=CHECKOUT_ROOT,
    capture_output=True,
    text=True,
    timeout=120,
    check=False,
  )
  assert result.returncode == 0, result.stderr[-2000:]
  assert result.stdout.split() == ["True", "True", "True"]


@pytest.mark.slow
def test_wheel_ships_every_gin_file_and_no_gin_package(tmp_path):
  """A non-editable install finds the .gin files under t5rank/gin."""
  setuptools = pytest.importorskip("setuptools")
  del setuptools
  if not os.path.isfile(os.path.join(CHECKOUT_ROOT, "setup.py")):
    pytest.skip("not a source checkout")
  built = subprocess.run(
    [
      sys.executable,
      "-m",
      "pip",
      "wheel",
      "--no-deps",
      "--no-build-isolation",
      "-q",
      "-w",
      str(tmp_path),
      CHECKOUT_ROOT,
    ],
    capture_output=True,
    text=True,
    timeout=600,
    check=False,
  )
  assert built.returncode == 0, built.stderr[-2000:]
  (wheel,) = tmp_path.glob("t5rank-*.whl")
  with zipfile.ZipFile(wheel) as archive:
    names = set(archive.namelist())
  expected = {
    "t5rank/gin/" + os.path.relpath(os.path.join(root, name), GIN_DIR)
    for root, _, files in os.walk(GIN_DIR)
    for name in files
    if name.endswith(".gin")
  }
  assert expected and expected <= names
  assert not [
    n
    for n in names
    if n.startswith(("gin/", "t5rank/gin/")) and n.endswith(".py")
  ]
