r"""Ranking metrics in JAX: MRR, DCG, NDCG, precision, recall, AP, OPA, ERR.

A ranking metric scores how well the order induced by ``scores`` matches the
relevance ``labels``. All metrics take ``[..., list_size]`` arrays, follow
Rax 0.4.0's names, arguments and defaults, and reduce over the leading
(list) dimensions with ``reduce_fn`` (``jnp.mean`` by default; ``None``
returns one value per list).

Semantics shared by every metric (pinned, and tested by name):

* Ranks start at 1; the gain is ``2**y - 1`` and the discount
  ``1 / log2(rank + 1)`` unless ``gain_fn`` / ``discount_fn`` say otherwise
  (``gain_fn=lambda y: y`` gives trec_eval's linear gain).
* Ties in ``scores`` keep list order (the earlier item ranks first) unless a
  PRNG ``key`` is given, which breaks ties at random (same draw as Rax).
* Items with score ``-inf`` (and, unlike Rax, ``NaN``) are not retrieved:
  they rank last among valid items and never count as retrieved.
* Masked items (``where`` False) never count, whatever their score or label.
* A ``NaN`` label on a valid item is a data error and shows: that list's
  value (its segment's, with ``segments``) is ``NaN`` in every metric,
  whatever ``topn``, and the list always counts in the mean (so the mean is
  ``NaN`` too). Mask such items to leave them out.
* Labels never overflow NDCG: with the default gain, lists whose largest
  label is 64 or more have their gains scaled by an exact power of two
  (NDCG is unchanged by it), so labels up to float32's range give finite
  values. :func:`dcg_metric` itself is not normalised and becomes ``inf``
  once ``2**y`` exceeds float32 (``y >= 128``).
* ``topn`` is a non-negative integer of any integer type (``int``, NumPy
  integers, 0-d integer arrays); bools and floats are errors. ``where``,
  ``weights`` and ``segments`` must broadcast to ``scores.shape``; otherwise
  the error names the argument and both shapes.
* An empty list axis (``[..., 0]``) gives 0.
* A list with no relevant item scores 0 and counts in the mean (Rax and the
  official MS-MARCO script do this); ``exclude_lists_without_relevant=True``
  leaves such lists out of the mean instead. A list with no valid item is
  always left out of the mean and never yields ``NaN``.

Binary metrics (MRR, precision, recall, AP) call an item relevant when
``label >= 1``.

With the default rank and cutoff functions every metric ranks each list once
(a sorting network, or ``jax.lax.top_k`` when ``topn`` is set) and never
builds an ``[n, n]`` matrix, except OPA which is a pairwise metric. Passing
another ``rank_fn`` / ``cutoff_fn`` (as :func:`~t5rank.ranking.t12n.approx_t12n`
does) uses the generic path with Rax's formulas.

Standalone use:

>>> import jax
>>> import jax.numpy as jnp
>>> scores = jnp.array([2., 1., 3.])
>>> labels = jnp.array([2., 0., 1.])
>>> print(f"{ndcg_metric(scores, labels):.5f}")
0.79671

Batched use with a mask of valid items:

>>> scores = jnp.array([[2., 1., 3.], [1., 0.5, 1.5]])
>>> labels = jnp.array([[2., 0., 1.], [0., 0., 1.]])
>>> where = jnp.array([[True, True, False], [True, True, True]])
>>> print(f"{ndcg_metric(scores, labels, where=where):.5f}")
1.00000
>>> print(mrr_metric(scores, labels, where=where, reduce_fn=None))
[1. 1.]
"""

from collections.abc import Callable

from jax import lax
import jax.numpy as jnp

from t5rank.ranking import _segments
from t5rank.ranking import _sorting
from t5rank.ranking import _utils
from t5rank.ranking import types

Array = types.Array
CutoffFn = types.CutoffFn
RankFn = types.RankFn
ReduceFn = types.ReduceFn


def default_gain_fn(label: Array) -> Array:
  r"""Default gain :math:`2^y - 1`.

  >>> print(default_gain_fn(jnp.array([0., 1., 2.])))
  [0. 1. 3.]
  """
  return jnp.power(2.0, label) - 1.0


def default_discount_fn(rank: Array) -> Array:
  r"""Default discount :math:`1 / \log_2(r + 1)` for 1-based rank ``r``.

  >>> print(default_discount_fn(jnp.array([1, 3])))
  [1.  0.5]
  """
  return 1.0 / jnp.log2(rank + 1)


def linear_gain_fn(label: Array) -> Array:
  """Linear gain ``y`` (trec_eval's ``ndcg`` gain).

  >>> print(linear_gain_fn(jnp.array([0., 2.])))
  [0. 2.]
  """
  return jnp.asarray(label)


def reciprocal_rank_discount_fn(rank: Array) -> Array:
  """Discount ``1 / r`` (used by ERR).

  >>> print(reciprocal_rank_discount_fn(jnp.array([1, 4])))
  [1.   0.25]
  """
  return 1.0 / jnp.asarray(rank)


# ---------------------------------------------------------------------------
# Shared plumbing.


def _check_inputs(name, scores, labels, where, weights=None, segments=None):
  scores = jnp.asarray(scores)
  labels = jnp.asarray(labels)
  if scores.shape != labels.shape:
    raise ValueError(
      f"{name}: scores.shape={scores.shape} must equal "
      f"labels.shape={labels.shape}."
    )
  if scores.ndim == 0:
    raise ValueError(f"{name}: scores must have a list axis, got a scalar.")
  if where is not None:
    where = _utils.broadcast_arg(name, "where", where, scores.shape).astype(
      bool
    )
  if weights is not None:
    weights = _utils.broadcast_arg(name, "weights", weights, scores.shape)
  if segments is not None:
    segments = _utils.broadcast_arg(name, "segments", segments, scores.shape)
  return scores, labels, where, weights, segments


def _can_sort(rank_fn, cutoff_fn, segments):
  """Whether ranks are the exact default ones, without segments.

  Then a metric sorts each list once (or takes its top n) instead of calling
  ``rank_fn`` and ``cutoff_fn``.
  """
  return (
    rank_fn is _sorting.ranks
    and cutoff_fn is _utils.cutoff
    and segments is None
  )


def _retrieved(scores, where):
  """Valid items with a real score (not -inf, not NaN)."""
  retrieved = scores > -jnp.inf
  if where is not None:
    retrieved = retrieved & where
  return retrieved


def _reduce_over_lists(
  name,
  values,
  *,
  where,
  segments,
  has_relevant,
  exclude_lists_without_relevant,
  reduce_fn,
  labels=None,
  list_where=None,
):
  """Masks empty lists (and optionally lists without relevant items), reduces.

  ``values`` is per list (``[...]``) or, with segments, per item
  (``[..., n]``, the segment's value on each of its items). A list (segment)
  with a ``NaN`` label on a valid item gets ``NaN`` and always counts.
  ``list_where``, the lists with a valid item, is derived from ``where``
  unless given (then without ``labels``).
  """
  del name
  if labels is not None and segments is None and where is not None:
    # One reduction finds both the lists with a valid item and those with a
    # NaN label on one (a valid item counts 1, a valid NaN label 2).
    status = jnp.max(
      jnp.where(where, jnp.where(jnp.isnan(labels), 2.0, 1.0), 0.0),
      axis=-1,
      initial=0.0,
    )
    list_where, nan_label = status > 0.5, status > 1.5
  elif labels is not None:
    nan_label = _any_relevant(jnp.isnan(labels), where, segments)
  if labels is not None:
    values = jnp.where(nan_label, jnp.nan, values)
    has_relevant = has_relevant | nan_label
  if segments is not None:
    list_where = _segments.first_item_segment_mask(segments, where=where)
  elif where is not None and list_where is None:
    list_where = _utils.any_valid(where)
  if exclude_lists_without_relevant:
    list_where = (
      has_relevant if list_where is None else list_where & has_relevant
    )
  values = (
    values.astype(jnp.float32)
    if values.dtype in (jnp.bfloat16, jnp.float16)
    else values
  )
  return _utils.safe_reduce(values, where=list_where, reduce_fn=reduce_fn)


def _any_relevant(relevant, where, segments):
  if where is not None:
    relevant = relevant & where
  if segments is None:
    return _utils.any_valid(relevant)
  return _segments.segment_sum(relevant.astype(jnp.int32), segments) > 0


def _take(a, order):
  return jnp.take_along_axis(a, order, axis=-1)


def _generic_retrieved(scores, ranks, where, segments, topn, cutoff_fn):
  """Rax-style retrieved indicator from (possibly approximate) ranks."""
  retrieved = (scores > -jnp.inf).astype(jnp.float32)
  if where is not None:
    retrieved = retrieved * where.astype(jnp.float32)
  # Unlike Rax, `where` is passed so masked items never take top-n slots.
  return retrieved * cutoff_fn(-ranks, n=topn, where=where, segments=segments)


def _masked_sum(a, where, segments):
  if segments is not None:
    return _segments.segment_sum(a, segments, where=where)
  if where is not None:
    a = jnp.where(where, a, jnp.zeros_like(a))
  return jnp.sum(a, axis=-1)


_ARGS_DOC = """
  Args:
    scores: ``[..., list_size]`` scores. Items scored ``-inf`` are unranked.
    labels: ``[..., list_size]`` relevance labels. A ``NaN`` label on a
      valid item makes its list's value ``NaN``.
    where: Optional boolean ``[..., list_size]`` mask of valid items.
    segments: Optional ``[..., list_size]`` segment ids; the metric is then
      computed per segment (one value per segment, shown on each of its items
      when ``reduce_fn=None``).
    topn: Optional cutoff: only the top ``topn`` ranks count (any
      non-negative integer type).
    key: Optional PRNG key; ties in ``scores`` are then broken at random.
    rank_fn: Maps scores to 1-based ranks (``approx_ranks`` for a smooth
      version).
    cutoff_fn: Maps values and ``n`` to a (soft) top-n indicator.
    reduce_fn: ``jnp.mean`` (default), ``jnp.sum`` or ``None`` (per list).
    exclude_lists_without_relevant: If True, lists with no relevant valid
      item are left out of the reduction instead of counting as 0.
"""


def _with_args_doc(fn):
  fn.__doc__ = fn.__doc__.replace("  {args}\n", _ARGS_DOC)
  return fn


# ---------------------------------------------------------------------------
# Metrics.


@_with_args_doc
def mrr_metric(
  scores: Array,
  labels: Array,
  *,
  where: Array | None = None,
  segments: Array | None = None,
  topn: int | None = None,
  key: Array | None = None,
  rank_fn: RankFn = _sorting.ranks,
  cutoff_fn: CutoffFn = _utils.cutoff,
  reduce_fn: ReduceFn | None = jnp.mean,
  exclude_lists_without_relevant: bool = False,
) -> Array:
  r"""Mean reciprocal rank of the first relevant item (``label >= 1``).

  .. math:: \op{mrr}(s, y) = \max_i \frac{[y_i \ge 1]\,[\op{rank}(s_i) \le n]}
            {\op{rank}(s_i)}

  0 when no relevant item is retrieved in the top ``topn``. Without a ``key``
  this needs no sort at all: the rank of the best relevant item is one plus
  the number of items ranked before it.

  >>> scores = jnp.array([3., 1., 2., 0.])
  >>> labels = jnp.array([0., 1., 0., 1.])
  >>> print(mrr_metric(scores, labels))
  0.33333334
  >>> print(mrr_metric(scores, labels, topn=2))
  0.0

  {args}
  Returns:
    The (reduced) reciprocal rank.
  """
  name = "mrr_metric"
  topn = _utils.check_topn(name, topn)
  scores, labels, where, _, segments = _check_inputs(
    name, scores, labels, where, segments=segments
  )
  relevant = labels >= 1
  has_relevant = _any_relevant(relevant, where, segments)

  if _can_sort(rank_fn, cutoff_fn, segments) and key is None:
    n = scores.shape[-1]
    okey = _sorting.order_key(scores, where)
    hits = relevant & _retrieved(scores, where)
    iota = lax.broadcasted_iota(jnp.int32, scores.shape, scores.ndim - 1)
    best = jnp.min(
      jnp.where(hits, okey, _sorting.MASKED_KEY),
      axis=-1,
      keepdims=True,
      initial=_sorting.MASKED_KEY,
    )
    first = jnp.min(
      jnp.where(hits & (okey == best), iota, n),
      axis=-1,
      keepdims=True,
      initial=n,
    )
    before = (okey < best) | ((okey == best) & (iota < first))
    rank = 1 + jnp.sum(before, axis=-1)
    found = _utils.any_valid(hits)
    if topn is not None:
      found = found & (rank <= topn)
    values = jnp.where(found, 1.0 / rank.astype(jnp.float32), 0.0)
  elif _can_sort(rank_fn, cutoff_fn, segments):
    order = _sorting.sort_order(scores, where=where, key=key, topn=topn)
    hits = _take(relevant & _retrieved(scores, where), order)
    position = jnp.arange(1, order.shape[-1] + 1, dtype=jnp.float32)
    values = jnp.max(jnp.where(hits, 1.0 / position, 0.0), axis=-1, initial=0.0)
  else:
    item_ranks = rank_fn(scores, where=where, segments=segments, key=key)
    retrieved = _generic_retrieved(
      scores, item_ranks, where, segments, topn, cutoff_fn
    )
    safe_ranks = jnp.where(item_ranks == 0, jnp.inf, item_ranks)
    contrib = relevant.astype(jnp.float32) * retrieved / safe_ranks
    if segments is not None:
      values = _segments.segment_max(
        contrib, segments, where=where, initial=0.0
      )
    else:
      values = jnp.max(contrib, axis=-1, where=where, initial=0.0)
  return _reduce_over_lists(
    name,
    values,
    where=where,
    segments=segments,
    has_relevant=has_relevant,
    exclude_lists_without_relevant=exclude_lists_without_relevant,
    reduce_fn=reduce_fn,
    labels=labels,
  )


def _top_selection(scores, where, key, topn):
  """Boolean mask of the items ranked in the top ``topn`` (all if None)."""
  if topn is None:
    return jnp.ones(scores.shape, bool)
  order = _sorting.sort_order(scores, where=where, key=key, topn=topn)
  return jnp.put_along_axis(
    jnp.zeros(scores.shape, bool),
    order,
    jnp.ones(order.shape, bool),
    axis=-1,
    inplace=False,
  )


def _retrieved_relevant_counts(
  name, scores, labels, where, segments, topn, key, rank_fn, cutoff_fn
):
  """(#relevant retrieved in top-n, #retrieved in top-n, #relevant valid)."""
  relevant = labels >= 1
  valid_relevant = relevant if where is None else relevant & where
  if _can_sort(rank_fn, cutoff_fn, segments):
    retrieved = _retrieved(scores, where) & _top_selection(
      scores, where, key, topn
    )
    # Float sums vectorise better than boolean ones on CPU.
    retrieved = retrieved.astype(jnp.float32)
    n_hit = jnp.sum(retrieved * relevant, axis=-1)
    n_retrieved = jnp.sum(retrieved, axis=-1)
    n_relevant = jnp.sum(valid_relevant.astype(jnp.float32), axis=-1)
  else:
    item_ranks = rank_fn(scores, where=where, segments=segments, key=key)
    retrieved = _generic_retrieved(
      scores, item_ranks, where, segments, topn, cutoff_fn
    )
    rel = relevant.astype(jnp.float32)
    n_hit = _masked_sum(retrieved * rel, where, segments)
    n_retrieved = _masked_sum(retrieved, where, segments)
    n_relevant = _masked_sum(rel, where, segments)
  del name
  return n_hit, n_retrieved, n_relevant


@_with_args_doc
def precision_metric(
  scores: Array,
  labels: Array,
  *,
  where: Array | None = None,
  segments: Array | None = None,
  topn: int | None = None,
  key: Array | None = None,
  rank_fn: RankFn = _sorting.ranks,
  cutoff_fn: CutoffFn = _utils.cutoff,
  reduce_fn: ReduceFn | None = jnp.mean,
  exclude_lists_without_relevant: bool = False,
) -> Array:
  r"""Precision: the fraction of retrieved top-n items that are relevant.

  .. math:: \op{P@n}(s, y) = \frac{\sum_i [y_i \ge 1][i \text{ retrieved in
            top } n]}{\sum_i [i \text{ retrieved in top } n]}

  As in Rax the denominator counts retrieved items, so a list with fewer than
  ``n`` valid items divides by its length (trec_eval's ``P_n`` divides by
  ``n``; they agree when every list has at least ``n`` items).

  >>> scores = jnp.array([3., 1., 2., 0.])
  >>> labels = jnp.array([1., 0., 0., 1.])
  >>> print(precision_metric(scores, labels, topn=2))
  0.5

  {args}
  Returns:
    The (reduced) precision.
  """
  name = "precision_metric"
  topn = _utils.check_topn(name, topn)
  scores, labels, where, _, segments = _check_inputs(
    name, scores, labels, where, segments=segments
  )
  n_hit, n_retrieved, _ = _retrieved_relevant_counts(
    name, scores, labels, where, segments, topn, key, rank_fn, cutoff_fn
  )
  values = n_hit / jnp.where(n_retrieved == 0, 1.0, n_retrieved)
  return _reduce_over_lists(
    name,
    values,
    where=where,
    segments=segments,
    has_relevant=_any_relevant(labels >= 1, where, segments),
    exclude_lists_without_relevant=exclude_lists_without_relevant,
    reduce_fn=reduce_fn,
    labels=labels,
  )


@_with_args_doc
def recall_metric(
  scores: Array,
  labels: Array,
  *,
  where: Array | None = None,
  segments: Array | None = None,
  topn: int | None = None,
  key: Array | None = None,
  rank_fn: RankFn = _sorting.ranks,
  cutoff_fn: CutoffFn = _utils.cutoff,
  reduce_fn: ReduceFn | None = jnp.mean,
  exclude_lists_without_relevant: bool = False,
) -> Array:
  r"""Recall: the fraction of relevant valid items retrieved in the top n.

  .. math:: \op{R@n}(s, y) = \frac{\sum_i [y_i \ge 1][i \text{ retrieved in
            top } n]}{\sum_i [y_i \ge 1]}

  0 for a list without relevant items.

  >>> scores = jnp.array([3., 1., 2., 0.])
  >>> labels = jnp.array([1., 0., 0., 1.])
  >>> print(recall_metric(scores, labels, topn=2))
  0.5

  {args}
  Returns:
    The (reduced) recall.
  """
  name = "recall_metric"
  topn = _utils.check_topn(name, topn)
  scores, labels, where, _, segments = _check_inputs(
    name, scores, labels, where, segments=segments
  )
  n_hit, _, n_relevant = _retrieved_relevant_counts(
    name, scores, labels, where, segments, topn, key, rank_fn, cutoff_fn
  )
  values = n_hit / jnp.where(n_relevant == 0, 1.0, n_relevant)
  return _reduce_over_lists(
    name,
    values,
    where=where,
    segments=segments,
    has_relevant=n_relevant > 0,
    exclude_lists_without_relevant=exclude_lists_without_relevant,
    reduce_fn=reduce_fn,
    labels=labels,
  )


@_with_args_doc
def ap_metric(
  scores: Array,
  labels: Array,
  *,
  where: Array | None = None,
  segments: Array | None = None,
  topn: int | None = None,
  key: Array | None = None,
  rank_fn: RankFn = _sorting.ranks,
  cutoff_fn: CutoffFn = _utils.cutoff,
  reduce_fn: ReduceFn | None = jnp.mean,
  exclude_lists_without_relevant: bool = False,
) -> Array:
  r"""Average precision over the relevant items (``label >= 1``).

  .. math:: \op{AP@n}(s, y) = \frac{1}{\sum_i [y_i \ge 1]} \sum_{i:\,y_i \ge 1,
            \op{rank}(s_i) \le n} \op{P@rank}(s_i)

  The normaliser counts all relevant valid items (trec_eval's ``map``).

  >>> scores = jnp.array([3., 1., 2., 0.])
  >>> labels = jnp.array([1., 0., 0., 1.])
  >>> print(ap_metric(scores, labels))  # (1/1 + 2/4) / 2
  0.75

  {args}
  Returns:
    The (reduced) average precision.
  """
  name = "ap_metric"
  topn = _utils.check_topn(name, topn)
  scores, labels, where, _, segments = _check_inputs(
    name, scores, labels, where, segments=segments
  )
  relevant = labels >= 1
  valid_relevant = relevant if where is None else relevant & where
  if _can_sort(rank_fn, cutoff_fn, segments):
    order = _sorting.sort_order(scores, where=where, key=key, topn=topn)
    rel_sorted = _take(relevant, order)
    hits = rel_sorted & _take(_retrieved(scores, where), order)
    precision = jnp.cumsum(rel_sorted, axis=-1) / jnp.arange(
      1, order.shape[-1] + 1, dtype=jnp.float32
    )
    total = jnp.sum(jnp.where(hits, precision, 0.0), axis=-1)
    n_relevant = jnp.sum(valid_relevant, axis=-1).astype(jnp.float32)
  else:
    item_ranks = rank_fn(scores, where=where, segments=segments, key=key)
    retrieved = _generic_retrieved(
      scores, item_ranks, where, segments, topn, cutoff_fn
    )
    rel = relevant.astype(jnp.float32)
    above = item_ranks[..., :, None] >= item_ranks[..., None, :]
    pair_mask = (
      None if segments is None else _segments.same_segment_mask(segments)
    )
    pairs = above * rel[..., :, None] * rel[..., None, :]
    if pair_mask is not None:
      pairs = jnp.where(pair_mask, pairs, 0.0)
    precision = jnp.sum(pairs, axis=-1) / item_ranks
    total = _masked_sum(precision * retrieved, where, segments)
    n_relevant = _masked_sum(rel, where, segments)
  values = total / jnp.where(n_relevant == 0, 1.0, n_relevant)
  return _reduce_over_lists(
    name,
    values,
    where=where,
    segments=segments,
    has_relevant=n_relevant > 0,
    exclude_lists_without_relevant=exclude_lists_without_relevant,
    reduce_fn=reduce_fn,
    labels=labels,
  )


def _gains(labels, weights, gain_fn):
  gains = gain_fn(labels)
  if weights is not None:
    gains = gains * weights
  return gains


# Lists whose largest valid label reaches this get default gains scaled down.
_LARGE_LABEL = 64


def _gain_shift(top):
  """Power-of-two exponent ``k >= 0`` that keeps ``2**(y - k)`` finite."""
  return jnp.maximum(jnp.floor(top) - _LARGE_LABEL, 0)


def _default_gains_over(labels, shift):
  """``(2**y - 1) / 2**shift``, computed without overflow."""
  return jnp.power(2.0, labels - shift) - jnp.power(2.0, -shift)


def _normalized_gains(labels, weights, gain_fn, where, segments):
  """Gains for NDCG, scaled per list (segment) so they never overflow.

  NDCG does not change when all gains of a list are multiplied by one
  factor. With the default gain ``2**y - 1`` a list whose largest valid label
  ``m`` is at least 64 gets gains divided by ``2**(floor(m) - 64)`` (an exact
  power of two), so labels up to float32's range give finite NDCG; lists
  with smaller labels are unchanged. Other ``gain_fn``s are used as given.
  """
  if gain_fn is not default_gain_fn:
    return _gains(labels, weights, gain_fn)
  valid = ~jnp.isnan(labels)
  if where is not None:
    valid = valid & where
  masked = jnp.where(valid, labels, -jnp.inf)
  if segments is None:
    top = jnp.max(masked, axis=-1, keepdims=True, initial=-jnp.inf)
  else:
    top = _segments.segment_max(masked, segments)
  gains = _default_gains_over(labels, _gain_shift(top))
  if weights is not None:
    gains = gains * weights
  return gains


def _sorted_dcg(scores, gains, where, key, topn, discount_fn):
  order = _sorting.sort_order(scores, where=where, key=key, topn=topn)
  hits = _take(_retrieved(scores, where), order)
  g = _take(gains, order)
  discounts = discount_fn(jnp.arange(1, order.shape[-1] + 1, dtype=jnp.int32))
  return jnp.sum(jnp.where(hits, g * discounts, 0.0), axis=-1)


def _sorted_ideal_dcg(gains, where, topn, discount_fn):
  """DCG of the best ordering: valid gains sorted descending."""
  n = gains.shape[-1]
  m = n if topn is None else min(topn, n)
  if m == 0:
    return jnp.zeros(gains.shape[:-1], gains.dtype)
  masked = gains if where is None else jnp.where(where, gains, -jnp.inf)
  if m < n:
    best = lax.top_k(masked, m)[0]
  else:
    best = _sorting.sort_values_descending(masked)
  discounts = discount_fn(jnp.arange(1, m + 1, dtype=jnp.int32))
  return jnp.sum(jnp.where(best > -jnp.inf, best * discounts, 0.0), axis=-1)


def _generic_dcg(
  scores, gains, where, segments, topn, key, rank_fn, cutoff_fn, discount_fn
):
  item_ranks = rank_fn(scores, where=where, segments=segments, key=key)
  retrieved = _generic_retrieved(
    scores, item_ranks, where, segments, topn, cutoff_fn
  )
  return _masked_sum(
    retrieved * gains * discount_fn(item_ranks), where, segments
  )


@_with_args_doc
def dcg_metric(
  scores: Array,
  labels: Array,
  *,
  where: Array | None = None,
  segments: Array | None = None,
  topn: int | None = None,
  weights: Array | None = None,
  key: Array | None = None,
  gain_fn: Callable[[Array], Array] = default_gain_fn,
  discount_fn: Callable[[Array], Array] = default_discount_fn,
  rank_fn: RankFn = _sorting.ranks,
  cutoff_fn: CutoffFn = _utils.cutoff,
  reduce_fn: ReduceFn | None = jnp.mean,
  exclude_lists_without_relevant: bool = False,
) -> Array:
  r"""Discounted cumulative gain :cite:`jarvelin2002cumulated`.

  .. math:: \op{dcg@n}(s, y) = \sum_{i:\,\op{rank}(s_i) \le n}
            w_i\,\op{gain}(y_i)\,\op{discount}(\op{rank}(s_i))

  with ``gain_fn`` (default :math:`2^y - 1`), ``discount_fn`` (default
  :math:`1/\log_2(r+1)`) and per-item ``weights`` :math:`w_i` (default 1).
  A list counts as having a relevant item when some weighted gain is
  non-zero. DCG is not normalised: with the default gain it is ``inf`` once
  a label reaches 128 (``2**128`` overflows float32); use
  :func:`ndcg_metric`, which stays finite.

  >>> scores = jnp.array([2., 1., 3.])
  >>> labels = jnp.array([2., 0., 1.])
  >>> print(f"{dcg_metric(scores, labels):.5f}")  # 1/log2(2) + 3/log2(3)
  2.89279

  {args}
    weights: Optional ``[..., list_size]`` per-item weights on the gains.
    gain_fn: Maps labels to gains.
    discount_fn: Maps 1-based ranks to discounts.

  Returns:
    The (reduced) DCG.
  """
  name = "dcg_metric"
  topn = _utils.check_topn(name, topn)
  scores, labels, where, weights, segments = _check_inputs(
    name, scores, labels, where, weights, segments
  )
  gains = _gains(labels, weights, gain_fn)
  if _can_sort(rank_fn, cutoff_fn, segments):
    values = _sorted_dcg(scores, gains, where, key, topn, discount_fn)
  else:
    values = _generic_dcg(
      scores, gains, where, segments, topn, key, rank_fn, cutoff_fn, discount_fn
    )
  return _reduce_over_lists(
    name,
    values,
    where=where,
    segments=segments,
    has_relevant=_any_relevant(gains != 0, where, segments),
    exclude_lists_without_relevant=exclude_lists_without_relevant,
    reduce_fn=reduce_fn,
    labels=labels,
  )


@_with_args_doc
def ndcg_metric(
  scores: Array,
  labels: Array,
  *,
  where: Array | None = None,
  segments: Array | None = None,
  topn: int | None = None,
  weights: Array | None = None,
  key: Array | None = None,
  gain_fn: Callable[[Array], Array] = default_gain_fn,
  discount_fn: Callable[[Array], Array] = default_discount_fn,
  rank_fn: RankFn = _sorting.ranks,
  cutoff_fn: CutoffFn = _utils.cutoff,
  reduce_fn: ReduceFn | None = jnp.mean,
  exclude_lists_without_relevant: bool = False,
) -> Array:
  r"""Normalised DCG: DCG divided by the DCG of the ideal ordering.

  .. math:: \op{ndcg@n}(s, y) = \frac{\op{dcg@n}(s, y)}{\op{dcg@n}(y^*, y)}

  where the ideal ordering :math:`y^*` sorts the valid items by weighted gain.
  0 when the ideal DCG is 0 (no relevant item). Finite for any finite
  label: with the default gain, a list whose largest label ``m`` is 64 or
  more has all its gains divided by ``2**(floor(m) - 64)``, which leaves
  NDCG unchanged and keeps ``2**y`` from overflowing float32.

  >>> scores = jnp.array([2., 1., 3.])
  >>> labels = jnp.array([2., 0., 1.])
  >>> print(f"{ndcg_metric(scores, labels):.5f}")  # 2.89279 / (3 + 1/log2(3))
  0.79671
  >>> print(f"{ndcg_metric(scores, labels, topn=1):.5f}")  # 1 / 3
  0.33333

  {args}
    weights: Optional ``[..., list_size]`` per-item weights on the gains.
    gain_fn: Maps labels to gains.
    discount_fn: Maps 1-based ranks to discounts.

  Returns:
    The (reduced) NDCG.
  """
  name = "ndcg_metric"
  topn = _utils.check_topn(name, topn)
  scores, labels, where, weights, segments = _check_inputs(
    name, scores, labels, where, weights, segments
  )
  gains = _normalized_gains(labels, weights, gain_fn, where, segments)
  if _can_sort(rank_fn, cutoff_fn, segments):
    dcg = _sorted_dcg(scores, gains, where, key, topn, discount_fn)
  else:
    dcg = _generic_dcg(
      scores, gains, where, segments, topn, key, rank_fn, cutoff_fn, discount_fn
    )
  if segments is None:
    ideal = _sorted_ideal_dcg(gains, where, topn, discount_fn)
  else:
    ideal = _generic_dcg(
      gains,
      gains,
      where,
      segments,
      topn,
      None,
      _sorting.ranks,
      _utils.cutoff,
      discount_fn,
    )
  values = dcg / jnp.where(ideal == 0, 1.0, ideal)
  return _reduce_over_lists(
    name,
    values,
    where=where,
    segments=segments,
    has_relevant=_any_relevant(gains != 0, where, segments),
    exclude_lists_without_relevant=exclude_lists_without_relevant,
    reduce_fn=reduce_fn,
    labels=labels,
  )


def opa_metric(
  scores: Array,
  labels: Array,
  *,
  where: Array | None = None,
  segments: Array | None = None,
  reduce_fn: ReduceFn | None = jnp.mean,
  exclude_lists_without_relevant: bool = False,
) -> Array:
  r"""Ordered pair accuracy: the fraction of label-ordered pairs scored right.

  .. math:: \op{opa}(s, y) = \frac{\sum_{i,j} [y_i > y_j][s_i > s_j]}
            {\sum_{i,j} [y_i > y_j]}

  over valid pairs (in the same segment). Pairs with equal scores count as
  wrong; pairs with equal labels are ignored; a list without such pairs
  scores 0 ("without relevant" here means without any ordered pair).
  Without segments the counts come from sorts and a count of label
  inversions (no ``[n, n]`` matrix on CPU; see ``ordered_pair_counts``).

  >>> scores = jnp.array([3., 1., 2.])
  >>> labels = jnp.array([2., 1., 0.])
  >>> print(f"{opa_metric(scores, labels):.5f}")  # 2 of 3 pairs
  0.66667

  Args:
    scores: ``[..., list_size]`` scores.
    labels: ``[..., list_size]`` relevance labels.
    where: Optional boolean mask of valid items.
    segments: Optional segment ids; only pairs within a segment count.
    reduce_fn: ``jnp.mean`` (default), ``jnp.sum`` or ``None``.
    exclude_lists_without_relevant: If True, lists without any ordered pair
      are left out of the reduction.

  Returns:
    The (reduced) OPA.
  """
  name = "opa_metric"
  scores, labels, where, _, segments = _check_inputs(
    name, scores, labels, where, segments=segments
  )
  if segments is None:
    # NaN labels and lists without a valid item are already accounted for.
    n_correct, n_pairs, has_valid = _sorting.ordered_pair_counts(
      scores, labels, where
    )
    values = n_correct / jnp.maximum(n_pairs, 1.0)
    return _reduce_over_lists(
      name,
      values,
      where=where,
      segments=None,
      has_relevant=~(n_pairs <= 0),  # NaN lists always count.
      exclude_lists_without_relevant=exclude_lists_without_relevant,
      reduce_fn=reduce_fn,
      list_where=has_valid,
    )
  ordered = labels[..., :, None] > labels[..., None, :]
  if where is not None:
    ordered = ordered & where[..., :, None] & where[..., None, :]
  ordered = ordered & _segments.same_segment_mask(segments)
  correct = ordered & (scores[..., :, None] > scores[..., None, :])
  n_pairs = _segments.segment_sum(
    jnp.sum(ordered, -1, dtype=jnp.int32), segments
  )
  n_correct = _segments.segment_sum(
    jnp.sum(correct, -1, dtype=jnp.int32), segments
  )
  values = n_correct.astype(jnp.float32) / jnp.maximum(n_pairs, 1).astype(
    jnp.float32
  )
  return _reduce_over_lists(
    name,
    values,
    where=where,
    segments=segments,
    has_relevant=n_pairs > 0,
    exclude_lists_without_relevant=exclude_lists_without_relevant,
    reduce_fn=reduce_fn,
    labels=labels,
  )


@_with_args_doc
def err_metric(
  scores: Array,
  labels: Array,
  *,
  where: Array | None = None,
  segments: Array | None = None,
  topn: int | None = None,
  weights: Array | None = None,
  key: Array | None = None,
  gain_fn: Callable[[Array], Array] = default_gain_fn,
  discount_fn: Callable[[Array], Array] = reciprocal_rank_discount_fn,
  max_label: float | None = 4.0,
  rank_fn: RankFn = _sorting.ranks,
  cutoff_fn: CutoffFn = _utils.cutoff,
  reduce_fn: ReduceFn | None = jnp.mean,
  exclude_lists_without_relevant: bool = False,
) -> Array:
  r"""Expected reciprocal rank :cite:`chapelle2009expected`.

  A user scans the ranking top-down and stops at item :math:`i` with
  probability :math:`R_i`:

  .. math:: R_i = \min\Big(1, \frac{\op{gain}(y_i)}{2^{y_{\max}}}\Big), \quad
            \op{err@n} = \sum_{r=1}^{n} \op{discount}(r)\, w_{(r)} R_{(r)}
            \prod_{q<r} (1 - R_{(q)})

  with :math:`(r)` the item at rank :math:`r`, gain :math:`2^y - 1` and
  discount :math:`1/r` by default, and :math:`y_{\max}` = ``max_label``
  (4, the largest grade of the Yahoo! / TREC web tracks, as in gdeval and
  TF-Ranking). ``max_label=None`` uses each list's largest valid label.
  Optional per-item ``weights`` scale each item's term.

  >>> scores = jnp.array([3., 2., 1.])
  >>> labels = jnp.array([4., 0., 2.])
  >>> # R = (15/16, 0, 3/16): 15/16 + (1/3)(3/16)(1/16)
  >>> print(f"{err_metric(scores, labels):.6f}")
  0.941406

  {args}
    weights: Optional per-item weights on each item's term.
    gain_fn: Maps labels to gains (before the :math:`2^{y_{\max}}` scaling).
    discount_fn: Maps 1-based ranks to discounts (default ``1/r``).
    max_label: The largest grade :math:`y_{\max}`, or None for the per-list
      maximum.

  Returns:
    The (reduced) ERR.
  """
  name = "err_metric"
  topn = _utils.check_topn(name, topn)
  scores, labels, where, weights, segments = _check_inputs(
    name, scores, labels, where, weights, segments
  )
  if max_label is None:
    if segments is None:
      top = jnp.max(
        labels, axis=-1, keepdims=True, where=where, initial=-jnp.inf
      )
    else:
      top = _segments.segment_max(labels, segments, where=where)
    top = jnp.where(jnp.isfinite(top), top, 0.0)
  else:
    top = jnp.asarray(max_label, jnp.float32)
  if gain_fn is default_gain_fn:
    # (2**y - 1) / 2**top without overflow for labels of 128 and more.
    shift = _gain_shift(top)
    stop = _default_gains_over(labels, shift) / jnp.power(2.0, top - shift)
  else:
    stop = gain_fn(labels) / jnp.power(2.0, top)
  stop = jnp.clip(stop, 0.0, 1.0)
  term_weights = jnp.ones_like(stop) if weights is None else weights
  has_relevant = _any_relevant(stop * term_weights != 0, where, segments)
  if _can_sort(rank_fn, cutoff_fn, segments):
    order = _sorting.sort_order(scores, where=where, key=key, topn=topn)
    hits = _take(_retrieved(scores, where), order)
    r = jnp.where(hits, _take(stop, order), 0.0)
    w = _take(term_weights, order)
    reach = jnp.cumprod(1.0 - r, axis=-1)
    reach = jnp.concatenate(
      [jnp.ones_like(reach[..., :1]), reach[..., :-1]], axis=-1
    )
    discounts = discount_fn(jnp.arange(1, order.shape[-1] + 1, dtype=jnp.int32))
    values = jnp.sum(discounts * w * r * reach, axis=-1)
  else:
    item_ranks = rank_fn(scores, where=where, segments=segments, key=key)
    retrieved = _generic_retrieved(
      scores, item_ranks, where, segments, topn, cutoff_fn
    )
    r = stop * (scores > -jnp.inf)
    if where is not None:
      r = jnp.where(where, r, 0.0)
    # above[i, j]: how much item j ranks above item i (exactly [rank_j <
    # rank_i] for integer ranks, a smooth version for approximate ones).
    above = jnp.clip(
      item_ranks[..., :, None] - item_ranks[..., None, :], 0.0, 1.0
    )
    if segments is not None:
      above = jnp.where(_segments.same_segment_mask(segments), above, 0.0)
    reach = jnp.prod(1.0 - above * r[..., None, :], axis=-1)
    terms = discount_fn(item_ranks) * term_weights * r * reach * retrieved
    values = _masked_sum(terms, where, segments)
  return _reduce_over_lists(
    name,
    values,
    where=where,
    segments=segments,
    has_relevant=has_relevant,
    exclude_lists_without_relevant=exclude_lists_without_relevant,
    reduce_fn=reduce_fn,
    labels=labels,
  )
