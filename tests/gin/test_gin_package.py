"""Tests of the `t5rank.gin` package (gin/__init__.py)."""

import os
import subprocess
import sys

from t5rank import gin as t5rank_gin

CHECKOUT_ROOT = os.path.dirname(t5rank_gin.gin_dir())


def test_gin_dir_holds_the_gin_folders():
  for folder in ("models", "losses", "runs", "meshes", "demo"):
    assert os.path.isdir(os.path.join(t5rank_gin.gin_dir(), folder)), folder


def test_bare_import_gin_in_checkout_root_gives_gin_config():
  """`python -c` in the checkout puts gin/ first on sys.path as `gin`."""
  code = ("import gin, t5rank.gin; "
          "print(callable(gin.configurable), gin.__file__ != t5rank.gin.__file__)")
  result = subprocess.run([sys.executable, "-c", code], cwd=CHECKOUT_ROOT,
                          capture_output=True, text=True, timeout=120,
                          check=False)
  assert result.returncode == 0, result.stderr[-2000:]
  assert result.stdout.split() == ["True", "True"]
