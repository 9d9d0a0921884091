"""Tests of t5rank.data.preprocessors (list examples -> ranking features)."""

import doctest
import os

import numpy as np
import pytest
import seqio
import tensorflow as tf

from t5rank.data import preprocessors

SPM_PATH = os.path.join(
  os.path.dirname(__file__),
  "..",
  "..",
  "..",
  "shared",
  "data",
  "t5_spiece.model",
)
if not os.path.exists(SPM_PATH):
  SPM_PATH = "/work/shared/data/t5_spiece.model"

needs_spm = pytest.mark.skipif(
  not os.path.exists(SPM_PATH), reason="T5's SentencePiece model is absent"
)

TEXTS = [
  "Query: what is a cat Document: A cat is a small animal.",
  "",
  "é ü 漢字",
  "x" * 40,
]


def _spm():
  return seqio.SentencePieceVocabulary(SPM_PATH, extra_ids=100)


def _first(ds):
  return next(iter(ds))


def _list_ds(**extra):
  example = {
    "query_id": "q1",
    "query": "what is a cat",
    "passage_ids": ["p1", "p2", "p3"],
    "passages": ["A cat is a small animal.", "Dogs bark.", "Cats purr."],
    "label": [1.0, 0.0, 2.0],
  }
  example.update(extra)
  return tf.data.Dataset.from_tensors(example)


def test_doctests_pass():
  result = doctest.testmod(preprocessors, optionflags=doctest.ELLIPSIS)
  assert result.failed == 0 and result.attempted > 0


def test_format_inputs_writes_default_template_per_item_and_drops_texts():
  ex = _first(preprocessors.format_inputs(_list_ds()))
  assert [s.decode() for s in ex["inputs"].numpy()] == [
    "Query: what is a cat Document: A cat is a small animal.",
    "Query: what is a cat Document: Dogs bark.",
    "Query: what is a cat Document: Cats purr.",
  ]
  assert "query" not in ex and "passages" not in ex
  assert ex["passage_ids"].numpy().tolist() == [b"p1", b"p2", b"p3"]


def test_format_inputs_follows_a_custom_template_with_passage_first():
  ds = preprocessors.format_inputs(
    _list_ds(), template="{passage} || {query}?", keep_texts=True
  )
  ex = _first(ds)
  assert ex["inputs"].numpy()[1].decode() == "Dogs bark. || what is a cat?"
  assert "query" in ex and "passages" in ex


@pytest.mark.parametrize(
  "template",
  [
    "Query: {query}",
    "{passage}{passage}",
    "{query} {passage} {title}",
    "{query}{query}{passage}",
  ],
)
def test_bad_template_is_rejected_with_the_template_named(template):
  with pytest.raises(ValueError, match="template="):
    preprocessors.format_inputs(_list_ds(), template=template)


def test_byte_vocabulary_encodes_a_list_like_encoding_each_string():
  vocab = seqio.ByteVocabulary()
  ids = preprocessors.encode_strings(vocab, tf.constant(TEXTS))
  assert ids.to_list() == [vocab.encode(t) for t in TEXTS]


def test_byte_vocabulary_truncates_to_max_tokens_bytes():
  vocab = seqio.ByteVocabulary()
  ids = preprocessors.encode_strings(vocab, tf.constant(TEXTS), max_tokens=5)
  assert ids.to_list() == [vocab.encode(t)[:5] for t in TEXTS]


@needs_spm
def test_sentencepiece_encodes_a_list_like_encoding_each_string():
  vocab = _spm()
  ids = preprocessors.encode_strings(vocab, tf.constant(TEXTS), max_tokens=7)
  assert ids.to_list() == [vocab.encode(t)[:7] for t in TEXTS]


def test_tokenize_inputs_trims_to_budget_minus_one_then_appends_eos():
  vocab = seqio.ByteVocabulary()
  features = {"inputs": seqio.Feature(vocab, add_eos=True, rank=2)}
  ds = tf.data.Dataset.from_tensors({"inputs": ["abcdef", "ab", ""]})
  ex = _first(preprocessors.tokenize_inputs(ds, features, {"inputs": (3, 4)}))
  assert ex["inputs"].to_list() == [
    vocab.encode("abc") + [1],
    vocab.encode("ab") + [1],
    [1],
  ]


def test_tokenize_inputs_without_eos_keeps_the_whole_budget():
  vocab = seqio.ByteVocabulary()
  features = {"inputs": seqio.Feature(vocab, add_eos=False, rank=2)}
  ds = tf.data.Dataset.from_tensors({"inputs": ["abcdef", "ab"]})
  ex = _first(preprocessors.tokenize_inputs(ds, features, {"inputs": (3, 4)}))
  assert ex["inputs"].to_list() == [vocab.encode("abcd"), vocab.encode("ab")]


def test_tokenize_inputs_without_sequence_length_keeps_everything():
  vocab = seqio.ByteVocabulary()
  features = {"inputs": seqio.Feature(vocab, add_eos=True, rank=2)}
  ds = tf.data.Dataset.from_tensors({"inputs": ["abcdef"]})
  ex = _first(preprocessors.tokenize_inputs(ds, features, None))
  assert ex["inputs"].to_list() == [vocab.encode("abcdef") + [1]]


@needs_spm
def test_tokenize_inputs_with_sentencepiece_matches_seqio_trim_then_eos():
  vocab = _spm()
  features = {"inputs": seqio.Feature(vocab, add_eos=True, rank=2)}
  texts = [TEXTS[0], "short"]
  ds = tf.data.Dataset.from_tensors({"inputs": texts})
  ex = _first(preprocessors.tokenize_inputs(ds, features, {"inputs": (2, 6)}))
  # seqio's own single-sequence rule, applied item by item.
  expected = []
  for text in texts:
    single = tf.data.Dataset.from_tensors({"inputs": text})
    single = seqio.preprocessors.tokenize(
      single, {"inputs": seqio.Feature(vocab, add_eos=True)}
    )
    single = seqio.preprocessors.append_eos_after_trim(
      single, {"inputs": seqio.Feature(vocab, add_eos=True)}, {"inputs": 6}
    )
    expected.append(_first(single)["inputs"].numpy().tolist())
  assert ex["inputs"].to_list() == expected


@needs_spm
def test_score_token_of_t5_vocabulary_is_sentinel_10():
  vocab = _spm()
  # seqio numbers sentinels down from the top: <extra_id_N> = size - 1 - N.
  assert preprocessors.score_token_id(vocab) == vocab.vocab_size - 1 - 10
  assert preprocessors.score_token_id(vocab, "<extra_id_0>") == 32099


@needs_spm
def test_score_token_that_is_several_ids_is_rejected():
  with pytest.raises(ValueError, match="encodes to"):
    preprocessors.score_token_id(_spm(), "not one token")


def test_score_token_of_byte_vocabulary_is_byte_ff():
  vocab = seqio.ByteVocabulary()
  assert preprocessors.score_token_id(vocab) == 258 == 0xFF + 3
  with pytest.raises(ValueError, match="outside the vocabulary"):
    preprocessors.score_token_id(vocab, 259)


def test_add_score_targets_fills_one_id_per_item_and_a_pretokenized_string():
  features = {"targets": seqio.Feature(seqio.ByteVocabulary(), rank=2)}
  ex = _first(preprocessors.add_score_targets(_list_ds(), features, "z"))
  assert ex["targets"].numpy().tolist() == [[ord("z") + 3]] * 3
  assert ex["targets"].dtype == tf.int32
  assert ex["targets_pretokenized"].numpy() == b"z"


def test_add_item_mask_marks_every_item_valid():
  ex = _first(preprocessors.add_item_mask(_list_ds()))
  assert ex["mask"].numpy().tolist() == [True, True, True]


def test_truncate_lists_cuts_every_list_feature_to_the_list_size():
  ex = _first(preprocessors.truncate_lists(_list_ds(), {"inputs": (2, 16)}))
  assert ex["passage_ids"].numpy().tolist() == [b"p1", b"p2"]
  assert ex["label"].numpy().tolist() == [1.0, 0.0]
  assert len(ex["passages"].numpy()) == 2
  assert ex["query_id"].numpy() == b"q1"


def test_truncate_lists_without_list_size_keeps_lists_whole():
  ex = _first(preprocessors.truncate_lists(_list_ds(), {"inputs": 16}))
  assert len(ex["label"].numpy()) == 3


def test_shuffle_lists_keeps_items_aligned_and_depends_only_on_seed_and_query():
  n = 20
  example = {
    "query_id": "q7",
    "label": np.arange(n, dtype=np.float32),
    "passage_ids": [f"p{i}" for i in range(n)],
  }
  other = dict(example, query_id="q8")
  ds = tf.data.Dataset.from_tensor_slices(
    {k: [example[k], other[k]] for k in example}
  )
  forward = list(preprocessors.shuffle_lists(ds, seed=3).as_numpy_iterator())
  backward = list(
    preprocessors.shuffle_lists(
      ds.skip(1).concatenate(ds.take(1)), seed=3
    ).as_numpy_iterator()
  )
  assert forward[0]["label"].tolist() == backward[1]["label"].tolist()
  for ex in forward:
    assert sorted(ex["label"].tolist()) == list(range(n))
    assert [p.decode() for p in ex["passage_ids"]] == [
      f"p{int(i)}" for i in ex["label"]
    ]
  assert forward[0]["label"].tolist() != list(range(n))
  assert forward[0]["label"].tolist() != forward[1]["label"].tolist()
  reseeded = next(preprocessors.shuffle_lists(ds, seed=4).as_numpy_iterator())
  assert reseeded["label"].tolist() != forward[0]["label"].tolist()


def test_qna_record_becomes_a_list_example_with_is_selected_labels():
  record = {
    "query": "what is a cat",
    "query_id": np.int32(1102432),
    "query_type": "DESCRIPTION",
    "answers": ["an animal"],
    "wellFormedAnswers": [],
    "passages": {
      "is_selected": np.array([0, 1, 0], np.int32),
      "passage_text": ["a", "b", "c"],
      "url": ["u1", "u2", "u3"],
    },
  }
  ds = tf.data.Dataset.from_tensors(record)
  ex = _first(preprocessors.qna_to_list_examples(ds))
  assert sorted(ex) == ["label", "passage_ids", "passages", "query", "query_id"]
  assert ex["query_id"].numpy() == b"1102432"
  assert ex["passage_ids"].numpy().tolist() == [
    b"1102432-0",
    b"1102432-1",
    b"1102432-2",
  ]
  assert ex["label"].numpy().tolist() == [0.0, 1.0, 0.0]
  assert ex["label"].dtype == tf.float32
  assert ex["passages"].numpy().tolist() == [b"a", b"b", b"c"]
