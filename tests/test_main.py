"""Tests of the console entry points in t5rank/main.py."""

import json
import logging
import os
import shutil
import subprocess
import sys
import tempfile

import pytest

from t5rank import main

GIN_DIR = main.gin_dir()
_BLOCK_T5X = "import sys; sys.modules['t5x'] = None; "


def _run_python(code: str) -> subprocess.CompletedProcess:
  return subprocess.run(
    [sys.executable, "-c", code],
    capture_output=True,
    text=True,
    timeout=300,
    check=False,
  )


def test_gin_dir_is_appended_after_default_search_path():
  args = main.with_t5rank_gin_dir(["--gin_file=demo/train.gin"])
  assert args == [
    "--gin_file=demo/train.gin",
    f"--gin_search_paths=.,{GIN_DIR}",
  ]


def test_user_search_paths_are_merged_into_one_flag_before_gin_dir():
  args = main.with_t5rank_gin_dir(
    ["--gin_search_paths=a,b", "--gin_file=x.gin", "--gin_search_paths", "c"]
  )
  assert args == ["--gin_file=x.gin", f"--gin_search_paths=a,b,c,{GIN_DIR}"]


def test_gin_dir_is_not_added_twice():
  args = main.with_t5rank_gin_dir([f"--gin_search_paths={GIN_DIR}"])
  assert args == [f"--gin_search_paths={GIN_DIR}"]


def test_search_paths_flag_without_value_is_an_error():
  with pytest.raises(SystemExit, match="gin_search_paths needs a value"):
    main.with_t5rank_gin_dir(["--gin_search_paths"])


@pytest.mark.parametrize(
  "entry,command",
  [
    ("train", "t5rank-train"),
    ("evaluate", "t5rank-eval"),
    ("demo", "t5rank-demo"),
  ],
)
def test_without_t5x_entry_point_prints_one_install_sentence(entry, command):
  result = _run_python(
    _BLOCK_T5X + f"from t5rank import main; main.{entry}([])"
  )
  assert result.returncode == 1
  lines = result.stderr.strip().splitlines()
  assert lines == [main.INSTALL_HINT.format(command=command)]
  assert "pip install --no-deps -r requirements-t5x.txt" in lines[0]


def test_console_script_runs_t5x_train_main_with_its_flags():
  pytest.importorskip("t5x", reason="T5X is not installed; see README")
  script = shutil.which("t5rank-train")
  if script is None:
    pytest.skip("t5rank is not installed with its console scripts")
  result = subprocess.run(
    [script, "--help"], capture_output=True, text=True, timeout=300, check=False
  )
  # T5X's own train flags, listed by T5X's main (absl's --help exits 1).
  assert "--gin_search_paths" in result.stdout
  assert "--seqio_additional_cache_dirs" in result.stdout


def test_random_ranking_draws_log_skipped_recall_once(caplog):
  pytest.importorskip("seqio")
  from absl import logging as absl_logging  # pylint: disable=g-import-not-at-top

  absl_logging.set_verbosity(absl_logging.WARNING)  # As after parsing flags.
  import t5rank.tasks  # noqa: F401  (registers t5rank_demo)

  # absl's logger, not the root's: parsing absl flags earlier in this process
  # leaves it at absl's default verbosity (WARNING).
  caplog.set_level(logging.INFO, logger="absl")
  main.random_ranking_metrics(num_draws=3)
  skipped = [r for r in caplog.records if "skipped" in r.getMessage()]
  assert len(skipped) == 1
  assert "recall@100, recall@1000 skipped" in skipped[0].getMessage()


def test_demo_help_prints_its_own_usage_exits_0_and_leaves_nothing(tmp_path):
  env = {**os.environ, "TMPDIR": str(tmp_path)}
  result = subprocess.run(
    [
      sys.executable,
      "-c",
      "import sys; from t5rank import main; sys.exit(main.demo(['--help']))",
    ],
    capture_output=True,
    text=True,
    timeout=300,
    check=False,
    env=env,
  )
  assert result.returncode == 0, result.stderr
  assert result.stdout.startswith("usage: t5rank-demo")
  assert "demo/train.gin" in result.stdout
  assert not list(tmp_path.iterdir())


def test_failed_demo_run_removes_the_model_folder_it_made(
  tmp_path, monkeypatch
):
  monkeypatch.setattr(main, "_require_t5x", lambda command: None)
  monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))

  def fail(argv):
    raise SystemExit("t5rank-train: the gin macro MODEL has no value")

  monkeypatch.setattr(main, "train", fail)
  with pytest.raises(SystemExit, match="MODEL has no value"):
    main.demo([])
  assert not list(tmp_path.iterdir())


def test_run_without_a_model_file_says_so_in_one_message():
  pytest.importorskip("t5x", reason="T5X is not installed; see README")
  result = _run_python(
    "from t5rank import main; main.train(['--gin_file=runs/finetune_msmarco.gin',"
    " '--gin_file=losses/softmax.gin', \"--gin.MODEL_DIR='/nonexistent/m'\"])"
  )
  assert result.returncode == 1
  last = result.stderr.strip().splitlines()[-1]
  assert last.startswith("t5rank-train: no model: the gin macro MODEL has no")
  assert "--gin_file=models/encdec/base.gin" in last
  assert "Traceback" not in result.stderr and "# Macros" not in result.stderr


def test_unset_gin_macro_message_names_the_macro_and_the_flag():
  message = main.unset_macro_message("t5rank-eval", "EVAL_OUTPUT_DIR")
  assert message == (
    "t5rank-eval: the gin macro EVAL_OUTPUT_DIR has no value; "
    "set it with --gin.EVAL_OUTPUT_DIR=... or a gin file that "
    "does."
  )


def test_eval_with_a_missing_checkpoint_flag_names_the_path(tmp_path):
  pytest.importorskip("t5x", reason="T5X is not installed; see README")
  missing = str(tmp_path / "model" / "checkpoint_5")
  result = _run_python(
    "from t5rank import main; main.evaluate(['--gin_file=demo/eval.gin', "
    f"\"--gin.CHECKPOINT_PATH='{missing}'\", "
    f"\"--gin.EVAL_OUTPUT_DIR='{tmp_path}/eval'\"])"
  )
  assert result.returncode == 1
  assert result.stderr.strip().splitlines() == [
    f"t5rank-eval: CHECKPOINT_PATH='{missing}' is not a T5X checkpoint: it "
    "does not exist. Give a checkpoint folder of a training run, such as "
    "MODEL_DIR/checkpoint_<step>."
  ]


def test_eval_names_a_gin_file_checkpoint_t5x_cannot_restore(
  tmp_path, monkeypatch
):
  # T5X's own failure for a checkpoint set in a gin file: an assertion that
  # names only the checkpoint's `state` folder.
  empty = tmp_path / "checkpoint_5"
  empty.mkdir()

  def t5x_eval(module, command, argv):
    raise AssertionError(f"{empty}/state\n  In call to configurable 'evaluate'")

  monkeypatch.setattr(main, "_require_t5x", lambda command: None)
  monkeypatch.setattr(main, "_run_t5x_main", t5x_eval)
  with pytest.raises(SystemExit) as excinfo:
    main.evaluate(["--gin_file=my_eval.gin"])
  assert str(excinfo.value).startswith(
    f"t5rank-eval: CHECKPOINT_PATH='{empty}' is not a T5X checkpoint: it has "
    "no 'state' folder."
  )


def test_demo_report_puts_bm25_beside_the_ranker_and_says_who_wins(
  tmp_path, monkeypatch
):
  pytest.importorskip("seqio")
  folder = tmp_path / "inference_eval"
  folder.mkdir()
  record = {"step": 600, "ndcg@10": 0.7, "mrr@10": 0.74, "num_queries": 200}
  (folder / "t5rank_demo-metrics.jsonl").write_text(json.dumps(record) + "\n")
  monkeypatch.setattr(
    main,
    "random_ranking_metrics",
    lambda task: {"ndcg@10": 0.15, "mrr@10": 0.2},
  )
  report = main.demo_report(str(tmp_path))
  bm25 = main.first_stage_metrics()
  assert bm25["mrr@10"] == pytest.approx(0.746, abs=1e-3)
  assert "trained      BM25    random" in report
  assert f"ndcg@10         0.7000    {bm25['ndcg@10']:.4f}    0.1500" in report
  # MRR@10 0.74 is below BM25's 0.746: not a win.
  assert report.splitlines()[-1].startswith(
    "  The trained ranker does not beat BM25's order of the same candidates"
  )
  assert f"mrr@10 {0.74 - bm25['mrr@10']:.4f}" in report
