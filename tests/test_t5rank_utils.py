"""Tests for t5rank/utils.py: Rax's `rax.utils` names, signatures, shapes."""

import doctest
import inspect

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from t5rank import utils
from t5rank.ranking import _sorting
from t5rank.ranking import _utils

rax_utils = pytest.importorskip("rax.utils")
rax_src_utils = pytest.importorskip("rax._src.utils")

RAX_NAMES = sorted(rax_utils.__all__) + [
  "logcumsumexp",
  "sort_by",
]


@pytest.mark.parametrize("name", RAX_NAMES)
def test_rax_names_have_rax_parameters_in_rax_order(name):
  ours = inspect.signature(getattr(utils, name)).parameters
  rax_fn = getattr(rax_utils, name, None) or getattr(rax_src_utils, name)
  theirs = inspect.signature(rax_fn).parameters
  positional = (
    inspect.Parameter.POSITIONAL_ONLY,
    inspect.Parameter.POSITIONAL_OR_KEYWORD,
  )
  rax_positional = [p for p in theirs if theirs[p].kind in positional]
  assert list(ours)[: len(rax_positional)] == rax_positional
  for p in rax_positional:
    assert ours[p].kind in positional, p
  assert set(theirs) <= set(ours)


def test_every_rax_utils_name_is_exported():
  assert set(RAX_NAMES) <= set(utils.__all__)
  for name in utils.__all__:
    assert callable(getattr(utils, name))


def test_utils_are_the_functions_the_ranking_library_uses():
  assert utils.ranks is _sorting.ranks
  assert utils.cutoff is _utils.cutoff
  assert utils.safe_reduce is _utils.safe_reduce


def test_compute_pairs_is_flat_n_times_n_like_rax():
  a = jnp.arange(6.0).reshape(2, 3)
  ours = utils.compute_pairs(a, jnp.subtract)
  assert ours.shape == (2, 9)
  np.testing.assert_array_equal(ours, rax_utils.compute_pairs(a, jnp.subtract))
  np.testing.assert_array_equal(ours[1, 1 * 3 + 2], a[1, 1] - a[1, 2])


def test_positional_where_and_reduce_fn_as_in_rax():
  a = jnp.array([1.0, 2.0, 6.0])
  where = jnp.array([True, True, False])
  assert utils.safe_reduce(a, where, jnp.mean) == 1.5
  np.testing.assert_array_equal(utils.cutoff(a, 1, where), [0.0, 1.0, 0.0])
  (values,) = utils.sort_by(a, [a], -1, where)
  np.testing.assert_array_equal(values, [2.0, 1.0, 6.0])


def test_values_match_rax():
  rng = np.random.default_rng(0)
  scores = jnp.asarray(rng.normal(size=(3, 7)).astype(np.float32))
  where = jnp.asarray(rng.random((3, 7)) > 0.3)
  np.testing.assert_array_equal(
    np.where(where, utils.ranks(scores, where=where), 0),
    np.where(where, rax_utils.ranks(scores, where=where), 0),
  )
  np.testing.assert_allclose(  # Rax leaves masked items unnormalised.
    utils.normalize_probabilities(
      unscaled_probabilities=jnp.abs(scores), where=where
    )
    * where,
    rax_utils.normalize_probabilities(jnp.abs(scores), where=where) * where,
    rtol=1e-6,
  )
  np.testing.assert_allclose(
    utils.approx_ranks(scores, where=where) * where,
    rax_utils.approx_ranks(scores, where=where) * where,
    rtol=1e-6,
  )
  key = jax.random.PRNGKey(0)
  np.testing.assert_array_equal(
    utils.ranks(jnp.zeros(5), key=key), rax_utils.ranks(jnp.zeros(5), key=key)
  )


def test_doctests_pass():
  result = doctest.testmod(
    utils, optionflags=doctest.NORMALIZE_WHITESPACE | doctest.ELLIPSIS
  )
  assert result.attempted > 0
  assert result.failed == 0
