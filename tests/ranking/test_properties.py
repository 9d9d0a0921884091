"""Property tests for the ranking losses (and a few transformed metrics).

* permutation invariance: reordering the items of a list changes nothing;
* masking equals removing: a masked item is as good as absent;
* robustness: every loss has a finite value and gradient for lists with no
  valid item, no relevant item, one item, +-inf/NaN scores on masked items,
  list sizes 1 to 1000, float32 and bfloat16.
"""

import functools

from hypothesis import given
from hypothesis import settings
from hypothesis import strategies as st
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from t5rank.ranking import losses

LOSSES = {
  "pointwise_sigmoid_loss": losses.pointwise_sigmoid_loss,
  "pointwise_mse_loss": losses.pointwise_mse_loss,
  "pairwise_hinge_loss": losses.pairwise_hinge_loss,
  "pairwise_logistic_loss": losses.pairwise_logistic_loss,
  "pairwise_mse_loss": losses.pairwise_mse_loss,
  "pairwise_soft_zero_one_loss": losses.pairwise_soft_zero_one_loss,
  "pairwise_qr_loss": losses.pairwise_qr_loss,
  "softmax_loss": losses.softmax_loss,
  "poly1_softmax_loss": losses.poly1_softmax_loss,
  "unique_softmax_loss": losses.unique_softmax_loss,
  "listmle_loss": losses.listmle_loss,
  "listnet_loss": losses.listnet_loss,
  "lambdaloss_loss": losses.lambdaloss_loss,
  "distillation_kl_loss": losses.distillation_kl_loss,
  "margin_mse_loss": losses.margin_mse_loss,
}
# Lambda weights depend on ranks, so LambdaLoss is permutation invariant only
# without score ties (guaranteed below by distinct scores).
SETTINGS = settings(max_examples=3, deadline=None)


def _transformed_metrics():
  """A few t12n-wrapped metrics, when the transformations are present."""
  try:
    from t5rank.ranking import metrics  # pylint: disable=g-import-not-at-top
    from t5rank.ranking import t12n  # pylint: disable=g-import-not-at-top
  except ImportError:
    return {}
  return {
    "approx_ndcg": t12n.approx_t12n(metrics.ndcg_metric),
    "approx_mrr": t12n.approx_t12n(metrics.mrr_metric),
    "bound_ndcg": t12n.bound_t12n(metrics.ndcg_metric),
    "gumbel_approx_ndcg": t12n.gumbel_t12n(
      t12n.approx_t12n(metrics.ndcg_metric)
    ),
  }


ROBUST_FNS = dict(LOSSES, **_transformed_metrics())


@st.composite
def _lists(draw, min_size=2, max_size=12):
  """One list: distinct scores, graded labels with ties, a mask, weights."""
  size = draw(st.integers(min_size, max_size))
  seed = draw(st.integers(0, 2**31 - 1))
  rng = np.random.default_rng(seed)
  scores = (
    rng.permutation(size).astype(np.float32) * 0.7
    + rng.normal(size=size).astype(np.float32) * 0.1
  )
  labels = rng.integers(0, 3, size=size).astype(np.float32)
  where = rng.random(size) > 0.3
  where[rng.integers(size)] = True
  weights = (rng.random(size) + 0.5).astype(np.float32)
  return scores, labels, where, weights


@functools.cache
def _compiled_value_and_grad(fn):
  """``fn``'s value and gradient in the scores, jit-compiled once per shape.

  Op-by-op execution compiles every primitive again for each new list shape
  (seconds per loss and shape); the properties are those of the compiled
  function, which is what training runs.
  """
  return jax.jit(jax.value_and_grad(lambda s, y, kwargs: fn(s, y, **kwargs)))


def _value_and_grad(fn, scores, labels, **kwargs):
  kwargs = {k: jnp.asarray(v) for k, v in kwargs.items()}
  return _compiled_value_and_grad(fn)(
    jnp.asarray(scores), jnp.asarray(labels), kwargs
  )


@pytest.mark.parametrize("name", sorted(LOSSES))
@SETTINGS
@given(data=_lists())
def test_permuting_items_changes_nothing(name, data):
  scores, labels, where, weights = data
  fn = LOSSES[name]
  if name == "listmle_loss":
    # Ties in labels keep list order, which a permutation changes.
    labels = np.arange(len(labels), dtype=np.float32)[::-1].copy()
  perm = np.random.default_rng(len(scores)).permutation(len(scores))
  kwargs = lambda p: dict(
    where=jnp.asarray(where[p]), weights=jnp.asarray(weights[p])
  )
  if name == "listmle_loss":
    kwargs = lambda p: dict(where=jnp.asarray(where[p]))
  ident = np.arange(len(scores))
  value, grad = _value_and_grad(fn, scores, labels, **kwargs(ident))
  permuted, grad_permuted = _value_and_grad(
    fn, scores[perm], labels[perm], **kwargs(perm)
  )
  np.testing.assert_allclose(permuted, value, rtol=1e-5, atol=1e-5)
  np.testing.assert_allclose(
    grad_permuted, np.asarray(grad)[perm], rtol=1e-5, atol=1e-5
  )


# LambdaLoss' DCG weights scale by the list size (Rax's convention), masked
# items included; that factor is pinned separately below.
MASK_EQUALS_REMOVE = sorted(set(LOSSES) - {"lambdaloss_loss"})


@pytest.mark.parametrize("name", MASK_EQUALS_REMOVE)
@SETTINGS
@given(data=_lists())
def test_masking_items_equals_removing_them(name, data):
  scores, labels, where, weights = data
  fn = LOSSES[name]
  kwargs = {} if name == "listmle_loss" else {"weights": weights}
  masked_scores = np.where(where, scores, np.nan).astype(np.float32)
  value, grad = _value_and_grad(
    fn, masked_scores, labels, where=where, **kwargs
  )
  kept = {k: v[where] for k, v in kwargs.items()}
  removed, removed_grad = _value_and_grad(
    fn, scores[where], labels[where], **kept
  )
  np.testing.assert_allclose(value, removed, rtol=1e-5, atol=1e-5)
  np.testing.assert_allclose(
    np.asarray(grad)[where], removed_grad, rtol=1e-5, atol=1e-5
  )
  np.testing.assert_array_equal(np.asarray(grad)[~where], 0.0)


def test_lambdaloss_masking_equals_removing_up_to_the_list_size_factor():
  scores = jnp.array([0.5, 9.0, -1.0, 2.0])
  labels = jnp.array([1.0, 3.0, 0.0, 2.0])
  where = jnp.array([True, False, True, True])
  masked = losses.lambdaloss_loss(scores, labels, where=where)
  removed = losses.lambdaloss_loss(scores[where], labels[where])
  np.testing.assert_allclose(masked, removed * 4 / 3, rtol=1e-5)


# ---------------------------------------------------------------------------
# Robustness grid.


def _grid_case(case, size, dtype):
  rng = np.random.default_rng(size)
  scores = rng.normal(size=(2, size)) * 3
  labels = (rng.random((2, size)) < 0.3).astype(np.float64)
  where = np.ones((2, size), bool)
  if case == "all_masked":
    where[:] = False
    scores[:] = np.nan
  elif case == "no_positive":
    labels[:] = 0.0
  elif case == "one_item":
    where[:] = False
    where[:, size // 2] = True
  elif case == "inf_nan_masked":
    where = rng.random((2, size)) > 0.5
    where[:, 0] = True
    bad = np.array([np.inf, -np.inf, np.nan])
    scores[~where] = bad[np.arange((~where).sum()) % 3]
    labels[~where] = np.nan
  elif case == "mixed_batch":
    # One ordinary list next to an all-masked one.
    where[1] = False
    scores[1] = np.inf
  return (
    jnp.asarray(scores, dtype),
    jnp.asarray(labels, dtype),
    jnp.asarray(where),
  )


GRID_CASES = [
  "all_masked",
  "no_positive",
  "one_item",
  "inf_nan_masked",
  "mixed_batch",
]


@pytest.mark.parametrize(
  "size,dtype",
  [
    (1, jnp.float32),
    pytest.param(1, jnp.bfloat16, marks=pytest.mark.slow),
    pytest.param(2, jnp.float32, marks=pytest.mark.slow),
    (37, jnp.bfloat16),
    (1000, jnp.float32),
    pytest.param(1000, jnp.bfloat16, marks=pytest.mark.slow),
  ],
)
@pytest.mark.parametrize("name", sorted(ROBUST_FNS))
def test_value_and_gradient_are_finite_on_degenerate_lists(name, size, dtype):
  # Every case is a pair of lists; all cases form one batch, so one compiled
  # call covers the grid for this function, size and dtype.
  fn = ROBUST_FNS[name]
  key = jax.random.PRNGKey(0)
  parts = [_grid_case(case, size, dtype) for case in GRID_CASES]
  scores, labels, where = (
    jnp.concatenate([p[k] for p in parts]) for k in range(3)
  )
  value, grad = jax.jit(
    jax.value_and_grad(lambda s, y, w: fn(s, y, where=w, key=key))
  )(scores, labels, where)
  assert bool(jnp.isfinite(value)), value
  assert bool(jnp.all(jnp.isfinite(grad))), grad
  assert grad.dtype == dtype
  np.testing.assert_array_equal(np.float32(grad)[~np.asarray(where)], 0.0)


@pytest.mark.parametrize("name", sorted(ROBUST_FNS))
def test_all_masked_batch_gives_zero_value_and_gradient(name):
  scores, labels, where = _grid_case("all_masked", 5, jnp.float32)
  value, grad = _value_and_grad(
    ROBUST_FNS[name], scores, labels, where=where, key=jax.random.PRNGKey(0)
  )
  assert float(value) == 0.0
  np.testing.assert_array_equal(grad, 0.0)


@pytest.mark.parametrize("name", sorted(LOSSES))
@settings(max_examples=3, deadline=None)
@given(
  seed=st.integers(0, 2**31 - 1),
  size=st.integers(1, 40),
  use_segments=st.booleans(),
)
def test_random_masks_with_nonfinite_masked_scores_stay_finite(
  name, seed, size, use_segments
):
  rng = np.random.default_rng(seed)
  where = rng.random((3, size)) > 0.5
  scores = rng.normal(size=(3, size)).astype(np.float32)
  bad = np.array([np.inf, -np.inf, np.nan], np.float32)
  scores[~where] = bad[rng.integers(0, 3, size=(~where).sum())]
  labels = rng.integers(0, 3, size=(3, size)).astype(np.float32)
  kwargs = dict(where=where, key=jax.random.PRNGKey(seed))
  if use_segments:
    kwargs["segments"] = rng.integers(0, 3, size=(3, size))
  value, grad = _value_and_grad(LOSSES[name], scores, labels, **kwargs)
  assert np.isfinite(float(value))
  assert np.all(np.isfinite(grad))
  np.testing.assert_array_equal(np.asarray(grad)[~where], 0.0)
