"""Segments: items of one list that form separate sub-lists.

A ``segments`` array of ids shaped like the scores splits every list into
sub-lists (for example the queries packed into one row); the helpers below
compute per-segment sums, maxima and softmaxes with an ``[..., n, n]``
same-segment mask, and give each item its segment's value.

>>> import jax.numpy as jnp
>>> segments = jnp.array([0, 0, 1, 0])
>>> print(segment_sum(jnp.array([1., 2., 4., 8.]), segments))
[11. 11.  4. 11.]
>>> print(first_item_segment_mask(segments))
[ True False  True False]
"""

from jax import lax
import jax.numpy as jnp

from t5rank.ranking import types

Array = types.Array


def same_segment_mask(segments: Array) -> Array:
  """``[..., n, n]`` mask: True where items ``i`` and ``j`` share a segment.

  >>> print(same_segment_mask(jnp.array([0, 0, 1])).astype(int))
  [[1 1 0]
   [1 1 0]
   [0 0 1]]
  """
  segments = jnp.asarray(segments)
  return segments[..., :, None] == segments[..., None, :]


def segment_sum(a: Array, segments: Array, where: Array | None = None) -> Array:
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


def segment_max(
  a: Array,
  segments: Array,
  where: Array | None = None,
  initial: float = -jnp.inf,
) -> Array:
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


def segment_log_softmax(
  a: Array, segments: Array, where: Array | None = None
) -> Array:
  """Log-softmax of ``a`` within each segment (over valid items).

  >>> print(jnp.exp(segment_log_softmax(jnp.array([0., 5., 0.]),
  ...                                   jnp.array([0, 1, 0]))))
  [0.5 1.  0.5]
  """
  a = jnp.asarray(a)
  finite_min = jnp.min(jnp.where(jnp.isfinite(a), a, 0))
  shift = lax.stop_gradient(
    segment_max(a, segments, where=where, initial=finite_min)
  )
  shifted = a - shift
  masked = shifted if where is None else jnp.where(where, shifted, -jnp.inf)
  total = segment_sum(jnp.exp(masked), segments, where=where)
  return shifted - jnp.log(jnp.where(total > 0, total, 1.0))


def segment_softmax(
  a: Array, segments: Array, where: Array | None = None
) -> Array:
  """Softmax of ``a`` within each segment (over valid items).

  >>> print(segment_softmax(jnp.array([0., 5., 0.]), jnp.array([0, 1, 0])))
  [0.5 1.  0.5]
  """
  return jnp.exp(segment_log_softmax(a, segments, where=where))


def segment_logcumsumexp(
  x: Array,
  segments: Array,
  *,
  axis: int = -1,
  where: Array | None = None,
  reverse: bool = False,
) -> Array:
  r"""Cumulative :math:`\log\sum\exp` along ``axis`` within each segment.

  ``out[i] = log(sum_j exp(x[j]))`` over the valid ``j <= i`` (``j >= i``
  with ``reverse=True``) that share ``i``'s segment; the segments need not
  be contiguous or sorted. Masked entries add nothing (a masked position
  holds the running value of the valid items before it, as in
  :func:`t5rank.utils.logcumsumexp`); a position with no valid item to
  accumulate is ``-inf``. Each row is shifted by its largest term, so huge
  scores do not overflow. Builds an ``[..., n, n]`` mask, like the other
  segment helpers. Rax's ``segment_utils.segment_logcumsumexp`` signature.

  >>> x = jnp.log(jnp.array([1., 2., 3., 4.]))
  >>> print(jnp.exp(segment_logcumsumexp(x, jnp.array([0, 1, 0, 1]))))
  [1. 2. 4. 6.]
  >>> print(jnp.exp(segment_logcumsumexp(x, jnp.array([0, 1, 0, 1]),
  ...                                    reverse=True)))
  [4. 6. 3. 4.]

  Args:
    x: Values, ``[..., n, ...]`` with the list on ``axis``.
    segments: Segment ids shaped like ``x``.
    axis: The axis to accumulate over.
    where: Optional boolean mask shaped like ``x``; masked entries add
      nothing.
    reverse: Accumulate from the end instead of the start.

  Returns:
    An array like ``x``.
  """
  x = jnp.moveaxis(jnp.asarray(x), axis, -1)
  segments = jnp.moveaxis(jnp.asarray(segments), axis, -1)
  n = x.shape[-1]
  before = jnp.tril(jnp.ones((n, n), dtype=bool))
  mask = same_segment_mask(segments) & (before.T if reverse else before)
  if where is not None:
    valid = jnp.moveaxis(jnp.asarray(where).astype(bool), axis, -1)
    mask = mask & valid[..., None, :]
  pairs = jnp.broadcast_to(x[..., None, :], mask.shape)
  peak = jnp.max(pairs, axis=-1, where=mask, initial=-jnp.inf)
  peak = lax.stop_gradient(jnp.where(jnp.isfinite(peak), peak, 0.0))
  shifted = jnp.where(mask, pairs - peak[..., None], -jnp.inf)
  total = jnp.sum(jnp.exp(shifted), axis=-1)
  safe_total = jnp.where(total > 0, total, 1.0)
  out = jnp.where(total > 0, peak + jnp.log(safe_total), -jnp.inf)
  return jnp.moveaxis(out, -1, axis)


def in_segment_indices(segments: Array) -> Array:
  """0-based index of each item among the items of its segment, list order.

  >>> print(in_segment_indices(jnp.array([0, 0, 1, 0, 1])))
  [0 1 0 2 1]
  """
  mask = same_segment_mask(segments).astype(jnp.int32)
  return jnp.sum(jnp.tril(mask), axis=-1) - 1


def first_item_segment_mask(
  segments: Array, where: Array | None = None
) -> Array:
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
