"""Tests for t5rank/ranking/metrics.py against Rax, trec_eval and by hand."""

import doctest
import functools
import shutil

import hypothesis
from hypothesis import strategies as st
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from t5rank.ranking import metrics

rax = pytest.importorskip("rax")

RANKED = [
  "mrr_metric",
  "dcg_metric",
  "ndcg_metric",
  "precision_metric",
  "recall_metric",
  "ap_metric",
]
ALL = RANKED + ["opa_metric", "err_metric"]
IN_RAX = RANKED + ["opa_metric"]


def _lists(seed, batch=4, n=12, ties=True):
  rng = np.random.default_rng(seed)
  if ties:
    scores = rng.integers(-3, 4, (batch, n)).astype(np.float32)
  else:
    scores = rng.normal(size=(batch, n)).astype(np.float32)
  scores[rng.random((batch, n)) < 0.1] = -np.inf
  labels = rng.integers(0, 3, (batch, n)).astype(np.float32)
  labels[0] = 0.0  # one list without any relevant item.
  where = rng.random((batch, n)) > 0.25
  where[1] = False  # one list with no valid item.
  weights = rng.random((batch, n)).astype(np.float32)
  segments = rng.integers(0, 3, (batch, n))
  return tuple(
    jnp.asarray(a) for a in (scores, labels, where, weights, segments)
  )


@functools.cache
def _jit(fn, static_items):
  return jax.jit(functools.partial(fn, **dict(static_items)))


def _call(fn, scores, labels, static, **arrays):
  return _jit(fn, tuple(sorted(static.items(), key=lambda kv: kv[0])))(
    scores, labels, **arrays
  )


RAX_OPTIONS = [
  ({}, {}),
  ({}, {"where": True}),
  ({"topn": 3}, {"where": True}),
  ({"topn": 1}, {}),
  ({"topn": 0}, {"where": True}),
  ({"topn": 50}, {"where": True}),
  ({}, {"where": True, "key": True}),
  ({"topn": 2}, {"where": True, "key": True}),
  ({}, {"where": True, "segments": True}),
  ({"topn": 2}, {"where": True, "segments": True}),
]


@pytest.mark.parametrize("options", RAX_OPTIONS, ids=str)
@pytest.mark.parametrize("name", RANKED)
def test_metric_matches_rax(name, options, reduce_fn=None):
  static, wanted = options
  scores, labels, where, _, segments = _lists(hash(name) % 100)
  arrays = {}
  if "where" in wanted:
    arrays["where"] = where
  if "segments" in wanted:
    arrays["segments"] = segments
  if "key" in wanted:
    arrays["key"] = jax.random.PRNGKey(7)
  ours = _call(
    getattr(metrics, name),
    scores,
    labels,
    {**static, "reduce_fn": reduce_fn},
    **arrays,
  )
  theirs = getattr(rax, name)(
    scores, labels, reduce_fn=reduce_fn, **static, **arrays
  )
  np.testing.assert_allclose(ours, theirs, atol=1e-5)


@pytest.mark.parametrize("reduce_fn", [jnp.mean, jnp.sum])
@pytest.mark.parametrize("name", RANKED)
def test_reductions_match_rax(name, reduce_fn):
  scores, labels, where, _, segments = _lists(4)
  for extra in ({"where": where}, {"where": where, "segments": segments}):
    np.testing.assert_allclose(
      getattr(metrics, name)(scores, labels, reduce_fn=reduce_fn, **extra),
      getattr(rax, name)(scores, labels, reduce_fn=reduce_fn, **extra),
      atol=1e-5,
    )


@pytest.mark.parametrize("name", ["dcg_metric", "ndcg_metric"])
@pytest.mark.parametrize("topn", [None, 4])
def test_weighted_gain_metric_matches_rax(name, topn):
  scores, labels, where, weights, segments = _lists(5)
  for extra in ({}, {"segments": segments}):
    ours = getattr(metrics, name)(
      scores,
      labels,
      where=where,
      weights=weights,
      topn=topn,
      reduce_fn=None,
      **extra,
    )
    theirs = getattr(rax, name)(
      scores,
      labels,
      where=where,
      weights=weights,
      topn=topn,
      reduce_fn=None,
      **extra,
    )
    np.testing.assert_allclose(ours, theirs, atol=1e-5)


@pytest.mark.parametrize("reduce_fn", [jnp.mean, None])
def test_opa_matches_rax(reduce_fn):
  scores, labels, where, _, _ = _lists(3)
  for extra in ({}, {"where": where}):
    np.testing.assert_allclose(
      metrics.opa_metric(scores, labels, reduce_fn=reduce_fn, **extra),
      rax.opa_metric(scores, labels, reduce_fn=reduce_fn, **extra),
      atol=1e-5,
    )


@pytest.mark.parametrize("n", [1, 2, 200, 1000])
@pytest.mark.parametrize("name", RANKED)
def test_metric_matches_rax_across_list_sizes(name, n):
  scores, labels, where, _, _ = _lists(n, batch=2, n=n, ties=False)
  for topn in (None, 10):
    ours = _call(
      getattr(metrics, name),
      scores,
      labels,
      {"topn": topn, "reduce_fn": None},
      where=where,
    )
    theirs = getattr(rax, name)(
      scores, labels, where=where, topn=topn, reduce_fn=None
    )
    np.testing.assert_allclose(ours, theirs, atol=1e-5)


# ---------------------------------------------------------------------------
# trec_eval (pytrec_eval) on untied scores.


def _trec_lists(seed, binary):
  rng = np.random.default_rng(seed)
  batch, n = 12, 150
  scores = rng.permutation(batch * n).reshape(batch, n).astype(np.float32)
  scores = scores / 7.0 - 100.0  # distinct values, no ties.
  if binary:
    labels = (rng.random((batch, n)) < 0.05).astype(np.float32)
  else:
    labels = rng.choice(4, (batch, n), p=[0.85, 0.07, 0.05, 0.03])
    labels = labels.astype(np.float32)
  labels[0] = 0.0
  where = np.ones((batch, n), bool)
  for b in range(batch):
    where[b, rng.integers(20, n + 1) :] = False
  return scores, labels, where


def _trec_eval(scores, labels, where, measures):
  pytrec_eval = pytest.importorskip("pytrec_eval")
  qrels, run = {}, {}
  for b in range(scores.shape[0]):
    q = f"q{b}"
    qrels[q] = {
      f"d{i}": int(labels[b, i]) for i in range(scores.shape[1]) if where[b, i]
    }
    run[q] = {
      f"d{i}": float(scores[b, i])
      for i in range(scores.shape[1])
      if where[b, i]
    }
  evaluator = pytrec_eval.RelevanceEvaluator(qrels, set(measures))
  out = evaluator.evaluate(run)
  return {
    m: np.array([out[f"q{b}"][m] for b in range(scores.shape[0])])
    for m in measures
  }


@pytest.mark.parametrize("binary", [True, False])
def test_metrics_match_trec_eval_on_untied_scores(binary):
  scores, labels, where = _trec_lists(int(binary), binary)
  trec = _trec_eval(
    scores,
    labels,
    where,
    ["ndcg_cut_10", "recip_rank", "P_10", "recall_100", "map", "ndcg"],
  )
  s, y, w = jnp.asarray(scores), jnp.asarray(labels), jnp.asarray(where)
  linear = functools.partial(
    metrics.ndcg_metric, gain_fn=metrics.linear_gain_fn, reduce_fn=None
  )
  np.testing.assert_allclose(
    linear(s, y, where=w, topn=10), trec["ndcg_cut_10"], atol=1e-6
  )
  np.testing.assert_allclose(linear(s, y, where=w), trec["ndcg"], atol=1e-6)
  np.testing.assert_allclose(
    metrics.mrr_metric(s, y, where=w, reduce_fn=None),
    trec["recip_rank"],
    atol=1e-6,
  )
  np.testing.assert_allclose(
    metrics.precision_metric(s, y, where=w, topn=10, reduce_fn=None),
    trec["P_10"],
    atol=1e-6,
  )
  np.testing.assert_allclose(
    metrics.recall_metric(s, y, where=w, topn=100, reduce_fn=None),
    trec["recall_100"],
    atol=1e-6,
  )
  np.testing.assert_allclose(
    metrics.ap_metric(s, y, where=w, reduce_fn=None), trec["map"], atol=1e-6
  )


def test_err_matches_gdeval_on_untied_scores():
  if shutil.which("perl") is None:
    pytest.skip("gdeval needs perl")
  ir_measures = pytest.importorskip("ir_measures")
  scores, _, where = _trec_lists(3, binary=True)
  rng = np.random.default_rng(3)
  labels = rng.choice(5, scores.shape, p=[0.7, 0.1, 0.1, 0.05, 0.05])
  qrels = [
    ir_measures.Qrel(str(b + 1), f"d{i}", int(labels[b, i]))
    for b in range(scores.shape[0])
    for i in range(scores.shape[1])
    if where[b, i]
  ]
  run = [
    ir_measures.ScoredDoc(str(b + 1), f"d{i}", float(scores[b, i]))
    for b in range(scores.shape[0])
    for i in range(scores.shape[1])
    if where[b, i]
  ]
  try:
    results = list(ir_measures.iter_calc([ir_measures.ERR @ 20], qrels, run))
  except Exception as e:  # pylint: disable=broad-except
    pytest.skip(f"gdeval unavailable: {e}")
  expected = {int(r.query_id) - 1: r.value for r in results}
  ours = metrics.err_metric(
    jnp.asarray(scores),
    jnp.asarray(labels, jnp.float32),
    where=jnp.asarray(where),
    topn=20,
    reduce_fn=None,
  )
  for b, value in expected.items():
    assert abs(float(ours[b]) - value) < 1e-5, (b, float(ours[b]), value)


# ---------------------------------------------------------------------------
# Pinned semantics, by hand.


def test_default_gain_is_two_to_the_label_minus_one():
  np.testing.assert_allclose(
    metrics.default_gain_fn(jnp.array([0.0, 1.0, 3.0])), [0.0, 1.0, 7.0]
  )
  # One item at rank 1: DCG is its gain.
  assert metrics.dcg_metric(jnp.array([1.0]), jnp.array([3.0])) == 7.0


def test_discount_is_one_over_log2_of_rank_plus_one_and_ranks_start_at_one():
  scores = jnp.array([3.0, 2.0, 1.0])
  labels = jnp.array([0.0, 0.0, 1.0])  # relevant item at rank 3.
  np.testing.assert_allclose(metrics.dcg_metric(scores, labels), 0.5)
  np.testing.assert_allclose(metrics.mrr_metric(scores, labels), 1 / 3)


def test_ties_keep_list_order_without_a_key():
  scores = jnp.zeros(3)
  np.testing.assert_allclose(
    metrics.mrr_metric(scores, jnp.array([0.0, 1.0, 0.0])), 0.5
  )
  np.testing.assert_allclose(
    metrics.mrr_metric(scores, jnp.array([1.0, 0.0, 0.0])), 1.0
  )


def test_a_key_breaks_ties_at_random():
  scores = jnp.zeros(20)
  labels = jnp.zeros(20).at[10].set(1.0)
  values = {
    float(metrics.mrr_metric(scores, labels, key=jax.random.PRNGKey(k)))
    for k in range(8)
  }
  assert len(values) > 1


def test_list_without_relevant_item_scores_zero_and_counts():
  scores = jnp.array([[1.0, 2.0], [1.0, 2.0]])
  labels = jnp.array([[0.0, 1.0], [0.0, 0.0]])
  for name in RANKED + ["err_metric"]:
    fn = getattr(metrics, name)
    per_list = fn(scores, labels, reduce_fn=None)
    assert per_list[1] == 0.0, name
    np.testing.assert_allclose(
      fn(scores, labels), per_list[0] / 2, err_msg=name
    )


def test_exclude_lists_without_relevant_leaves_them_out_of_the_mean():
  scores = jnp.array([[1.0, 2.0], [1.0, 2.0]])
  labels = jnp.array([[0.0, 1.0], [0.0, 0.0]])
  for name in RANKED + ["err_metric"]:
    fn = getattr(metrics, name)
    np.testing.assert_allclose(
      fn(scores, labels, exclude_lists_without_relevant=True),
      fn(scores, labels, reduce_fn=None)[0],
      err_msg=name,
    )
    assert (
      fn(labels[1:], labels[1:], exclude_lists_without_relevant=True) == 0.0
    )


@pytest.mark.parametrize("name", ALL)
def test_all_masked_list_is_left_out_of_the_mean_and_never_nan(name):
  fn = getattr(metrics, name)
  scores = jnp.array([[2.0, 1.0, 0.0], [jnp.nan, jnp.inf, -jnp.inf]])
  labels = jnp.array([[1.0, 0.0, 2.0], [1.0, 1.0, 1.0]])
  where = jnp.array([[True, True, True], [False, False, False]])
  alone = fn(scores[:1], labels[:1], where=where[:1])
  both = fn(scores, labels, where=where)
  np.testing.assert_allclose(both, alone, atol=1e-6)
  nothing = fn(scores[1:], labels[1:], where=where[1:])
  assert nothing == 0.0
  assert np.all(fn(scores, labels, where=where, reduce_fn=None)[1] == 0.0)


@pytest.mark.parametrize("name", ALL)
def test_empty_list_axis_gives_zero_and_never_raises(name):
  fn = getattr(metrics, name)
  extra = {} if name == "opa_metric" else {"topn": 2}
  for shape in ((2, 0), (0,)):
    empty = jnp.zeros(shape)
    assert float(fn(empty, empty)) == 0.0
    assert float(fn(empty, empty, where=jnp.zeros(shape, bool), **extra)) == 0
    assert fn(empty, empty, reduce_fn=None).shape == shape[:-1]
    assert jax.grad(fn)(empty, empty).shape == shape


def test_err_by_hand():
  # Grades 4, 0, 2 at ranks 1..3: R = 15/16, 0, 3/16.
  expected = 15 / 16 + (1 / 3) * (3 / 16) * (1 / 16)
  np.testing.assert_allclose(
    metrics.err_metric(jnp.array([3.0, 2.0, 1.0]), jnp.array([4.0, 0.0, 2.0])),
    expected,
    rtol=1e-6,
  )
  # With max_label=None the list's own largest grade (2) normalises.
  expected = 3 / 4 + (1 / 2) * (1 / 4) * (1 / 4)
  np.testing.assert_allclose(
    metrics.err_metric(
      jnp.array([3.0, 2.0, 1.0]), jnp.array([2.0, 1.0, 0.0]), max_label=None
    ),
    expected,
    rtol=1e-6,
  )


def test_bad_shapes_and_topn_raise_clear_errors():
  with pytest.raises(ValueError, match=r"labels.shape=\(2,\)"):
    metrics.ndcg_metric(jnp.zeros(3), jnp.zeros(2))
  with pytest.raises(ValueError, match="topn=-2"):
    metrics.mrr_metric(jnp.zeros(3), jnp.zeros(3), topn=-2)


def _ndcg_in_float64(scores, labels):
  order = np.argsort(-np.asarray(scores), kind="stable")
  gains = 2.0 ** np.asarray(labels, np.float64) - 1.0
  discounts = 1.0 / np.log2(np.arange(2, len(gains) + 2))
  ideal = np.sum(np.sort(gains)[::-1] * discounts)
  return np.sum(gains[order] * discounts) / ideal


def test_ndcg_is_finite_and_exact_for_labels_beyond_float32_gains():
  rng = np.random.default_rng(7)
  scores = rng.normal(size=(20, 6)).astype(np.float32)
  labels = rng.integers(0, 250, size=(20, 6)).astype(np.float32)
  labels[:5] = rng.integers(0, 4, size=(5, 6))  # small labels unchanged.
  # Compiled whole: run op by op, the sorting network alone compiles
  # hundreds of small programs.
  ndcg = jax.jit(functools.partial(metrics.ndcg_metric, reduce_fn=None))
  ours = ndcg(scores, labels)
  expected = [_ndcg_in_float64(s, y) for s, y in zip(scores, labels)]
  np.testing.assert_allclose(ours, expected, rtol=1e-5)
  rax_ndcg = jax.jit(functools.partial(rax.ndcg_metric, reduce_fn=None))
  np.testing.assert_array_equal(ours[:5], rax_ndcg(scores[:5], labels[:5]))
  segmented = ndcg(scores[5], labels[5], segments=jnp.array([0, 0, 0, 1, 1, 1]))
  np.testing.assert_allclose(
    np.asarray(segmented)[[0, 3]],
    [
      _ndcg_in_float64(scores[5, :3], labels[5, :3]),
      _ndcg_in_float64(scores[5, 3:], labels[5, 3:]),
    ],
    rtol=1e-5,
  )
  err = jax.jit(functools.partial(metrics.err_metric, max_label=None))
  assert np.isfinite(float(err(scores, labels)))


def test_nan_label_on_a_valid_item_gives_nan_in_every_metric():
  scores = jnp.array([[3.0, 1.0, 2.0, 0.0], [1.0, 2.0, 3.0, 4.0]])
  labels = jnp.array([[1.0, 0.0, jnp.nan, 1.0], [2.0, 1.0, 0.0, 0.0]])
  masked = jnp.array([[True, True, False, True], [True] * 4])
  for name in ALL:
    fn = getattr(metrics, name)
    per_list = fn(scores, labels, reduce_fn=None)
    assert np.isnan(per_list[0]) and np.isfinite(per_list[1]), name
    assert np.isnan(fn(scores, labels)), name
    assert np.isnan(fn(scores, labels, exclude_lists_without_relevant=True))
    assert np.all(
      np.isfinite(fn(scores, labels, where=masked, reduce_fn=None))
    ), name
    if name != "opa_metric":
      assert np.isnan(fn(scores, labels, topn=1, reduce_fn=None)[0]), name


@pytest.mark.parametrize("name", ALL)
def test_wrong_shape_where_weights_segments_name_the_argument(name):
  fn = getattr(metrics, name)
  scores = jnp.zeros((2, 4))
  for arg in ("where", "segments"):
    with pytest.raises(
      ValueError,
      match=rf"{arg} must broadcast to scores"
      rf".shape=\(2, 4\), got {arg}.shape=\(3,\)",
    ):
      fn(scores, scores, **{arg: jnp.ones(3, int)})
  if name in ("dcg_metric", "ndcg_metric", "err_metric"):
    with pytest.raises(ValueError, match=r"weights.shape=\(2, 3\)"):
      fn(scores, scores, weights=jnp.ones((2, 3)))


@pytest.mark.parametrize("name", RANKED + ["err_metric"])
def test_topn_accepts_any_integer_type_and_rejects_bools_and_floats(name):
  scores, labels, where, _, _ = _lists(30)
  fn = getattr(metrics, name)
  expected = fn(scores, labels, where=where, topn=2)
  for topn in (np.int64(2), np.int32(2), np.array(2), jnp.array(2)):
    assert fn(scores, labels, where=where, topn=topn) == expected
  for topn in (True, np.bool_(True), 2.0, np.float32(2), jnp.array(2.0), -1):
    with pytest.raises(ValueError, match="topn must be a non-negative integer"):
      fn(scores, labels, topn=topn)


# ---------------------------------------------------------------------------
# Properties.

_SIZE = 8
_lists_strategy = st.integers(1, _SIZE).flatmap(
  lambda n: st.tuples(
    st.lists(st.floats(-10, 10, width=32), min_size=n, max_size=n, unique=True),
    st.lists(st.integers(0, 3), min_size=n, max_size=n),
    st.permutations(range(n)),
  )
)


def _padded(values, fill):
  out = np.full(_SIZE, fill, np.float32)
  out[: len(values)] = values
  return jnp.asarray(out)


@functools.cache
def _jitted(name, topn):
  """One jit per metric and topn: a compile per list size, not per op."""
  if topn is None:
    return jax.jit(getattr(metrics, name))
  return jax.jit(functools.partial(getattr(metrics, name), topn=topn))


@hypothesis.settings(max_examples=30, deadline=None)
@hypothesis.given(
  _lists_strategy, st.sampled_from(ALL), st.sampled_from([None, 1, 3])
)
def test_permutation_invariance_and_masking_equals_removal(case, name, topn):
  scores, labels, perm = case
  if name == "opa_metric":
    topn = None
  fn = _jitted(name, topn)
  n = len(scores)
  where = jnp.arange(_SIZE) < n
  s = _padded(scores, np.nan)  # masked slots hold NaN scores.
  y = _padded(labels, 5.0)  # and labels that would count if they leaked.
  value = fn(s, y, where=where)
  permuted = fn(
    _padded(np.asarray(scores)[list(perm)], np.inf),
    _padded(np.asarray(labels)[list(perm)], 1.0),
    where=where,
  )
  np.testing.assert_allclose(value, permuted, atol=1e-6)
  removed = fn(
    jnp.asarray(scores, jnp.float32), jnp.asarray(labels, jnp.float32)
  )
  np.testing.assert_allclose(value, removed, atol=1e-6)
  assert np.isfinite(value)


_linear_gain_dcg = jax.jit(
  functools.partial(metrics.dcg_metric, gain_fn=metrics.linear_gain_fn)
)
_linear_gain_ndcg = jax.jit(
  functools.partial(metrics.ndcg_metric, gain_fn=metrics.linear_gain_fn)
)


@hypothesis.settings(max_examples=20, deadline=None)
@hypothesis.given(_lists_strategy, st.sampled_from([2.0, 3.0]))
def test_label_scaling(case, factor):
  scores, labels, _ = case
  s = jnp.asarray(scores, jnp.float32)
  y = jnp.asarray(labels, jnp.float32)
  # Binary metrics only look at label >= 1, which scaling by >= 1 keeps.
  for name in (
    "mrr_metric",
    "precision_metric",
    "recall_metric",
    "ap_metric",
    "opa_metric",
  ):
    fn = _jitted(name, None)
    np.testing.assert_allclose(fn(s, y), fn(s, y * factor), atol=1e-6)
  linear, nlinear = _linear_gain_dcg, _linear_gain_ndcg
  np.testing.assert_allclose(
    linear(s, y * factor), factor * linear(s, y), rtol=1e-5, atol=1e-6
  )
  np.testing.assert_allclose(nlinear(s, y * factor), nlinear(s, y), atol=1e-6)


@pytest.mark.parametrize("dtype", [jnp.float32, jnp.bfloat16])
@pytest.mark.parametrize("name", ALL)
def test_single_item_and_bfloat16_give_finite_values(name, dtype):
  fn = getattr(metrics, name)
  one = fn(jnp.array([0.3], dtype), jnp.array([1.0], dtype))
  assert np.isfinite(float(one))
  scores, labels, where, _, _ = _lists(11)
  value = fn(scores.astype(dtype), labels.astype(dtype), where=where)
  assert np.isfinite(float(value))
  np.testing.assert_allclose(
    float(value),
    float(fn(scores.astype(dtype).astype(jnp.float32), labels, where=where)),
    atol=1e-6,
  )


def test_metrics_compose_with_vmap_and_jit():
  scores, labels, where, _, _ = _lists(2)
  for name in ALL:
    fn = getattr(metrics, name)
    np.testing.assert_allclose(
      jax.vmap(jax.jit(fn))(scores, labels, where=where),
      fn(scores, labels, where=where, reduce_fn=None),
      atol=1e-6,
    )


def test_doctests_pass():
  result = doctest.testmod(
    metrics, optionflags=doctest.NORMALIZE_WHITESPACE | doctest.ELLIPSIS
  )
  assert result.attempted > 0
  assert result.failed == 0
