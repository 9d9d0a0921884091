"""Tests for t5rank/data/lists.py and t5rank/data/msmarco.py: building list examples."""

import doctest
import gzip
import os

import numpy as np
import pytest

from t5rank.data import collection
from t5rank.data import demo
from t5rank.data import formats
from t5rank.data import lists
from t5rank.data import msmarco

QUERIES = {"q1": "query one", "q2": "query two", "q3": "query three"}
PASSAGES = {str(i): f"passage {i}" for i in range(100)}
QRELS = {"q1": {"1": 2, "2": 1, "3": 0}, "q2": {"5": 1}, "q3": {"7": 0}}
RUN = {
  "q1": [str(i) for i in (3, 1, 10, 11, 12, 13, 14, 15, 16, 17)],
  "q2": [str(i) for i in (20, 21, 22, 23, 24, 25)],
  "q3": [str(i) for i in (7, 30, 31)],
}


def _build(**kwargs):
  options = {"list_size": 4, "run": RUN, "seed": 0}
  options.update(kwargs)
  return list(lists.build_lists(QUERIES, QRELS, PASSAGES, **options))


def _check_contract(example):
  assert set(example) == {
    "query_id",
    "query",
    "passage_ids",
    "passages",
    "label",
  }
  n = len(example["passage_ids"])
  assert n >= 1 and len(example["passages"]) == n
  assert example["label"].dtype == np.float32 and example["label"].shape == (n,)
  assert example["passages"] == [PASSAGES[p] for p in example["passage_ids"]]
  assert len(set(example["passage_ids"])) == n


def test_module_doctests_pass():
  assert doctest.testmod(lists).failed == 0
  assert doctest.testmod(msmarco).failed == 0


def test_training_lists_hold_positives_with_graded_labels_and_hard_negatives():
  examples = {e["query_id"]: e for e in _build()}
  for example in examples.values():
    _check_contract(example)
  q1 = examples["q1"]
  labels = dict(zip(q1["passage_ids"], q1["label"].tolist()))
  assert labels["1"] == 2.0 and labels["2"] == 1.0
  negatives = [p for p in q1["passage_ids"] if p not in ("1", "2")]
  assert len(q1["passage_ids"]) == 4 and len(negatives) == 2
  assert all(
    p in RUN["q1"] for p in negatives
  )  # Hard negatives come from the run.
  assert all(labels[p] == 0.0 for p in negatives)


def test_hard_negatives_exclude_positives_and_respect_depth():
  for seed in range(10):
    q1 = _build(depth=4, seed=seed)[0]
    # Top 4 of the run are 3, 1, 10, 11; "1" is a positive, so negatives come from 3, 10, 11.
    assert set(q1["passage_ids"]) - {"1", "2"} <= {"3", "10", "11"}


def test_negatives_are_sampled_from_the_whole_depth_over_seeds():
  seen = set()
  for seed in range(30):
    seen.update(_build(seed=seed)[0]["passage_ids"])
  assert len(seen - {"1", "2"}) > 5


def test_random_negatives_come_from_the_collection_and_avoid_positives():
  for seed in range(5):
    examples = _build(run=None, negatives="random", list_size=8, seed=seed)
    for example in examples:
      _check_contract(example)
      assert len(example["passage_ids"]) == 8
    q1 = examples[0]
    assert sorted(q1["label"].tolist()).count(0.0) == 6


def test_random_negatives_from_a_passage_index(tmp_path):
  path = tmp_path / "collection.tsv"
  formats.write_collection(str(path), PASSAGES)
  index = collection.PassageIndex(str(path))
  examples = list(
    lists.build_lists(QUERIES, QRELS, index, list_size=6, negatives="random")
  )
  assert [len(e["passage_ids"]) for e in examples] == [6, 6]
  for example in examples:
    _check_contract(example)


def test_truncation_never_drops_every_positive():
  qrels = {"q1": {str(i): 1 + i % 3 for i in range(10)}}
  for list_size in (1, 2, 3):
    for seed in range(5):
      (example,) = lists.build_lists(
        {"q1": "q"},
        qrels,
        PASSAGES,
        list_size=list_size,
        run=RUN,
        seed=seed,
        require_trainable=False,
      )
      assert len(example["passage_ids"]) == list_size
      assert (example["label"] > 0).all()
      assert example["label"].max() == 3.0  # Highest grades are kept first.


def test_max_positives_leaves_room_for_negatives_and_counts_truncation():
  qrels = {"q1": {str(i): 1 for i in range(5)}}
  built = lists.build_lists(
    {"q1": "q"}, qrels, PASSAGES, list_size=4, run=RUN, max_positives=2
  )
  (example,) = built
  assert sorted(example["label"].tolist()) == [0.0, 0.0, 1.0, 1.0]
  assert built.report.truncated_positives == 3


def test_same_seed_gives_the_same_lists_and_another_seed_differs():
  def signature(seed):
    return [
      (e["query_id"], e["passage_ids"], e["label"].tolist())
      for e in _build(seed=seed)
    ]

  assert signature(3) == signature(3)
  assert any(signature(3) != signature(s) for s in (4, 5, 6))


def test_lists_do_not_depend_on_query_order():
  forward = {e["query_id"]: e["passage_ids"] for e in _build(seed=9)}
  backward = {
    e["query_id"]: e["passage_ids"]
    for e in _build(seed=9, qids=list(reversed(list(QUERIES))))
  }
  assert forward == backward


def test_shuffle_false_keeps_positives_first_then_run_order():
  q1 = _build(shuffle=False, depth=4, list_size=5)[0]
  assert q1["passage_ids"] == ["1", "2", "3", "10", "11"]
  assert q1["label"].tolist() == [2.0, 1.0, 0.0, 0.0, 0.0]


def test_queries_without_positive_are_dropped_and_counted_in_training():
  built = lists.build_lists(QUERIES, QRELS, PASSAGES, list_size=4, run=RUN)
  assert [e["query_id"] for e in built] == ["q1", "q2"]
  assert built.report.dropped_without_positive == 1 and built.report.lists == 2


def test_queries_without_positive_are_kept_on_request():
  examples = _build(keep_queries_without_positive=True)
  q3 = [e for e in examples if e["query_id"] == "q3"][0]
  assert not (q3["label"] > 0).any() and len(q3["passage_ids"]) == 3


def test_rerank_lists_are_the_runs_top_in_order_with_qrel_labels():
  built = lists.build_lists(
    QUERIES,
    QRELS,
    PASSAGES,
    list_size=3,
    run=RUN,
    include_positives=False,
    keep_queries_without_positive=True,
    shuffle=False,
  )
  examples = {e["query_id"]: e for e in built}
  assert examples["q1"]["passage_ids"] == ["3", "1", "10"]
  assert examples["q1"]["label"].tolist() == [0.0, 2.0, 0.0]
  assert examples["q2"]["label"].tolist() == [
    0.0,
    0.0,
    0.0,
  ]  # Run missed "5": not added.
  assert len(examples) == 3


def test_missing_passages_are_skipped_and_counted_or_raise():
  passages = {k: v for k, v in PASSAGES.items() if k not in ("2", "10")}
  built = lists.build_lists(
    QUERIES, QRELS, passages, list_size=4, run=RUN, depth=3
  )
  examples = list(built)
  assert all(
    "2" not in e["passage_ids"] and "10" not in e["passage_ids"]
    for e in examples
  )
  assert built.report.missing_passages == 2
  with pytest.raises(KeyError, match="'2'"):
    list(
      lists.build_lists(
        QUERIES, QRELS, passages, list_size=4, run=RUN, on_unknown="error"
      )
    )


def test_unknown_qids_are_counted():
  built = lists.build_lists(
    QUERIES,
    QRELS,
    PASSAGES,
    list_size=2,
    run=RUN,
    qids=["q1", "nope"],
    require_trainable=False,
  )
  assert [e["query_id"] for e in built] == ["q1"]
  assert built.report.unknown_queries == 1


def test_query_without_candidates_yields_positives_only_and_is_counted():
  built = lists.build_lists(
    {"q2": "q"}, QRELS, PASSAGES, list_size=4, run={}, require_trainable=False
  )
  (example,) = built
  assert example["passage_ids"] == ["5"]
  assert built.report.without_candidates == 1 and built.report.short_lists == 1


@pytest.mark.parametrize(
  "kwargs,message",
  [
    ({"list_size": 0}, "list_size=0"),
    ({"list_size": 2, "depth": 0}, "depth=0"),
    ({"list_size": 2, "max_positives": 0}, "max_positives=0"),
    ({"list_size": 2, "negatives": "hard"}, "negatives='hard'"),
    ({"list_size": 2, "run": None}, "run=None"),
  ],
)
def test_bad_arguments_name_themselves(kwargs, message):
  options = {"run": RUN}
  options.update(kwargs)
  with pytest.raises(ValueError, match=message):
    lists.build_lists(QUERIES, QRELS, PASSAGES, **options)


# msmarco.passage_ranking_lists ---------------------------------------------------


def test_demo_train_split_gives_training_lists():
  built = msmarco.passage_ranking_lists(
    demo.demo_dir(), "train", list_size=8, seed=1, files=demo.DEMO_FILES
  )
  examples = [next(built) for _ in range(50)]
  for example in examples:
    assert len(example["passage_ids"]) == 8 and (example["label"] > 0).any()
  assert {r.kind for r in built.read_reports} == {"queries", "qrels", "run"}


def test_demo_dev_split_gives_every_query_its_run_top():
  built = msmarco.passage_ranking_lists(
    demo.demo_dir(), "dev", list_size=30, files=demo.DEMO_FILES
  )
  examples = list(built)
  run = formats.read_run(f"{demo.demo_dir()}/run.dev.tsv")
  assert len(examples) == 200
  assert all(e["passage_ids"] == run[e["query_id"]] for e in examples)


def test_msmarco_names_and_a_large_collection_through_the_index(tmp_path):
  formats.write_collection(str(tmp_path / "collection.tsv"), PASSAGES)
  formats.write_queries(str(tmp_path / "queries.train.tsv"), QUERIES)
  formats.write_qrels(str(tmp_path / "qrels.train.tsv"), QRELS)
  formats.write_run(
    str(tmp_path / "run.train.tsv"), {**RUN, "q9": ["1"]}, format="msmarco"
  )
  built = msmarco.passage_ranking_lists(
    tmp_path, "train", list_size=3, in_memory=False
  )
  examples = list(built)
  assert [e["query_id"] for e in examples] == ["q1", "q2"]
  run_report = built.read_reports[-1]
  assert run_report.unknown_qids == 1  # q9 is not in the queries file.
  with pytest.raises(KeyError, match="split='test'"):
    msmarco.passage_ranking_lists(tmp_path, "test", list_size=3)


def test_passage_ranking_files_default_to_official_names():
  files = msmarco.MSMARCO_FILES
  assert files.collection == "collection.tsv"
  assert files.split("train").queries == "queries.train.tsv"
  assert files.split("dev") == msmarco.SplitFiles(
    "queries.dev.small.tsv", "qrels.dev.small.tsv", "run.dev.small.tsv"
  )
  custom = files.replace_split(
    "dev", msmarco.SplitFiles("q.tsv", None, "top1000.dev")
  )
  assert custom.split("dev").run == "top1000.dev" and custom.split(
    "train"
  ) == files.split("train")


def test_training_lists_without_any_negative_raise_with_counts():
  # The run names other queries: every list would hold its positives only.
  built = lists.build_lists(
    QUERIES, QRELS, PASSAGES, list_size=4, run={"other": ["1", "2"]}
  )
  with pytest.raises(
    lists.NoTrainingListsError, match="has a negative"
  ) as excinfo:
    list(built)
  message = str(excinfo.value)
  assert f"{built.report.lists} lists from" in message
  assert f"{built.report.without_negative} without_negative" in message
  assert built.report.lists == built.report.without_negative > 0


def test_no_training_list_at_all_raises_with_counts():
  built = lists.build_lists(QUERIES, {}, PASSAGES, list_size=4, run=RUN)
  with pytest.raises(
    lists.NoTrainingListsError, match="no training list was built"
  ) as excinfo:
    list(built)
  assert f"{len(QUERIES)} dropped_without_positive" in str(excinfo.value)


def test_one_list_with_a_negative_is_enough_and_eval_lists_are_not_checked():
  run = {"q1": ["1", "2", "3"]}  # Only q1 gets negatives.
  assert (
    len(list(lists.build_lists(QUERIES, QRELS, PASSAGES, list_size=4, run=run)))
    > 1
  )
  assert not list(
    lists.build_lists(
      QUERIES, {}, PASSAGES, list_size=4, run={}, include_positives=False
    )
  )


def _msmarco_dir(tmp_path, *, collection=None, qrels=None, run=None):
  formats.write_collection(str(tmp_path / "collection.tsv"), PASSAGES)
  formats.write_queries(str(tmp_path / "queries.train.tsv"), QUERIES)
  formats.write_qrels(str(tmp_path / "qrels.train.tsv"), QRELS)
  formats.write_run(str(tmp_path / "run.train.tsv"), RUN, format="msmarco")
  for name, content in (
    ("collection.tsv", collection),
    ("qrels.train.tsv", qrels),
    ("run.train.tsv", run),
  ):
    if content is not None:
      (tmp_path / name).write_text(content)
  return tmp_path


@pytest.mark.parametrize(
  "run,counts",
  [
    ("", "0 rows"),
    ("other1\t1\t1\nother2\t3\t1\n", "2 unknown_qids"),
  ],
)
def test_run_without_candidates_for_training_queries_fails_before_any_list(
  tmp_path, run, counts
):
  data_dir = _msmarco_dir(tmp_path, run=run)
  with pytest.raises(
    lists.NoTrainingListsError, match="positives only"
  ) as excinfo:
    msmarco.passage_ranking_lists(data_dir, "train", list_size=3)
  message = str(excinfo.value)
  assert str(tmp_path / "run.train.tsv") in message and counts in message


def test_empty_collection_fails_naming_the_collection(tmp_path):
  data_dir = _msmarco_dir(tmp_path, collection="")
  with pytest.raises(
    lists.NoTrainingListsError, match="no passages"
  ) as excinfo:
    msmarco.passage_ranking_lists(data_dir, "train", list_size=3)
  assert str(tmp_path / "collection.tsv") in str(excinfo.value)


def test_qrels_naming_no_passage_of_the_collection_fail_with_counts(tmp_path):
  data_dir = _msmarco_dir(tmp_path, qrels="q1 0 900 1\nq2 0 901 1\n")
  with pytest.raises(
    lists.NoTrainingListsError, match="no relevant"
  ) as excinfo:
    msmarco.passage_ranking_lists(data_dir, "train", list_size=3)
  message = str(excinfo.value)
  assert str(tmp_path / "qrels.train.tsv") in message
  assert "2 unknown_pids" in message and f"{len(PASSAGES)} passages" in message


def test_on_duplicate_keep_first_reaches_every_file(tmp_path):
  data_dir = _msmarco_dir(tmp_path)
  with open(tmp_path / "collection.tsv", "a") as f:
    f.write("1\tanother passage 1\n")
  with open(tmp_path / "qrels.train.tsv", "a") as f:
    f.write("q1\t0\t1\t1\n")
  with pytest.raises(formats.DuplicateIdError, match="keep_first"):
    list(msmarco.passage_ranking_lists(data_dir, "train", list_size=3))
  built = msmarco.passage_ranking_lists(
    data_dir, "train", list_size=3, on_duplicate="keep_first"
  )
  assert [e["query_id"] for e in built] == ["q1", "q2"]
  assert built.read_reports[1].duplicates == 1


def test_gzip_msmarco_files_build_the_same_lists(tmp_path):
  plain = tmp_path / "plain"
  plain.mkdir()
  _msmarco_dir(plain)
  packed = tmp_path / "gz"
  packed.mkdir()
  for name in os.listdir(plain):
    with open(plain / name, "rb") as f, gzip.open(packed / name, "wb") as out:
      out.write(f.read())
  expected = list(msmarco.passage_ranking_lists(plain, "train", list_size=3))
  got = list(
    msmarco.passage_ranking_lists(packed, "train", list_size=3, in_memory=False)
  )
  assert [e["passage_ids"] for e in got] == [e["passage_ids"] for e in expected]
  assert [e["passages"] for e in got] == [e["passages"] for e in expected]
