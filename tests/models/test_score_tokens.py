"""Tests for t5rank/models/score_tokens.py."""

import doctest
import os

import pytest

seqio = pytest.importorskip("seqio", reason="seqio is not installed")

from t5rank.models import score_tokens  # pylint: disable=g-import-not-at-top

SPM = "/work/shared/data/t5_spiece.model"


def test_docstring_examples():
  assert doctest.testmod(score_tokens).failed == 0


@pytest.mark.skipif(not os.path.exists(SPM), reason="T5 vocabulary absent")
def test_t5_vocabulary_ids_of_rankt5_and_monot5_tokens():
  vocab = seqio.SentencePieceVocabulary(SPM, extra_ids=100)
  assert score_tokens.resolve_token_id(vocab, "<extra_id_10>") == 32089
  assert vocab.encode("<extra_id_10>") == [32089]
  assert score_tokens.resolve_token_id(vocab, "true") == 1176
  assert score_tokens.resolve_token_id(vocab, "false") == 6136


@pytest.mark.parametrize(
  "token, message",
  [
    ("<extra_id_10>", "extra_ids=0"),
    ("true", "encodes to 4 ids"),
    (0, "outside"),
    (259, "outside"),
    (1.5, "expected an int id or a string"),
  ],
)
def test_tokens_that_are_not_one_valid_id_are_errors(token, message):
  with pytest.raises(ValueError, match=message):
    score_tokens.resolve_token_id(seqio.ByteVocabulary(), token)
