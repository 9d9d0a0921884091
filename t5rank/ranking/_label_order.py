r"""The unique-softmax log-likelihood, computed in ascending label order.

Item ``i`` competes with every valid item of a strictly smaller label:

.. math::
    \log p_i = s_i - \log\Big(e^{s_i} + \sum_{j:\, y_j < y_i} e^{s_j}\Big)

One sort by label makes each denominator a log-sum-exp over the *groups* of
equal labels that come before the item, so the whole list costs
``O(n log n)`` instead of the ``[n, n]`` comparisons of the direct form.
:func:`weighted_log_likelihood` returns ``sum_i w_i log p_i`` per list with a
hand-written gradient: the gradient's sum over the groups that come *after*
each item runs in label order too, and is put back in list order by a second
sort, which XLA compiles faster than the gathers and scatters that
differentiating the first sort would produce.
"""

import math

import jax
from jax import lax
import jax.numpy as jnp

from t5rank.ranking import _sorting
from t5rank.ranking import _utils
from t5rank.ranking import types

Array = types.Array


def weighted_log_likelihood(
  scores: Array, labels: Array, valid: Array, item_weights: Array
) -> tuple[Array, Array]:
  """``sum_i item_weights[i] * log p_i`` over the valid items of each list.

  >>> total, has_valid = weighted_log_likelihood(
  ...     jnp.zeros(3), jnp.array([2., 1., 0.]), jnp.ones(3, bool), jnp.ones(3))
  >>> print(total, has_valid)
  -1.7917595 True

  (``log(1/3) + log(1/2) + log(1)``.) Reverse-mode differentiation works
  (nested too); forward mode does not. Labels are grouped by their float32
  value, like every sort key in ``t5rank.ranking``.

  Args:
    scores: ``[..., list_size]`` finite scores.
    labels: ``[..., list_size]`` float labels.
    valid: ``[..., list_size]`` boolean mask.
    item_weights: ``[..., list_size]`` multipliers of each item's term.

  Returns:
    ``(total, has_valid)``, both ``[...]``: the sum of each list and whether
    it has a valid item (which the sort tells for free: a loss needs it for
    its mean over lists, and a reduction of ``valid`` costs compile time).
  """
  return _weighted_log_likelihood(scores, labels, valid, item_weights)


@jax.custom_vjp
def _weighted_log_likelihood(scores, labels, valid, item_weights):
  return _forward(scores, labels, valid, item_weights)[0]


def _forward(scores, labels, valid, item_weights):
  shape = scores.shape
  as_rows = lambda a: a.reshape(math.prod(shape[:-1]), shape[-1])
  # Masked items sort last, all in one group: no valid item counts them.
  # The order inside a group does not matter, so the sort need not be
  # stable (XLA:CPU's unstable sort is 20% faster).
  keys = as_rows(_sorting.label_key(labels, valid))
  position = lax.broadcasted_iota(jnp.int32, keys.shape, 1)
  keys, sorted_scores, weights, position = lax.sort(
    (
      keys,
      as_rows(scores),
      as_rows(jnp.where(valid, item_weights, 0.0)),
      position,
    ),
    dimension=1,
    num_keys=1,
  )
  log_denominator = jnp.logaddexp(
    sorted_scores, earlier_groups_logsumexp(sorted_scores, keys)
  )
  log_p = sorted_scores - log_denominator
  total = jnp.sum(weights * log_p, axis=1).reshape(shape[:-1])
  if shape[-1]:
    has_valid = (keys[:, 0] != _sorting.MASKED_KEY).reshape(shape[:-1])
  else:
    has_valid = jnp.zeros(shape[:-1], bool)
  residuals = (keys, sorted_scores, weights, position, log_denominator, log_p)
  return (total, has_valid), residuals


def _forward_with_residuals(scores, labels, valid, item_weights):
  outputs, residuals = _forward(scores, labels, valid, item_weights)
  return outputs, (valid, residuals)


def _backward(saved, cotangents):
  # With c_k = g w_k and D_k the denominator of item k (in label order):
  #   d/ds_k = c_k (1 - e^{s_k} / D_k) - sum_{i above k} c_i e^{s_k} / D_i,
  # "above" meaning every item of a strictly larger label. Every term of the
  # sum is at most |c_i| (e^{s_k} <= D_i), but 1 / D_i alone overflows for
  # very negative scores, so the sum is taken with exponents, relative to
  # each list's largest log D.
  valid, residuals = saved
  shape = valid.shape
  keys, sorted_scores, weights, position, log_denominator, log_p = residuals
  if not keys.shape[1]:
    return (jnp.zeros(shape), None, None, jnp.zeros(shape))
  g = cotangents[0].reshape(-1, 1)
  c = g * weights
  own = c * (1.0 - jnp.exp(sorted_scores - log_denominator))
  reference = jnp.max(log_denominator, axis=1, keepdims=True)
  others = later_groups_weighted_sum(
    sorted_scores - reference, reference - log_denominator, c, keys
  )
  _, d_scores, d_weights = lax.sort(
    (position, own - others, g * log_p), dimension=1, num_keys=1
  )
  d_weights = jnp.where(valid, d_weights.reshape(shape), 0.0)
  return (d_scores.reshape(shape), None, None, d_weights)


_weighted_log_likelihood.defvjp(_forward_with_residuals, _backward)


def earlier_groups_logsumexp(
  x: Array, keys: Array, reverse: bool = False
) -> Array:
  """Log-sum-exp of ``x`` over the earlier groups of equal ``keys``.

  ``x`` and ``keys`` are ``[rows, n]``, with equal keys next to each other.
  ``out[:, k]`` sums ``exp(x)`` over the items before ``k`` whose key differs
  from ``k``'s group (after it with ``reverse=True``); ``-inf`` if none.
  A loop over the list on XLA:CPU, cumulative ops elsewhere.

  >>> x = jnp.log(jnp.array([[1., 2., 4., 8.]]))
  >>> out = earlier_groups_logsumexp(x, jnp.array([[0, 0, 1, 2]]))
  >>> print(jnp.exp(out).round(4))
  [[0. 0. 3. 7.]]
  """
  if not x.shape[1]:
    return x
  if jax.default_backend() == "cpu":
    return _earlier_groups_loop(x, keys, reverse)
  return _earlier_groups_cumulative(x, keys, reverse)


def _earlier_groups_loop(x, keys, reverse):
  # One step per column of the [rows, n] array: indexing the list axis in
  # place avoids the two transposes that lax.scan's leading axis would need.
  rows, size = x.shape

  def step(i, state):
    done, group, previous_key, out = state
    column = size - 1 - i if reverse else i
    item = lax.dynamic_index_in_dim(x, column, 1, keepdims=False)
    key = lax.dynamic_index_in_dim(keys, column, 1, keepdims=False)
    starts = key != previous_key
    done = jnp.where(starts, _logaddexp(done, group), done)
    group = jnp.where(starts, item, _logaddexp(group, item))
    out = lax.dynamic_update_index_in_dim(out, done, column, 1)
    return done, group, key, out

  nothing = jnp.full((rows,), -jnp.inf, x.dtype)
  # The first item always starts a group, whatever its key.
  first = jnp.where(keys[:, -1 if reverse else 0] == 0, 1, 0).astype(keys.dtype)
  state = (nothing, nothing, first, jnp.empty_like(x))
  return lax.fori_loop(0, size, step, state)[-1]


def _logaddexp(a, b):
  # jnp.logaddexp with a gradient of 0, not NaN, where both sides are -inf,
  # so that second derivatives through the loop stay finite.
  peak = jnp.maximum(a, b)
  summed = peak > -jnp.inf
  gap = jnp.where(summed, -jnp.abs(a - b), 0.0)
  return jnp.where(summed, peak + jnp.log1p(jnp.exp(gap)), -jnp.inf)


def _earlier_groups_cumulative(x, keys, reverse):
  if reverse:
    flip = lambda a: jnp.flip(a, axis=1)
    return flip(_earlier_groups_cumulative(flip(x), flip(keys), False))
  prefix = _utils.logcumsumexp(x, axis=1)
  position = lax.broadcasted_iota(jnp.int32, x.shape, 1)
  starts = jnp.concatenate(
    [jnp.ones_like(keys[:, :1], bool), keys[:, 1:] != keys[:, :-1]], axis=1
  )
  group_start = lax.cummax(jnp.where(starts, position, 0), axis=1)
  before = jnp.take_along_axis(prefix, jnp.maximum(group_start - 1, 0), axis=1)
  return jnp.where(group_start > 0, before, -jnp.inf)


def later_groups_weighted_sum(
  t: Array, e: Array, c: Array, keys: Array
) -> Array:
  """``out[:, k] = sum_i c[:, i] * exp(t[:, k] + e[:, i])`` over later groups.

  All arguments are ``[rows, n]`` with equal ``keys`` next to each other; the
  sum runs over the items after ``k`` whose key differs from ``k``'s group.
  Built for ``t[k] + e[i] <= 0`` (no term exceeds ``|c[i]|``) with ``e``
  alone possibly too large for ``exp``. A loop over the list on XLA:CPU,
  cumulative ops elsewhere.

  >>> t, e = jnp.array([[0., 0., -1.]]), jnp.array([[0., 0., 0.]])
  >>> out = later_groups_weighted_sum(
  ...     t, e, jnp.array([[1., 2., 3.]]), jnp.array([[0, 1, 1]]))
  >>> print(out.round(4))
  [[5. 0. 0.]]
  """
  if not t.shape[1]:
    return t
  if jax.default_backend() == "cpu":
    return _later_groups_loop(t, e, c, keys)
  return _later_groups_cumulative(t, e, c, keys)


def _later_groups_loop(t, e, c, keys):
  # From the end of the list: each accumulator is (m, s) standing for
  # s * exp(m), rescaled to the larger exponent whenever two are added, so
  # c keeps its sign and nothing overflows.
  rows, size = t.shape

  def add(m1, s1, m2, s2):
    m = jnp.maximum(m1, m2)
    shift = jnp.where(m > -jnp.inf, m, 0.0)
    return m, s1 * jnp.exp(m1 - shift) + s2 * jnp.exp(m2 - shift)

  def step(i, state):
    done_m, done_s, group_m, group_s, previous_key, out = state
    column = size - 1 - i
    take = lambda a: lax.dynamic_index_in_dim(a, column, 1, keepdims=False)
    key = take(keys)
    starts = key != previous_key
    merged_m, merged_s = add(done_m, done_s, group_m, group_s)
    done_m = jnp.where(starts, merged_m, done_m)
    done_s = jnp.where(starts, merged_s, done_s)
    grown_m, grown_s = add(group_m, group_s, take(e), take(c))
    group_m = jnp.where(starts, take(e), grown_m)
    group_s = jnp.where(starts, take(c), grown_s)
    value = done_s * jnp.exp(take(t) + done_m)
    out = lax.dynamic_update_index_in_dim(out, value, column, 1)
    return done_m, done_s, group_m, group_s, key, out

  nothing = jnp.full((rows,), -jnp.inf, t.dtype)
  zero = jnp.zeros((rows,), t.dtype)
  last = jnp.where(keys[:, -1] == 0, 1, 0).astype(keys.dtype)
  state = (nothing, zero, nothing, zero, last, jnp.empty_like(t))
  return lax.fori_loop(0, size, step, state)[-1]


def _later_groups_cumulative(t, e, c, keys):
  # Log space, with the positive and negative parts of c apart.
  rows = t.shape[0]

  def log_part(part):
    present = part > 0
    logs = jnp.log(jnp.where(present, part, 1.0)) + e
    return jnp.where(present, logs, -jnp.inf)

  above = _earlier_groups_cumulative(
    jnp.concatenate([log_part(c), log_part(-c)]),
    jnp.concatenate([keys, keys]),
    reverse=True,
  )
  return jnp.exp(t + above[:rows]) - jnp.exp(t + above[rows:])
