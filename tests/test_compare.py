"""Tests of `t5rank-demo --compare` (t5rank/compare.py) without training.

Training is replaced by writing what T5X would leave in a model folder (the
seqio metrics of each evaluation and the final dev run), so these tests check
the reading, the statistics, the table and the picture in seconds. The real
runs are a benchmark (README); `test_compare_trains_each_loss_and_seed` runs
two tiny ones end to end under `-m slow`.
"""

import json
import os

import numpy as np
import pytest

from t5rank import compare
from t5rank.data import demo
from t5rank.data import formats
from t5rank.data import metric_fns

DEV = demo.DEMO_FILES.split("dev")
QRELS = os.path.join(demo.demo_dir(), DEV.qrels)


def _split_run(split="dev"):
  files = demo.DEMO_FILES.split(split)
  return formats.read_run(os.path.join(demo.demo_dir(), files.run))


def _fake_training(quality, steps=(50, 100)):
  """A stand-in for `train_run`: a ranker that finds a relevant passage
  with a probability of `quality[loss]` per query, seeded by the run."""

  def train_run(
    loss,
    seed,
    model_dir,
    eval_period,
    extra=(),
    log_path=None,
    eval_split="dev",
  ):
    qrels = formats.read_qrels(
      os.path.join(demo.demo_dir(), demo.DEMO_FILES.split(eval_split).qrels)
    )
    rng = np.random.default_rng([seed, len(loss)])
    run = {}
    for qid, pids in _split_run(eval_split).items():
      scores = rng.uniform(size=len(pids))
      if rng.uniform() < quality[loss]:
        for i, pid in enumerate(pids):
          scores[i] += 2.0 * qrels.get(qid, {}).get(pid, 0)
      run[qid] = dict(zip(pids, scores.tolist()))
    os.makedirs(os.path.join(model_dir, "inference_eval"), exist_ok=True)
    metric_fns.write_trec_run(
      os.path.join(model_dir, compare.run_file(eval_split)),
      list(run),
      [list(r) for r in run.values()],
      [list(r.values()) for r in run.values()],
    )
    final = metric_fns.evaluate(metric_fns.query_lists_from_run(run), qrels)
    path = os.path.join(
      model_dir, "inference_eval", f"{compare.TASK}-metrics.jsonl"
    )
    with open(path, "w", encoding="utf-8") as f:
      for i, step in enumerate(steps):
        shrink = (i + 1) / len(steps)
        record = {m: final[m] * shrink for m in compare.METRICS}
        f.write(json.dumps({"step": step, **record}) + "\n")
    return 1.0

  return train_run


@pytest.fixture
def compared(tmp_path, monkeypatch):
  quality = {"softmax": 0.9, "sigmoid": 0.5}
  monkeypatch.setattr(compare, "train_run", _fake_training(quality))
  monkeypatch.setattr(
    compare,
    "reference_metrics",
    lambda eval_split="dev": {
      "BM25 (first stage)": {"ndcg@10": 0.54, "mrr@10": 0.75},
      "random order": {"ndcg@10": 0.15, "mrr@10": 0.2},
    },
  )
  out = str(tmp_path / "cmp")
  result = compare.compare(
    ["softmax", "sigmoid"], [0, 1], out, log=lambda *a: None
  )
  return out, result


def test_compare_writes_the_picture_the_table_and_the_numbers(compared):
  out, result = compared
  with open(os.path.join(out, "curves.png"), "rb") as f:
    assert f.read(8) == b"\x89PNG\r\n\x1a\n"
  assert os.path.getsize(os.path.join(out, "curves.png")) > 10_000
  with open(os.path.join(out, "results.md"), encoding="utf-8") as f:
    table = f.read()
  assert "softmax (listwise)" in table and "sigmoid (pointwise)" in table
  assert "BM25 (first stage)" in table and "random order" in table
  with open(os.path.join(out, "results.json"), encoding="utf-8") as f:
    saved = json.load(f)
  assert saved["summary"] == result["summary"]
  assert len(saved["runs"]) == 4


def test_final_metrics_are_the_last_evaluation_averaged_over_seeds(compared):
  out, result = compared
  for loss in ("softmax", "sigmoid"):
    finals = []
    for seed in (0, 1):
      steps, curves = compare.read_curves(
        os.path.join(out, loss, f"seed_{seed}")
      )
      assert steps == [50, 100]
      finals.append(curves["ndcg@10"][-1])
    row = result["summary"][loss]["ndcg@10"]
    assert row["mean"] == pytest.approx(np.mean(finals))
    assert row["sd"] == pytest.approx(np.std(finals, ddof=1))
    assert row["seeds"] == 2


def test_per_query_values_average_to_the_seqio_metrics(compared):
  out, _ = compared
  model_dir = os.path.join(out, "softmax", "seed_0")
  per_query = compare.per_query_metrics(
    os.path.join(model_dir, compare.run_file()), QRELS
  )
  _, curves = compare.read_curves(model_dir)
  for m in compare.METRICS:
    assert len(per_query[m]) == demo.NUM_DEV_PAIRS
    assert np.mean(list(per_query[m].values())) == pytest.approx(
      curves[m][-1], abs=1e-6
    )


def test_tune_split_runs_evaluate_on_the_tune_queries(tmp_path, monkeypatch):
  monkeypatch.setattr(
    compare, "train_run", _fake_training({"softmax": 0.9, "sigmoid": 0.5})
  )
  out = str(tmp_path / "tune")
  result = compare.compare(
    ["softmax", "sigmoid"], [0], out, log=lambda *a: None, eval_split="tune"
  )
  model_dir = os.path.join(out, "softmax", "seed_0")
  assert os.path.exists(os.path.join(model_dir, "tune.trec"))
  assert not os.path.exists(os.path.join(model_dir, "dev.trec"))
  per_query = result["runs"][0]["per_query"]["ndcg@10"]
  assert set(per_query) == set(_split_run("tune"))
  with open(os.path.join(out, "results.md"), encoding="utf-8") as f:
    assert f.read().startswith("| tune, 1 seed |")
  from t5rank import main  # pylint: disable=g-import-not-at-top

  bm25 = result["references"]["BM25 (first stage)"]["ndcg@10"]
  assert bm25 == pytest.approx(
    main.first_stage_metrics(split="tune")["ndcg@10"]
  )
  assert bm25 != pytest.approx(main.first_stage_metrics()["ndcg@10"])


def test_paired_test_favours_the_better_loss_and_not_the_baseline(compared):
  _, result = compared
  softmax = result["summary"]["softmax"]
  assert softmax["mrr@10"]["diff"] > 0.1 and softmax["mrr@10"]["p"] < 1e-3
  assert "diff" not in result["summary"]["sigmoid"]["mrr@10"]


def test_paired_test_matches_scipy_and_handles_equal_runs():
  stats = pytest.importorskip("scipy.stats")
  a = {"1": 0.5, "2": 1.0, "3": 0.2, "4": 0.9}
  b = {"1": 0.4, "2": 0.7, "3": 0.3, "4": 0.5}
  diff, p = compare.paired_test(a, b)
  assert diff == pytest.approx(np.mean([0.1, 0.3, -0.1, 0.4]))
  assert p == pytest.approx(
    stats.ttest_rel(list(a.values()), list(b.values())).pvalue
  )
  assert compare.paired_test(a, a) == (0.0, 1.0)


def test_finished_runs_are_reused_not_trained_again(compared, monkeypatch):
  out, result = compared

  def must_not_train(*args, **kwargs):
    raise AssertionError("a finished run was trained again")

  monkeypatch.setattr(compare, "train_run", must_not_train)
  again = compare.compare(
    ["softmax", "sigmoid"], [0, 1], out, log=lambda *a: None
  )
  assert again["summary"] == result["summary"]


def test_unknown_loss_and_bad_seeds_are_one_clear_error():
  with pytest.raises(SystemExit, match="no loss file for \\['softmaxx'\\]"):
    compare.main(["--compare=softmaxx"])
  with pytest.raises(SystemExit, match="--seeds='a,b'"):
    compare.main(["--compare=softmax", "--seeds=a,b"])


def test_module_doctests_pass():
  import doctest  # pylint: disable=g-import-not-at-top

  result = doctest.testmod(compare)
  assert result.attempted and not result.failed


def test_train_args_select_loss_seed_and_evaluation():
  args = compare.train_args("listmle", 3, "/m", 25, ["--gin.TRAIN_STEPS=100"])
  assert "--gin_file=losses/listmle.gin" in args
  assert "--gin.RANDOM_SEED=3" in args and "--gin.EVAL_PERIOD=25" in args
  assert "--gin.EVAL_RUN_PATH='/m/dev.trec'" in args
  assert "--gin.EVAL_SPLIT='dev'" in args
  assert args[-1] == "--gin.TRAIN_STEPS=100"  # the user's flags come last


@pytest.mark.slow
def test_compare_trains_each_loss_and_seed(tmp_path):
  pytest.importorskip("t5x")
  out = str(tmp_path / "cmp")
  result = compare.compare(
    ["softmax", "sigmoid"],
    [0],
    out,
    eval_period=10,
    extra=["--gin.TRAIN_STEPS=20", "--gin.EVAL_LIST_SIZE=10"],
    log=lambda *a: None,
  )
  for loss in ("softmax", "sigmoid"):
    assert [r["steps"] for r in result["runs"] if r["loss"] == loss] == [
      [10, 20]
    ]
  assert os.path.exists(os.path.join(out, "curves.png"))


def test_reference_metrics_are_bm25_and_random_orders_of_the_dev_run():
  references = compare.reference_metrics()
  bm25, random = references["BM25 (first stage)"], references["random order"]
  assert bm25["mrr@10"] == pytest.approx(0.746, abs=1e-3)
  assert bm25["ndcg@10"] == pytest.approx(0.543, abs=1e-3)
  assert random["mrr@10"] < 0.3 and random["ndcg@10"] < 0.25


def test_tuning_script_ranks_candidates_by_final_tune_ndcg():
  import importlib.util  # pylint: disable=g-import-not-at-top

  path = os.path.join(
    os.path.dirname(__file__), "..", "benchmarks", "demo_tuning.py"
  )
  spec = importlib.util.spec_from_file_location("demo_tuning", path)
  tuning = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(tuning)
  rows = [
    {
      "name": name,
      "steps": [300, 600],
      "curves": {"ndcg@10": [0.9, ndcg], "mrr@10": [0.5, 0.5]},
    }
    for name, ndcg in (("a", 0.60), ("b", 0.65), ("c", 0.62))
  ]
  table = tuning.table(
    rows, {"BM25 (first stage)": {"ndcg@10": 0.5, "mrr@10": 0.7}}
  )
  lines = table.splitlines()
  assert lines[0].startswith("| tune split |")
  assert [line.split(" | ")[0] for line in lines[2:5]] == ["| b", "| c", "| a"]
  assert lines[-1].startswith("| BM25 (first stage) | 0.500 / 0.700")
  # Every candidate's flags are T5X gin flags of demo/train.gin's recipe.
  assert all(
    flag.startswith("--gin.")
    for flags in tuning.CANDIDATES.values()
    for flag in flags
  )
  with pytest.raises(SystemExit, match="unknown candidates"):
    tuning.main(["--only=nope"])
