"""Tests for t5rank.ranking.losses.

Oracles: Rax 0.4.0 (boolean masks) for the losses it has, hand computation
(NumPy loops over pairs / items) for the ones it does not.
"""

import doctest
import functools
import itertools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from t5rank.ranking import lambdaweights
from t5rank.ranking import losses
from t5rank.ranking import t12n

rax = pytest.importorskip("rax", reason="Rax is the oracle; see README")

RAX_LOSSES = [
  "pointwise_sigmoid_loss",
  "pointwise_mse_loss",
  "pairwise_hinge_loss",
  "pairwise_logistic_loss",
  "pairwise_mse_loss",
  "pairwise_soft_zero_one_loss",
  "pairwise_qr_loss",
  "softmax_loss",
  "poly1_softmax_loss",
  "unique_softmax_loss",
  "listmle_loss",
]
PAIRWISE = [name for name in RAX_LOSSES if name.startswith("pairwise")]
TOL = dict(atol=1e-5, rtol=1e-5)


def _inputs(seed=0, batch=4, size=9, graded=True):
  rng = np.random.default_rng(seed)
  scores = rng.normal(size=(batch, size)).astype(np.float32) * 2
  if graded:
    labels = rng.integers(0, 4, size=(batch, size)).astype(np.float32)
  else:
    labels = (rng.random((batch, size)) < 0.3).astype(np.float32)
  where = rng.random((batch, size)) > 0.25
  where[:, 0] = True
  weights = (rng.random((batch, size)) + 0.5).astype(np.float32)
  segments = rng.integers(0, 3, size=(batch, size))
  return dict(
    scores=jnp.asarray(scores),
    labels=jnp.asarray(labels),
    where=jnp.asarray(where),
    weights=jnp.asarray(weights),
    segments=jnp.asarray(segments),
  )


def _value_and_grad(fn, scores, labels, **kwargs):
  total = lambda s: jnp.sum(fn(s, labels, **kwargs))
  return fn(scores, labels, **kwargs), jax.grad(total)(scores)


def _assert_same_as_rax(name, scores, labels, ours_kwargs=None, **kwargs):
  ours_kwargs = dict(kwargs, **(ours_kwargs or {}))
  value, grad = _value_and_grad(
    getattr(losses, name), scores, labels, **ours_kwargs
  )
  expected, expected_grad = _value_and_grad(
    getattr(rax, name), scores, labels, **kwargs
  )
  np.testing.assert_allclose(value, expected, **TOL)
  np.testing.assert_allclose(grad, expected_grad, **TOL)


CASES = {
  "plain": lambda d: {},
  "where": lambda d: dict(where=d["where"]),
  "where_weights": lambda d: dict(where=d["where"], weights=d["weights"]),
  "where_segments": lambda d: dict(where=d["where"], segments=d["segments"]),
  "sum": lambda d: dict(where=d["where"], reduce_fn=jnp.sum),
  "unreduced": lambda d: dict(where=d["where"], reduce_fn=None),
}


# Binary labels in every argument combination repeat the graded checks: the
# default run keeps them for the plain and masked calls, `-m slow` the rest.
GRADED_CASES = [
  pytest.param(
    graded,
    case,
    id=f"{graded}-{case}",
    marks=() if graded or case in ("plain", "where") else pytest.mark.slow,
  )
  for graded in (True, False)
  for case in sorted(CASES)
]


@pytest.mark.parametrize("graded,case", GRADED_CASES)
@pytest.mark.parametrize("name", RAX_LOSSES)
def test_value_and_gradient_match_rax(name, case, graded):
  data = _inputs(seed=len(name) + len(case), graded=graded)
  kwargs = CASES[case](data)
  if name == "listmle_loss" and "weights" in kwargs:
    pytest.skip("Rax's listmle_loss has no weights")
  if name == "listmle_loss" and "segments" in kwargs:
    pytest.skip(
      "Rax's segmented listmle gradient is NaN; see "
      "test_listmle_segments_equal_separate_lists"
    )
  if name == "poly1_softmax_loss" and "segments" in kwargs:
    pytest.skip(
      "Rax's batched poly1 with segments fails to broadcast; see "
      "test_poly1_segments_match_rax_per_list"
    )
  _assert_same_as_rax(name, data["scores"], data["labels"], **kwargs)


@pytest.mark.parametrize(
  "lambdaweight",
  ["labeldiff_lambdaweight", "dcg_lambdaweight", "dcg2_lambdaweight"],
)
@pytest.mark.parametrize("name", PAIRWISE)
@pytest.mark.parametrize("extra", ["none", "weights", "segments", "sum"])
def test_pairwise_lambdaweights_match_rax(name, lambdaweight, extra):
  data = _inputs(seed=3)
  kwargs = dict(where=data["where"])
  if extra == "weights":
    kwargs["weights"] = data["weights"]
  elif extra == "segments":
    kwargs["segments"] = data["segments"]
  elif extra == "sum":
    kwargs["reduce_fn"] = jnp.sum
  ours = dict(lambdaweight_fn=getattr(lambdaweights, lambdaweight))
  _assert_same_as_rax(
    name,
    data["scores"],
    data["labels"],
    ours_kwargs=ours,
    lambdaweight_fn=getattr(rax, lambdaweight),
    **kwargs,
  )


def _logistic_pairs(scores_diff, labels_diff):
  return jax.nn.softplus(-scores_diff), labels_diff > 0


def _hinge_pairs(scores_diff, labels_diff):
  return jax.nn.relu(1.0 - scores_diff), labels_diff > 0


@pytest.mark.parametrize("lambdaweight", [None, "dcg_lambdaweight"])
@pytest.mark.parametrize("case", sorted(CASES))
def test_pairwise_loss_with_a_pair_function_matches_rax(case, lambdaweight):
  data = _inputs(seed=7)
  kwargs = dict(CASES[case](data), pair_loss_fn=_logistic_pairs)
  ours, theirs = dict(kwargs), dict(kwargs)
  if lambdaweight is not None:
    ours["lambdaweight_fn"] = getattr(lambdaweights, lambdaweight)
    theirs["lambdaweight_fn"] = getattr(rax, lambdaweight)
  value, grad = _value_and_grad(
    losses.pairwise_loss, data["scores"], data["labels"], **ours
  )
  expected, expected_grad = _value_and_grad(
    rax.utils.pairwise_loss, data["scores"], data["labels"], **theirs
  )
  np.testing.assert_allclose(value, expected, **TOL)
  np.testing.assert_allclose(grad, expected_grad, **TOL)


@pytest.mark.parametrize("reduce_fn", [jnp.mean, jnp.sum])
def test_pairwise_loss_with_the_hinge_pair_function_is_pairwise_hinge_loss(
  reduce_fn,
):
  data = _inputs(seed=8)
  kwargs = dict(
    where=data["where"],
    segments=data["segments"],
    weights=data["weights"],
    lambdaweight_fn=lambdaweights.dcg_lambdaweight,
    reduce_fn=reduce_fn,
  )
  value, grad = _value_and_grad(
    functools.partial(losses.pairwise_loss, pair_loss_fn=_hinge_pairs),
    data["scores"],
    data["labels"],
    **kwargs,
  )
  expected, expected_grad = _value_and_grad(
    losses.pairwise_hinge_loss, data["scores"], data["labels"], **kwargs
  )
  np.testing.assert_allclose(value, expected, **TOL)
  np.testing.assert_allclose(grad, expected_grad, **TOL)


def test_pairwise_loss_ignores_nan_and_inf_scores_of_masked_items():
  scores = jnp.array([[1.0, jnp.nan, 0.5, jnp.inf, -jnp.inf]])
  labels = jnp.array([[1.0, 0.0, 0.0, 1.0, 0.0]])
  where = jnp.array([[True, False, True, False, False]])
  loss = functools.partial(
    losses.pairwise_loss, pair_loss_fn=_logistic_pairs, where=where
  )
  value, grad = _value_and_grad(loss, scores, labels)
  np.testing.assert_allclose(value, jax.nn.softplus(-0.5), **TOL)
  assert np.all(np.isfinite(grad)), grad
  np.testing.assert_array_equal(grad[~np.asarray(where)], 0.0)


def test_rax_lambdaweight_functions_plug_into_our_losses():
  data = _inputs(seed=4)
  fn = functools.partial(rax.dcg_lambdaweight, normalize=True, topn=3)
  _assert_same_as_rax(
    "pairwise_logistic_loss",
    data["scores"],
    data["labels"],
    where=data["where"],
    lambdaweight_fn=fn,
  )


def test_our_lambdaweight_functions_plug_into_rax_losses():
  data = _inputs(seed=5)
  ours = rax.pairwise_hinge_loss(
    data["scores"],
    data["labels"],
    where=data["where"],
    lambdaweight_fn=lambdaweights.dcg2_lambdaweight,
  )
  theirs = rax.pairwise_hinge_loss(
    data["scores"],
    data["labels"],
    where=data["where"],
    lambdaweight_fn=rax.dcg2_lambdaweight,
  )
  np.testing.assert_allclose(ours, theirs, **TOL)


@pytest.mark.parametrize(
  "tau,squared", [(0.5, False), (0.2, True), (1.0, False), (0.7, True)]
)
def test_qr_loss_options_match_rax(tau, squared):
  data = _inputs(seed=6)
  _assert_same_as_rax(
    "pairwise_qr_loss",
    data["scores"],
    data["labels"],
    where=data["where"],
    tau=tau,
    squared=squared,
  )


def test_poly1_epsilon_matches_rax():
  data = _inputs(seed=7)
  _assert_same_as_rax(
    "poly1_softmax_loss",
    data["scores"],
    data["labels"],
    where=data["where"],
    epsilon=0.3,
  )


def test_softmax_label_fn_matches_rax():
  data = _inputs(seed=8)
  label_fn = lambda a, where: rax.utils.normalize_probabilities(a, where=where)
  _assert_same_as_rax(
    "softmax_loss",
    data["scores"],
    data["labels"],
    where=data["where"],
    label_fn=label_fn,
  )


def test_unique_softmax_without_gain_matches_rax():
  data = _inputs(seed=9)
  _assert_same_as_rax(
    "unique_softmax_loss",
    data["scores"],
    data["labels"],
    where=data["where"],
    gain_fn=None,
  )


def test_listmle_with_key_breaks_ties_like_rax():
  data = _inputs(seed=10, graded=False)
  key = jax.random.PRNGKey(3)
  _assert_same_as_rax(
    "listmle_loss", data["scores"], data["labels"], where=data["where"], key=key
  )


def test_listmle_key_changes_tied_order():
  scores = jnp.array([0.0, 1.0, 2.0, 3.0])
  labels = jnp.zeros(4)
  values = {
    float(losses.listmle_loss(scores, labels, key=jax.random.PRNGKey(k)))
    for k in range(8)
  }
  assert len(values) > 1
  no_key = losses.listmle_loss(scores, labels)
  np.testing.assert_allclose(no_key, rax.listmle_loss(scores, labels), **TOL)


def test_listmle_segments_equal_separate_lists():
  scores = jnp.array([0.3, -1.0, 2.0, 0.5, 1.5, -0.2])
  labels = jnp.array([2.0, 0.0, 1.0, 1.0, 0.0, 3.0])
  segments = jnp.array([0, 1, 0, 1, 0, 1])
  value, grad = _value_and_grad(
    functools.partial(losses.listmle_loss, reduce_fn=jnp.sum),
    scores,
    labels,
    segments=segments,
  )
  expected = 0.0
  expected_grad = np.zeros(6)
  for seg in (0, 1):
    idx = np.flatnonzero(np.asarray(segments) == seg)
    v, g = _value_and_grad(rax.listmle_loss, scores[idx], labels[idx])
    expected += float(v)
    expected_grad[idx] = g
  np.testing.assert_allclose(value, expected, **TOL)
  np.testing.assert_allclose(grad, expected_grad, **TOL)


def _listmle_by_hand(scores, labels):
  """-log Plackett-Luce likelihood of the stable sort by decreasing label."""
  order = np.argsort(-labels, kind="stable")
  s = scores[order].astype(np.float64)
  return sum(np.logaddexp.reduce(s[k:]) - s[k] for k in range(len(s)))


def test_listmle_with_mask_and_segments_matches_a_per_segment_reference():
  where = jnp.array([False, True, True])
  for fn in (losses.listmle_loss, t12n.segment_t12n(losses.listmle_loss)):
    value = fn(
      jnp.zeros(3),
      jnp.array([0.0, 1.0, 0.0]),
      where=where,
      segments=jnp.array([0, 0, 0]),
    )
    np.testing.assert_allclose(value, np.log(2.0), **TOL)
  rng = np.random.default_rng(40)
  scores = rng.normal(size=(200, 8)).astype(np.float32)
  labels = rng.integers(0, 3, size=(200, 8)).astype(np.float32)
  where = rng.random((200, 8)) > 0.3
  segments = rng.integers(0, 3, size=(200, 8))
  expected = np.zeros(200)
  for row in range(200):
    for seg in np.unique(segments[row][where[row]]):
      idx = np.flatnonzero(where[row] & (segments[row] == seg))
      expected[row] += _listmle_by_hand(scores[row, idx], labels[row, idx])
  per_item = losses.listmle_loss(
    scores, labels, where=where, segments=segments, reduce_fn=None
  )
  np.testing.assert_allclose(np.sum(per_item, axis=-1), expected, **TOL)
  total = losses.listmle_loss(
    scores, labels, where=where, segments=segments, reduce_fn=jnp.sum
  )
  np.testing.assert_allclose(total, expected.sum(), rtol=1e-5)
  # Gradients against Rax on each segment's valid items, for a few lists.
  grad_fn = jax.jit(
    jax.grad(
      lambda s, y, w, g: losses.listmle_loss(
        s, y, where=w, segments=g, reduce_fn=jnp.sum
      )
    )
  )
  rax_grad = jax.jit(jax.grad(rax.listmle_loss))  # one compile per size.
  for row in range(10):
    grad = grad_fn(
      jnp.asarray(scores[row]), labels[row], where[row], segments[row]
    )
    expected_grad = np.zeros(8)
    for seg in np.unique(segments[row][where[row]]):
      idx = np.flatnonzero(where[row] & (segments[row] == seg))
      expected_grad[idx] = rax_grad(
        jnp.asarray(scores[row, idx]), jnp.asarray(labels[row, idx])
      )
    np.testing.assert_allclose(grad, expected_grad, **TOL)


def test_poly1_segments_match_rax_per_list():
  data = _inputs(seed=11)
  kwargs = dict(reduce_fn=jnp.sum)
  ours = losses.poly1_softmax_loss(
    data["scores"],
    data["labels"],
    where=data["where"],
    segments=data["segments"],
    **kwargs,
  )
  theirs = sum(
    rax.poly1_softmax_loss(s, y, where=w, segments=g, **kwargs)
    for s, y, w, g in zip(
      data["scores"], data["labels"], data["where"], data["segments"]
    )
  )
  np.testing.assert_allclose(ours, theirs, **TOL)


# ---------------------------------------------------------------------------
# Pinned semantics of the pairwise mean.


def test_pairwise_mean_is_over_valid_pairs_of_the_whole_batch():
  scores = jnp.array([[0.0, 0.0, 9.0], [1.0, 0.0, 0.0]])
  labels = jnp.array([[2.0, 1.0, 0.0], [1.0, 0.0, 0.0]])
  where = jnp.array([[True, True, False], [True, True, False]])
  # Valid pairs with y_i > y_j: list 0: (0, 1); list 1: (0, 1). Hinge:
  # max(0, 1 - 0) = 1 and max(0, 1 - 1) = 0 -> mean over 2 pairs = 0.5.
  value = losses.pairwise_hinge_loss(scores, labels, where=where)
  np.testing.assert_allclose(value, 0.5, **TOL)
  unreduced = losses.pairwise_hinge_loss(
    scores, labels, where=where, reduce_fn=None
  )
  assert unreduced.shape == (2, 9)
  np.testing.assert_allclose(jnp.sum(unreduced), 1.0, **TOL)


def test_pairwise_tied_labels_form_no_pair():
  value, grad = _value_and_grad(
    losses.pairwise_logistic_loss, jnp.array([0.0, 5.0]), jnp.array([1.0, 1.0])
  )
  assert float(value) == 0.0
  np.testing.assert_array_equal(grad, 0.0)


def test_hinge_margin_shifts_the_hinge():
  value = losses.pairwise_hinge_loss(
    jnp.array([1.0, 0.0]), jnp.array([1.0, 0.0]), margin=3.0
  )
  np.testing.assert_allclose(value, 2.0, **TOL)


# ---------------------------------------------------------------------------
# Losses beyond Rax, against hand computation.


def _np_softmax(x):
  x = np.asarray(x, np.float64)
  e = np.exp(x - x.max())
  return e / e.sum()


def test_listnet_is_cross_entropy_of_label_and_score_softmaxes():
  data = _inputs(seed=12)
  s, y, w = (np.asarray(data[k]) for k in ("scores", "labels", "where"))
  weights = np.asarray(data["weights"])
  expected = []
  for b in range(s.shape[0]):
    m = w[b]
    p = _np_softmax(y[b][m])
    q = _np_softmax(s[b][m])
    expected.append(-np.sum(weights[b][m] * p * np.log(q)))
  value = losses.listnet_loss(
    data["scores"],
    data["labels"],
    where=data["where"],
    weights=data["weights"],
    reduce_fn=None,
  )
  np.testing.assert_allclose(value, expected, **TOL)


@pytest.mark.parametrize("temperature", [1.0, 0.5, 3.0])
def test_distillation_kl_is_kl_from_teacher_softmax(temperature):
  data = _inputs(seed=13)
  s, w = np.asarray(data["scores"]), np.asarray(data["where"])
  teacher = np.asarray(data["scores"])[::-1] * 1.5
  expected = []
  for b in range(s.shape[0]):
    m = w[b]
    p = _np_softmax(teacher[b][m] / temperature)
    q = _np_softmax(s[b][m] / temperature)
    expected.append(np.sum(p * (np.log(p) - np.log(q))))
  value = losses.distillation_kl_loss(
    data["scores"],
    jnp.asarray(teacher),
    where=data["where"],
    temperature=temperature,
  )
  np.testing.assert_allclose(value, np.mean(expected), **TOL)


def test_distillation_kl_is_zero_when_student_matches_teacher():
  scores = jnp.array([[1.0, -2.0, 0.5]])
  value, grad = _value_and_grad(
    losses.distillation_kl_loss, scores, scores + 3.0
  )
  np.testing.assert_allclose(value, 0.0, atol=1e-6)
  np.testing.assert_allclose(grad, 0.0, atol=1e-6)


def test_distillation_kl_ignores_items_the_teacher_rules_out():
  value = losses.distillation_kl_loss(
    jnp.array([0.0, 0.0, 7.0]), jnp.array([0.0, 0.0, -jnp.inf])
  )
  # p = (1/2, 1/2, 0); q = softmax(0, 0, 7).
  q = _np_softmax([0.0, 0.0, 7.0])
  np.testing.assert_allclose(value, -np.log(q[0]) - np.log(2), **TOL)


def test_margin_mse_on_pairs_is_hofstatter_margin_mse():
  scores = jnp.array([[3.0, 1.0], [0.5, 2.0]])
  teacher = jnp.array([[10.0, 7.0], [1.0, 1.5]])
  value = losses.margin_mse_loss(scores, teacher)
  expected = np.mean([((3 - 1) - (10 - 7)) ** 2, ((0.5 - 2) - (1 - 1.5)) ** 2])
  np.testing.assert_allclose(value, expected, **TOL)


def test_margin_mse_on_lists_averages_every_unordered_pair():
  data = _inputs(seed=14)
  s, w = np.asarray(data["scores"], np.float64), np.asarray(data["where"])
  t = np.asarray(data["labels"], np.float64) * 2.0
  weights = np.asarray(data["weights"], np.float64)
  expected = []
  for b in range(s.shape[0]):
    idx = np.flatnonzero(w[b])
    terms = [
      weights[b, i]
      * weights[b, j]
      * ((s[b, i] - s[b, j]) - (t[b, i] - t[b, j])) ** 2
      for i, j in itertools.combinations(idx, 2)
    ]
    expected.append(np.mean(terms))
  value = losses.margin_mse_loss(
    data["scores"],
    jnp.asarray(t, jnp.float32),
    where=data["where"],
    weights=data["weights"],
    reduce_fn=None,
  )
  np.testing.assert_allclose(value, expected, **TOL)


def test_margin_mse_leaves_lists_without_a_pair_out_of_the_mean():
  scores = jnp.array([[3.0, 1.0], [0.5, 2.0]])
  teacher = jnp.array([[10.0, 7.0], [1.0, 1.5]])
  where = jnp.array([[True, True], [True, False]])
  value = losses.margin_mse_loss(scores, teacher, where=where)
  np.testing.assert_allclose(value, 1.0, **TOL)


@pytest.mark.parametrize("topn", [None, 2])
def test_lambdaloss_is_logistic_loss_with_rax_ndcg_loss2pp_weights(topn):
  data = _inputs(seed=15)
  mu = 4.0

  def rax_weights(scores, labels, **kwargs):
    kwargs = dict(kwargs, normalize=True, topn=topn)
    return rax.dcg_lambdaweight(
      scores, labels, **kwargs
    ) + mu * rax.dcg2_lambdaweight(scores, labels, **kwargs)

  value, grad = _value_and_grad(
    losses.lambdaloss_loss,
    data["scores"],
    data["labels"],
    where=data["where"],
    topn=topn,
    mu=mu,
  )
  expected, expected_grad = _value_and_grad(
    rax.pairwise_logistic_loss,
    data["scores"],
    data["labels"],
    where=data["where"],
    lambdaweight_fn=rax_weights,
  )
  np.testing.assert_allclose(value, expected, **TOL)
  np.testing.assert_allclose(grad, expected_grad, **TOL)


def test_lambdaloss_two_items_by_hand():
  # Item 1 ranks first; normalised gains (1, 0); rho = delta = 1 - 1/log2 3;
  # weight 2 * (rho + 10 * delta); one valid pair with softplus(1).
  rho = 1 - 1 / np.log2(3)
  expected = 2 * (rho + 10 * rho) * np.log1p(np.e)
  value = losses.lambdaloss_loss(jnp.array([0.0, 1.0]), jnp.array([1.0, 0.0]))
  np.testing.assert_allclose(value, expected, **TOL)


# ---------------------------------------------------------------------------
# Interface.


ALL_LOSSES = RAX_LOSSES + [
  "listnet_loss",
  "lambdaloss_loss",
  "distillation_kl_loss",
  "margin_mse_loss",
]


@pytest.mark.parametrize("name", ALL_LOSSES)
def test_every_loss_accepts_key_where_weights_segments(name):
  data = _inputs(seed=16)
  value = getattr(losses, name)(
    data["scores"],
    data["labels"],
    where=data["where"],
    weights=data["weights"],
    segments=data["segments"],
    key=jax.random.PRNGKey(0),
    reduce_fn=jnp.mean,
  )
  assert np.isfinite(float(value))


@pytest.mark.parametrize("name", ALL_LOSSES)
def test_jit_and_vmap_compose(name):
  data = _inputs(seed=17)
  fn = getattr(losses, name)
  direct = fn(
    data["scores"], data["labels"], where=data["where"], reduce_fn=None
  )
  jitted = jax.jit(lambda s, y, w: fn(s, y, where=w, reduce_fn=None))(
    data["scores"], data["labels"], data["where"]
  )
  mapped = jax.vmap(lambda s, y, w: fn(s, y, where=w, reduce_fn=jnp.sum))(
    data["scores"], data["labels"], data["where"]
  )
  np.testing.assert_allclose(jitted, direct, **TOL)
  per_list = direct.reshape(direct.shape[0], -1).sum(-1)
  if (
    name.startswith("pointwise")
    or name.startswith("pairwise")
    or (name == "lambdaloss_loss")
  ):
    np.testing.assert_allclose(mapped, per_list, **TOL)
  else:
    np.testing.assert_allclose(mapped, direct, **TOL)


@pytest.mark.parametrize("name", ALL_LOSSES)
def test_integer_mask_equals_boolean_mask(name):
  data = _inputs(seed=18)
  fn = getattr(losses, name)
  a = fn(data["scores"], data["labels"], where=data["where"])
  b = fn(data["scores"], data["labels"], where=data["where"].astype(jnp.int32))
  np.testing.assert_allclose(a, b, **TOL)


@pytest.mark.parametrize("name", ALL_LOSSES)
def test_bfloat16_is_computed_in_float32_and_returned_as_bfloat16(name):
  data = _inputs(seed=19)
  fn = getattr(losses, name)
  value32 = fn(data["scores"], data["labels"], where=data["where"])
  value16 = fn(
    data["scores"].astype(jnp.bfloat16),
    data["labels"].astype(jnp.bfloat16),
    where=data["where"],
  )
  assert value16.dtype == jnp.bfloat16
  np.testing.assert_allclose(np.float32(value16), value32, rtol=3e-2, atol=3e-2)


@pytest.mark.parametrize("name", ALL_LOSSES)
def test_mismatched_shapes_raise_a_clear_error(name):
  with pytest.raises(ValueError, match=r"labels\.shape"):
    getattr(losses, name)(jnp.zeros((2, 3)), jnp.zeros((2, 4)))
  with pytest.raises(ValueError, match=r"where"):
    getattr(losses, name)(
      jnp.zeros((2, 3)), jnp.zeros((2, 3)), where=jnp.ones((2, 4), bool)
    )


@pytest.mark.parametrize("name", ALL_LOSSES)
def test_empty_list_axis_gives_zero_loss_and_zero_gradient(name):
  fn = getattr(losses, name)
  for shape in ((2, 0), (0,)):
    empty = jnp.zeros(shape)
    for kwargs in ({}, dict(where=jnp.zeros(shape, bool), reduce_fn=jnp.sum)):
      value, grad = jax.value_and_grad(lambda s: fn(s, empty, **kwargs))(empty)  # pylint: disable=cell-var-from-loop
      assert float(value) == 0.0, (shape, kwargs)
      assert grad.shape == shape
    unreduced = fn(empty, empty, segments=jnp.zeros(shape, int), reduce_fn=None)
    assert unreduced.shape[: len(shape) - 1] == shape[:-1]
    assert np.all(np.asarray(unreduced) == 0.0)


def test_bad_hyperparameters_raise_clear_errors():
  with pytest.raises(ValueError, match="tau=1.5"):
    losses.pairwise_qr_loss(jnp.zeros(3), jnp.zeros(3), tau=1.5)
  with pytest.raises(ValueError, match="temperature=0"):
    losses.distillation_kl_loss(jnp.zeros(3), jnp.zeros(3), temperature=0)


def test_module_doctests_pass():
  for module in (losses, lambdaweights):
    result = doctest.testmod(
      module,
      extraglobs={"jax": jax, "jnp": jnp},
      optionflags=doctest.NORMALIZE_WHITESPACE,
    )
    assert result.attempted > 0, module.__name__
    assert result.failed == 0, module.__name__
