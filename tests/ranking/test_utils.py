"""Tests for t5rank/ranking/_utils.py: ranks, sorting, cutoffs, reductions."""

import doctest

import hypothesis
from hypothesis import strategies as st
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from t5rank.ranking import _utils

rax_utils = pytest.importorskip("rax._src.utils")
rax_segment_utils = pytest.importorskip("rax._src.segment_utils")


def _random_lists(seed, batch=3, n=9, ties=True, with_inf=True):
  rng = np.random.default_rng(seed)
  if ties:
    scores = rng.integers(-3, 4, (batch, n)).astype(np.float32)
  else:
    scores = rng.normal(size=(batch, n)).astype(np.float32)
  if with_inf:
    scores[rng.random((batch, n)) < 0.1] = -np.inf
  where = rng.random((batch, n)) > 0.3
  segments = rng.integers(0, 3, (batch, n))
  return jnp.asarray(scores), jnp.asarray(where), jnp.asarray(segments)


def _assert_equal_on(a, b, mask):
  np.testing.assert_array_equal(np.where(mask, a, 0), np.where(mask, b, 0))


@pytest.mark.parametrize("n", [1, 2, 9, 64, 200])
@pytest.mark.parametrize("seed", [0, 1])
def test_ranks_match_rax_on_valid_items(n, seed):
  scores, where, segments = _random_lists(seed, n=n)
  ranks = jax.jit(_utils.ranks)
  _assert_equal_on(ranks(scores), rax_utils.ranks(scores), True)
  _assert_equal_on(ranks(scores, where=where),
                   rax_utils.ranks(scores, where=where), where)
  _assert_equal_on(
      _utils.ranks(scores, where=where, segments=segments),
      rax_utils.ranks(scores, where=where, segments=segments), where)
  key = jax.random.PRNGKey(seed)
  _assert_equal_on(_utils.ranks(scores, where=where, key=key),
                   rax_utils.ranks(scores, where=where, key=key), where)


def test_ranks_start_at_one_and_ties_keep_list_order():
  np.testing.assert_array_equal(
      _utils.ranks(jnp.array([1., 2., 1., 2.])), [3, 1, 4, 2])


def test_zero_and_negative_zero_tie():
  np.testing.assert_array_equal(_utils.ranks(jnp.array([0., -0., 1.])),
                                [2, 3, 1])


def test_masked_items_rank_after_valid_items_whatever_their_score():
  scores = jnp.array([jnp.inf, 1., jnp.nan, 2., -jnp.inf])
  where = jnp.array([False, True, False, True, True])
  r = _utils.ranks(scores, where=where)
  np.testing.assert_array_equal(r[np.array(where)], [2, 1, 3])
  assert set(np.asarray(r[~np.array(where)])) == {4, 5}


def test_random_tie_break_uses_the_key():
  scores = jnp.zeros(50)
  a = _utils.ranks(scores, key=jax.random.PRNGKey(0))
  b = _utils.ranks(scores, key=jax.random.PRNGKey(1))
  assert not np.array_equal(a, b)
  np.testing.assert_array_equal(np.sort(a), np.arange(1, 51))


@pytest.mark.parametrize("n", [1, 3, 100, 257, 1000])
def test_sort_order_is_a_stable_descending_argsort(n):
  rng = np.random.default_rng(n)
  scores = rng.integers(0, 20, (2, n)).astype(np.float32)
  expected = np.argsort(-scores, axis=-1, kind="stable")
  order = jax.jit(_utils.sort_order)(jnp.asarray(scores))
  np.testing.assert_array_equal(order, expected)
  for topn in (0, 1, 7):
    np.testing.assert_array_equal(
        _utils.sort_order(jnp.asarray(scores), topn=topn),
        expected[:, :topn])


def test_ranks_work_on_any_axis_and_under_vmap():
  rng = np.random.default_rng(0)
  scores = jnp.asarray(rng.normal(size=(2, 5, 7)).astype(np.float32))
  np.testing.assert_array_equal(_utils.ranks(scores, axis=1),
                                rax_utils.ranks(scores, axis=1))
  np.testing.assert_array_equal(jax.vmap(_utils.ranks)(scores),
                                rax_utils.ranks(scores))


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_sort_by_matches_rax_on_valid_prefix(seed):
  scores, where, segments = _random_lists(seed)
  values = scores * 2
  n_valid = np.sum(np.asarray(where), axis=-1, keepdims=True)
  prefix = np.arange(scores.shape[-1]) < n_valid
  ours = _utils.sort_by(scores, [values, segments], where=where)
  theirs = rax_utils.sort_by(scores, [values, segments], where=where)
  for a, b in zip(ours, theirs):
    _assert_equal_on(a, b, prefix)
  ours = _utils.sort_by(scores, [values], segments=segments)
  theirs = rax_utils.sort_by(scores, [values], segments=segments)
  np.testing.assert_array_equal(ours[0], theirs[0])


@pytest.mark.parametrize("n_cut", [None, 0, 1, 3, 20])
@pytest.mark.parametrize("seed", [0, 1])
def test_cutoff_and_approx_cutoff_match_rax(n_cut, seed):
  scores, where, segments = _random_lists(seed, with_inf=False)
  np.testing.assert_array_equal(_utils.cutoff(scores, n_cut, where=where),
                                rax_utils.cutoff(scores, n_cut, where=where))
  np.testing.assert_array_equal(
      _utils.cutoff(scores, n_cut, where=where, segments=segments),
      rax_utils.cutoff(scores, n_cut, where=where, segments=segments))
  np.testing.assert_allclose(
      _utils.approx_cutoff(scores, n_cut, where=where),
      rax_utils.approx_cutoff(scores, n_cut, where=where), atol=1e-6)
  np.testing.assert_allclose(
      _utils.approx_cutoff(scores, n_cut, where=where, segments=segments),
      rax_utils.approx_cutoff(scores, n_cut, where=where, segments=segments),
      atol=1e-6)


def test_cutoff_rejects_a_negative_n():
  with pytest.raises(ValueError, match="n=-1"):
    _utils.cutoff(jnp.zeros(3), -1)


@pytest.mark.parametrize("seed", [0, 1])
def test_approx_ranks_match_rax(seed):
  scores, where, segments = _random_lists(seed, with_inf=False)
  np.testing.assert_allclose(
      _utils.approx_ranks(scores, where=where, segments=segments),
      rax_utils.approx_ranks(scores, where=where, segments=segments),
      atol=1e-5)


def test_approx_ranks_gradient_is_finite_with_inf_and_nan_on_masked_items():
  scores = jnp.array([1., jnp.inf, jnp.nan, -jnp.inf, 0.5])
  where = jnp.array([True, False, False, False, True])
  grad = jax.grad(lambda s: jnp.sum(
      _utils.approx_ranks(s, where=where) * where))(scores)
  assert np.all(np.isfinite(grad))


@pytest.mark.parametrize("seed", [0, 1])
def test_normalize_probabilities_matches_rax_on_valid_items(seed):
  scores, where, segments = _random_lists(seed, with_inf=False)
  values = jnp.abs(scores)
  _assert_equal_on(
      np.round(_utils.normalize_probabilities(values, where), 6),
      np.round(rax_utils.normalize_probabilities(values, where=where), 6),
      where)
  _assert_equal_on(
      np.round(_utils.normalize_probabilities(values, where,
                                              segments=segments), 6),
      np.round(rax_utils.normalize_probabilities(values, where=where,
                                                 segments=segments), 6),
      where)


def test_normalize_probabilities_is_uniform_over_valid_items_when_all_zero():
  out = _utils.normalize_probabilities(jnp.zeros(4),
                                       jnp.array([True, True, False, True]))
  np.testing.assert_allclose(out, [1 / 3, 1 / 3, 0, 1 / 3])


@pytest.mark.parametrize("reverse", [False, True])
def test_logcumsumexp_matches_rax(reverse):
  scores, where, _ = _random_lists(3, with_inf=False)
  np.testing.assert_allclose(
      _utils.logcumsumexp(scores, where=where, reverse=reverse),
      rax_utils.logcumsumexp(scores, where=where, reverse=reverse),
      rtol=1e-5, atol=1e-5)


def test_safe_reduce_gives_zero_for_nothing_valid_and_keeps_real_nan():
  a = jnp.array([1., jnp.nan])
  assert _utils.safe_reduce(a, where=jnp.array([False, False]),
                            reduce_fn=jnp.mean) == 0.0
  assert _utils.safe_reduce(a, where=jnp.array([True, False]),
                            reduce_fn=jnp.mean) == 1.0
  assert np.isnan(_utils.safe_reduce(a, reduce_fn=jnp.mean))
  np.testing.assert_array_equal(
      _utils.safe_reduce(a, where=jnp.array([True, False])), [1., 0.])


def test_compute_pairs_has_shape_n_by_n():
  out = _utils.compute_pairs(jnp.array([[1., 2., 4.]]), jnp.subtract)
  assert out.shape == (1, 3, 3)
  assert out[0, 2, 0] == 3.0


@pytest.mark.parametrize("seed", [0, 1])
def test_segment_helpers_match_rax(seed):
  scores, where, segments = _random_lists(seed, with_inf=False)
  for name in ("segment_sum", "segment_max", "segment_softmax",
               "segment_log_softmax"):
    ours = getattr(_utils, name)(scores, segments, where=where)
    theirs = getattr(rax_segment_utils, name)(scores, segments, where=where)
    np.testing.assert_allclose(np.where(where, ours, 0),
                               np.where(where, theirs, 0), atol=1e-5,
                               err_msg=name)
  np.testing.assert_array_equal(
      _utils.first_item_segment_mask(segments, where=where),
      rax_segment_utils.first_item_segment_mask(segments, where=where))
  np.testing.assert_array_equal(
      _utils.in_segment_indices(segments),
      rax_segment_utils.in_segment_indices(segments))


@hypothesis.settings(max_examples=40, deadline=None)
@hypothesis.given(st.lists(st.floats(allow_nan=False, width=32), min_size=2,
                           max_size=2))
def test_order_key_orders_like_descending_scores(pair):
  a, b = pair
  keys = np.asarray(_utils.order_key(jnp.array([a, b], jnp.float32)))
  if a > b:
    assert keys[0] < keys[1]
  elif a < b:
    assert keys[0] > keys[1]
  else:
    assert keys[0] == keys[1]


def test_sort_values_descending_matches_numpy():
  rng = np.random.default_rng(0)
  values = rng.normal(size=(3, 37)).astype(np.float32)
  np.testing.assert_array_equal(
      _utils.sort_values_descending(jnp.asarray(values)),
      -np.sort(-values, axis=-1))


def test_doctests_pass():
  result = doctest.testmod(
      _utils, optionflags=doctest.NORMALIZE_WHITESPACE | doctest.ELLIPSIS)
  assert result.attempted > 0
  assert result.failed == 0
