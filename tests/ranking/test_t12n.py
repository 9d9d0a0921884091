"""Tests for t5rank/ranking/t12n.py: approx, bound, gumbel, segment, neuralsort."""

import doctest
import functools
import inspect
import types

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from t5rank.ranking import losses
from t5rank.ranking import metrics
from t5rank.ranking import t12n

rax = pytest.importorskip("rax")
rax_utils = pytest.importorskip("rax._src.utils")

SMOOTH = [
  "mrr_metric",
  "dcg_metric",
  "ndcg_metric",
  "precision_metric",
  "recall_metric",
  "ap_metric",
  "err_metric",
]


# ---------------------------------------------------------------------------
# Rax's documented example values (rax/_src/t12n.py, utils.py, t12n_test.py).


def test_approx_values_from_rax_docs():
  scores = jnp.array([0.0, 1.0, 3.0, 2.0])
  labels = jnp.array([0.0, 0.0, 1.0, 2.0])
  np.testing.assert_allclose(
    t12n.approx_t12n(metrics.ndcg_metric)(scores, labels), -0.71789, atol=1e-5
  )
  np.testing.assert_allclose(
    t12n.approx_t12n(metrics.mrr_metric)(scores, labels), -0.69659, atol=1e-5
  )


def test_approx_ranks_example_from_rax_docs():
  approx_ndcg = functools.partial(
    metrics.ndcg_metric, rank_fn=functools.partial(t12n._utils.approx_ranks)
  )  # pylint: disable=protected-access
  scores = jnp.array([-1.0, 1.0, 0.0])
  labels = jnp.array([0.0, 0.0, 1.0])
  np.testing.assert_allclose(approx_ndcg(scores, labels), 0.63092977, atol=1e-6)
  np.testing.assert_allclose(
    jax.grad(approx_ndcg)(scores, labels),
    [-0.03763788, -0.03763788, 0.07527576],
    atol=1e-6,
  )


def test_bound_values_from_rax_docs_and_tests():
  scores = jnp.array([0.0, 1.0, 3.0, 2.0])
  labels = jnp.array([0.0, 1.0, 0.0, 1.0])
  np.testing.assert_allclose(
    t12n.bound_t12n(metrics.mrr_metric)(scores, labels), -0.33333, atol=1e-5
  )

  def rank_only(scores, labels, *, rank_fn):
    del labels
    return -rank_fn(scores)

  s = jnp.array([2.0, -1.5, 0.9])
  np.testing.assert_allclose(
    t12n.bound_t12n(rank_only)(s, s),
    [1.0, 1.0 + 4.5 + 3.4, 1.0 + 2.1],
    rtol=1e-6,
  )

  def cutoff_only(scores, labels, *, cutoff_fn):
    del labels
    return -cutoff_fn(scores, n=2)

  np.testing.assert_allclose(
    t12n.bound_t12n(cutoff_only)(s, s),
    [1.0, -1.5 - (-1.5 + 0.9) / 2.0, 1.0],
    rtol=1e-6,
  )


def test_gumbel_samples_match_rax_test_values():
  scores = jnp.array([0.0, 1.0, 2.0])
  identity = lambda scores, labels: scores
  out = t12n.gumbel_t12n(identity, samples=1)(
    scores, scores, key=jax.random.PRNGKey(42)
  )
  np.testing.assert_allclose(out, [[0.334093, 1.952019, 2.725531]], rtol=1e-5)


def test_gumbel_composed_values_from_rax_docs():
  scores = jnp.array([0.0, 1.0, 3.0, 2.0])
  key = jax.random.PRNGKey(42)
  loss = t12n.gumbel_t12n(t12n.approx_t12n(metrics.mrr_metric))
  np.testing.assert_allclose(
    loss(scores, jnp.array([0.0, 0.0, 1.0, 2.0]), key=key), -0.75971, atol=1e-5
  )
  loss = t12n.gumbel_t12n(t12n.bound_t12n(metrics.mrr_metric))
  np.testing.assert_allclose(
    loss(scores, jnp.array([0.0, 1.0, 0.0, 1.0]), key=key), -0.40368, atol=1e-5
  )


# ---------------------------------------------------------------------------
# Random inputs against Rax's metrics with Rax's approximate rank functions
# (what rax.approx_t12n plugs in; the wrapper itself fails on jax 0.10).


def _lists(seed, batch=3, n=9):
  rng = np.random.default_rng(seed)
  scores = rng.normal(size=(batch, n)).astype(np.float32)
  labels = rng.integers(0, 3, (batch, n)).astype(np.float32)
  where = rng.random((batch, n)) > 0.25
  return jnp.asarray(scores), jnp.asarray(labels), jnp.asarray(where)


@pytest.mark.parametrize("temperature", [1.0, 0.1])
@pytest.mark.parametrize("name", SMOOTH[:-1])
def test_approx_matches_rax_with_approx_rank_functions(name, temperature):
  scores, labels, where = _lists(hash(name) % 50)
  step = lambda x: jax.nn.sigmoid(x / temperature)
  rax_fn = functools.partial(
    getattr(rax, name),
    rank_fn=functools.partial(rax_utils.approx_ranks, step_fn=step),
    cutoff_fn=functools.partial(rax_utils.approx_cutoff, step_fn=step),
  )
  ours = t12n.approx_t12n(getattr(metrics, name), temperature=temperature)
  # Masked lists without a cutoff, and a cutoff on unmasked lists (Rax lets
  # masked items take top-n slots of approx_cutoff; ours does not).
  for kwargs in ({"where": where}, {"topn": 3}):
    np.testing.assert_allclose(
      ours(scores, labels, **kwargs),
      -rax_fn(scores, labels, **kwargs),
      atol=1e-5,
    )
    np.testing.assert_allclose(
      jax.grad(ours)(scores, labels, **kwargs),
      jax.grad(lambda s: -rax_fn(s, labels, **kwargs))(scores),
      atol=1e-5,
    )


def test_transformed_functions_have_readable_names_and_docs():
  assert t12n.approx_t12n(metrics.ndcg_metric).__name__ == "approx_ndcg_metric"
  assert t12n.bound_t12n(metrics.mrr_metric).__name__ == "bounded_mrr_metric"
  composed = t12n.gumbel_t12n(t12n.approx_t12n(metrics.ndcg_metric))
  assert composed.__name__ == "gumbel_approx_ndcg_metric"
  assert "Normalised DCG" in composed.__doc__
  assert "key" in inspect.signature(composed).parameters
  neural = t12n.neuralsort_t12n(metrics.ndcg_metric)
  assert neural.__name__ == "neuralsort_ndcg_metric"


def test_gumbel_without_key_is_a_clear_error():
  loss = t12n.gumbel_t12n(t12n.approx_t12n(metrics.ndcg_metric))
  with pytest.raises(TypeError, match="needs a PRNG key"):
    loss(jnp.zeros(3), jnp.ones(3))


def test_gumbel_repeats_array_arguments_and_splits_the_key():
  seen = {}

  def fn(scores, labels, *, where=None, key=None):
    seen["key"] = key
    return scores, labels, where

  s, y, w = t12n.gumbel_t12n(fn, samples=5)(
    jnp.zeros(3),
    jnp.ones(3),
    where=jnp.array([True, False, True]),
    key=jax.random.PRNGKey(0),
  )
  assert s.shape == y.shape == w.shape == (5, 3)
  assert seen["key"] is not None


@pytest.fixture(name="rax_gumbel_t12n")
def _rax_gumbel_t12n(monkeypatch):
  """Rax's gumbel_t12n, which reads ``jax.util.wraps`` (gone in jax 0.10)."""
  if not hasattr(jax, "util"):
    jax_util = pytest.importorskip("jax._src.util")
    monkeypatch.setattr(
      jax, "util", types.SimpleNamespace(wraps=jax_util.wraps), raising=False
    )
  return rax.gumbel_t12n


RAX_LOSSES = ["softmax_loss", "listmle_loss", "pairwise_logistic_loss"]
RAX_KEYED_METRICS = ["ndcg_metric"]


@pytest.mark.parametrize("name", RAX_LOSSES + RAX_KEYED_METRICS)
def test_gumbel_draws_the_same_noise_as_rax_for_the_same_key(
  name, rax_gumbel_t12n
):
  scores, labels, where = _lists(21)
  key = jax.random.PRNGKey(42)
  module = losses if name in RAX_LOSSES else metrics
  ours = t12n.gumbel_t12n(getattr(module, name), samples=3)
  theirs = rax_gumbel_t12n(getattr(rax, name), samples=3)
  for kwargs in ({}, {"where": where}):
    np.testing.assert_allclose(
      ours(scores, labels, key=key, **kwargs),
      theirs(scores, labels, key=key, **kwargs),
      rtol=1e-5,
      atol=1e-5,
    )


def test_gumbel_softmax_value_from_rax():
  # Rax 0.4.0 on jax 0.10 gives 3.45703 for this call.
  loss = t12n.gumbel_t12n(losses.softmax_loss)
  value = loss(
    jnp.array([0.0, 1.0, 3.0, 2.0]),
    jnp.array([0.0, 0.0, 1.0, 2.0]),
    key=jax.random.PRNGKey(42),
  )
  np.testing.assert_allclose(value, 3.45703, atol=1e-5)


def test_gumbel_splits_the_key_only_for_functions_that_use_it():
  seen = []
  uses_key = lambda scores, labels, *, key=None: seen.append(key) or 0.0
  no_key = lambda scores, labels: 0.0
  t12n.gumbel_t12n(uses_key)(
    jnp.zeros(2), jnp.zeros(2), key=jax.random.PRNGKey(0)
  )
  t12n.gumbel_t12n(no_key)(
    jnp.zeros(2), jnp.zeros(2), key=jax.random.PRNGKey(0)
  )
  assert len(seen) == 1 and seen[0] is not None
  assert t12n._uses_key(losses.listmle_loss)  # pylint: disable=protected-access
  assert not t12n._uses_key(losses.softmax_loss)  # pylint: disable=protected-access
  assert not t12n._uses_key(  # pylint: disable=protected-access
    functools.partial(losses.softmax_loss, reduce_fn=jnp.sum)
  )


@pytest.mark.parametrize("samples", [2.5, 0, -1, True, "8"])
def test_gumbel_rejects_samples_that_are_not_positive_integers(samples):
  with pytest.raises(ValueError, match=f"samples={samples!r}"):
    t12n.gumbel_t12n(losses.softmax_loss, samples=samples)


def test_gumbel_accepts_numpy_integer_samples():
  loss = t12n.gumbel_t12n(losses.softmax_loss, samples=np.int64(2))
  assert np.isfinite(
    float(loss(jnp.zeros(3), jnp.ones(3), key=jax.random.PRNGKey(0)))
  )


def test_gumbel_smoothing_matches_log_softmax_of_the_plain_samples():
  scores = jnp.array([3.0, -2.0, 5.5, 1.0])
  identity = lambda scores, labels: scores
  key = jax.random.PRNGKey(42)
  plain = t12n.gumbel_t12n(identity)(scores, scores, key=key)
  smooth = t12n.gumbel_t12n(identity, smoothing_factor=1e-20)(
    scores, scores, key=key
  )
  np.testing.assert_allclose(
    jnp.log(jax.nn.softmax(plain) + 1e-20), smooth, rtol=1e-6
  )


def test_segment_t12n_scores_each_segment_as_its_own_list():
  def positives_first(scores, labels, *, where=None, reduce_fn=jnp.sum):
    first = jnp.argmax(jnp.where(where, scores, -jnp.inf), axis=-1)
    hit = jnp.take_along_axis(labels, first[..., None], -1)[..., 0]
    return reduce_fn(jnp.where(jnp.any(where, -1), hit, 0.0))

  fn = t12n.segment_t12n(positives_first)
  scores = jnp.array([3.0, 1.0, 2.0, 0.0])
  labels = jnp.array([0.0, 1.0, 1.0, 0.0])
  # Segment 0 = items 0, 1 (best: item 0, label 0); segment 1 = items 2, 3
  # (best: item 2, label 1).
  assert fn(scores, labels, segments=jnp.array([0, 0, 1, 1])) == 1.0
  assert t12n.segment_t12n(metrics.ndcg_metric) is metrics.ndcg_metric


# ---------------------------------------------------------------------------
# NeuralSort.


def _neural_ndcg_by_hand(scores, labels, temperature, iterations, topn=None):
  """NeuralNDCG (Pobrotyn & Bialobrzeski 2021) for one unmasked list, numpy."""
  s = np.asarray(scores, np.float64)
  n = len(s)
  spread = np.abs(s[:, None] - s[None, :]).sum(-1)
  p = np.zeros((n, n))
  for i in range(1, n + 1):
    logits = ((n + 1 - 2 * i) * s - spread) / temperature
    e = np.exp(logits - logits.max())
    p[i - 1] = e / e.sum()
  for _ in range(iterations):
    p = p / p.sum(0, keepdims=True)
    p = p / p.sum(1, keepdims=True)
  gains = 2.0 ** np.asarray(labels, np.float64) - 1
  discounts = 1 / np.log2(np.arange(1, n + 1) + 1)
  if topn is not None:
    discounts[topn:] = 0
  dcg = np.sum(discounts * (p @ gains))
  ideal = np.sum(discounts * np.sort(gains)[::-1])
  return dcg / ideal


@pytest.mark.parametrize("topn", [None, 2])
@pytest.mark.parametrize("temperature", [1.0, 0.3])
def test_neural_ndcg_matches_the_paper_formula(temperature, topn):
  scores = jnp.array([0.2, -1.0, 1.5, 0.7, 0.1])
  labels = jnp.array([1.0, 0.0, 2.0, 0.0, 1.0])
  loss = t12n.neuralsort_t12n(metrics.ndcg_metric, temperature=temperature)
  expected = _neural_ndcg_by_hand(scores, labels, temperature, 50, topn)
  np.testing.assert_allclose(
    loss(scores, labels, topn=topn), -expected, rtol=1e-4
  )


def test_neural_ndcg_with_mask_equals_removing_the_items():
  scores = jnp.array([0.2, jnp.nan, 1.5, 0.7, jnp.inf])
  labels = jnp.array([1.0, 3.0, 2.0, 0.0, 3.0])
  where = jnp.array([True, False, True, True, False])
  loss = t12n.neuralsort_t12n(metrics.ndcg_metric)
  np.testing.assert_allclose(
    loss(scores, labels, where=where),
    loss(scores[np.array(where)], labels[np.array(where)]),
    rtol=1e-5,
  )


def test_neuralsort_at_low_temperature_recovers_the_exact_metric():
  scores, labels, _ = _lists(4, n=6)
  for name in ("ndcg_metric", "mrr_metric", "precision_metric"):
    loss = t12n.neuralsort_t12n(
      functools.partial(getattr(metrics, name), topn=3), temperature=1e-3
    )
    exact = getattr(metrics, name)(scores, labels, topn=3)
    np.testing.assert_allclose(
      loss(scores, labels), -exact, atol=1e-3, err_msg=name
    )


# ---------------------------------------------------------------------------
# Robustness: finite values and gradients.


def _transforms():
  return {
    "approx": t12n.approx_t12n,
    "bound": t12n.bound_t12n,
    "neuralsort": t12n.neuralsort_t12n,
    "gumbel_approx": lambda f: t12n.gumbel_t12n(t12n.approx_t12n(f)),
    "gumbel_neuralsort": lambda f: t12n.gumbel_t12n(t12n.neuralsort_t12n(f)),
  }


@pytest.mark.parametrize("dtype", [jnp.float32, jnp.bfloat16])
@pytest.mark.parametrize("transform", list(_transforms()))
def test_finite_values_and_gradients_on_edge_lists(transform, dtype):
  make = _transforms()[transform]
  inf, nan = jnp.inf, jnp.nan
  scores = jnp.array(
    [
      [1.0, 0.5, -0.3, 2.0],  # ordinary
      [inf, -inf, nan, 0.0],  # all masked, garbage scores
      [0.1, 0.2, inf, nan],  # no positive; inf/NaN on masked items
      [0.7, -inf, nan, inf],  # single valid item
    ],
    dtype,
  )
  labels = jnp.array(
    [
      [0.0, 2.0, 1.0, 0.0],
      [1.0, 1.0, 1.0, 1.0],
      [0.0, 0.0, 3.0, 3.0],
      [1.0, 4.0, 4.0, 4.0],
    ],
    dtype,
  )
  where = jnp.array(
    [
      [True] * 4,
      [False] * 4,
      [True, True, False, False],
      [True, False, False, False],
    ]
  )
  kwargs = {"where": where}
  if transform.startswith("gumbel"):
    kwargs["key"] = jax.random.PRNGKey(0)
  cases = [
    (name, topn)
    for name in ("ndcg_metric", "mrr_metric", "ap_metric", "err_metric")
    for topn in (None, 2)
  ]

  @jax.jit
  def values_and_grads(scores):  # One compile for every case.
    return [
      jax.value_and_grad(
        lambda s, name=name, topn=topn: make(getattr(metrics, name))(
          s, labels, topn=topn, **kwargs
        ).astype(jnp.float32)
      )(scores)
      for name, topn in cases
    ]

  for case, (value, grad) in zip(cases, values_and_grads(scores)):
    assert np.isfinite(float(value)), case
    assert np.all(np.isfinite(np.asarray(grad, np.float32))), case


@pytest.mark.parametrize("transform", list(_transforms()))
def test_empty_list_axis_gives_zero_value_and_gradient(transform):
  make = _transforms()[transform]
  kwargs = {"key": jax.random.PRNGKey(0)} if "gumbel" in transform else {}
  names = ["ndcg_metric"] if "gumbel" in transform else SMOOTH
  for name in names:
    loss = make(getattr(metrics, name))
    for shape in ((2, 0), (0,)):
      empty = jnp.zeros(shape)
      value, grad = jax.jit(
        jax.value_and_grad(lambda s, y: loss(s, y, topn=2, **kwargs))
      )(empty, empty)  # pylint: disable=cell-var-from-loop
      assert float(value) == 0.0, (name, shape)
      assert grad.shape == shape
  gumbel = t12n.gumbel_t12n(losses.softmax_loss)
  assert (
    float(
      gumbel(jnp.zeros((2, 0)), jnp.zeros((2, 0)), key=jax.random.PRNGKey(0))
    )
    == 0.0
  )


def test_compositions_work_with_jit_grad_and_vmap():
  scores, labels, where = _lists(9)
  key = jax.random.PRNGKey(3)
  for loss in (
    t12n.gumbel_t12n(t12n.approx_t12n(metrics.ndcg_metric)),
    t12n.gumbel_t12n(t12n.neuralsort_t12n(metrics.ndcg_metric)),
  ):
    value = jax.jit(loss)(scores, labels, where=where, key=key)
    grad = jax.jit(jax.grad(loss))(scores, labels, where=where, key=key)
    per_list = jax.vmap(lambda s, y, w, k: loss(s, y, where=w, key=k))(
      scores, labels, where, jax.random.split(key, 3)
    )
    assert np.isfinite(float(value))
    assert np.all(np.isfinite(grad)) and np.any(grad != 0)
    assert per_list.shape == (3,)


def test_doctests_pass():
  result = doctest.testmod(
    t12n, optionflags=doctest.NORMALIZE_WHITESPACE | doctest.ELLIPSIS
  )
  assert result.attempted > 0
  assert result.failed == 0
