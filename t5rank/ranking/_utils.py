"""Shared mechanics of the ranking library: reductions, cutoffs, pairs.

Every loss, metric and lambda weight in ``t5rank.ranking`` works on arrays of
shape ``[..., list_size]`` and reuses the helpers below (and the ranks of
``_sorting``, the segment sums of ``_segments``), so masking, tie breaking and
empty-list handling behave the same everywhere:

* ``where`` is a boolean mask of valid items; masked items never influence a
  valid item's rank, probability or reduction, whatever their score (``±inf``
  and ``NaN`` included).
* Ranks start at 1. Ties keep list order (the item seen first ranks first)
  unless a PRNG ``key`` is given, which breaks ties at random.
* A reduction over nothing valid gives 0, never ``NaN``.

The public names are in :mod:`t5rank.utils` (Rax's ``rax.utils``).

>>> import jax.numpy as jnp
>>> scores = jnp.array([1., 3., 2., 3.])
>>> print(cutoff(scores, 2))
[0. 1. 0. 1.]
>>> print(safe_reduce(scores, where=scores > 1, reduce_fn=jnp.mean))
2.6666667
"""

from collections.abc import Callable
from collections.abc import Sequence
import functools
from typing import Any
from typing import TypeVar

import jax
from jax import lax
import jax.numpy as jnp
import numpy as np

from t5rank.ranking import _segments
from t5rank.ranking import _sorting
from t5rank.ranking import types

Array = types.Array
T = TypeVar("T")


# ---------------------------------------------------------------------------
# Reductions and normalisation.


def any_valid(mask: Array, axis: int = -1) -> Array:
  """``jnp.any(mask, axis)``, computed as a float32 max.

  The same result on every backend; XLA:CPU compiles a boolean OR-reduction
  about 0.1 s slower than a float max (BENCHMARKS.md, "Ranking ops: compile
  time"), and every metric and loss reduces a mask at least once.

  >>> print(any_valid(jnp.array([[False, True], [False, False]])))
  [ True False]
  """
  mask = jnp.asarray(mask)
  return jnp.max(mask.astype(jnp.float32), axis=axis, initial=0.0) > 0


def count_valid(mask: Array, axis: int | None = None) -> Array:
  """``jnp.sum(mask, axis)`` as float32 (exact up to 2**24 entries).

  Like :func:`any_valid`, a float sum compiles faster on XLA:CPU than an
  integer one.

  >>> print(count_valid(jnp.array([True, False, True])))
  2.0
  """
  return jnp.sum(jnp.asarray(mask), axis=axis, dtype=jnp.float32)


def safe_reduce(
  a: Array,
  where: Array | None = None,
  reduce_fn: Callable[..., Array] | None = None,
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
    count = count_valid(where)
    return total / jnp.maximum(count, 1).astype(total.dtype)
  if where is None:
    return reduce_fn(a)
  return reduce_fn(jnp.where(where, a, jnp.zeros_like(a)), where=where)


def normalize_probabilities(
  unscaled_probabilities: Array,
  where: Array | None = None,
  axis: int = -1,
  *,
  segments: Array | None = None,
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
    unscaled_probabilities: Non-negative values, ``[..., list_size]``.
    where: Optional boolean mask of valid items.
    axis: The list axis.
    segments: Optional segment ids; normalisation is then per segment.

  Returns:
    The normalised probabilities, same shape as
    ``unscaled_probabilities``.
  """
  unscaled = jnp.moveaxis(jnp.asarray(unscaled_probabilities), axis, -1)
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
    total = _segments.segment_sum(values, segments)
    count = _segments.segment_sum(where.astype(jnp.int32), segments)
    everything = _segments.segment_sum(jnp.ones_like(count), segments)
  count = jnp.where(count == 0, everything, count)
  uniform = jnp.where(
    any_valid(where)[..., None]
    if segments is None
    else _segments.segment_sum(where.astype(jnp.int32), segments) > 0,
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
  where: Array | None = None,
  reverse: bool = False,
) -> Array:
  r"""Cumulative :math:`\log\sum\exp` along ``axis``, skipping masked entries.

  ``out[i] = log(sum_{j <= i, where[j]} exp(x[j]))`` (or ``j >= i`` with
  ``reverse=True``). Positions before the first valid entry are ``-inf``.
  A loop over the list axis on XLA:CPU, XLA's cumulative reduction elsewhere,
  with a hand-written gradient: reverse-mode differentiation (``jax.grad``,
  ``jax.vjp``, nested too) works, forward mode (``jax.jvp``, ``jax.jacfwd``)
  does not.

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
  return _cumlogsumexp(x, axis, reverse)


def _accumulate_logsumexp(x: Array, axis: int, reverse: bool) -> Array:
  """The value of ``lax.cumlogsumexp``, computed the fast way per backend."""
  if jax.default_backend() != "cpu" or not x.shape[axis]:
    return lax.cumlogsumexp(x, axis=axis, reverse=reverse)

  # XLA:CPU evaluates a cumulative logaddexp window by window, O(n^2): 23 ms
  # at [512, 200], against 0.8 ms for this loop over the list axis, which
  # compiles as fast.
  def step(total, item):
    total = jnp.logaddexp(total, item)
    return total, total

  items = jnp.moveaxis(x, axis, 0)
  nothing = jnp.full(items.shape[1:], -jnp.inf, items.dtype)
  _, out = lax.scan(step, nothing, items, reverse=reverse)
  return jnp.moveaxis(out, 0, axis)


# Differentiating `lax.cumlogsumexp` makes JAX rebuild it as an associative
# scan and differentiate that: at [512, 200] the value and gradient compiled
# in 3.3 s, against 0.35 s with the rule below.
@functools.partial(jax.custom_vjp, nondiff_argnums=(1, 2))
def _cumlogsumexp(x: Array, axis: int, reverse: bool) -> Array:
  return _accumulate_logsumexp(x, axis, reverse)


def _cumlogsumexp_fwd(x, axis, reverse):
  out = _accumulate_logsumexp(x, axis, reverse)
  return out, (x, out)


def _cumlogsumexp_bwd(axis, reverse, residuals, g):
  # d out[i] / d x[j] = exp(x[j] - out[i]) for each j that out[i] sums, so
  # x[j] receives sum_i g[i] exp(x[j] - out[i]) over the i that sum j: a
  # cumulative sum in the other direction. It runs in log space, with the
  # positive and negative parts of g apart, so no term exceeds |g[i]|
  # (x[j] <= out[i]) and nothing overflows. Both x and out are taken
  # relative to the list's largest out first: large but close scores then
  # lose no precision to rounding. out only grows along the accumulation,
  # so its largest value is the last one accumulated.
  x, out = residuals
  if not out.shape[axis]:
    return (jnp.zeros_like(x),)
  summed = jnp.isfinite(out)
  last = 0 if reverse else out.shape[axis] - 1
  reference = lax.slice_in_dim(out, last, last + 1, axis=axis)
  reference = jnp.where(jnp.isfinite(reference), reference, 0.0)
  relative_out = jnp.where(summed, out - reference, 0.0)

  def log_accumulated(part):
    present = summed & (part > 0)
    logs = jnp.log(jnp.where(present, part, 1.0)) - relative_out
    logs = jnp.where(present, logs, -jnp.inf)
    return _accumulate_logsumexp(logs, axis, not reverse)

  relative_x = x - reference
  positive = jnp.exp(relative_x + log_accumulated(g))
  negative = jnp.exp(relative_x + log_accumulated(-g))
  return (positive - negative,)


_cumlogsumexp.defvjp(_cumlogsumexp_fwd, _cumlogsumexp_bwd)


# ---------------------------------------------------------------------------
# Approximate ranks and cutoffs.


def approx_ranks(
  scores: Array,
  *,
  where: Array | None = None,
  segments: Array | None = None,
  key: Array | None = None,
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
    scores = jnp.where(
      jnp.asarray(where).astype(bool), scores, jnp.zeros_like(scores)
    )
  pairs = step_fn(scores[..., None, :] - scores[..., :, None])
  n = scores.shape[-1]
  mask = ~jnp.eye(n, dtype=bool)
  if where is not None:
    where = jnp.asarray(where).astype(bool)
    mask = mask & where[..., :, None] & where[..., None, :]
  if segments is not None:
    mask = mask & _segments.same_segment_mask(segments)
  mask = jnp.broadcast_to(mask, pairs.shape)
  return 1.0 + jnp.sum(jnp.where(mask, pairs, jnp.zeros_like(pairs)), axis=-1)


def cutoff(
  a: Array,
  n: int | None = None,
  where: Array | None = None,
  segments: Array | None = None,
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
  n = check_topn("cutoff", n, "n")
  if segments is not None:
    selected = _sorting.ranks(a, where=where, segments=segments) <= n
  else:
    selected = _sorting.top_n_mask(a, n, where=where)
  if where is not None:
    selected = selected & jnp.asarray(where).astype(bool)
  return selected.astype(jnp.float32)


def approx_cutoff(
  a: Array,
  n: int | None = None,
  *,
  where: Array | None = None,
  segments: Array | None = None,
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
  n = check_topn("approx_cutoff", n, "n")
  if n == 0:
    return jnp.zeros_like(a)
  a_ranks = _sorting.ranks(a, where=where, segments=segments)
  at_boundary = (a_ranks == n) | (a_ranks == n + 1)
  boundary_values = jnp.where(at_boundary, a, jnp.zeros_like(a))
  valid = (
    jnp.ones(a.shape, jnp.int32)
    if where is None
    else jnp.asarray(where).astype(jnp.int32)
  )
  if segments is None:
    threshold = jnp.sum(boundary_values, axis=-1, keepdims=True) / 2.0
    num_valid = jnp.sum(valid, axis=-1, keepdims=True)
  else:
    threshold = _segments.segment_sum(boundary_values, segments) / 2.0
    num_valid = _segments.segment_sum(valid, segments)
  threshold = lax.stop_gradient(threshold)
  out = jnp.where(num_valid > n, step_fn(a - threshold), jnp.ones_like(a))
  if where is not None:
    out = jnp.where(jnp.asarray(where).astype(bool), out, jnp.zeros_like(out))
  return out


def check_topn(name: str, topn: Any, argname: str = "topn") -> int | None:
  """``topn`` as a Python int (or None); a ValueError unless it is one.

  Any integer type is accepted (``int``, NumPy integers, 0-d integer arrays);
  bools, floats and negative values are errors.

  >>> check_topn("ndcg_metric", np.int64(2))
  2
  >>> check_topn("cutoff", -1, "n")
  Traceback (most recent call last):
  ...
  ValueError: cutoff: n must be a non-negative integer or None, got n=-1.
  """
  if topn is None:
    return None
  dtype = getattr(topn, "dtype", None)
  integral = isinstance(topn, (int, np.integer)) or (
    dtype is not None
    and np.ndim(topn) == 0
    and jnp.issubdtype(dtype, jnp.integer)
  )
  if isinstance(topn, (bool, np.bool_)) or not integral or int(topn) < 0:
    raise ValueError(
      f"{name}: {argname} must be a non-negative integer or "
      f"None, got {argname}={topn!r}."
    )
  return int(topn)


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
# Function naming for transformations.


def fun_name(fun: Callable[..., Any]) -> str:
  """The ``__name__`` of ``fun``, looking through ``functools.partial``."""
  name = getattr(fun, "__name__", None)
  if name is not None:
    return name
  if isinstance(fun, functools.partial):
    return fun_name(fun.func)
  return "<unnamed function>"


def wraps(
  wrapped: Callable[..., Any], namestr: str = "{fun}", docstr: str = "{doc}"
) -> Callable[[T], T]:
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


# ---------------------------------------------------------------------------
# Argument checks shared by losses and metrics.


def broadcast_arg(
  name: str, arg: str, value: Any, shape: Sequence[int]
) -> Array:
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
    raise ValueError(
      f"{name}: {arg} must broadcast to scores.shape="
      f"{tuple(shape)}, got {arg}.shape={value.shape}."
    ) from None
