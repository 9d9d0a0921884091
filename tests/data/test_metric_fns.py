"""Tests of t5rank.data.metric_fns (seqio ranking metrics over a split).

Oracles: a direct NumPy transcription of the textbook definitions (below) and
trec_eval through pytrec_eval.
"""

import doctest
import inspect
import logging
import math

import numpy as np
import pytest

from t5rank.data import metric_fns

pytest.importorskip(
  "t5rank.ranking.metrics", reason="t5rank.ranking.metrics is not there yet"
)


def _target(qid, pids, labels, mask=None):
  labels = np.asarray(labels, np.float32)
  return metric_fns.postprocess_targets(
    "<extra_id_10>",
    is_target=True,
    example={
      "query_id": qid.encode(),
      "passage_ids": np.array([p.encode() for p in pids]),
      "label": labels,
      "mask": np.ones(labels.shape, bool) if mask is None else mask,
    },
  )


# ---- oracle: one query's ranked labels (best first), relevance = label >= 1.
def _ranked(scores, labels):
  order = sorted(range(len(scores)), key=lambda i: (-scores[i], i))
  return [labels[i] for i in order]


def _rr(ranked, k=None):
  for r, y in enumerate(ranked[:k], 1):
    if y >= 1:
      return 1.0 / r
  return 0.0


def _ndcg(ranked, k=None):
  dcg = sum((2**y - 1) / math.log2(r + 1) for r, y in enumerate(ranked[:k], 1))
  ideal = sorted(ranked, reverse=True)
  idcg = sum((2**y - 1) / math.log2(r + 1) for r, y in enumerate(ideal[:k], 1))
  return dcg / idcg if idcg > 0 else 0.0


def _ap(ranked):
  hits, total = 0, 0.0
  for r, y in enumerate(ranked, 1):
    if y >= 1:
      hits += 1
      total += hits / r
  n_rel = sum(y >= 1 for y in ranked)
  return total / n_rel if n_rel else 0.0


def _recall(ranked, k):
  n_rel = sum(y >= 1 for y in ranked)
  return sum(y >= 1 for y in ranked[:k]) / n_rel if n_rel else 0.0


def _random_split(rng, num_queries=30, max_len=40, graded=True):
  targets, rows, per_query = [], [], []
  width = max_len + 3  # scores come padded by the converter
  for q in range(num_queries):
    n = int(rng.integers(1, max_len + 1))
    labels = rng.integers(0, 3 if graded else 2, n).astype(np.float32)
    if q % 7 == 0:
      labels[:] = 0  # no relevant passage: scores 0, still counted
    scores = rng.permutation(n).astype(np.float32) + rng.random(n) * 0.1
    targets.append(_target(f"q{q}", [f"d{j}" for j in range(n)], labels))
    rows.append(np.concatenate([scores, rng.normal(size=width - n) * 100]))
    per_query.append((scores.tolist(), labels.tolist()))
  return targets, np.stack(rows), per_query


def test_doctests_pass():
  result = doctest.testmod(metric_fns)
  assert result.failed == 0 and result.attempted > 0


def test_metric_fn_is_a_seqio_score_metric_fn():
  params = list(inspect.signature(metric_fns.ranking_metrics).parameters)
  assert params == ["targets", "scores"]


def test_metrics_match_the_definitions_over_a_whole_split():
  rng = np.random.default_rng(0)
  targets, scores, per_query = _random_split(rng)
  fn = metric_fns.make_ranking_metric_fn(recall_topns=(5, 20, 1000))
  out = fn(targets, scores)
  ranked = [_ranked(s, y) for s, y in per_query]
  np.testing.assert_allclose(
    out["mrr@10"], np.mean([_rr(r, 10) for r in ranked]), rtol=1e-5
  )
  np.testing.assert_allclose(
    out["ndcg@10"], np.mean([_ndcg(r, 10) for r in ranked]), rtol=1e-5
  )
  np.testing.assert_allclose(
    out["ndcg"], np.mean([_ndcg(r) for r in ranked]), rtol=1e-5
  )
  np.testing.assert_allclose(
    out["map"], np.mean([_ap(r) for r in ranked]), rtol=1e-5
  )
  for k in (5, 20):
    np.testing.assert_allclose(
      out[f"recall@{k}"], np.mean([_recall(r, k) for r in ranked]), rtol=1e-5
    )
  assert "recall@1000" not in out  # not below the longest list (40)
  assert out["num_queries"] == 30
  assert out["num_queries_without_relevant"] == sum(
    not any(y >= 1 for y in r) for r in ranked
  )


def test_query_without_relevant_passage_counts_as_zero_unless_excluded():
  targets = [_target("a", ["x", "y"], [0, 1]), _target("b", ["x", "y"], [0, 0])]
  scores = np.array([[0.0, 1.0], [1.0, 0.0]])
  assert metric_fns.ranking_metrics(targets, scores)["mrr@10"] == pytest.approx(
    0.5
  )
  excluded = metric_fns.make_ranking_metric_fn(
    exclude_queries_without_relevant=True
  )(targets, scores)
  assert excluded["mrr@10"] == pytest.approx(1.0)
  assert excluded["num_queries"] == 1


def test_relevant_passage_below_rank_10_gives_zero_mrr_at_10():
  labels = [0] * 10 + [1]
  targets = [_target("q", [f"d{i}" for i in range(11)], labels)]
  scores = np.arange(11, 0, -1, dtype=np.float32)[None]
  out = metric_fns.make_ranking_metric_fn(mrr_topns=(10, None))(targets, scores)
  assert out["mrr@10"] == 0.0
  assert out["mrr"] == pytest.approx(1 / 11)


def test_scores_on_converter_padding_are_ignored():
  targets = [_target("q", ["a", "b"], [0, 1])]
  # Padding columns would win if they were read.
  out = metric_fns.ranking_metrics(targets, np.array([[1.0, 2.0, 99.0, 98.0]]))
  assert out["mrr@10"] == 1.0


def test_masked_items_are_not_ranked():
  targets = [
    _target("q", ["a", "b", "c"], [0, 0, 1], mask=np.array([True, False, True]))
  ]
  out = metric_fns.ranking_metrics(targets, np.array([[3.0, 2.0, 1.0]]))
  assert out["mrr@10"] == pytest.approx(0.5)


def test_a_query_split_over_examples_is_ranked_as_one_list():
  targets = [_target("q", ["a", "b"], [0, 0]), _target("q", ["c", "a"], [1, 0])]
  scores = np.array([[3.0, 2.0], [2.5, 9.0]])  # the second "a" is a duplicate
  out = metric_fns.ranking_metrics(targets, scores)
  assert out["num_queries"] == 1
  assert out["num_duplicate_items"] == 1
  assert out["mrr@10"] == pytest.approx(0.5)  # a (3.0) > c (2.5) > b (2.0)


def test_fewer_scores_than_items_is_an_error_naming_the_query():
  with pytest.raises(ValueError, match="query_id=q"):
    metric_fns.ranking_metrics(
      [_target("q", ["a", "b"], [0, 1])], np.array([[1.0]])
    )


def test_postprocess_passes_model_outputs_through():
  assert metric_fns.postprocess_targets([1.0, 2.0], is_target=False) == [
    1.0,
    2.0,
  ]


def test_metrics_agree_with_trec_eval_on_untied_scores(tmp_path):
  pytrec_eval = pytest.importorskip("pytrec_eval")
  rng = np.random.default_rng(1)
  targets, scores, _ = _random_split(rng, num_queries=40, graded=False)
  out = metric_fns.make_ranking_metric_fn(recall_topns=(5,))(targets, scores)
  qrels, run, run_top10 = {}, {}, {}
  for target, row in zip(targets, scores):
    qid, pids = target["query_id"], target["passage_ids"]
    qrels[qid] = {p: int(y) for p, y in zip(pids, target["label"])}
    run[qid] = {p: float(s) for p, s in zip(pids, row)}
    top = sorted(run[qid], key=run[qid].get, reverse=True)[:10]
    run_top10[qid] = {p: run[qid][p] for p in top}
  measures = {"recip_rank", "ndcg_cut_10", "ndcg", "map", "recall_5"}
  full = pytrec_eval.RelevanceEvaluator(qrels, measures).evaluate(run)
  # recip_rank has no cutoff in trec_eval: MRR@10 = recip_rank of the top 10.
  top10 = pytrec_eval.RelevanceEvaluator(qrels, {"recip_rank"}).evaluate(
    run_top10
  )

  def mean(results, measure):
    # trec_eval leaves out queries without a relevant document; they score 0.
    return sum(results.get(q, {}).get(measure, 0.0) for q in qrels) / len(qrels)

  np.testing.assert_allclose(
    out["mrr@10"], mean(top10, "recip_rank"), rtol=1e-5
  )
  np.testing.assert_allclose(
    out["ndcg@10"], mean(full, "ndcg_cut_10"), rtol=1e-5
  )
  np.testing.assert_allclose(out["ndcg"], mean(full, "ndcg"), rtol=1e-5)
  np.testing.assert_allclose(out["map"], mean(full, "map"), rtol=1e-5)
  np.testing.assert_allclose(out["recall@5"], mean(full, "recall_5"), rtol=1e-5)


def test_run_file_orders_ties_as_trec_eval_and_scores_the_same(tmp_path):
  pytrec_eval = pytest.importorskip("pytrec_eval")
  path = tmp_path / "run.trec"
  targets = [
    _target("q1", ["d1", "d3", "d2", "d4"], [0, 1, 0, 0]),
    _target("q2", ["a", "b"], [1, 0]),
  ]
  scores = np.array([[1.0, 1.0, 1.0, 0.5], [0.0, 2.0, 0.0, 0.0]])
  fn = metric_fns.make_ranking_metric_fn(run_path=str(path))
  fn(targets, scores)
  rows = [line.split() for line in path.read_text().splitlines()]
  # Tied at 1.0: docno descending (d3, d2, d1), as trec_eval sorts a run.
  assert [(r[0], r[2], r[3]) for r in rows] == [
    ("q1", "d3", "1"),
    ("q1", "d2", "2"),
    ("q1", "d1", "3"),
    ("q1", "d4", "4"),
    ("q2", "b", "1"),
    ("q2", "a", "2"),
  ]
  with open(path) as f:
    run = pytrec_eval.parse_run(f)
  qrels = {"q1": {"d3": 1, "d1": 0, "d2": 0, "d4": 0}, "q2": {"a": 1, "b": 0}}
  rr = pytrec_eval.RelevanceEvaluator(qrels, {"recip_rank"}).evaluate(run)
  assert [rr[q]["recip_rank"] for q in ("q1", "q2")] == [1.0, 0.5]


def test_write_trec_run_merges_rows_of_a_query_and_leaves_out_masked_items(
  tmp_path,
):
  path = str(tmp_path / "sub" / "run.trec")
  rows = metric_fns.write_trec_run(
    path,
    ["q1", "q2", "q1"],
    [["a", "b"], ["c"], ["d", "a"]],
    [[1.0, 3.0, 0.0], [2.0, 0.0, 0.0], [2.0, 9.0, 0.0]],
    mask=[[True, False], [True], [True, True]],
    tag="x",
    depth=2,
  )
  lines = [line.split() for line in open(path).read().splitlines()]
  # b is masked; the second "a" (9.0) is a repeat and keeps the first score.
  assert lines == [
    ["q1", "Q0", "d", "1", "2.000000", "x"],
    ["q1", "Q0", "a", "2", "1.000000", "x"],
    ["q2", "Q0", "c", "1", "2.000000", "x"],
  ]
  assert rows == 3


def test_skipped_recall_cutoffs_are_logged_in_one_line_per_evaluation(caplog):
  caplog.set_level(logging.INFO)
  fn = metric_fns.make_ranking_metric_fn(recall_topns=(2, 100, 1000))
  out = fn([_target("q1", ["a", "b", "c"], [1, 0, 0])], [[0.3, 0.2, 0.1]])
  assert "recall@2" in out and "recall@100" not in out
  skipped = [
    r.getMessage() for r in caplog.records if "skipped" in r.getMessage()
  ]
  assert skipped == [
    "recall@100, recall@1000 skipped: the longest list has 3 items."
  ]


# ---- evaluation over judged queries (official MS-MARCO script, trec_eval).
def _msmarco_mrr10(qrels, run):
  """MRR@10 as the official MS-MARCO script computes it.

  For each query of the run that has qrels: 1/rank of the first relevant
  passage among the first 10 of the run (ranked by score, ties by docno
  descending, the order of a written run file); the sum is divided by the
  number of queries in the qrels.
  """
  total = 0.0
  for qid, candidates in run.items():
    if qid not in qrels:
      continue
    relevant = {p for p, y in qrels[qid].items() if y >= 1}
    ranked = sorted(candidates, key=lambda p: (candidates[p], p), reverse=True)
    for i, pid in enumerate(ranked[:10]):
      if pid in relevant:
        total += 1.0 / (i + 1)
        break
  return total / len(qrels)


def _split_from_run(run, qrels):
  targets, rows = [], []
  for qid, candidates in run.items():
    pids = list(candidates)
    labels = [qrels.get(qid, {}).get(p, 0) for p in pids]
    targets.append(_target(qid, pids, labels))
    rows.append(np.array([candidates[p] for p in pids], np.float32))
  return targets, rows


def _generated_run_and_qrels(seed):
  """60 queries: q0-q39 judged (some only non-relevant), q30-q39 not in the
  run, q40-q59 in the run but unjudged; scores with many ties."""
  rng = np.random.default_rng(seed)
  docs = [f"d{i:02d}" for i in range(50)]
  qrels, run = {}, {}
  for q in range(60):
    qid = f"q{q}"
    if q < 40:
      judged = rng.choice(docs, size=int(rng.integers(1, 6)), replace=False)
      grades = rng.integers(0, 2, len(judged))
      if q % 9 == 0:
        grades[:] = 0  # judged, nothing relevant
      elif q % 9 == 1:
        grades[0] = 1
      qrels[qid] = {str(p): int(y) for p, y in zip(judged, grades)}
    if q < 30 or q >= 40:
      pool = list(
        rng.choice(docs, size=int(rng.integers(1, 26)), replace=False)
      )
      if qid in qrels and q % 3 == 0:  # make relevant candidates more common
        pool = sorted(set(pool) | set(qrels[qid]))
      run[qid] = {str(p): float(rng.integers(0, 4)) for p in pool}
  return run, qrels


def test_issue_example_unjudged_left_out_and_missing_judged_query_counts_zero():
  run = {
    "101": {"a": 2.0, "x": 1.0},
    "102": {"b": 2.0, "y": 1.0},
    "104": {"c": 1.0},
    "105": {"d": 1.0},
  }
  qrels = {"101": {"a": 1}, "102": {"b": 1}, "103": {"e": 1}}
  targets, rows = _split_from_run(run, qrels)
  out = metric_fns.make_ranking_metric_fn(qrels=qrels)(targets, rows)
  assert out["mrr@10"] == pytest.approx(2 / 3)
  assert out["mrr@10"] == pytest.approx(_msmarco_mrr10(qrels, run))
  assert (
    out["num_queries"],
    out["num_judged_queries"],
    out["num_judged_without_candidates"],
    out["num_unjudged_queries"],
  ) == (3, 3, 1, 2)
  trec_default = metric_fns.make_ranking_metric_fn(
    qrels=qrels, missing_queries="exclude"
  )(targets, rows)
  assert trec_default["mrr@10"] == pytest.approx(1.0)
  assert trec_default["num_queries"] == 2


def test_qrels_may_be_a_file_or_a_callable(tmp_path):
  path = tmp_path / "qrels.tsv"
  path.write_text("101 0 a 1\n103 0 e 1\n")
  targets, rows = _split_from_run({"101": {"a": 1.0}, "104": {"c": 1.0}}, {})
  for qrels in (str(path), lambda: str(path)):
    out = metric_fns.make_ranking_metric_fn(qrels=qrels)(targets, rows)
    assert out["mrr@10"] == pytest.approx(0.5)
    assert out["num_unjudged_queries"] == 1


def test_unknown_missing_queries_mode_is_an_error_naming_it():
  with pytest.raises(ValueError, match="missing_queries='sometimes'"):
    metric_fns.make_ranking_metric_fn(missing_queries="sometimes")


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_mrr10_matches_the_official_msmarco_formula_with_ties_and_gaps(seed):
  run, qrels = _generated_run_and_qrels(seed)
  targets, rows = _split_from_run(run, qrels)
  out = metric_fns.make_ranking_metric_fn(qrels=qrels)(targets, rows)
  np.testing.assert_allclose(
    out["mrr@10"], _msmarco_mrr10(qrels, run), rtol=1e-6
  )
  assert out["num_judged_queries"] == 40
  assert out["num_judged_without_candidates"] == 10
  assert out["num_unjudged_queries"] == 20
  assert out["num_queries"] == 40


@pytest.mark.parametrize("missing_queries", ["zero", "exclude"])
@pytest.mark.parametrize("seed", [0, 1])
def test_metrics_match_pytrec_eval_in_both_modes_with_ties_and_gaps(
  seed, missing_queries
):
  pytrec_eval = pytest.importorskip("pytrec_eval")
  run, qrels = _generated_run_and_qrels(seed)
  targets, rows = _split_from_run(run, qrels)
  out = metric_fns.make_ranking_metric_fn(
    qrels=qrels, missing_queries=missing_queries, recall_topns=(5,)
  )(targets, rows)
  measures = {"ndcg_cut_10", "ndcg", "map", "recall_5"}
  full = pytrec_eval.RelevanceEvaluator(qrels, measures).evaluate(run)
  # trec_eval's recip_rank has no cutoff: MRR@10 is recip_rank of the top 10
  # in trec_eval's order (score descending, docno descending).
  top10 = {
    q: dict(sorted(c.items(), key=lambda kv: (kv[1], kv[0]), reverse=True)[:10])
    for q, c in run.items()
  }
  rr = pytrec_eval.RelevanceEvaluator(qrels, {"recip_rank"}).evaluate(top10)
  # trec_eval evaluates the queries in both files; -c adds the judged
  # queries missing from the run with 0.
  assert set(full) == set(qrels) & set(run)
  count = len(qrels) if missing_queries == "zero" else len(full)
  assert out["num_queries"] == count

  def mean(results, measure):
    return sum(r[measure] for r in results.values()) / count

  np.testing.assert_allclose(out["mrr@10"], mean(rr, "recip_rank"), rtol=1e-5)
  np.testing.assert_allclose(
    out["ndcg@10"], mean(full, "ndcg_cut_10"), rtol=1e-5
  )
  np.testing.assert_allclose(out["ndcg"], mean(full, "ndcg"), rtol=1e-5)
  np.testing.assert_allclose(out["map"], mean(full, "map"), rtol=1e-5)
  np.testing.assert_allclose(out["recall@5"], mean(full, "recall_5"), rtol=1e-5)


def test_evaluate_on_a_run_mapping_gives_the_metric_fn_numbers():
  run, qrels = _generated_run_and_qrels(3)
  targets, rows = _split_from_run(run, qrels)
  via_fn = metric_fns.make_ranking_metric_fn(qrels=qrels)(targets, rows)
  direct = metric_fns.evaluate(metric_fns.query_lists_from_run(run), qrels)
  assert direct == pytest.approx(via_fn)


def test_write_trec_run_takes_remote_paths_through_tf_gfile():
  tf = pytest.importorskip("tensorflow")
  path = "ram://t5rank_test/run.trec"
  rows = metric_fns.write_trec_run(path, ["q1"], [["d1", "d2"]], [[0.1, 0.9]])
  assert rows == 2
  with tf.io.gfile.GFile(path) as f:
    assert f.read().splitlines() == [
      "q1 Q0 d2 1 0.900000 t5rank",
      "q1 Q0 d1 2 0.100000 t5rank",
    ]
