"""t5rank gin files: `gin_dir()` is the folder to pass to --gin_search_paths."""

import os


def gin_dir() -> str:
  """Returns the folder holding t5rank's gin files (models/, losses/, runs/, ...)."""
  return os.path.dirname(os.path.abspath(__file__))
