"""Tests of the console entry points in t5rank/main.py."""

import os
import shutil
import subprocess
import sys

import pytest

from t5rank import main

GIN_DIR = main.gin_dir()
_BLOCK_T5X = "import sys; sys.modules['t5x'] = None; "


def _run_python(code: str) -> subprocess.CompletedProcess:
  return subprocess.run([sys.executable, "-c", code], capture_output=True,
                        text=True, timeout=300, check=False)


def test_gin_dir_is_appended_after_default_search_path():
  args = main.with_t5rank_gin_dir(["--gin_file=demo/train.gin"])
  assert args == ["--gin_file=demo/train.gin",
                  f"--gin_search_paths=.,{GIN_DIR}"]


def test_user_search_paths_are_merged_into_one_flag_before_gin_dir():
  args = main.with_t5rank_gin_dir(
      ["--gin_search_paths=a,b", "--gin_file=x.gin", "--gin_search_paths", "c"])
  assert args == ["--gin_file=x.gin", f"--gin_search_paths=a,b,c,{GIN_DIR}"]


def test_gin_dir_is_not_added_twice():
  args = main.with_t5rank_gin_dir([f"--gin_search_paths={GIN_DIR}"])
  assert args == [f"--gin_search_paths={GIN_DIR}"]


def test_search_paths_flag_without_value_is_an_error():
  with pytest.raises(SystemExit, match="gin_search_paths needs a value"):
    main.with_t5rank_gin_dir(["--gin_search_paths"])


@pytest.mark.parametrize("entry,command", [
    ("train", "t5rank-train"), ("evaluate", "t5rank-eval"),
    ("demo", "t5rank-demo")])
def test_without_t5x_entry_point_prints_one_install_sentence(entry, command):
  result = _run_python(
      _BLOCK_T5X + f"from t5rank import main; main.{entry}([])")
  assert result.returncode == 1
  lines = result.stderr.strip().splitlines()
  assert lines == [main.INSTALL_HINT.format(command=command)]
  assert 'pip install "t5rank[t5x]"' in lines[0]


def test_console_script_runs_t5x_train_main_with_its_flags():
  pytest.importorskip("t5x", reason="T5X is not installed; see README")
  script = shutil.which("t5rank-train")
  if script is None:
    pytest.skip("t5rank is not installed with its console scripts")
  result = subprocess.run([script, "--help"], capture_output=True, text=True,
                          timeout=300, check=False)
  # T5X's own train flags, listed by T5X's main (absl's --help exits 1).
  assert "--gin_search_paths" in result.stdout
  assert "--seqio_additional_cache_dirs" in result.stdout

