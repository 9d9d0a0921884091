"""Tests for t5rank/data/demo.py: the shipped demo corpus."""

import os

import numpy as np
import pytest

from t5rank.data import demo
from t5rank.data import formats

_NAMES = [
  "collection.tsv",
  "queries.train.tsv",
  "queries.dev.tsv",
  "qrels.train.tsv",
  "qrels.dev.tsv",
  "run.train.tsv",
  "run.dev.tsv",
  "queries.tune.tsv",
  "qrels.tune.tsv",
  "run.tune.tsv",
]


@pytest.fixture(scope="module")
def corpus():
  folder = demo.demo_dir()
  col = formats.read_collection(
    os.path.join(folder, "collection.tsv"), on_duplicate="error"
  )
  data = {"collection": col}
  for split in ("train", "dev", "tune"):
    queries = formats.read_queries(os.path.join(folder, f"queries.{split}.tsv"))
    data[f"queries.{split}"] = queries
    data[f"qrels.{split}"] = formats.read_qrels(
      os.path.join(folder, f"qrels.{split}.tsv"),
      known_qids=queries,
      known_pids=col,
      on_unknown="error",
    )
    data[f"run.{split}"] = formats.read_run(
      os.path.join(folder, f"run.{split}.tsv"),
      known_qids=queries,
      known_pids=col,
      on_unknown="error",
    )
  return data


def test_regenerating_the_corpus_gives_the_shipped_files_byte_for_byte(
  tmp_path,
):
  paths = demo.write(tmp_path)
  names = [*_NAMES, demo.VOCABULARY_FILE]
  assert sorted(os.path.basename(p) for p in paths) == sorted(names)
  for name in names:
    with (
      open(os.path.join(demo.demo_dir(), name), "rb") as shipped,
      open(tmp_path / name, "rb") as fresh,
    ):
      assert shipped.read() == fresh.read(), name


def test_shipped_files_are_small_and_named_as_demo_files():
  names = [*_NAMES, demo.VOCABULARY_FILE]
  total = sum(os.path.getsize(os.path.join(demo.demo_dir(), n)) for n in names)
  assert total < 2 * 1024 * 1024
  files = demo.DEMO_FILES
  named = {files.collection} | {
    getattr(files.split(s), f)
    for s in ("train", "dev", "tune")
    for f in ("queries", "qrels", "run")
  }
  assert named == set(_NAMES)


def test_corpus_sizes_and_ids_are_consistent(corpus):
  assert len(corpus["collection"]) == 4500
  assert (
    len(corpus["queries.train"]) == 2000 and len(corpus["queries.dev"]) == 200
  )
  assert not set(corpus["queries.train"]) & set(corpus["queries.dev"])
  for split, depth in (("train", demo.TRAIN_DEPTH), ("dev", demo.DEV_DEPTH)):
    assert set(corpus[f"qrels.{split}"]) == set(corpus[f"queries.{split}"])
    assert set(corpus[f"run.{split}"]) == set(corpus[f"queries.{split}"])
    assert all(len(c) == depth for c in corpus[f"run.{split}"].values())


def test_tune_split_is_every_training_query_about_held_out_pairs(corpus):
  def pairs(split):
    return {
      q: frozenset(judged) for q, judged in corpus[f"qrels.{split}"].items()
    }

  train, tune = pairs("train"), pairs("tune")
  assert len(set(tune.values())) == demo.NUM_TUNE_PAIRS
  assert len(tune) == demo.NUM_TUNE_QUERIES
  assert set(tune) <= set(train)  # training queries, same text and qrels
  for qid in tune:
    assert corpus["queries.tune"][qid] == corpus["queries.train"][qid]
  # Every training query about a tune pair is in the tune split.
  assert {q for q, p in train.items() if p in set(tune.values())} == set(tune)
  assert all(len(c) == demo.DEV_DEPTH for c in corpus["run.tune"].values())
  assert not set(tune.values()) & set(pairs("dev").values())


def test_labels_are_graded_with_answers_and_on_topic_passages(corpus):
  for split in ("train", "dev"):
    for judged in corpus[f"qrels.{split}"].values():
      assert sorted(judged.values()) == [1, 2, 2]


def test_texts_are_short_enough_for_a_byte_level_model(corpus):
  lengths = [len(t.encode()) for t in corpus["collection"].values()]
  query_lengths = [len(t.encode()) for t in corpus["queries.train"].values()]
  assert max(lengths) <= 120 and max(query_lengths) <= 60


def test_candidates_are_hard_but_not_perfect(corpus):
  """BM25 candidates share the query's place name, yet rank answers imperfectly."""
  for split in ("train", "dev"):
    queries, qrels, run = (
      corpus[f"{k}.{split}"] for k in ("queries", "qrels", "run")
    )
    reciprocal_ranks, place_overlap = [], []
    for qid, candidates in run.items():
      place = [w for w in queries[qid].split() if w[0].isupper()][0]
      place_overlap.append(
        np.mean([place in corpus["collection"][p] for p in candidates[:10]])
      )
      ranks = [
        i for i, p in enumerate(candidates[:10], 1) if qrels[qid].get(p, 0) > 0
      ]
      reciprocal_ranks.append(1 / ranks[0] if ranks else 0.0)
    assert 0.5 < np.mean(reciprocal_ranks) < 0.9
    assert (
      np.mean(place_overlap) > 0.5
    )  # Most top candidates name the place: distractors.


def test_dev_asks_about_place_fact_pairs_no_training_query_asks_about(corpus):
  def pairs(split):
    return {frozenset(j) for j in corpus[f"qrels.{split}"].values()}

  assert not pairs("train") & pairs("dev")


def test_main_writes_the_files(tmp_path, capsys):
  demo.main(["--out", str(tmp_path)])
  assert sorted(os.listdir(tmp_path)) == sorted([*_NAMES, demo.VOCABULARY_FILE])
  assert "collection.tsv" in capsys.readouterr().out


def test_vocabulary_reads_the_demo_as_words_with_t5_special_ids(corpus):
  vocab = demo.vocabulary()
  assert vocab.vocab_size == demo.VOCABULARY_PIECES + demo.EXTRA_IDS
  assert (vocab.pad_id, vocab.eos_id, vocab.unk_id) == (0, 1, 2)
  texts = list(corpus["collection"].values())
  ids = [vocab.encode(t) for t in texts]
  assert [vocab.decode(i) for i in ids] == texts  # lossless
  assert all(vocab.unk_id not in i for i in ids)
  # Common words are single pieces: the model sees words, not bytes.
  assert len(vocab.encode("what is the capital of")) == 5
  # Most passages are a quarter of their length in bytes or less.
  ratios = sorted(len(i) / len(t) for i, t in zip(ids, texts))
  assert ratios[len(ratios) // 2] < 0.3
  # RankT5's score token is a sentinel, as with T5's vocabulary.
  assert vocab.decode([vocab.vocab_size - 1 - 10]) == "<extra_id_10>"
