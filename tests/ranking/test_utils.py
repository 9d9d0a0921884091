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


@pytest.mark.parametrize("reverse", [False, True])
def test_logcumsumexp_gradient_matches_float64_differences(reverse):
  # Tied scores on purpose: Rax's logcumsumexp differentiates through its
  # running maximum and is off where that maximum is tied (here 0.45 instead
  # of 0.65 for one item), so the oracle is central differences in float64.
  scores, where, _ = random_lists.random_lists(4, with_inf=False)
  cotangent = np.asarray(jax.random.normal(jax.random.PRNGKey(0), scores.shape))
  out, vjp = jax.vjp(
    lambda s: _utils.logcumsumexp(s, where=where, reverse=reverse), scores
  )
  cotangent = np.where(np.isfinite(out), cotangent, 0.0)

  def objective(x):
    out = _logcumsumexp_float64(x, where, reverse, axis=-1)
    return np.sum(cotangent * np.where(np.isfinite(out), out, 0.0))

  x = np.asarray(scores, np.float64)
  step = 1e-6
  expected = np.zeros_like(x)
  for index in np.ndindex(x.shape):
    bump = np.zeros_like(x)
    bump[index] = step
    expected[index] = (objective(x + bump) - objective(x - bump)) / (2 * step)
  got = vjp(jnp.asarray(cotangent, jnp.float32))[0]
  np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-5)


def _logcumsumexp_float64(x, where, reverse, axis):
  x = np.moveaxis(np.asarray(x, np.float64), axis, -1)
  where = np.moveaxis(np.asarray(where), axis, -1)
  n = x.shape[-1]
  out = np.full(x.shape, -np.inf)
  for i in range(n):
    span = slice(i, n) if reverse else slice(0, i + 1)
    terms = np.where(where[..., span], x[..., span], -np.inf)
    peak = np.max(terms, axis=-1)
    safe_peak = np.where(np.isfinite(peak), peak, 0.0)
    with np.errstate(divide="ignore"):
      total = np.log(np.sum(np.exp(terms - safe_peak[..., None]), axis=-1))
    out[..., i] = total + safe_peak
  return np.moveaxis(out, -1, axis)


@pytest.mark.parametrize("reverse", [False, True])
@pytest.mark.parametrize("axis", [-1, 0])
def test_logcumsumexp_gradient_is_exact_over_a_wide_range(reverse, axis):
  # Scores 200 apart: exp() of any one of them over another overflows
  # float32, so only a shift-free, log-space gradient stays finite.
  x = np.array(
    [[150.0, -40.0, 0.0, 3.0, -200.0], [1.0, 2.0, 3.0, 4.0, 5.0]], np.float32
  )
  where = np.array([[1, 1, 0, 1, 1], [0, 0, 1, 0, 0]], bool)
  if axis == 0:
    x, where = x.T, where.T
  g = np.array([[0.5, -2.0, 1.0, 3.0, -1.0], [1.0, 1.0, -1.0, 2.0, 0.0]])
  g = g.T if axis == 0 else g
  out, vjp = jax.vjp(
    lambda s: _utils.logcumsumexp(s, where=where, reverse=reverse, axis=axis),
    jnp.asarray(x),
  )
  expected = _logcumsumexp_float64(x, where, reverse, axis)
  np.testing.assert_allclose(out, expected, rtol=1e-6)
  g = np.where(np.isfinite(expected), g, 0.0)
  # d out[i] / d x[j] = exp(x[j] - out[i]) over the j that out[i] sums.
  n = x.shape[axis]
  x_last, w_last = np.moveaxis(x, axis, -1), np.moveaxis(where, axis, -1)
  out_last, g_last = np.moveaxis(expected, axis, -1), np.moveaxis(g, axis, -1)
  want = np.zeros(x_last.shape)
  for i in range(n):
    for j in range(i, n) if reverse else range(i + 1):
      if np.isfinite(out_last[..., i]).all():
        want[..., j] += np.where(
          w_last[..., j],
          g_last[..., i] * np.exp(x_last[..., j] - out_last[..., i]),
          0.0,
        )
      else:
        rows = np.isfinite(out_last[..., i]) & w_last[..., j]
        want[rows, j] += g_last[rows, i] * np.exp(
          x_last[rows, j] - out_last[rows, i]
        )
  got = vjp(jnp.asarray(g, jnp.float32))[0]
  # Exponents carry float32 rounding of the 350-wide spread: ~1e-5 relative.
  np.testing.assert_allclose(
    got, np.moveaxis(want, -1, axis), rtol=2e-5, atol=1e-6
  )


def test_logcumsumexp_second_derivative_is_the_closed_form():
  x = np.array([0.3, -1.0, 2.0, 0.5, 1.5])
  where = np.array([True, True, False, True, True])
  weights = np.array([1.0, -0.5, 2.0, 0.25, 3.0])
  total = lambda s: jnp.sum(
    jnp.where(where, weights * _utils.logcumsumexp(s, where=where), 0.0)
  )
  hessian = jax.jacrev(jax.grad(total))(jnp.asarray(x, jnp.float32))
  # For f = sum_i w[i] out[i], with p[i, j] = exp(x[j] - out[i]) over the
  # valid j <= i: d2f / dx[j] dx[k] = sum_i w[i] (p[i, j] [j == k] -
  # p[i, j] p[i, k]), over the valid i.
  out = _logcumsumexp_float64(x, where, reverse=False, axis=-1)
  n = len(x)
  p = np.zeros((n, n))
  for i in range(n):
    for j in range(i + 1):
      if where[j]:
        p[i, j] = np.exp(x[j] - out[i])
  expected = sum(
    weights[i] * (np.diag(p[i]) - np.outer(p[i], p[i]))
    for i in range(n)
    if where[i]
  )
  np.testing.assert_allclose(hessian, expected, rtol=1e-5, atol=1e-6)


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
