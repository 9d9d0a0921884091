"""Tests of t5rank.data.rerank_files (candidates, partial scores, output run)."""

import doctest
import os

import pytest

from t5rank.data import formats
from t5rank.data import rerank_files


def test_doctests_pass():
  result = doctest.testmod(rerank_files)
  assert result.failed == 0 and result.attempted > 0


def _write(path, text):
  path.write_text(text)
  return str(path)


def test_candidates_keep_run_order_and_cut_at_depth(tmp_path):
  run = _write(tmp_path / "run.tsv", "1\tb\t2\n1\ta\t1\n1\tc\t3\n2\ta\t1\n")
  cands = rerank_files.read_candidates(
    run, {"1": "x", "2": "y"}, {"a": "", "b": "", "c": ""}, depth=2
  )
  assert cands.pairs == [("1", "a"), ("1", "b"), ("2", "a")]
  assert cands.rest == {"1": ["c"]}


def test_unknown_ids_are_skipped_and_counted_in_one_warning(tmp_path, caplog):
  run = _write(tmp_path / "run.tsv", "1\ta\t1\n1\tz\t2\n9\ta\t1\n")
  with caplog.at_level("WARNING"):
    cands = rerank_files.read_candidates(run, {"1": "x"}, {"a": ""})
  assert cands.pairs == [("1", "a")]
  assert "2 rows skipped" in caplog.text and "run.tsv" in caplog.text


def test_duplicate_pair_is_an_error_naming_file_and_line(tmp_path):
  run = _write(tmp_path / "run.tsv", "1\ta\t1\n1\ta\t2\n")
  with pytest.raises(formats.DuplicateIdError, match=r"run.tsv:2"):
    rerank_files.read_candidates(run, {"1": "x"}, {"a": ""})


def test_empty_run_is_an_error_naming_the_file(tmp_path):
  run = _write(tmp_path / "run.tsv", "\n")
  with pytest.raises(ValueError, match="run.tsv: no candidate"):
    rerank_files.read_candidates(run, {"1": "x"}, {"a": ""})


def test_partial_scores_ignore_a_cut_last_line_and_reject_other_runs(tmp_path):
  path = str(tmp_path / "out.partial")
  partial = rerank_files.PartialScores(path)
  partial.append([("1", "a"), ("1", "b")], [1.5, -0.25])
  with open(path, "a") as f:
    f.write("1\tc\t0.12")  # a write stopped midway
  assert partial.load() == {("1", "a"): 1.5, ("1", "b"): -0.25}
  partial.append([("1", "c")], [2.0])
  assert partial.load() == {("1", "a"): 1.5, ("1", "b"): -0.25, ("1", "c"): 2.0}
  with pytest.raises(ValueError, match="out.partial:1.*another run"):
    partial.load(expected={("2", "a")})
  partial.remove()
  assert not os.path.exists(path)


def test_reranked_run_keeps_candidates_below_depth_in_run_order(tmp_path):
  cands = rerank_files.Candidates(["q"], [["a", "b", "c", "d"]], depth=2)
  run = rerank_files.reranked_run(cands, {("q", "a"): 1.0, ("q", "b"): 3.0})
  path = str(tmp_path / "out.trec")
  assert rerank_files.write_reranked_run(path, run, tag="t") == 4
  rows = [line.split() for line in open(path).read().splitlines()]
  assert [r[2] for r in rows] == ["b", "a", "c", "d"]
  assert [r[3] for r in rows] == ["1", "2", "3", "4"]


def test_missing_score_is_an_error_naming_the_pair():
  cands = rerank_files.Candidates(["q"], [["a", "b"]])
  with pytest.raises(KeyError, match="'b' was not scored"):
    rerank_files.reranked_run(cands, {("q", "a"): 1.0})
