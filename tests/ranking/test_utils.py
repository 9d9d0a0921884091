"""Tests for t5rank/ranking/_utils.py: cutoffs, reductions, pairs."""

import doctest

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import random_lists

from t5rank.ranking import _utils

rax_utils = pytest.importorskip("rax._src.utils")


@pytest.mark.parametrize("n_cut", [None, 0, 1, 3, 20])
@pytest.mark.parametrize("seed", [0, 1])
def test_cutoff_and_approx_cutoff_match_rax(n_cut, seed):
  scores, where, segments = random_lists.random_lists(seed, with_inf=False)
  np.testing.assert_array_equal(
    _utils.cutoff(scores, n_cut, where=where),
    rax_utils.cutoff(scores, n_cut, where=where),
  )
  np.testing.assert_array_equal(
    _utils.cutoff(scores, n_cut, where=where, segments=segments),
    rax_utils.cutoff(scores, n_cut, where=where, segments=segments),
  )
  np.testing.assert_allclose(
    _utils.approx_cutoff(scores, n_cut, where=where),
    rax_utils.approx_cutoff(scores, n_cut, where=where),
    atol=1e-6,
  )
  np.testing.assert_allclose(
    _utils.approx_cutoff(scores, n_cut, where=where, segments=segments),
    rax_utils.approx_cutoff(scores, n_cut, where=where, segments=segments),
    atol=1e-6,
  )


def test_cutoff_rejects_a_negative_n():
  with pytest.raises(ValueError, match="n=-1"):
    _utils.cutoff(jnp.zeros(3), -1)


@pytest.mark.parametrize("seed", [0, 1])
def test_approx_ranks_match_rax(seed):
  scores, where, segments = random_lists.random_lists(seed, with_inf=False)
  np.testing.assert_allclose(
    _utils.approx_ranks(scores, where=where, segments=segments),
    rax_utils.approx_ranks(scores, where=where, segments=segments),
    atol=1e-5,
  )


def test_approx_ranks_gradient_is_finite_with_inf_and_nan_on_masked_items():
  scores = jnp.array([1.0, jnp.inf, jnp.nan, -jnp.inf, 0.5])
  where = jnp.array([True, False, False, False, True])
  grad = jax.grad(
    lambda s: jnp.sum(_utils.approx_ranks(s, where=where) * where)
  )(scores)
  assert np.all(np.isfinite(grad))


@pytest.mark.parametrize("seed", [0, 1])
def test_normalize_probabilities_matches_rax_on_valid_items(seed):
  scores, where, segments = random_lists.random_lists(seed, with_inf=False)
  values = jnp.abs(scores)
  random_lists.assert_equal_on(
    np.round(_utils.normalize_probabilities(values, where), 6),
    np.round(rax_utils.normalize_probabilities(values, where=where), 6),
    where,
  )
  random_lists.assert_equal_on(
    np.round(
      _utils.normalize_probabilities(values, where, segments=segments), 6
    ),
    np.round(
      rax_utils.normalize_probabilities(values, where=where, segments=segments),
      6,
    ),
    where,
  )


def test_normalize_probabilities_is_uniform_over_valid_items_when_all_zero():
  out = _utils.normalize_probabilities(
    jnp.zeros(4), jnp.array([True, True, False, True])
  )
  np.testing.assert_allclose(out, [1 / 3, 1 / 3, 0, 1 / 3])


@pytest.mark.parametrize("reverse", [False, True])
def test_logcumsumexp_matches_rax(reverse):
  scores, where, _ = random_lists.random_lists(3, with_inf=False)
  np.testing.assert_allclose(
    _utils.logcumsumexp(scores, where=where, reverse=reverse),
    rax_utils.logcumsumexp(scores, where=where, reverse=reverse),
    rtol=1e-5,
    atol=1e-5,
  )


def test_safe_reduce_gives_zero_for_nothing_valid_and_keeps_real_nan():
  a = jnp.array([1.0, jnp.nan])
  assert (
    _utils.safe_reduce(a, where=jnp.array([False, False]), reduce_fn=jnp.mean)
    == 0.0
  )
  assert (
    _utils.safe_reduce(a, where=jnp.array([True, False]), reduce_fn=jnp.mean)
    == 1.0
  )
  assert np.isnan(_utils.safe_reduce(a, reduce_fn=jnp.mean))
  np.testing.assert_array_equal(
    _utils.safe_reduce(a, where=jnp.array([True, False])), [1.0, 0.0]
  )


def test_compute_pairs_has_shape_n_by_n():
  out = _utils.compute_pairs(jnp.array([[1.0, 2.0, 4.0]]), jnp.subtract)
  assert out.shape == (1, 3, 3)
  assert out[0, 2, 0] == 3.0


def test_doctests_pass():
  result = doctest.testmod(
    _utils, optionflags=doctest.NORMALIZE_WHITESPACE | doctest.ELLIPSIS
  )
  assert result.attempted > 0
  assert result.failed == 0
