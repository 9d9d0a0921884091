r"""The unique-softmax log-likelihood, computed in ascending label order.

Item ``i`` competes with every valid item of a strictly smaller label:

.. math::
    \log p_i = s_i - \log\Big(e^{s_i} + \sum_{j:\, y_j < y_i} e^{s_j}\Big)

One stable sort by label makes each denominator a log-sum-exp over the
*groups* of equal labels that come before the item, so the whole list costs
``O(n log n)`` instead of the ``[n, n]`` comparisons of the direct form.
:func:`weighted_log_likelihood` returns ``sum_i w_i log p_i`` per list with a
hand-written gradient: both passes stay in label order and the gradient is
put back in list order by a second sort, which XLA compiles faster than the
gathers and scatters that differentiating the sort would produce.
"""

import math

import jax
from jax import lax
import jax.numpy as jnp

from t5rank.ranking import _utils
from t5rank.ranking import types

Array = types.Array


def weighted_log_likelihood(
  scores: Array, labels: Array, valid: Array, item_weights: Array
) -> Array:
  """``sum_i item_weights[i] * log p_i`` over the valid items of each list.

  >>> print(weighted_log_likelihood(jnp.zeros(3), jnp.array([2., 1., 0.]),
  ...                               jnp.ones(3, bool), jnp.ones(3)))
  -1.7917595

  (``log(1/3) + log(1/2) + log(1)``.) Reverse-mode differentiation works
  (nested too); forward mode does not.

  Args:
    scores: ``[..., list_size]`` finite scores.
    labels: ``[..., list_size]`` float labels.
    valid: ``[..., list_size]`` boolean mask.
    item_weights: ``[..., list_size]`` multipliers of each item's term.

  Returns:
    A ``[...]`` array: one sum per list.
  """
  return _weighted_log_likelihood(scores, labels, valid, item_weights)


@jax.custom_vjp
def _weighted_log_likelihood(scores, labels, valid, item_weights):
  return _forward(scores, labels, valid, item_weights)[0]


def _forward(scores, labels, valid, item_weights):
  shape = scores.shape
  as_rows = lambda a: a.reshape(math.prod(shape[:-1]), shape[-1])
  # Masked items sort last, all in one group: no valid item counts them.
  keys = as_rows(jnp.where(valid, labels, jnp.inf))
  position = lax.broadcasted_iota(jnp.int32, keys.shape, 1)
  keys, sorted_scores, weights, position = lax.sort(
    (
      keys,
      as_rows(scores),
      as_rows(jnp.where(valid, item_weights, 0.0)),
      position,
    ),
    dimension=1,
    is_stable=True,
    num_keys=1,
  )
  log_denominator = jnp.logaddexp(
    sorted_scores, earlier_groups_logsumexp(sorted_scores, keys)
  )
  log_p = sorted_scores - log_denominator
  total = jnp.sum(weights * log_p, axis=1).reshape(shape[:-1])
  residuals = (keys, sorted_scores, weights, position, log_denominator, log_p)
  return total, residuals


def _forward_with_residuals(scores, labels, valid, item_weights):
  total, residuals = _forward(scores, labels, valid, item_weights)
  return total, (valid, residuals)


def _backward(saved, g):
  # With c_k = g w_k and D_k the denominator of item k (in label order):
  #   d/ds_k = c_k (1 - e^{s_k} / D_k) - e^{s_k} sum_{i above k} c_i / D_i,
  # "above" meaning every item of a strictly larger label. The sum runs in
  # log space with the positive and negative c apart (1 / D_i overflows for
  # very negative scores), relative to each list's largest log D; no term
  # exceeds |c_i| because e^{s_k} <= D_i.
  valid, residuals = saved
  shape = valid.shape
  keys, sorted_scores, weights, position, log_denominator, log_p = residuals
  if not keys.shape[1]:
    return (jnp.zeros(shape), None, None, jnp.zeros(shape))
  g = g.reshape(-1, 1)
  c = g * weights
  own = c * (1.0 - jnp.exp(sorted_scores - log_denominator))
  reference = jnp.max(log_denominator, axis=1, keepdims=True)
  relative = log_denominator - reference

  def log_parts(part):
    present = part > 0
    logs = jnp.log(jnp.where(present, part, 1.0)) - relative
    return jnp.where(present, logs, -jnp.inf)

  rows = c.shape[0]
  above = earlier_groups_logsumexp(
    jnp.concatenate([log_parts(c), log_parts(-c)]),
    jnp.concatenate([keys, keys]),
    reverse=True,
  )
  relative_scores = sorted_scores - reference
  others = jnp.exp(relative_scores + above[:rows]) - jnp.exp(
    relative_scores + above[rows:]
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
