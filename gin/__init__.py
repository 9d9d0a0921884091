"""t5rank gin files: `gin_dir()` is the folder to pass to --gin_search_paths.

This folder installs as `t5rank.gin`. In a source checkout it also sits at the
top level under the name `gin`, so `python -m ...` or `python -c ...` started
in the repository root (which puts the root first on `sys.path`) would import
it in place of the gin-config library that T5X and seqio need. When imported
under that bare name, it hands the name over to gin-config.
"""

import os


def gin_dir() -> str:
  """Returns the folder holding t5rank's gin files (models/, losses/, runs/, ...)."""
  return os.path.dirname(os.path.abspath(__file__))


def _hand_over_to_gin_config() -> None:
  # pylint: disable=g-import-not-at-top
  import importlib
  import sys
  # pylint: enable=g-import-not-at-top
  checkout_root = os.path.dirname(gin_dir())
  saved_path = list(sys.path)
  sys.path[:] = [p for p in sys.path
                 if os.path.abspath(p or os.curdir) != checkout_root]
  del sys.modules[__name__]
  try:
    gin_config = importlib.import_module("gin")
  finally:
    sys.path[:] = saved_path
  # `import gin` returns whatever sys.modules["gin"] holds once this runs.
  sys.modules[__name__] = gin_config


if __name__ == "gin":
  _hand_over_to_gin_config()
