"""Tests for t5rank/ranking/_signatures.py."""

import doctest
import functools

from t5rank.ranking import _signatures
from t5rank.ranking import losses


def test_docstring_examples():
  assert doctest.testmod(_signatures).failed == 0


def test_var_keyword_does_not_count_as_taking_an_argument():
  def forwards(scores, labels, **kwargs):
    return losses.listmle_loss(scores, labels, **kwargs)

  assert not _signatures.takes_argument(forwards, "key")


def test_wrapped_functions_report_the_wrapped_signature():
  @functools.wraps(losses.listmle_loss)
  def wrapper(*args, **kwargs):
    return losses.listmle_loss(*args, **kwargs)

  assert _signatures.takes_argument(wrapper, "key")
  assert not _signatures.takes_argument(wrapper, "temperature")


def test_callable_without_signature_takes_nothing():
  assert not _signatures.takes_argument(print, "key")
