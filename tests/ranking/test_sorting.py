"""Tests for t5rank/ranking/_sorting.py: ranks, sort orders, networks."""

import doctest

import hypothesis
from hypothesis import strategies as st
import jax
import jax.numpy as jnp
import numpy as np
import pytest
import random_lists

from t5rank.ranking import _sorting

rax_utils = pytest.importorskip("rax._src.utils")


@pytest.mark.parametrize("n", [1, 2, 9, 64, 200])
@pytest.mark.parametrize("seed", [0, 1])
def test_ranks_match_rax_on_valid_items(n, seed):
  scores, where, segments = random_lists.random_lists(seed, n=n)
  ranks = jax.jit(_sorting.ranks)
  random_lists.assert_equal_on(ranks(scores), rax_utils.ranks(scores), True)
  random_lists.assert_equal_on(
    ranks(scores, where=where), rax_utils.ranks(scores, where=where), where
  )
  random_lists.assert_equal_on(
    _sorting.ranks(scores, where=where, segments=segments),
    rax_utils.ranks(scores, where=where, segments=segments),
    where,
  )
  key = jax.random.PRNGKey(seed)
  random_lists.assert_equal_on(
    _sorting.ranks(scores, where=where, key=key),
    rax_utils.ranks(scores, where=where, key=key),
    where,
  )


def test_ranks_start_at_one_and_ties_keep_list_order():
  np.testing.assert_array_equal(
    _sorting.ranks(jnp.array([1.0, 2.0, 1.0, 2.0])), [3, 1, 4, 2]
  )


def test_zero_and_negative_zero_tie():
  np.testing.assert_array_equal(
    _sorting.ranks(jnp.array([0.0, -0.0, 1.0])), [2, 3, 1]
  )


def test_masked_items_rank_after_valid_items_whatever_their_score():
  scores = jnp.array([jnp.inf, 1.0, jnp.nan, 2.0, -jnp.inf])
  where = jnp.array([False, True, False, True, True])
  r = _sorting.ranks(scores, where=where)
  np.testing.assert_array_equal(r[np.array(where)], [2, 1, 3])
  assert set(np.asarray(r[~np.array(where)])) == {4, 5}


def test_random_tie_break_uses_the_key():
  scores = jnp.zeros(50)
  a = _sorting.ranks(scores, key=jax.random.PRNGKey(0))
  b = _sorting.ranks(scores, key=jax.random.PRNGKey(1))
  assert not np.array_equal(a, b)
  np.testing.assert_array_equal(np.sort(a), np.arange(1, 51))


@pytest.mark.parametrize("n", [1, 3, 100, 257, 1000])
def test_sort_order_is_a_stable_descending_argsort(n):
  rng = np.random.default_rng(n)
  scores = rng.integers(0, 20, (2, n)).astype(np.float32)
  expected = np.argsort(-scores, axis=-1, kind="stable")
  order = jax.jit(_sorting.sort_order)(jnp.asarray(scores))
  np.testing.assert_array_equal(order, expected)
  for topn in (0, 1, 7):
    np.testing.assert_array_equal(
      _sorting.sort_order(jnp.asarray(scores), topn=topn), expected[:, :topn]
    )


def test_ranks_work_on_any_axis_and_under_vmap():
  rng = np.random.default_rng(0)
  scores = jnp.asarray(rng.normal(size=(2, 5, 7)).astype(np.float32))
  np.testing.assert_array_equal(
    _sorting.ranks(scores, axis=1), rax_utils.ranks(scores, axis=1)
  )
  np.testing.assert_array_equal(
    jax.vmap(_sorting.ranks)(scores), rax_utils.ranks(scores)
  )


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_sort_by_matches_rax_on_valid_prefix(seed):
  scores, where, segments = random_lists.random_lists(seed)
  values = scores * 2
  n_valid = np.sum(np.asarray(where), axis=-1, keepdims=True)
  prefix = np.arange(scores.shape[-1]) < n_valid
  ours = _sorting.sort_by(scores, [values, segments], where=where)
  theirs = rax_utils.sort_by(scores, [values, segments], where=where)
  for a, b in zip(ours, theirs):
    random_lists.assert_equal_on(a, b, prefix)
  ours = _sorting.sort_by(scores, [values], segments=segments)
  theirs = rax_utils.sort_by(scores, [values], segments=segments)
  np.testing.assert_array_equal(ours[0], theirs[0])


@hypothesis.settings(max_examples=40, deadline=None)
@hypothesis.given(
  st.lists(
    # XLA on CPU flushes subnormals to zero, so they tie with 0 there.
    st.floats(allow_nan=False, allow_subnormal=False, width=32),
    min_size=2,
    max_size=2,
  )
)
def test_order_key_orders_like_descending_scores(pair):
  a, b = pair
  keys = np.asarray(_sorting.order_key(jnp.array([a, b], jnp.float32)))
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
    _sorting.sort_values_descending(jnp.asarray(values)),
    -np.sort(-values, axis=-1),
  )


def test_doctests_pass():
  result = doctest.testmod(
    _sorting, optionflags=doctest.NORMALIZE_WHITESPACE | doctest.ELLIPSIS
  )
  assert result.attempted > 0
  assert result.failed == 0


def _every_sort(sizes):
  """(method, n) for each sort and list size. Networks only ever sort up to
  32 items, so longer networks (slow to compile) run with ``-m slow``."""
  return [
    pytest.param(
      method,
      n,
      marks=[pytest.mark.slow] if method == "network" and n > 32 else [],
    )
    for method in ("network", "key_only", "xla_sort")
    for n in sizes
  ]


def _use_sort(method, monkeypatch):
  """Forces the sorting networks, lone int32 sorts or XLA's sort on (key,
  position) pairs, whatever the list size."""
  if method != "xla_sort" and jax.default_backend() != "cpu":
    pytest.skip(f"{method} sorts run on XLA:CPU only")
  network = 2**20 if method == "network" else 0
  monkeypatch.setattr(_sorting, "_CPU_NETWORK_MAX_LIST_SIZE", network)
  if method == "xla_sort":
    monkeypatch.setattr(_sorting, "_KEY_ONLY_MAX_LIST_SIZE", 0)


def test_sorting_network_only_on_cpu_and_short_lists():
  on_cpu = jax.default_backend() == "cpu"
  assert _sorting.uses_sorting_network(8) == on_cpu
  assert not _sorting.uses_sorting_network(1)
  assert not _sorting.uses_sorting_network(
    _sorting._CPU_NETWORK_MAX_LIST_SIZE + 1
  )


def test_key_only_sorts_on_cpu_between_the_networks_and_int32_overflow():
  on_cpu = jax.default_backend() == "cpu"
  assert not _sorting.uses_key_only_sorts(8)
  assert _sorting.uses_key_only_sorts(33) == on_cpu
  assert _sorting.uses_key_only_sorts(32767) == on_cpu
  # OPA's largest key, 2 * ((n - 1) * (n + 1) + n), overflows int32 beyond
  # 32,767 items.
  assert 2 * (32766 * 32768 + 32767) < 2**31 <= 2 * (32767 * 32769 + 32768)
  assert not _sorting.uses_key_only_sorts(32768)


@pytest.mark.parametrize("n", [1, 2, 5, 33, 200])
def test_count_less_is_a_left_binary_search(n):
  rng = np.random.default_rng(n)
  sorted_keys = np.sort(rng.integers(-5, 5, (3, n)), axis=-1).astype(np.int32)
  keys = rng.integers(-7, 7, (3, n)).astype(np.int32)
  expected = [np.searchsorted(sorted_keys[b], keys[b]) for b in range(3)]
  np.testing.assert_array_equal(
    _sorting._count_less(jnp.asarray(sorted_keys), jnp.asarray(keys)),
    expected,
  )


def _expected_order(scores, where):
  """Valid items by descending score (NaN after -inf), then masked items;
  ties (and masked items) in list order."""

  def rank_key(i):
    if not where[i]:
      return (True, False, 0.0, i)
    nan = bool(np.isnan(scores[i]))
    return (not where[i], nan, 0.0 if nan else -scores[i], i)

  return sorted(range(len(scores)), key=rank_key)


@pytest.mark.parametrize("method, n", _every_sort([2, 9, 100, 257]))
def test_every_sort_is_stable_with_nan_and_masked_items_last(
  method, n, monkeypatch
):
  _use_sort(method, monkeypatch)
  rng = np.random.default_rng(n)
  scores = rng.integers(-3, 4, (4, n)).astype(np.float32)
  scores[rng.random((4, n)) < 0.1] = np.nan
  scores[rng.random((4, n)) < 0.1] = -np.inf
  where = rng.random((4, n)) > 0.2
  expected = [_expected_order(scores[b], where[b]) for b in range(4)]
  order = jax.jit(lambda s, w: _sorting.sort_order(s, where=w))(
    jnp.asarray(scores), jnp.asarray(where)
  )
  np.testing.assert_array_equal(order, expected)
  ranks = _sorting.ranks(jnp.asarray(scores), where=jnp.asarray(where))
  np.testing.assert_array_equal(np.argsort(ranks, axis=-1), expected)


@pytest.mark.parametrize("method, n", _every_sort([2, 9, 100, 1100]))
def test_every_sort_gives_the_same_values_and_pair_counts(
  method, n, monkeypatch
):
  _use_sort(method, monkeypatch)
  rng = np.random.default_rng(n)
  values = rng.integers(-3, 4, (3, n)).astype(np.float32)
  np.testing.assert_array_equal(
    _sorting.sort_values_descending(jnp.asarray(values)),
    -np.sort(-values, axis=-1),
  )
  scores = rng.integers(-2, 3, (3, n)).astype(np.float32)
  scores[0, 0] = np.nan
  scores[1, -1] = -np.inf
  labels = rng.integers(0, 3, (3, n)).astype(np.float32)
  where = rng.random((3, n)) > 0.2
  where[2] = False
  correct, pairs, has_valid = _sorting.ordered_pair_counts(
    jnp.asarray(scores), jnp.asarray(labels), jnp.asarray(where)
  )
  np.testing.assert_array_equal(has_valid, [True, True, False])
  for b in range(3):
    s, nan = scores[b], np.isnan(scores[b])
    ordered = (
      where[b][:, None]
      & where[b][None, :]
      & (labels[b][:, None] > labels[b][None, :])
    )
    # i ranks strictly ahead of j; valid NaN scores rank after -inf.
    ahead = (~nan[:, None] & nan[None, :]) | (s[:, None] > s[None, :])
    assert pairs[b] == ordered.sum()
    assert correct[b] == (ordered & ahead).sum()


@pytest.mark.parametrize("method, n", _every_sort([2, 9, 100]))
def test_pair_counts_are_nan_only_for_a_valid_nan_label(method, n, monkeypatch):
  _use_sort(method, monkeypatch)
  labels = np.zeros((3, n), np.float32)
  labels[:, -1] = 1.0
  labels[:2, 0] = np.nan
  where = np.ones((3, n), bool)
  where[1, 0] = False  # a masked NaN label does not count
  correct, pairs, _ = _sorting.ordered_pair_counts(
    jnp.zeros((3, n)), jnp.asarray(labels), jnp.asarray(where)
  )
  assert np.isnan(correct[0]) and np.isnan(pairs[0])
  np.testing.assert_array_equal(pairs[1:], [n - 2, n - 1])
  np.testing.assert_array_equal(correct[1:], [0, 0])


@pytest.mark.parametrize("n", [2, 3, 5, 8, 33, 200, 257, 3000])
def test_merge_inversions_count_every_inverted_pair(n):
  rng = np.random.default_rng(n)
  lists = 1 if n > 1000 else 4
  x = rng.integers(0, min(n, 7) + 1, (lists, n))
  ranked = 2 * (np.arange(n) * (n + 1) + x)
  expected = [np.sum(np.triu(row[:, None] > row[None, :], 1)) for row in x]
  dtype = _sorting._inversion_count_dtype(n)
  assert (dtype == jnp.int32) == (n == 3000)
  counts = _sorting._merge_inversions(
    jnp.asarray(ranked, jnp.int32), n + 1, jnp.zeros((lists, n), dtype)
  )
  np.testing.assert_array_equal(counts, expected)
