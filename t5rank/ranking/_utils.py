"""Shared mechanics of the ranking library: ranks, cutoffs, pairs, reductions.

Every loss, metric and lambda weight in ``t5rank.ranking`` works on arrays of
shape ``[..., list_size]`` and reuses the helpers below, so masking, tie
breaking and empty-list handling behave the same everywhere:

* ``where`` is a boolean mask of valid items; masked items never influence a
  valid item's rank, probability or reduction, whatever their score (``±inf``
  and ``NaN`` included).
* Ranks start at 1. Ties keep list order (the item seen first ranks first)
  unless a PRNG ``key`` is given, which breaks ties at random.
* A reduction over nothing valid gives 0, never ``NaN``.

>>> import jax.numpy as jnp
>>> scores = jnp.array([1., 3., 2., 3.])
>>> print(ranks(scores))
[4 1 3 2]
>>> print(ranks(scores, where=jnp.array([True, False, True, True])))
[3 4 2 1]
>>> print(cutoff(scores, 2))
[0. 1. 0. 1.]
"""

import functools
import inspect
from typing import Any, Callable, Optional, Sequence, TypeVar

import jax
from jax import lax
import jax.numpy as jnp
import numpy as np

from t5rank.ranking import types

Array = types.Array
T = TypeVar("T")


# ---------------------------------------------------------------------------
# Reductions and normalisation.


def safe_reduce(
    a: Array,
    *,
    where: Optional[Array] = None,
    reduce_fn: Optional[Callable[..., Array]] = None,
) -> Array:
  """Reduces ``a`` over its valid entries without producing ``NaN``.

  * ``reduce_fn=jnp.mean``: the mean over entries where ``where`` is True;
    when nothing is valid the result is 0. ``NaN`` in a *valid* entry still
    shows (it is a real error); ``NaN`` in a masked entry is ignored.
  * ``reduce_fn=None``: no reduction; masked entries are set to 0 so that
    ``jnp.sum(f(reduce_fn=None)) == f(reduce_fn=jnp.sum)``.
  * any other ``reduce_fn`` is called as ``reduce_fn(a, where=where)``.

  >>> a = jnp.array([1., 2., jnp.nan])
  >>> print(safe_reduce(a, where=jnp.array([True, True, False]),
  ...                   reduce_fn=jnp.mean))
  1.5
  >>> print(safe_reduce(a, where=jnp.zeros(3, bool), reduce_fn=jnp.mean))
  0.0
  >>> print(safe_reduce(a, where=jnp.array([True, False, False])))
  [1. 0. 0.]

  Args:
    a: The array to reduce.
    where: Optional boolean mask of the entries to include, broadcastable to
      ``a``.
    reduce_fn: The reduction (``jnp.mean``, ``jnp.sum``, ...) or None.

  Returns:
    The reduced array (or ``a`` with masked entries zeroed).
  """
  a = jnp.asarray(a)
  if where is not None:
    where = jnp.broadcast_to(jnp.asarray(where).astype(bool), a.shape)
  if reduce_fn is None:
    if where is None:
      return a
    return jnp.where(where, a, jnp.zeros_like(a))
  if reduce_fn is jnp.mean:
    if where is None:
      return jnp.mean(a)
    total = jnp.sum(jnp.where(where, a, jnp.zeros_like(a)))
    count = jnp.sum(where)
    return total / jnp.maximum(count, 1).astype(total.dtype)
  if where is None:
    return reduce_fn(a)
  return reduce_fn(jnp.where(where, a, jnp.zeros_like(a)), where=where)


def normalize_probabilities(
    unscaled: Array,
    where: Optional[Array] = None,
    axis: int = -1,
    *,
    segments: Optional[Array] = None,
) -> Array:
  """Scales non-negative values so the valid ones sum to one along ``axis``.

  When every valid value is zero the result is uniform over the valid items;
  masked items get 0. A list with no valid item is uniform over all its items
  (Rax's convention, which keeps downstream logs finite).

  >>> print(normalize_probabilities(jnp.array([1., 3., 0.])))
  [0.25 0.75 0.  ]
  >>> print(normalize_probabilities(jnp.array([0., 0., 5.]),
  ...                               where=jnp.array([True, True, False])))
  [0.5 0.5 0. ]

  Args:
    unscaled: Non-negative values, ``[..., list_size]``.
    where: Optional boolean mask of valid items.
    axis: The list axis.
    segments: Optional segment ids; normalisation is then per segment.

  Returns:
    The normalised probabilities, same shape as ``unscaled``.
  """
  unscaled = jnp.moveaxis(jnp.asarray(unscaled), axis, -1)
  if where is None:
    where = jnp.ones(unscaled.shape, dtype=bool)
  else:
    where = jnp.moveaxis(jnp.asarray(where).astype(bool), axis, -1)
  values = jnp.where(where, unscaled, jnp.zeros_like(unscaled))
  if segments is None:
    total = jnp.sum(values, axis=-1, keepdims=True)
    count = jnp.sum(where, axis=-1, keepdims=True)
    everything = jnp.full_like(count, unscaled.shape[-1])
  else:
    segments = jnp.moveaxis(jnp.asarray(segments), axis, -1)
    total = segment_sum(values, segments)
    count = segment_sum(where.astype(jnp.int32), segments)
    everything = segment_sum(jnp.ones_like(count), segments)
  count = jnp.where(count == 0, everything, count)
  uniform = jnp.where(
      jnp.any(where, axis=-1, keepdims=True) if segments is None
      else segment_sum(where.astype(jnp.int32), segments) > 0,
      where.astype(unscaled.dtype),
      jnp.ones_like(unscaled),
  ) / count.astype(unscaled.dtype)
  safe_total = jnp.where(total == 0, jnp.ones_like(total), total)
  output = jnp.where(total != 0, values / safe_total, uniform)
  return jnp.moveaxis(output, -1, axis)


def logcumsumexp(
    x: Array,
    *,
    axis: int = -1,
    where: Optional[Array] = None,
    reverse: bool = False,
) -> Array:
  r"""Cumulative :math:`\log\sum\exp` along ``axis``, skipping masked entries.

  ``out[i] = log(sum_{j <= i, where[j]} exp(x[j]))`` (or ``j >= i`` with
  ``reverse=True``). Positions before the first valid entry are ``-inf``.
  Uses an associative scan (O(n log n) work, O(log n) depth), no Python loop.

  >>> print(logcumsumexp(jnp.log(jnp.array([1., 2., 3.]))))
  [0.        1.0986123 1.7917595]
  >>> print(logcumsumexp(jnp.log(jnp.array([1., 2., 3.])), reverse=True))
  [1.7917595 1.609438  1.0986123]

  Args:
    x: Values, any shape.
    axis: The axis to accumulate over.
    where: Optional boolean mask; masked entries add nothing.
    reverse: Accumulate from the end instead of the start.

  Returns:
    An array like ``x``.
  """
  x = jnp.asarray(x)
  if where is not None:
    x = jnp.where(jnp.asarray(where).astype(bool), x, -jnp.inf)
  axis = axis % x.ndim if x.ndim else 0
  return lax.cumlogsumexp(x, axis=axis, reverse=reverse)


# ---------------------------------------------------------------------------
# Sorting, ranks and cutoffs.


_INT32_MAX = 2**31 - 1
_NAN_KEY = 0x7F800001  # after every finite and infinite score, before masked.


def order_key(scores: Array, where: Optional[Array] = None) -> Array:
  """int32 key whose *ascending* order is the ranking order of ``scores``.

  Higher scores get smaller keys; ``-0.0`` equals ``0.0``; valid ``NaN``
  scores come after ``-inf``; masked items get the largest key. Ties (equal
  keys) are broken by list position by every consumer of this key.

  >>> print(order_key(jnp.array([1., -jnp.inf, 2.])) < 0)
  [ True False  True]
  """
  s = jnp.asarray(scores)
  if s.dtype != jnp.float32:
    s = s.astype(jnp.float32)
  negated = -s + 0.0  # `+ 0.0` turns -0.0 into 0.0 so zeros tie.
  bits = lax.bitcast_convert_type(negated, jnp.int32)
  key = jnp.where(bits < 0, bits ^ jnp.int32(_INT32_MAX), bits)
  key = jnp.where(jnp.isnan(s), jnp.int32(_NAN_KEY), key)
  if where is not None:
    where = jnp.broadcast_to(jnp.asarray(where).astype(bool), key.shape)
    key = jnp.where(where, key, jnp.int32(_INT32_MAX))
  return key


def _top_k_key(scores: Array, where: Optional[Array]) -> Array:
  """float32 key for ``lax.top_k`` (which is ~20x slower on int32 on CPU).

  Same order as :func:`order_key` except that finite scores at or below
  ``-3.4e38`` tie with ``-inf`` and ``NaN`` (never a concern in practice).
  """
  s = jnp.asarray(scores)
  if s.dtype != jnp.float32:
    s = s.astype(jnp.float32)
  s = s + 0.0  # -0.0 -> 0.0
  lowest = jnp.finfo(jnp.float32).min
  key = jnp.where(s == -jnp.inf, jnp.nextafter(lowest, jnp.float32(0)), s)
  key = jnp.where(jnp.isnan(s), lowest, key)
  if where is not None:
    where = jnp.broadcast_to(jnp.asarray(where).astype(bool), key.shape)
    key = jnp.where(where, key, -jnp.inf)
  return key


def _exact_float_key(scores: Array) -> bool:
  dtype = jnp.asarray(scores).dtype
  return dtype in (jnp.float32, jnp.bfloat16, jnp.float16)


def _network_argsort(key: Array) -> Array:
  """Stable ascending argsort of int32 keys along the last axis.

  A bitonic sorting network on (key, position) pairs, laid out as
  ``[list_size, batch]`` so every compare-exchange step is one vectorised
  pass. XLA's comparator sort costs ~10ns per comparison on CPU; this is
  3-5x faster for lists of a few hundred to a few thousand items.
  """
  *batch, n = key.shape
  size = 1
  for d in batch:
    size *= d
  m = max(1, (n - 1).bit_length())
  padded = 1 << m
  k = key.reshape(size, n).T
  i = lax.broadcasted_iota(jnp.int32, (n, size), 0)
  if padded != n:
    k = jnp.concatenate(
        [k, jnp.full((padded - n, size), _INT32_MAX, jnp.int32)], 0)
    i = jnp.concatenate(
        [i, lax.broadcasted_iota(jnp.int32, (padded - n, size), 0) + n], 0)
  for stage in range(1, m + 1):
    block = 1 << stage
    half = block // 2
    while half >= 1:
      groups = padded // (2 * half)
      kr = k.reshape(groups, 2, half, size)
      ir = i.reshape(groups, 2, half, size)
      ka, kb, ia, ib = kr[:, 0], kr[:, 1], ir[:, 0], ir[:, 1]
      starts = np.arange(groups) * 2 * half
      ascending = jnp.asarray((starts & block) == 0)[:, None, None]
      b_first = (kb < ka) | ((kb == ka) & (ib < ia))
      swap = b_first == ascending
      k = jnp.stack([jnp.where(swap, kb, ka), jnp.where(swap, ka, kb)],
                    1).reshape(padded, size)
      i = jnp.stack([jnp.where(swap, ib, ia), jnp.where(swap, ia, ib)],
                    1).reshape(padded, size)
      half //= 2
  return i[:n].T.reshape(*batch, n)


def _label_key(labels: Array, where: Optional[Array]) -> Array:
  """int32 key ascending with ``labels``; masked items get the largest key."""
  y = jnp.asarray(labels)
  if y.dtype != jnp.float32:
    y = y.astype(jnp.float32)
  bits = lax.bitcast_convert_type(y + 0.0, jnp.int32)
  key = jnp.where(bits < 0, bits ^ jnp.int32(_INT32_MAX), bits)
  if where is not None:
    key = jnp.where(where, key, jnp.int32(_INT32_MAX))
  return key


def _compare_exchange_steps(padded):
  """(block, half) pairs of a bitonic network with direction masks."""
  m = padded.bit_length() - 1
  for stage in range(1, m + 1):
    block = 1 << stage
    half = block // 2
    while half >= 1:
      yield stage, block, half
      half //= 2


def ordered_pair_counts(scores: Array, labels: Array,
                        where: Optional[Array] = None):
  """Per list: (#pairs with y_i > y_j and s_i > s_j, #pairs with y_i > y_j).

  Counts over valid items without an ``[n, n]`` matrix: sort by (score
  descending, label ascending) so tied scores never count, then count label
  inversions with a merge-sort-shaped bitonic network (each merge counts, for
  every left-block item, the right-block items with a smaller label).
  O(n log^2 n) work. Valid ``NaN`` scores rank last.

  >>> correct, pairs = ordered_pair_counts(jnp.array([3., 1., 2.]),
  ...                                      jnp.array([2., 1., 0.]))
  >>> print(correct, pairs)
  2 3
  """
  scores = jnp.asarray(scores)
  *batch, n = scores.shape
  size = 1
  for d in batch:
    size *= d
  where_b = None if where is None else jnp.broadcast_to(
      jnp.asarray(where).astype(bool), scores.shape)
  k1 = order_key(scores, where_b).reshape(size, n).T
  k2 = _label_key(labels, where_b).reshape(size, n).T
  m = max(1, (n - 1).bit_length())
  padded = 1 << m
  if padded != n:
    fill = jnp.full((padded - n, size), _INT32_MAX, jnp.int32)
    k1 = jnp.concatenate([k1, fill], 0)
    k2 = jnp.concatenate([k2, fill], 0)
  # 1) Sort by (score key, label key) ascending; keep the label sequence.
  for _, block, half in _compare_exchange_steps(padded):
    groups = padded // (2 * half)
    a1, b1 = k1.reshape(groups, 2, half, size)[:, 0], k1.reshape(
        groups, 2, half, size)[:, 1]
    a2, b2 = k2.reshape(groups, 2, half, size)[:, 0], k2.reshape(
        groups, 2, half, size)[:, 1]
    starts = np.arange(groups) * 2 * half
    ascending = jnp.asarray((starts & block) == 0)[:, None, None]
    b_first = (b1 < a1) | ((b1 == a1) & (b2 < a2))
    swap = b_first == ascending
    k1 = jnp.stack([jnp.where(swap, b1, a1), jnp.where(swap, a1, b1)],
                   1).reshape(padded, size)
    k2 = jnp.stack([jnp.where(swap, b2, a2), jnp.where(swap, a2, b2)],
                   1).reshape(padded, size)
  # 2) Merge sort the label sequence, counting inversions at every merge.
  seq = k2
  correct = jnp.zeros((size,), jnp.int32)
  for stage in range(1, m + 1):
    block = 1 << stage
    half = block // 2
    position = np.arange(padded) % block
    tag = jnp.broadcast_to(jnp.asarray(position >= half, jnp.int32)[:, None],
                           (padded, size))
    # Flip step then half-cleaners: every block ends sorted ascending by
    # (label, tag), so left items precede equal right items.
    steps = [("flip", block)] + [("half", h) for h in
                                 (1 << e for e in range(stage - 2, -1, -1))]
    for kind, width in steps:
      if kind == "flip":
        r = seq.reshape(padded // width, width, size)
        t = tag.reshape(padded // width, width, size)
        a, b = r[:, :width // 2], jnp.flip(r[:, width // 2:], 1)
        ta, tb = t[:, :width // 2], jnp.flip(t[:, width // 2:], 1)
      else:
        r = seq.reshape(padded // (2 * width), 2, width, size)
        t = tag.reshape(padded // (2 * width), 2, width, size)
        a, b, ta, tb = r[:, 0], r[:, 1], t[:, 0], t[:, 1]
      swap = (b < a) | ((b == a) & (tb < ta))
      lo, hi = jnp.where(swap, b, a), jnp.where(swap, a, b)
      tlo, thi = jnp.where(swap, tb, ta), jnp.where(swap, ta, tb)
      if kind == "flip":
        seq = jnp.concatenate([lo, jnp.flip(hi, 1)], 1).reshape(padded, size)
        tag = jnp.concatenate([tlo, jnp.flip(thi, 1)], 1).reshape(padded,
                                                                  size)
      else:
        seq = jnp.stack([lo, hi], 1).reshape(padded, size)
        tag = jnp.stack([tlo, thi], 1).reshape(padded, size)
    t = tag.reshape(padded // block, block, size)
    right_before = jnp.cumsum(t, axis=1) - t
    correct = correct + jnp.sum(jnp.where(t == 0, right_before, 0),
                                axis=(0, 1))
  # Pairs with different labels: (m^2 - sum_v c_v^2) / 2 over valid items.
  valid = seq != _INT32_MAX
  iota = lax.broadcasted_iota(jnp.int32, seq.shape, 0)
  previous = jnp.concatenate([seq[:1], seq[:-1]], 0)
  run_start = lax.cummax(jnp.where((iota == 0) | (seq != previous), iota, 0),
                         axis=0)
  squares = jnp.sum(jnp.where(valid, 2 * (iota - run_start) + 1, 0), axis=0)
  count = jnp.sum(valid, axis=0, dtype=jnp.int32)
  pairs = (count * count - squares) // 2
  return correct.reshape(batch), pairs.reshape(batch)


def sort_values_descending(values: Array) -> Array:
  """Sorts values in descending order along the last axis (no tie order).

  For quantities where the order among equal values does not matter (ideal
  DCG gains). ``NaN`` is not supported.

  >>> print(sort_values_descending(jnp.array([1., 3., 2.])))
  [3. 2. 1.]
  """
  values = jnp.asarray(values)
  *batch, n = values.shape
  if n <= 1:
    return values
  size = 1
  for d in batch:
    size *= d
  m = (n - 1).bit_length()
  padded = 1 << m
  v = values.reshape(size, n).T
  if padded != n:
    v = jnp.concatenate(
        [v, jnp.full((padded - n, size), -jnp.inf, v.dtype)], 0)
  for stage in range(1, m + 1):
    block = 1 << stage
    half = block // 2
    while half >= 1:
      groups = padded // (2 * half)
      vr = v.reshape(groups, 2, half, size)
      a, b = vr[:, 0], vr[:, 1]
      starts = np.arange(groups) * 2 * half
      descending = jnp.asarray((starts & block) == 0)[:, None, None]
      hi, lo = jnp.maximum(a, b), jnp.minimum(a, b)
      v = jnp.stack([jnp.where(descending, hi, lo),
                     jnp.where(descending, lo, hi)], 1).reshape(padded, size)
      half //= 2
  return v[:n].T.reshape(*batch, n)


def _sort_keys(scores, where, segments, key):
  """Sort keys, most significant first: segment, validity, score, noise."""
  keys = []
  if segments is not None:
    keys.append(jnp.asarray(segments))
  if where is not None:
    keys.append(jnp.logical_not(jnp.asarray(where).astype(bool)))
  keys.append(-jnp.asarray(scores))
  if key is not None:
    keys.append(jax.random.uniform(key, jnp.shape(scores)))
  return keys


def sort_order(
    scores: Array,
    *,
    where: Optional[Array] = None,
    key: Optional[Array] = None,
    topn: Optional[int] = None,
) -> Array:
  """Indices of the items in ranking order along the last axis.

  ``order[..., 0]`` is the best item. Masked items come after valid ones; ties
  keep list order unless ``key`` is given (random tie break, the same draw as
  Rax's). With ``topn`` only the first ``topn`` indices are returned (one
  ``jax.lax.top_k``, no full sort).

  >>> print(sort_order(jnp.array([1., 3., 2., 3.])))
  [1 3 2 0]
  >>> print(sort_order(jnp.array([1., 3., 2., 3.]), topn=2))
  [1 3]

  Args:
    scores: ``[..., list_size]`` scores.
    where: Optional boolean mask of valid items.
    key: Optional PRNG key for random tie breaking.
    topn: Optional number of leading positions to return.

  Returns:
    int32 indices, ``[..., min(topn, list_size)]``.
  """
  scores = jnp.asarray(scores)
  n = scores.shape[-1]
  m = n if topn is None else min(int(topn), n)
  if m == 0:
    return jnp.zeros(scores.shape[:-1] + (0,), jnp.int32)
  if key is not None or not _exact_float_key(scores):
    iota = lax.broadcasted_iota(jnp.int32, scores.shape, scores.ndim - 1)
    keys = _sort_keys(scores, where, None, key)
    order = lax.sort(tuple(keys) + (iota,), dimension=scores.ndim - 1,
                     num_keys=len(keys), is_stable=True)[-1]
    return order[..., :m]
  if m < n:
    return lax.top_k(_top_k_key(scores, where), m)[1].astype(jnp.int32)
  okey = order_key(scores, where)
  if n == 1:
    return jnp.zeros(scores.shape, jnp.int32)
  return _network_argsort(okey)


def sort_by(
    scores: Array,
    tensors_to_sort: Sequence[Array],
    *,
    where: Optional[Array] = None,
    axis: int = -1,
    segments: Optional[Array] = None,
    key: Optional[Array] = None,
) -> Sequence[Array]:
  """Sorts ``tensors_to_sort`` by descending ``scores`` along ``axis``.

  Masked items go after all valid ones; ties keep list order unless ``key``
  is given (random tie break). With ``segments`` items are sorted within their
  segment and each segment keeps the positions it occupied.

  >>> scores = jnp.array([1., 3., 2.])
  >>> print(sort_by(scores, [jnp.array([10, 30, 20])])[0])
  [30 20 10]

  Args:
    scores: ``[..., list_size]`` scores.
    tensors_to_sort: Arrays of the same shape as ``scores``.
    where: Optional boolean mask of valid items.
    axis: The list axis.
    segments: Optional segment ids.
    key: Optional PRNG key for random tie breaking.

  Returns:
    A tuple with the sorted arrays.
  """
  scores = jnp.moveaxis(jnp.asarray(scores), axis, -1)
  move = lambda a: None if a is None else jnp.moveaxis(jnp.asarray(a), axis,
                                                       -1)
  where, segments = move(where), move(segments)
  tensors = [move(t) for t in tensors_to_sort]
  if segments is None:
    order = sort_order(scores, where=where, key=key)
    out = [jnp.take_along_axis(t, order, axis=-1) for t in tensors]
  else:
    keys = _sort_keys(scores, where, segments, key)
    out = lax.sort(tuple(keys) + tuple(tensors), dimension=scores.ndim - 1,
                   num_keys=len(keys), is_stable=True)[len(keys):]
    # Sorting by segment first groups each segment; move every group back to
    # the slots its segment held (the k-th slot of segment s, in list order,
    # receives segment s's k-th item by score).
    slot_order = jnp.argsort(segments, axis=-1, stable=True)
    inverse = _inverse_permutation(slot_order)
    out = [jnp.take_along_axis(t, inverse, axis=-1) for t in out]
  return tuple(jnp.moveaxis(t, -1, axis) for t in out)


def _inverse_permutation(permutation: Array) -> Array:
  """Inverse of permutations along the last axis (a scatter, not a sort)."""
  iota = lax.broadcasted_iota(permutation.dtype, permutation.shape,
                              permutation.ndim - 1)
  return jnp.put_along_axis(jnp.zeros_like(permutation), permutation, iota,
                            axis=-1, inplace=False)


def _segment_positions(sorted_segments: Array) -> Array:
  """0-based position within its segment for segment-grouped sorted ids."""
  iota = lax.broadcasted_iota(jnp.int32, sorted_segments.shape,
                              sorted_segments.ndim - 1)
  previous = jnp.concatenate(
      [sorted_segments[..., :1], sorted_segments[..., :-1]], axis=-1)
  starts = (iota == 0) | (sorted_segments != previous)
  first = lax.cummax(jnp.where(starts, iota, 0), axis=sorted_segments.ndim - 1)
  return iota - first


def ranks(
    scores: Array,
    *,
    where: Optional[Array] = None,
    segments: Optional[Array] = None,
    axis: int = -1,
    key: Optional[Array] = None,
) -> Array:
  """1-based ranks of ``scores`` in descending order (not differentiable).

  Masked items rank after all valid items. Equal scores keep list order
  (the earlier item gets the smaller rank) unless ``key`` is given, in which
  case ties are broken uniformly at random. With ``segments`` ranks restart at
  1 in every segment. One sort plus a scatter; no ``[n, n]`` matrix.

  >>> print(ranks(jnp.array([2., 5., 2., 1.])))
  [2 1 3 4]
  >>> print(ranks(jnp.array([2., 5., 2., 1.]),
  ...             segments=jnp.array([0, 0, 1, 1])))
  [2 1 1 2]

  Args:
    scores: ``[..., list_size]`` scores.
    where: Optional boolean mask of valid items.
    segments: Optional segment ids (only ``axis=-1``).
    axis: The list axis.
    key: Optional PRNG key for random tie breaking.

  Returns:
    int32 ranks, same shape as ``scores``.
  """
  scores = jnp.asarray(scores)
  if segments is not None and axis not in (-1, scores.ndim - 1):
    raise ValueError(f"ranks: segments need axis=-1, got axis={axis}.")
  scores = jnp.moveaxis(scores, axis, -1)
  if where is not None:
    where = jnp.moveaxis(jnp.asarray(where), axis, -1)
  last = scores.ndim - 1
  iota = lax.broadcasted_iota(jnp.int32, scores.shape, last)
  if segments is None:
    order = sort_order(scores, where=where, key=key)
    positions = iota
  else:
    keys = _sort_keys(scores, where, segments, key)
    sorted_all = lax.sort(tuple(keys) + (iota,), dimension=last,
                          num_keys=len(keys), is_stable=True)
    order = sorted_all[-1]
    positions = _segment_positions(sorted_all[0])
  out = jnp.put_along_axis(jnp.zeros_like(order), order, positions + 1,
                           axis=-1, inplace=False)
  return jnp.moveaxis(out, -1, axis)


def approx_ranks(
    scores: Array,
    *,
    where: Optional[Array] = None,
    segments: Optional[Array] = None,
    key: Optional[Array] = None,
    step_fn: Callable[[Array], Array] = jax.nn.sigmoid,
) -> Array:
  r"""Differentiable approximate ranks :cite:`qin2010general`.

  .. math:: \hat r_i = 1 + \sum_{j \ne i} \op{step}(s_j - s_i)

  over valid ``j`` in the same segment as ``i``; masked items get rank 1.
  Builds an ``[..., n, n]`` pair matrix.

  >>> print(approx_ranks(jnp.array([0., 0., 10.])))
  [2.4999547 2.4999547 1.0000908]

  Args:
    scores: ``[..., list_size]`` scores.
    where: Optional boolean mask of valid items.
    segments: Optional segment ids.
    key: Unused; accepted so rank functions are interchangeable.
    step_fn: A smooth approximation of the step function ``x >= 0``.

  Returns:
    Approximate 1-based ranks, same shape as ``scores``.
  """
  del key
  scores = jnp.asarray(scores)
  if where is not None:
    # Masked scores may be inf/NaN; keep them out of the pair arithmetic so
    # no NaN reaches a gradient.
    scores = jnp.where(jnp.asarray(where).astype(bool), scores,
                       jnp.zeros_like(scores))
  pairs = step_fn(scores[..., None, :] - scores[..., :, None])
  n = scores.shape[-1]
  mask = ~jnp.eye(n, dtype=bool)
  if where is not None:
    where = jnp.asarray(where).astype(bool)
    mask = mask & where[..., :, None] & where[..., None, :]
  if segments is not None:
    mask = mask & same_segment_mask(segments)
  mask = jnp.broadcast_to(mask, pairs.shape)
  return 1.0 + jnp.sum(jnp.where(mask, pairs, jnp.zeros_like(pairs)), axis=-1)


def cutoff(
    a: Array,
    n: Optional[int] = None,
    *,
    where: Optional[Array] = None,
    segments: Optional[Array] = None,
) -> Array:
  """1.0 for the ``n`` largest valid values of ``a`` (per list), else 0.0.

  Ties keep list order. ``n=None`` selects everything (masked items too,
  as in Rax). Uses ``jax.lax.top_k`` when there are no segments.

  >>> print(cutoff(jnp.array([1., 4., 2., 4.]), 2))
  [0. 1. 0. 1.]
  >>> print(cutoff(jnp.array([1., 4., 2., 4.]), 2,
  ...              where=jnp.array([True, False, True, True])))
  [0. 0. 1. 1.]

  Args:
    a: ``[..., list_size]`` values.
    n: How many to keep, or None for no cutoff.
    where: Optional boolean mask; masked items are never selected.
    segments: Optional segment ids; the top ``n`` are taken per segment.

  Returns:
    A float32 array of 0s and 1s, same shape as ``a``.
  """
  a = jnp.asarray(a)
  if n is None:
    return jnp.ones(a.shape, jnp.float32)
  _check_topn(n, "cutoff")
  if segments is not None:
    selected = ranks(a, where=where, segments=segments) <= n
  else:
    selected = top_n_mask(a, n, where=where)
  if where is not None:
    selected = selected & jnp.asarray(where).astype(bool)
  return selected.astype(jnp.float32)


def top_n_mask(a: Array, n: int, *, where: Optional[Array] = None) -> Array:
  """Boolean mask of the ``n`` largest valid entries of ``a`` per list.

  Ties keep list order; masked entries are never selected. One
  ``jax.lax.top_k`` call.

  >>> print(top_n_mask(jnp.array([3., 1., 3.]), 1))
  [ True False False]
  """
  a = jnp.asarray(a)
  size = a.shape[-1]
  k = min(int(n), size)
  if k == size:
    sel = jnp.ones(a.shape, bool)
  else:
    order = sort_order(a, where=where, topn=k)
    sel = jnp.put_along_axis(jnp.zeros(a.shape, bool), order,
                             jnp.ones(order.shape, bool), axis=-1,
                             inplace=False)
  if where is not None:
    sel = sel & jnp.asarray(where).astype(bool)
  return sel


def approx_cutoff(
    a: Array,
    n: Optional[int] = None,
    *,
    where: Optional[Array] = None,
    segments: Optional[Array] = None,
    step_fn: Callable[[Array], Array] = jax.nn.sigmoid,
) -> Array:
  """Smooth probability of being among the ``n`` largest valid values.

  ``step_fn(a - t)`` where the threshold ``t`` (no gradient) lies halfway
  between the ``n``-th and ``(n+1)``-th largest valid value; lists with at
  most ``n`` valid items keep everything. Masked items get 0.

  >>> print(approx_cutoff(jnp.array([3., 1., 2.]), 1,
  ...                     step_fn=lambda x: (x >= 0).astype(jnp.float32)))
  [1. 0. 0.]

  Args:
    a: ``[..., list_size]`` values.
    n: The cutoff, or None for no cutoff.
    where: Optional boolean mask.
    segments: Optional segment ids.
    step_fn: A smooth approximation of ``x >= 0``.

  Returns:
    Values in [0, 1], same shape as ``a``.
  """
  a = jnp.asarray(a)
  if n is None:
    return jnp.ones_like(a)
  _check_topn(n, "approx_cutoff")
  if n == 0:
    return jnp.zeros_like(a)
  a_ranks = ranks(a, where=where, segments=segments)
  at_boundary = (a_ranks == n) | (a_ranks == n + 1)
  boundary_values = jnp.where(at_boundary, a, jnp.zeros_like(a))
  valid = (jnp.ones(a.shape, jnp.int32) if where is None
           else jnp.asarray(where).astype(jnp.int32))
  if segments is None:
    threshold = jnp.sum(boundary_values, axis=-1, keepdims=True) / 2.0
    num_valid = jnp.sum(valid, axis=-1, keepdims=True)
  else:
    threshold = segment_sum(boundary_values, segments) / 2.0
    num_valid = segment_sum(valid, segments)
  threshold = lax.stop_gradient(threshold)
  out = jnp.where(num_valid > n, step_fn(a - threshold), jnp.ones_like(a))
  if where is not None:
    out = jnp.where(jnp.asarray(where).astype(bool), out, jnp.zeros_like(out))
  return out


def _check_topn(n, name):
  if isinstance(n, bool) or not isinstance(n, int) or n < 0:
    raise ValueError(f"{name}: topn must be a non-negative int or None, "
                     f"got n={n!r}.")


# ---------------------------------------------------------------------------
# Pairs.


def compute_pairs(a: Array, op: Callable[[Array, Array], Array]) -> Array:
  """All pairs ``op(a[..., i], a[..., j])`` as a ``[..., n, n]`` array.

  >>> print(compute_pairs(jnp.array([1., 2.]), jnp.subtract))
  [[ 0. -1.]
   [ 1.  0.]]
  """
  a = jnp.asarray(a)
  result = op(a[..., :, None], a[..., None, :])
  return jnp.broadcast_to(result, a.shape + a.shape[-1:])


# ---------------------------------------------------------------------------
# Segments: items of one list that form separate sub-lists.


def same_segment_mask(segments: Array) -> Array:
  """``[..., n, n]`` mask: True where items ``i`` and ``j`` share a segment.

  >>> print(same_segment_mask(jnp.array([0, 0, 1])).astype(int))
  [[1 1 0]
   [1 1 0]
   [0 0 1]]
  """
  segments = jnp.asarray(segments)
  return segments[..., :, None] == segments[..., None, :]


def segment_sum(a: Array, segments: Array,
                where: Optional[Array] = None) -> Array:
  """For every item, the sum of ``a`` over the valid items of its segment.

  >>> print(segment_sum(jnp.array([1., 2., 4.]), jnp.array([0, 1, 0])))
  [5. 2. 5.]
  """
  a = jnp.asarray(a)
  mask = same_segment_mask(segments)
  if where is not None:
    mask = mask & jnp.asarray(where).astype(bool)[..., None, :]
  pairs = jnp.broadcast_to(a[..., None, :], mask.shape)
  return jnp.sum(jnp.where(mask, pairs, jnp.zeros_like(pairs)), axis=-1)


def segment_max(a: Array, segments: Array, where: Optional[Array] = None,
                initial: float = -jnp.inf) -> Array:
  """For every item, the max of ``a`` over the valid items of its segment.

  >>> print(segment_max(jnp.array([1., 2., 4.]), jnp.array([0, 1, 0])))
  [4. 2. 4.]
  """
  a = jnp.asarray(a)
  mask = same_segment_mask(segments)
  if where is not None:
    mask = mask & jnp.asarray(where).astype(bool)[..., None, :]
  pairs = jnp.broadcast_to(a[..., None, :], mask.shape)
  return jnp.max(pairs, axis=-1, where=mask, initial=initial)


def segment_log_softmax(a: Array, segments: Array,
                        where: Optional[Array] = None) -> Array:
  """Log-softmax of ``a`` within each segment (over valid items).

  >>> print(jnp.exp(segment_log_softmax(jnp.array([0., 5., 0.]),
  ...                                   jnp.array([0, 1, 0]))))
  [0.5 1.  0.5]
  """
  a = jnp.asarray(a)
  finite_min = jnp.min(jnp.where(jnp.isfinite(a), a, 0))
  shift = lax.stop_gradient(segment_max(a, segments, where=where,
                                        initial=finite_min))
  shifted = a - shift
  masked = shifted if where is None else jnp.where(where, shifted, -jnp.inf)
  total = segment_sum(jnp.exp(masked), segments, where=where)
  return shifted - jnp.log(jnp.where(total > 0, total, 1.0))


def segment_softmax(a: Array, segments: Array,
                    where: Optional[Array] = None) -> Array:
  """Softmax of ``a`` within each segment (over valid items).

  >>> print(segment_softmax(jnp.array([0., 5., 0.]), jnp.array([0, 1, 0])))
  [0.5 1.  0.5]
  """
  return jnp.exp(segment_log_softmax(a, segments, where=where))


def in_segment_indices(segments: Array) -> Array:
  """0-based index of each item among the items of its segment, list order.

  >>> print(in_segment_indices(jnp.array([0, 0, 1, 0, 1])))
  [0 1 0 2 1]
  """
  mask = same_segment_mask(segments).astype(jnp.int32)
  return jnp.sum(jnp.tril(mask), axis=-1) - 1


def first_item_segment_mask(segments: Array,
                            where: Optional[Array] = None) -> Array:
  """True for the first valid item of every segment (one entry per segment).

  >>> print(first_item_segment_mask(jnp.array([1, 0, 1, 0])))
  [ True  True False False]
  """
  mask = same_segment_mask(segments)
  if where is not None:
    where = jnp.asarray(where).astype(bool)
    mask = mask & where[..., :, None] & where[..., None, :]
  first = mask & (jnp.cumsum(mask, axis=-1) == 1)
  return jnp.any(first, axis=-2)


# ---------------------------------------------------------------------------
# Function naming for transformations.


def fun_name(fun: Callable[..., Any]) -> str:
  """The ``__name__`` of ``fun``, looking through ``functools.partial``."""
  name = getattr(fun, "__name__", None)
  if name is not None:
    return name
  if isinstance(fun, functools.partial):
    return fun_name(fun.func)
  return "<unnamed function>"


def wraps(wrapped: Callable[..., Any], namestr: str = "{fun}",
          docstr: str = "{doc}") -> Callable[[T], T]:
  """Like ``functools.wraps`` with a new name and docstring.

  >>> def ndcg_metric(scores, labels):
  ...   '''NDCG.'''
  >>> @wraps(ndcg_metric, "approx_{fun}", "Approximate {doc}")
  ... def loss(scores, labels):
  ...   pass
  >>> print(loss.__name__, '-', loss.__doc__)
  approx_ndcg_metric - Approximate NDCG.
  """
  def decorator(fun: T) -> T:
    name = fun_name(wrapped)
    doc = getattr(wrapped, "__doc__", None) or ""
    fun.__name__ = namestr.format(fun=name)
    fun.__qualname__ = fun.__name__
    fun.__doc__ = docstr.format(fun=name, doc=doc)
    fun.__module__ = getattr(wrapped, "__module__", None) or fun.__module__
    fun.__wrapped__ = wrapped
    return fun
  return decorator


def accepts_kwarg(fn: Callable[..., Any], name: str) -> bool:
  """Whether ``fn`` accepts the keyword argument ``name``."""
  try:
    parameters = inspect.signature(fn).parameters
  except (TypeError, ValueError):
    return True
  if name in parameters:
    return parameters[name].kind != inspect.Parameter.POSITIONAL_ONLY
  return any(p.kind == inspect.Parameter.VAR_KEYWORD
             for p in parameters.values())


# ---------------------------------------------------------------------------
# Argument checks shared by losses and metrics.


def broadcast_arg(name: str, arg: str, value: Any,
                  shape: Sequence[int]) -> Array:
  """``value`` broadcast to ``shape``, or an error naming the argument.

  >>> broadcast_arg("ndcg_metric", "where", jnp.ones(3, bool), (2, 4))
  Traceback (most recent call last):
  ...
  ValueError: ndcg_metric: where must broadcast to scores.shape=(2, 4), got where.shape=(3,).
  """
  value = jnp.asarray(value)
  try:
    return jnp.broadcast_to(value, shape)
  except ValueError:
    raise ValueError(f"{name}: {arg} must broadcast to scores.shape="
                     f"{tuple(shape)}, got {arg}.shape={value.shape}.") from None
