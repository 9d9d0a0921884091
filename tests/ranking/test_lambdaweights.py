"""Tests for t5rank.ranking.lambdaweights against Rax 0.4.0 and by hand."""

import jax.numpy as jnp
import numpy as np
import pytest

from t5rank.ranking import lambdaweights

rax = pytest.importorskip("rax", reason="Rax is the oracle; see README")

TOL = dict(atol=1e-5, rtol=1e-5)


def _inputs(seed=0, batch=3, size=8):
  rng = np.random.default_rng(seed)
  scores = rng.normal(size=(batch, size)).astype(np.float32)
  labels = rng.integers(0, 4, size=(batch, size)).astype(np.float32)
  where = rng.random((batch, size)) > 0.25
  where[:, 0] = True
  weights = (rng.random((batch, size)) + 0.5).astype(np.float32)
  segments = rng.integers(0, 3, size=(batch, size))
  return (
    jnp.asarray(scores),
    jnp.asarray(labels),
    jnp.asarray(where),
    jnp.asarray(weights),
    jnp.asarray(segments),
  )


def _valid_pairs(where):
  where = np.asarray(where)
  pairs = where[..., :, None] & where[..., None, :]
  return pairs.reshape(pairs.shape[:-2] + (-1,))


OPTIONS = {
  "plain": {},
  "weights": {"weights": True},
  "topn": {"topn": 3},
  "normalize": {"normalize": True},
  "normalize_topn_weights": {"normalize": True, "topn": 2, "weights": True},
  "segments": {"segments": True},
  "topn_segments": {"segments": True, "topn": 2},
}


@pytest.mark.parametrize("option", sorted(OPTIONS))
@pytest.mark.parametrize(
  "name", ["labeldiff_lambdaweight", "dcg_lambdaweight", "dcg2_lambdaweight"]
)
def test_valid_pairs_match_rax_and_others_are_zero(name, option):
  scores, labels, where, weights, segments = _inputs(seed=len(option))
  kwargs = dict(OPTIONS[option], where=where)
  if kwargs.pop("weights", False):
    kwargs["weights"] = weights
  if kwargs.pop("segments", False):
    kwargs["segments"] = segments
  if name == "labeldiff_lambdaweight":
    kwargs.pop("topn", None)
    kwargs.pop("normalize", None)
  ours = getattr(lambdaweights, name)(scores, labels, **kwargs)
  theirs = getattr(rax, name)(scores, labels, **kwargs)
  assert ours.shape == theirs.shape == (3, 64)
  valid = _valid_pairs(where)
  np.testing.assert_allclose(
    np.where(valid, ours, 0), np.where(valid, theirs, 0), **TOL
  )
  np.testing.assert_array_equal(np.where(valid, 0, ours), 0)


@pytest.mark.parametrize("topn", [None, 3])
def test_dcg2_light_discount_matches_rax(topn):
  scores, labels, where, _, _ = _inputs(seed=7)
  ours = lambdaweights.dcg2_lambdaweight(
    scores, labels, where=where, light_discount=True, topn=topn
  )
  theirs = rax.dcg2_lambdaweight(
    scores, labels, where=where, light_discount=True, topn=topn
  )
  valid = _valid_pairs(where)
  np.testing.assert_allclose(
    np.where(valid, ours, 0), np.where(valid, theirs, 0), **TOL
  )


@pytest.mark.parametrize(
  "name", ["dcg_lambdaweight", "dcg2_lambdaweight", "ndcgloss2pp_lambdaweight"]
)
def test_normalized_segments_equal_separate_lists(name):
  # Rax 0.4.0 normalises only the first item of each segment (its
  # dcg_metric returns a segment's value at that item only); here every
  # item is divided by its own segment's ideal DCG, i.e. each segment
  # behaves like a list of its own.
  scores = jnp.array([0.3, -1.0, 2.0, 0.5, 1.5, -0.2])
  labels = jnp.array([2.0, 0.0, 1.0, 1.0, 0.0, 3.0])
  segments = jnp.array([0, 1, 0, 1, 0, 1])
  fn = getattr(lambdaweights, name)
  kwargs = {} if name == "ndcgloss2pp_lambdaweight" else {"normalize": True}
  ours = fn(scores, labels, segments=segments, **kwargs).reshape(6, 6)
  for seg in (0, 1):
    idx = np.flatnonzero(np.asarray(segments) == seg)
    alone = fn(scores[idx], labels[idx], **kwargs).reshape(3, 3)
    # Rax's list-size factor is the full list size (6) with segments.
    np.testing.assert_allclose(ours[np.ix_(idx, idx)], alone * 6 / 3, **TOL)
  other = np.asarray(segments)[:, None] != np.asarray(segments)[None, :]
  np.testing.assert_array_equal(ours[other], 0)


@pytest.mark.parametrize("topn", [None, 2, 5])
@pytest.mark.parametrize("mu", [0.0, 1.0, 10.0])
def test_ndcgloss2pp_is_rax_dcg_plus_mu_dcg2_normalized(topn, mu):
  scores, labels, where, weights, _ = _inputs(seed=11)
  kwargs = dict(where=where, weights=weights, topn=topn)
  ours = lambdaweights.ndcgloss2pp_lambdaweight(scores, labels, mu=mu, **kwargs)
  theirs = rax.dcg_lambdaweight(
    scores, labels, normalize=True, **kwargs
  ) + mu * rax.dcg2_lambdaweight(scores, labels, normalize=True, **kwargs)
  valid = _valid_pairs(where)
  np.testing.assert_allclose(
    np.where(valid, ours, 0), np.where(valid, theirs, 0), **TOL
  )


def test_ndcgloss2pp_three_items_by_hand():
  # Scores rank the items 2, 0, 1 (ranks r = [2, 3, 1]); labels (2, 0, 1):
  # gains (3, 0, 1), ideal DCG 3 + 1/log2(3); normalised G = gains / ideal.
  scores = jnp.array([1.0, 0.0, 2.0])
  labels = jnp.array([2.0, 0.0, 1.0])
  mu = 2.0
  disc = lambda r: 1.0 / np.log2(r + 1.0)
  ranks = np.array([2, 3, 1])
  gains = np.array([3.0, 0.0, 1.0]) / (3.0 + disc(2))
  expected = np.zeros((3, 3))
  for i in range(3):
    for j in range(3):
      if i == j:
        continue
      rho = abs(disc(ranks[i]) - disc(ranks[j]))
      gap = abs(ranks[i] - ranks[j])
      delta = abs(disc(gap) - disc(gap + 1))
      expected[i, j] = 3 * abs(gains[i] - gains[j]) * (rho + mu * delta)
  ours = lambdaweights.ndcgloss2pp_lambdaweight(scores, labels, mu=mu)
  np.testing.assert_allclose(ours.reshape(3, 3), expected, **TOL)


def test_labeldiff_is_zero_for_pairs_with_a_masked_item():
  weights = lambdaweights.labeldiff_lambdaweight(
    jnp.zeros(3),
    jnp.array([2.0, 0.0, 5.0]),
    where=jnp.array([True, True, False]),
  )
  np.testing.assert_allclose(
    weights.reshape(3, 3), [[0, 2, 0], [2, 0, 0], [0, 0, 0]], **TOL
  )
