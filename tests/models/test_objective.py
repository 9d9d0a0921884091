"""Tests for t5rank/models/objective.py: which lists count and how."""

import doctest
import functools

import numpy as np
import pytest

pytest.importorskip("t5x", reason="T5X is not installed; see README")

import jax  # pylint: disable=g-import-not-at-top
import jax.numpy as jnp

from t5rank.models import objective
from t5rank.ranking import _signatures


def _sum_of_scores(scores, labels, *, where=None, reduce_fn=jnp.sum):
  del labels
  return reduce_fn(jnp.where(where, scores, 0.0))


def test_docstring_examples():
  assert doctest.testmod(objective).failed == 0


def test_rax_losses_are_told_apart_by_whether_they_take_a_key():
  rax = pytest.importorskip("rax", reason="Rax (test extra) is not installed")
  assert not _signatures.takes_argument(rax.softmax_loss, "key")
  assert not _signatures.takes_argument(rax.pairwise_logistic_loss, "key")
  assert _signatures.takes_argument(rax.listmle_loss, "key")
  assert _signatures.takes_argument(
    functools.partial(rax.listmle_loss, where=None), "key"
  )


def test_list_loss_divides_by_lists_that_count_not_by_batch_size():
  scores = jnp.array([[1.0, 2.0], [3.0, 4.0], [5.0, 6.0], [7.0, 8.0]])
  labels = jnp.array([[1.0, 0.0], [0.0, 0.0], [0.0, 1.0], [1.0, 1.0]])
  mask = jnp.array([[True, True], [True, True], [False, True], [False, False]])
  loss, counts = objective.list_loss(_sum_of_scores, scores, labels, mask)
  # Lists 0 and 2 count: (1 + 2) + 6 over 2 lists. List 3 has no valid item.
  assert float(loss) == pytest.approx(4.5)
  np.testing.assert_array_equal(counts, [True, False, True, False])
  kept, counts = objective.list_loss(
    _sum_of_scores, scores, labels, mask, exclude_lists_without_positive=False
  )
  assert float(kept) == pytest.approx((3 + 7 + 6) / 3)
  np.testing.assert_array_equal(counts, [True, True, True, False])


def test_no_list_counting_gives_zero_loss_and_zero_gradient():
  scores = jnp.array([[1.0, jnp.nan]])
  labels = jnp.zeros((1, 2))
  mask = jnp.array([[True, False]])

  def loss(s):
    return objective.list_loss(_sum_of_scores, s, labels, mask)[0]

  assert float(loss(scores)) == 0.0
  np.testing.assert_array_equal(jax.grad(loss)(scores), [[0.0, 0.0]])


def test_key_is_passed_only_to_losses_that_take_it():
  seen = {}

  def with_key(scores, labels, *, where=None, reduce_fn=None, key=None):
    seen["key"] = key
    return _sum_of_scores(scores, labels, where=where, reduce_fn=reduce_fn)

  def without_key(scores, labels, *, where=None, reduce_fn=None):
    return _sum_of_scores(scores, labels, where=where, reduce_fn=reduce_fn)

  scores, labels = jnp.ones((1, 2)), jnp.array([[1.0, 0.0]])
  mask = jnp.ones((1, 2), bool)
  key = jax.random.PRNGKey(7)
  objective.list_loss(with_key, scores, labels, mask, key=key)
  np.testing.assert_array_equal(seen["key"], key)
  objective.list_loss(without_key, scores, labels, mask, key=key)
