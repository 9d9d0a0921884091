"""Tests for t5rank/ranking/_segments.py: per-segment sums and softmaxes."""

import doctest

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import random_lists

from t5rank.ranking import _segments
from t5rank.ranking import _utils

rax_segment_utils = pytest.importorskip("rax._src.segment_utils")


@pytest.mark.parametrize("seed", [0, 1])
def test_segment_helpers_match_rax(seed):
  scores, where, segments = random_lists.random_lists(seed, with_inf=False)
  for name in (
    "segment_sum",
    "segment_max",
    "segment_softmax",
    "segment_log_softmax",
  ):
    ours = getattr(_segments, name)(scores, segments, where=where)
    theirs = getattr(rax_segment_utils, name)(scores, segments, where=where)
    np.testing.assert_allclose(
      np.where(where, ours, 0),
      np.where(where, theirs, 0),
      atol=1e-5,
      err_msg=name,
    )
  np.testing.assert_array_equal(
    _segments.first_item_segment_mask(segments, where=where),
    rax_segment_utils.first_item_segment_mask(segments, where=where),
  )
  np.testing.assert_array_equal(
    _segments.in_segment_indices(segments),
    rax_segment_utils.in_segment_indices(segments),
  )


def _logcumsumexp_reference(x, segments, where, reverse):
  """Float64 loop: logsumexp of the valid earlier (later) items per segment."""
  x, segments, where = map(np.asarray, (x, segments, where))
  out = np.full(x.shape, -np.inf)
  n = x.shape[-1]
  for b in np.ndindex(x.shape[:-1]):
    for i in range(n):
      js = range(i, n) if reverse else range(i + 1)
      terms = [
        float(x[b][j])
        for j in js
        if where[b][j] and segments[b][j] == segments[b][i]
      ]
      peak = max(terms, default=-np.inf)
      if np.isfinite(peak):
        out[b][i] = peak + np.log(np.sum(np.exp(np.array(terms) - peak)))
  return out


@pytest.mark.parametrize("reverse", [False, True])
@pytest.mark.parametrize("seed", [0, 1])
def test_segment_logcumsumexp_matches_a_float64_reference(seed, reverse):
  scores, where, segments = random_lists.random_lists(seed, ties=False)
  scores = scores * 30.0  # Spread beyond exp's float32 range.
  out = jax.jit(_segments.segment_logcumsumexp, static_argnames="reverse")(
    scores, segments, where=where, reverse=reverse
  )
  np.testing.assert_allclose(
    out,
    _logcumsumexp_reference(scores, segments, where, reverse),
    rtol=1e-6,
  )


@pytest.mark.parametrize("reverse", [False, True])
def test_segment_logcumsumexp_matches_rax_on_valid_items(reverse):
  scores, where, segments = random_lists.random_lists(3, with_inf=False)
  np.testing.assert_allclose(
    np.where(
      where,
      _segments.segment_logcumsumexp(
        scores, segments, where=where, reverse=reverse
      ),
      0,
    ),
    np.where(
      where,
      rax_segment_utils.segment_logcumsumexp(
        scores, segments, where=where, reverse=reverse
      ),
      0,
    ),
    rtol=1e-6,
  )


@pytest.mark.parametrize("reverse", [False, True])
def test_segment_logcumsumexp_over_one_segment_is_logcumsumexp(reverse):
  scores, where, _ = random_lists.random_lists(4, ties=False)
  np.testing.assert_allclose(
    _segments.segment_logcumsumexp(
      scores, jnp.zeros_like(where, jnp.int32), where=where, reverse=reverse
    ),
    _utils.logcumsumexp(scores, where=where, reverse=reverse),
    rtol=1e-6,
  )


def test_segment_logcumsumexp_accumulates_along_the_given_axis():
  scores, where, segments = random_lists.random_lists(5, ties=False)
  out = _segments.segment_logcumsumexp(
    scores.T, segments.T, axis=0, where=where.T, reverse=True
  )
  np.testing.assert_array_equal(
    out.T,
    _segments.segment_logcumsumexp(scores, segments, where=where, reverse=True),
  )


def test_segment_logcumsumexp_keeps_huge_scores_finite():
  x = jnp.array([3.0e38, -4.0, 3.4e38, 1.0, -3.0e38])
  segments = jnp.array([0, 1, 0, 1, 0])
  np.testing.assert_array_equal(
    _segments.segment_logcumsumexp(x, segments),
    np.array(
      [3.0e38, -4.0, 3.4e38, np.log(np.exp(-4.0) + np.e), 3.4e38], np.float32
    ),
  )


def test_segment_logcumsumexp_gradient_is_finite_with_bad_masked_items():
  x = jnp.array([1.0, jnp.nan, 2.0, jnp.inf, -jnp.inf])
  where = jnp.array([True, False, True, False, True])
  segments = jnp.array([0, 0, 1, 1, 1])

  def total(x):
    out = _segments.segment_logcumsumexp(x, segments, where=where)
    return jnp.sum(jnp.where(where, out, 0.0))

  grad = jax.grad(total)(x)
  assert np.all(np.isfinite(grad)), grad
  np.testing.assert_array_equal(grad[~np.asarray(where)], 0.0)


def test_doctests_pass():
  result = doctest.testmod(
    _segments, optionflags=doctest.NORMALIZE_WHITESPACE | doctest.ELLIPSIS
  )
  assert result.attempted > 0
  assert result.failed == 0
