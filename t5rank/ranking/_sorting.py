"""Sorting: ranks, sort orders and the sorting networks behind them.

Every exact rank in ``t5rank.ranking`` comes from here, so ties and masks
behave the same everywhere: ranks start at 1, higher scores rank first, ties
keep list order (the item seen first ranks first) unless a PRNG ``key`` is
given, valid ``NaN`` scores rank after ``-inf`` and masked items rank last.

>>> import jax.numpy as jnp
>>> scores = jnp.array([1., 3., 2., 3.])
>>> print(ranks(scores))
[4 1 3 2]
>>> print(ranks(scores, where=jnp.array([True, False, True, True])))
[3 4 2 1]
>>> print(sort_order(scores))
[1 3 2 0]

Which sort runs is chosen at trace time from ``jax.default_backend()`` and
the list size. On XLA:CPU, where XLA's sort calls a comparator function for
every comparison unless it sorts one int32 array alone:

* short lists (:func:`uses_sorting_network`) go through hand-unrolled bitonic
  sorting networks, several times faster to run, but every compare-exchange
  step is compiled separately;
* longer lists (:func:`uses_key_only_sorts`) are sorted as lone int32 arrays:
  a stable argsort is a radix sort of two passes, each sorting one 16-bit
  digit of the key packed with a 16-bit position; OPA packs the dense ranks
  (how many keys are smaller) of score and label into one int32 instead.

Every other backend (GPU, TPU) uses XLA's own sort (``lax.sort``,
``lax.top_k``) directly. All paths give the same results bit for bit, and all
but the networks compile in a fraction of a second.
"""

from collections.abc import Sequence

import jax
from jax import lax
import jax.numpy as jnp
import numpy as np

from t5rank.ranking import types

Array = types.Array


_INT32_MAX = 2**31 - 1
# The key of masked items in `order_key` and `label_key`: after every other.
MASKED_KEY = _INT32_MAX
_NAN_KEY = 0x7F800001  # after every finite and infinite score, before masked.

# Longest list sorted by a network on XLA:CPU. Above it compile time grows
# past XLA's sort by seconds per network (see BENCHMARKS.md, "Sorting").
_CPU_NETWORK_MAX_LIST_SIZE = 32


def uses_sorting_network(list_size: int) -> bool:
  """Whether lists of ``list_size`` items are sorted by a sorting network.

  True only on XLA:CPU (``jax.default_backend() == "cpu"``) for lists of 2
  to 32 items, where the unrolled networks run 10x faster than
  XLA's sort and still compile in about a second; everywhere else XLA's own
  sort is used. Decided when a function is traced.

  >>> uses_sorting_network(1)
  False
  """
  return (
    jax.default_backend() == "cpu"
    and 1 < list_size <= _CPU_NETWORK_MAX_LIST_SIZE
  )


# Longest list for key-only sorts: OPA's keys ``2 * (rank * (n + 1) + label
# rank)`` and a 16-bit digit with a position (argsorts) must fit in int32.
_KEY_ONLY_MAX_LIST_SIZE = 32767


def uses_key_only_sorts(list_size: int) -> bool:
  """Whether lists of ``list_size`` items are sorted as lone int32 arrays.

  True on XLA:CPU for lists longer than the sorting networks take, up to
  32,767 items (so ``2 * list_size**2`` fits in int32). There XLA sorts a lone
  int32 operand without comparator calls, 5-7x faster than a sort that
  carries positions along; a stable argsort then costs two such sorts and two
  gathers. Decided when a function is traced.

  >>> uses_key_only_sorts(1)
  False
  """
  return (
    jax.default_backend() == "cpu"
    and not uses_sorting_network(list_size)
    and 1 < list_size <= _KEY_ONLY_MAX_LIST_SIZE
  )


def _count_less(sorted_keys: Array, keys: Array) -> Array:
  """How many entries of each row of ``sorted_keys`` are below each key.

  A branch-free binary search over the last axis, all rows at once.
  """
  n = sorted_keys.shape[-1]
  steps = n.bit_length()

  def step(i, below):
    candidate = below + jnp.left_shift(jnp.int32(1), steps - 1 - i)
    probe = jnp.take_along_axis(
      sorted_keys, jnp.minimum(candidate, n) - 1, axis=-1, mode="clip"
    )
    return jnp.where((candidate <= n) & (probe < keys), candidate, below)

  return lax.fori_loop(0, steps, step, jnp.zeros(keys.shape, jnp.int32))


def _key_only_argsort(key: Array) -> Array:
  """Stable ascending argsort of int32 keys from two lone int32 sorts.

  A least-significant-digit radix sort with two 16-bit digits: the lists are
  sorted by ``low16(key) * 2**16 + position``, then, in that order, by
  ``high16(key) * 2**16 + rank``. Each composite is unique and fits int32
  while ``n <= 2**16``; its low 16 bits are the permutation of its pass.
  """
  iota = lax.broadcasted_iota(jnp.int32, key.shape, key.ndim - 1)
  low = jnp.bitwise_and(key, 0xFFFF) - 0x8000  # unsigned digit, shifted
  by_low = jnp.bitwise_and(
    jnp.sort(jnp.left_shift(low, 16) | iota, axis=-1), 0xFFFF
  )
  high = jnp.right_shift(jnp.take_along_axis(key, by_low, axis=-1), 16)
  by_high = jnp.bitwise_and(
    jnp.sort(jnp.left_shift(high, 16) | iota, axis=-1), 0xFFFF
  )
  return jnp.take_along_axis(by_low, by_high, axis=-1)


def order_key(scores: Array, where: Array | None = None) -> Array:
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


def _top_k_key(scores: Array, where: Array | None) -> Array:
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
  pass. XLA's comparator sort costs ~10ns per comparison on CPU; this runs
  3-5x faster for lists of a few hundred to a few thousand items, but its
  compile time grows with the ``log2(n)**2 / 2`` unrolled steps, so it is
  used only where :func:`uses_sorting_network` says so.
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
      [k, jnp.full((padded - n, size), _INT32_MAX, jnp.int32)], 0
    )
    i = jnp.concatenate(
      [i, lax.broadcasted_iota(jnp.int32, (padded - n, size), 0) + n], 0
    )
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
      k = jnp.stack(
        [jnp.where(swap, kb, ka), jnp.where(swap, ka, kb)], 1
      ).reshape(padded, size)
      i = jnp.stack(
        [jnp.where(swap, ib, ia), jnp.where(swap, ia, ib)], 1
      ).reshape(padded, size)
      half //= 2
  return i[:n].T.reshape(*batch, n)


def label_key(labels: Array, where: Array | None) -> Array:
  """int32 key ascending with ``labels``; masked items get ``MASKED_KEY``.

  Labels compare as float32; ``-0.0`` equals ``0.0``.

  >>> print(label_key(jnp.array([1., -2., 0.]), None) < label_key(
  ...     jnp.array([2., -1., -0.]), jnp.array([True, True, False])))
  [ True  True  True]
  """
  y = jnp.asarray(labels)
  if y.dtype != jnp.float32:
    y = y.astype(jnp.float32)
  # One key for every NaN (after +inf), never the masked items' key.
  y = jnp.where(jnp.isnan(y), jnp.nan, y + 0.0)
  bits = lax.bitcast_convert_type(y, jnp.int32)
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


def ordered_pair_counts(
  scores: Array, labels: Array, where: Array | None = None
) -> tuple[Array, Array, Array | None]:
  """Per list: #pairs with y_i > y_j and s_i > s_j, #pairs with y_i > y_j,
  and whether the list has a valid item (None without ``where``).

  The counts are float32 (exact below 2**24) and ``NaN`` for a list with a
  valid ``NaN`` label. They come without an ``[n, n]`` matrix: sort by
  (score descending, label ascending) so tied scores never count, then count
  label inversions with a merge-sort-shaped bitonic network (each merge
  counts, for every left-block item, the right-block items with a smaller
  label). O(n log^2 n) work. Valid ``NaN`` scores rank last. Longer lists on
  XLA:CPU (:func:`uses_key_only_sorts`) count the same inversions with one
  lone int32 sort per merge level, also O(n log^2 n); GPU and TPU compare
  all ``[n, n]`` pairs of the same keys.

  >>> correct, pairs, _ = ordered_pair_counts(jnp.array([3., 1., 2.]),
  ...                                         jnp.array([2., 1., 0.]))
  >>> print(correct, pairs)
  2.0 3.0
  """
  scores = jnp.asarray(scores)
  labels = jnp.asarray(labels)
  n = scores.shape[-1]
  where_b = (
    None
    if where is None
    else jnp.broadcast_to(jnp.asarray(where).astype(bool), scores.shape)
  )
  if uses_key_only_sorts(n):
    return _key_only_ordered_pair_counts(scores, labels, where_b)
  if uses_sorting_network(n):
    correct, pairs = _network_ordered_pair_counts(scores, labels, where_b)
  else:
    correct, pairs = _pairwise_ordered_pair_counts(scores, labels, where_b)
  correct, pairs = _nan_if_nan_label(correct, pairs, labels, where_b)
  has_valid = None if where_b is None else jnp.any(where_b, axis=-1)
  return correct, pairs, has_valid


def _valid_nan_labels(labels, where):
  """Items with a ``NaN`` label that are not masked."""
  return jnp.isnan(labels) if where is None else jnp.isnan(labels) & where


def _nan_if_nan_label(correct, pairs, labels, where):
  """float32 counts, ``NaN`` for lists with a valid ``NaN`` label."""
  nan_label = jnp.any(_valid_nan_labels(labels, where), axis=-1)
  return (
    jnp.where(nan_label, jnp.nan, correct.astype(jnp.float32)),
    jnp.where(nan_label, jnp.nan, pairs.astype(jnp.float32)),
  )


def _network_ordered_pair_counts(scores, labels, where_b):
  """:func:`ordered_pair_counts` (int32, without the ``NaN`` rule) from
  sorting networks (XLA:CPU, short lists)."""
  *batch, n = scores.shape
  size = 1
  for d in batch:
    size *= d
  k1 = order_key(scores, where_b).reshape(size, n).T
  k2 = label_key(labels, where_b).reshape(size, n).T
  m = max(1, (n - 1).bit_length())
  padded = 1 << m
  if padded != n:
    fill = jnp.full((padded - n, size), _INT32_MAX, jnp.int32)
    k1 = jnp.concatenate([k1, fill], 0)
    k2 = jnp.concatenate([k2, fill], 0)
  # 1) Sort by (score key, label key) ascending; keep the label sequence.
  for _, block, half in _compare_exchange_steps(padded):
    groups = padded // (2 * half)
    a1, b1 = (
      k1.reshape(groups, 2, half, size)[:, 0],
      k1.reshape(groups, 2, half, size)[:, 1],
    )
    a2, b2 = (
      k2.reshape(groups, 2, half, size)[:, 0],
      k2.reshape(groups, 2, half, size)[:, 1],
    )
    starts = np.arange(groups) * 2 * half
    ascending = jnp.asarray((starts & block) == 0)[:, None, None]
    b_first = (b1 < a1) | ((b1 == a1) & (b2 < a2))
    swap = b_first == ascending
    k1 = jnp.stack(
      [jnp.where(swap, b1, a1), jnp.where(swap, a1, b1)], 1
    ).reshape(padded, size)
    k2 = jnp.stack(
      [jnp.where(swap, b2, a2), jnp.where(swap, a2, b2)], 1
    ).reshape(padded, size)
  # 2) Merge sort the label sequence, counting inversions at every merge.
  seq = k2
  correct = jnp.zeros((size,), jnp.int32)
  for stage in range(1, m + 1):
    block = 1 << stage
    half = block // 2
    position = np.arange(padded) % block
    tag = jnp.broadcast_to(
      jnp.asarray(position >= half, jnp.int32)[:, None], (padded, size)
    )
    # Flip step then half-cleaners: every block ends sorted ascending by
    # (label, tag), so left items precede equal right items.
    steps = [("flip", block)] + [
      ("half", h) for h in (1 << e for e in range(stage - 2, -1, -1))
    ]
    for kind, width in steps:
      if kind == "flip":
        r = seq.reshape(padded // width, width, size)
        t = tag.reshape(padded // width, width, size)
        a, b = r[:, : width // 2], jnp.flip(r[:, width // 2 :], 1)
        ta, tb = t[:, : width // 2], jnp.flip(t[:, width // 2 :], 1)
      else:
        r = seq.reshape(padded // (2 * width), 2, width, size)
        t = tag.reshape(padded // (2 * width), 2, width, size)
        a, b, ta, tb = r[:, 0], r[:, 1], t[:, 0], t[:, 1]
      swap = (b < a) | ((b == a) & (tb < ta))
      lo, hi = jnp.where(swap, b, a), jnp.where(swap, a, b)
      tlo, thi = jnp.where(swap, tb, ta), jnp.where(swap, ta, tb)
      if kind == "flip":
        seq = jnp.concatenate([lo, jnp.flip(hi, 1)], 1).reshape(padded, size)
        tag = jnp.concatenate([tlo, jnp.flip(thi, 1)], 1).reshape(padded, size)
      else:
        seq = jnp.stack([lo, hi], 1).reshape(padded, size)
        tag = jnp.stack([tlo, thi], 1).reshape(padded, size)
    t = tag.reshape(padded // block, block, size)
    right_before = jnp.cumsum(t, axis=1) - t
    correct = correct + jnp.sum(jnp.where(t == 0, right_before, 0), axis=(0, 1))
  # Pairs with different labels: (m^2 - sum_v c_v^2) / 2 over valid items.
  valid = seq != _INT32_MAX
  iota = lax.broadcasted_iota(jnp.int32, seq.shape, 0)
  previous = jnp.concatenate([seq[:1], seq[:-1]], 0)
  run_start = lax.cummax(
    jnp.where((iota == 0) | (seq != previous), iota, 0), axis=0
  )
  squares = jnp.sum(jnp.where(valid, 2 * (iota - run_start) + 1, 0), axis=0)
  count = jnp.sum(valid, axis=0, dtype=jnp.int32)
  pairs = (count * count - squares) // 2
  return correct.reshape(batch), pairs.reshape(batch)


def _key_only_ordered_pair_counts(scores, labels, where):
  """:func:`ordered_pair_counts` from lone int32 sorts (XLA:CPU, long lists).

  Items are put in ranking order with tied scores by ascending label, so a
  pair counts exactly when an earlier item has a larger label: the count is
  the number of inversions of that label sequence, which
  :func:`_merge_inversions` counts. Scores and labels are first replaced by
  their dense ranks (how many keys of the list are smaller) so that both fit
  in one int32 sort key. O(n log^2 n) work; every sort sorts one int32 array.
  """
  n = scores.shape[-1]
  label_keys = label_key(labels, where)
  # One sort and one search for both keys (half the compile time of two).
  keys = jnp.stack([order_key(scores, where), label_keys])
  sorted_keys = jnp.sort(keys, axis=-1)
  score_rank, label_rank = _count_less(sorted_keys, keys)
  # Masked items sort last: a list has a valid item if its first one is.
  has_valid = None if where is None else sorted_keys[1, ..., 0] != MASKED_KEY
  valid = label_keys != MASKED_KEY
  # Masked items rank last by score and get label rank n, so nothing after
  # them has a smaller label and nothing before them a larger one.
  label_rank = jnp.where(valid, label_rank, n)
  # Each item's share of the pairs: the valid items with a smaller label.
  smaller = jnp.where(valid, label_rank, 0)
  base = n + 1
  ranked = jnp.sort(2 * (score_rank * base + label_rank), axis=-1)
  if _inversion_count_dtype(n) == jnp.int32:
    pairs = jnp.sum(smaller, axis=-1)
    correct = _merge_inversions(ranked, base, jnp.zeros_like(smaller))
    return (*_nan_if_nan_label(correct, pairs, labels, where), has_valid)
  # A valid NaN label makes its list's counts NaN through the sums, and the
  # merge count starts from the pair shares (minus their sum) instead of
  # zeros: on XLA:CPU both save a kernel each.
  nan_label = _valid_nan_labels(labels, where)
  smaller = jnp.where(nan_label, jnp.nan, smaller.astype(jnp.float32))
  pairs = jnp.sum(smaller, axis=-1)
  correct = _merge_inversions(ranked, base, smaller) - pairs
  return correct, pairs, has_valid


def _inversion_count_dtype(n):
  """float32 while every partial sum of :func:`_merge_inversions` (started
  from the pair shares) is exact in it, else int32."""
  levels = max(1, (n - 1).bit_length())
  exact = n * n // 2 + n * 2 ** (levels + 1) <= 2**24
  return jnp.float32 if exact else jnp.int32


def _merge_inversions(ranked, base, start):
  """Per list, #pairs i < j with x_i > x_j plus the sum of ``start``, from
  ``ranked = 2 * (r * base + x)`` sorted ascending, ``0 <= x < base``.

  A merge sort without merges: at level k every block of 2^k positions is
  sorted as one int32 key (block, x, half), so each item of a right half
  lands after exactly the left-half items with an equal or smaller x. The
  right item at position p in its block, r-th among the right items, has
  p - r of them before it, hence L - p + r inversions with the left half
  of size L; summed over the block that is L R + R (R - 1) / 2 minus the
  positions of the right items. The sort only moves items within their
  block, so the next level reads x from the sorted keys. O(n log^2 n).

  >>> x = jnp.array([2, 0, 1])  # inversions (2, 0) and (2, 1)
  >>> print(_merge_inversions(2 * (jnp.arange(3) * 3 + x), 3, jnp.zeros(3)))
  2.0
  """
  n = ranked.shape[-1]
  levels = max(1, (n - 1).bit_length())
  position = jnp.asarray(np.arange(n, dtype=np.int32))

  def right_positions(keys, level):
    within = jnp.bitwise_and(position, jnp.left_shift(1, level) - 1)
    right = jnp.bitwise_and(keys, 1) == 1
    return jnp.where(right, within, 0).astype(start.dtype)

  def merge_level(level, carry):
    keys, count = carry
    x = lax.rem(jnp.right_shift(keys, 1), jnp.int32(base))
    block = jnp.right_shift(position, level)
    half = jnp.bitwise_and(jnp.right_shift(position, level - 1), 1)
    keys = jnp.sort(2 * (block * base + x) + half, axis=-1)
    return keys, count - right_positions(keys, level)

  _, count = lax.fori_loop(1, levels + 1, merge_level, (ranked, start))
  return _left_right_pairs(n, levels) + jnp.sum(count, axis=-1)


def _left_right_pairs(n, levels):
  """Sum over levels and blocks of L R + R (R - 1) / 2 (see above)."""
  total = 0
  for level in range(1, levels + 1):
    half = 1 << (level - 1)
    full, rest = divmod(n, 2 * half)
    left, right = min(half, rest), max(0, rest - half)
    total += full * (half * half + half * (half - 1) // 2)
    total += left * right + right * (right - 1) // 2
  return total


def _pairwise_ordered_pair_counts(scores, labels, where):
  """:func:`ordered_pair_counts` from ``[..., n, n]`` key comparisons."""
  score_key = order_key(scores, where)
  label_keys = label_key(labels, where)
  ordered = label_keys[..., :, None] > label_keys[..., None, :]
  if where is not None:
    ordered = ordered & where[..., :, None] & where[..., None, :]
  correct = ordered & (score_key[..., :, None] < score_key[..., None, :])
  return (
    jnp.sum(correct, axis=(-2, -1), dtype=jnp.int32),
    jnp.sum(ordered, axis=(-2, -1), dtype=jnp.int32),
  )


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
  if not uses_sorting_network(n):
    # XLA:CPU sorts a lone int32 operand ~5x faster than floats (no
    # comparator calls); order_key is monotone and invertible on non-NaNs.
    key = jnp.sort(order_key(values), axis=-1)
    bits = jnp.where(key < 0, key ^ jnp.int32(_INT32_MAX), key)
    return (-lax.bitcast_convert_type(bits, jnp.float32)).astype(values.dtype)
  size = 1
  for d in batch:
    size *= d
  m = (n - 1).bit_length()
  padded = 1 << m
  v = values.reshape(size, n).T
  if padded != n:
    v = jnp.concatenate([v, jnp.full((padded - n, size), -jnp.inf, v.dtype)], 0)
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
      v = jnp.stack(
        [jnp.where(descending, hi, lo), jnp.where(descending, lo, hi)], 1
      ).reshape(padded, size)
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
  where: Array | None = None,
  key: Array | None = None,
  topn: int | None = None,
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
    order = lax.sort(
      tuple(keys) + (iota,),
      dimension=scores.ndim - 1,
      num_keys=len(keys),
      is_stable=True,
    )[-1]
    return order[..., :m]
  if m < n:
    return lax.top_k(_top_k_key(scores, where), m)[1].astype(jnp.int32)
  okey = order_key(scores, where)
  if n == 1:
    return jnp.zeros(scores.shape, jnp.int32)
  if uses_sorting_network(n):
    return _network_argsort(okey)
  if uses_key_only_sorts(n):
    return _key_only_argsort(okey)
  iota = lax.broadcasted_iota(jnp.int32, scores.shape, scores.ndim - 1)
  return lax.sort(
    (okey, iota), dimension=scores.ndim - 1, num_keys=1, is_stable=True
  )[1]


def sort_by(
  scores: Array,
  tensors_to_sort: Sequence[Array],
  axis: int = -1,
  where: Array | None = None,
  segments: Array | None = None,
  key: Array | None = None,
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
    axis: The list axis.
    where: Optional boolean mask of valid items.
    segments: Optional segment ids.
    key: Optional PRNG key for random tie breaking.

  Returns:
    A tuple with the sorted arrays.
  """
  scores = jnp.moveaxis(jnp.asarray(scores), axis, -1)
  move = lambda a: None if a is None else jnp.moveaxis(jnp.asarray(a), axis, -1)
  where, segments = move(where), move(segments)
  tensors = [move(t) for t in tensors_to_sort]
  if segments is None:
    order = sort_order(scores, where=where, key=key)
    out = [jnp.take_along_axis(t, order, axis=-1) for t in tensors]
  else:
    keys = _sort_keys(scores, where, segments, key)
    out = lax.sort(
      tuple(keys) + tuple(tensors),
      dimension=scores.ndim - 1,
      num_keys=len(keys),
      is_stable=True,
    )[len(keys) :]
    # Sorting by segment first groups each segment; move every group back to
    # the slots its segment held (the k-th slot of segment s, in list order,
    # receives segment s's k-th item by score).
    slot_order = jnp.argsort(segments, axis=-1, stable=True)
    inverse = _inverse_permutation(slot_order)
    out = [jnp.take_along_axis(t, inverse, axis=-1) for t in out]
  return tuple(jnp.moveaxis(t, -1, axis) for t in out)


def _inverse_permutation(permutation: Array) -> Array:
  """Inverse of permutations along the last axis (a scatter, not a sort)."""
  iota = lax.broadcasted_iota(
    permutation.dtype, permutation.shape, permutation.ndim - 1
  )
  return jnp.put_along_axis(
    jnp.zeros_like(permutation), permutation, iota, axis=-1, inplace=False
  )


def _segment_positions(sorted_segments: Array) -> Array:
  """0-based position within its segment for segment-grouped sorted ids."""
  iota = lax.broadcasted_iota(
    jnp.int32, sorted_segments.shape, sorted_segments.ndim - 1
  )
  previous = jnp.concatenate(
    [sorted_segments[..., :1], sorted_segments[..., :-1]], axis=-1
  )
  starts = (iota == 0) | (sorted_segments != previous)
  first = lax.cummax(jnp.where(starts, iota, 0), axis=sorted_segments.ndim - 1)
  return iota - first


def ranks(
  scores: Array,
  *,
  where: Array | None = None,
  segments: Array | None = None,
  axis: int = -1,
  key: Array | None = None,
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
    sorted_all = lax.sort(
      tuple(keys) + (iota,), dimension=last, num_keys=len(keys), is_stable=True
    )
    order = sorted_all[-1]
    positions = _segment_positions(sorted_all[0])
  out = jnp.put_along_axis(
    jnp.zeros_like(order), order, positions + 1, axis=-1, inplace=False
  )
  return jnp.moveaxis(out, -1, axis)


def top_n_mask(a: Array, n: int, *, where: Array | None = None) -> Array:
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
    sel = jnp.put_along_axis(
      jnp.zeros(a.shape, bool),
      order,
      jnp.ones(order.shape, bool),
      axis=-1,
      inplace=False,
    )
  if where is not None:
    sel = sel & jnp.asarray(where).astype(bool)
  return sel
