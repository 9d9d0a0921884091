r"""Fused pairwise losses: value and gradient without ``[n, n]`` temporaries.

A pairwise loss sums a function of the score difference ``d_ij = s_i - s_j``
(and of the label difference ``dy_ij = y_i - y_j``) over the valid pairs of
each list, each pair weighted by ``c_ij``:

.. math::
    L = \sum_{ij} c_{ij} f(d_{ij}, dy_{ij}), \qquad
    \frac{\partial L}{\partial s_k} = \sum_j c_{kj} f'(d_{kj}, dy_{kj})
                                    - c_{jk} f'(-d_{kj}, -dy_{kj})

Automatic differentiation of the plain expression writes and reads several
``[..., n, n]`` arrays (pair losses, masks, cotangents). Here a
:func:`jax.custom_vjp` computes the value as one reduction and the gradient as
one row reduction, each an expression of ``[..., n]`` vectors only, so XLA
fuses the pair computation into the reduction and never stores a pair matrix.
Validity uses arithmetic (``sign(max(x, 0))``) instead of comparisons and
selects, which XLA vectorises better on CPU, and the number of valid pairs
(the denominator of the mean) is counted with a sort.

XLA merges identical subexpressions; if the value and the gradient shared an
``[n, n]`` subexpression (even a broadcast constant) it would be stored once
and read twice, which is the cost this module avoids. The gradient pass
therefore lays pairs out as ``[..., 1, n, n]``, so none of its pair-shaped
values can coincide with one of the value pass. The cotangent scales the
per-item weights before the reduction rather than the reduced gradient: a
multiply fused after the row reduction makes XLA's CPU reduction several
times slower.

Everything here is private; :mod:`t5rank.ranking.losses` is the public face.
"""

from collections.abc import Callable
import functools
from typing import NamedTuple

import jax
from jax import lax
import jax.numpy as jnp

from t5rank.ranking import types

Array = types.Array


class PairLoss(NamedTuple):
  """A per-pair loss and its derivatives in ``d``.

  ``value(d, dy)`` is the loss of the ordered pair; ``grads(d, dy)`` returns
  ``(f'(d, dy), f'(-d, -dy))``: the derivative for the pair and for the
  reversed pair, which many losses get from one transcendental evaluation.
  Losses whose derivative is a step function may also give
  ``masked_grads(m, m_reversed, d, dy)``: the same two derivatives already
  multiplied by the validity indicators ``positive(m)`` and
  ``positive(m_reversed)``; a product of steps is one step of a minimum,
  which is cheaper to evaluate.
  """

  value: Callable[[Array, Array], Array]
  grads: Callable[[Array, Array], tuple[Array, Array]]
  masked_grads: Callable[..., tuple[Array, Array]] | None = None


# Which ordered pairs (i, j) of valid items count.
GREATER = (
  "greater"  # y_i > y_j (each unordered pair with distinct labels once).
)
ALL = "all"  # every ordered pair, i == j included (Rax's pairwise MSE).


def positive(x: Array) -> Array:
  """1.0 where ``x > 0``, else 0.0 (``NaN`` stays ``NaN``), without a select."""
  return jnp.sign(jnp.maximum(x, 0.0))


class PairInputs(NamedTuple):
  """``[..., n]`` vectors from which every pair quantity is formed."""

  scores: Array
  labels: Array
  high: Array | None  # GREATER: label, -inf for masked items.
  low: Array | None  # GREATER: label, +inf for masked items.
  valid: Array | None  # ALL: 1.0 for valid items, 0.0 for masked ones.
  segments: Array | None  # float segment ids, or None.
  weights: Array | None  # per-item weights of the pair's first item.
  lambdaweights: Array | None  # [..., n, n], or None.


def pair_inputs(
  scores, labels, *, where, segments, weights, lambdaweights, pairs
) -> PairInputs:
  dtype = scores.dtype
  high = low = valid = None
  if pairs == GREATER:
    # A masked item never wins (its label is -inf as i) and never loses
    # (+inf as j): y_i > y_j for valid items is exactly high_i - low_j > 0.
    high = jnp.where(where, labels, -jnp.inf)
    low = jnp.where(where, labels, jnp.inf)
  elif pairs == ALL:
    valid = where.astype(dtype)
  else:
    raise ValueError(f"pairs must be {GREATER!r} or {ALL!r}, got {pairs!r}.")
  if segments is not None:
    segments = segments.astype(dtype)
  if lambdaweights is not None:
    # A lambda weight on an invalid pair may be anything (even NaN).
    lambdaweights = jnp.where(
      valid_pairs(labels, where=where, segments=segments, pairs=pairs),
      lambdaweights,
      0.0,
    )
  return PairInputs(
    scores, labels, high, low, valid, segments, weights, lambdaweights
  )


def _pair_axes(transpose: bool, extra_axis: bool):
  """Index expressions that put a vector on the i (row) or j axis."""
  extra = (None,) if extra_axis else ()
  i_axis = (Ellipsis,) + extra + (slice(None), None)
  j_axis = (Ellipsis,) + extra + (None, slice(None))
  if transpose:
    i_axis, j_axis = j_axis, i_axis
  return (lambda a: a[i_axis]), (lambda a: a[j_axis])


def _mask_argument(inputs: PairInputs, *, transpose: bool, extra_axis: bool):
  """For GREATER pairs, ``high_i - low_j``: positive exactly on valid pairs."""
  row, col = _pair_axes(transpose, extra_axis)
  return row(inputs.high) - col(inputs.low)


def _factors(inputs: PairInputs, *, transpose: bool, extra_axis: bool):
  """Segment mask, item weights and lambda weights of the pairs, or None."""
  row, col = _pair_axes(transpose, extra_axis)
  c = None
  if inputs.valid is not None:
    c = row(inputs.valid) * col(inputs.valid)
  if inputs.segments is not None:
    same = 1.0 - jnp.sign(jnp.abs(row(inputs.segments) - col(inputs.segments)))
    c = same if c is None else c * same
  if inputs.weights is not None:
    c = row(inputs.weights) if c is None else c * row(inputs.weights)
  if inputs.lambdaweights is not None:
    lam = inputs.lambdaweights
    if transpose:
      lam = jnp.swapaxes(lam, -1, -2)
    if extra_axis:
      lam = lam[..., None, :, :]
    c = lam if c is None else c * lam
  return c


def _weights(inputs: PairInputs, *, transpose: bool, extra_axis: bool) -> Array:
  """``c_ij`` (or ``c_ji`` with ``transpose``): ``[..., n, n]``, or
  ``[..., 1, n, n]`` with ``extra_axis``."""
  c = _factors(inputs, transpose=transpose, extra_axis=extra_axis)
  if inputs.high is not None:
    valid = positive(
      _mask_argument(inputs, transpose=transpose, extra_axis=extra_axis)
    )
    c = valid if c is None else valid * c
  return c


def _value(pair_loss: PairLoss, inputs: PairInputs) -> Array:
  s, y = inputs.scores, inputs.labels
  d = s[..., :, None] - s[..., None, :]
  dy = y[..., :, None] - y[..., None, :]
  c = _weights(inputs, transpose=False, extra_axis=False)
  return jnp.sum(c * pair_loss.value(d, dy))


def _gradient(pair_loss: PairLoss, inputs: PairInputs) -> Array:
  # Pairs are laid out as [..., 1, n, n] here, so no pair-shaped value
  # (broadcast constants included) has the shape of one in the value pass.
  s, y = inputs.scores[..., None, :], inputs.labels[..., None, :]
  d = s[..., :, None] - s[..., None, :]
  dy = y[..., :, None] - y[..., None, :]
  if inputs.high is not None and pair_loss.masked_grads is not None:
    forward, backward = pair_loss.masked_grads(
      _mask_argument(inputs, transpose=False, extra_axis=True),
      _mask_argument(inputs, transpose=True, extra_axis=True),
      d,
      dy,
    )
    c = _factors(inputs, transpose=False, extra_axis=True)
    c_reversed = _factors(inputs, transpose=True, extra_axis=True)
    if c is not None:
      forward, backward = c * forward, c_reversed * backward
  else:
    forward, backward = pair_loss.grads(d, dy)
    forward = forward * _weights(inputs, transpose=False, extra_axis=True)
    backward = backward * _weights(inputs, transpose=True, extra_axis=True)
  return jnp.sum(forward - backward, axis=-1)[..., 0, :]


@functools.partial(jax.custom_vjp, nondiff_argnums=(0,))
def _fused_total(pair_loss, scores, inputs):
  return _value(pair_loss, inputs._replace(scores=scores))


def _fused_total_fwd(pair_loss, scores, inputs):
  inputs = inputs._replace(scores=scores)
  return _value(pair_loss, inputs), inputs


def _fused_total_bwd(pair_loss, inputs, cotangent):
  # The cotangent scales the per-item weights rather than the reduced
  # gradient: XLA would fuse a multiply after the row reduction into it,
  # and that fused form runs several times slower on CPU.
  scale = jnp.broadcast_to(cotangent, inputs.scores.shape)
  weights = scale if inputs.weights is None else inputs.weights * scale
  grad = _gradient(pair_loss, inputs._replace(weights=weights))
  return grad, None


_fused_total.defvjp(_fused_total_fwd, _fused_total_bwd)


def fused_total(pair_loss: PairLoss, inputs: PairInputs) -> Array:
  r"""``sum_ij c_ij f(s_i - s_j, y_i - y_j)``, differentiable in the scores.

  Only the scores get a gradient; labels, masks, weights and lambda weights
  are constants.
  """
  constants = jax.tree_util.tree_map(
    lax.stop_gradient, inputs._replace(scores=None)
  )
  return _fused_total(pair_loss, inputs.scores, constants)


def valid_pairs(
  labels: Array, *, where: Array, segments: Array | None, pairs: str
) -> Array:
  """Boolean ``[..., n, n]`` mask of the pairs that count."""
  valid = where[..., :, None] & where[..., None, :]
  if pairs == GREATER:
    valid = valid & (labels[..., :, None] > labels[..., None, :])
  if segments is not None:
    valid = valid & (segments[..., :, None] == segments[..., None, :])
  return valid


def count_pairs(
  labels: Array,
  *,
  where: Array,
  segments: Array | None,
  pairs: str,
) -> Array:
  """Number of valid ordered pairs over the whole batch (a float scalar)."""
  dtype = labels.dtype
  if segments is not None:
    return jnp.sum(
      valid_pairs(labels, where=where, segments=segments, pairs=pairs)
    ).astype(dtype)
  if pairs == ALL:
    per_list = jnp.sum(where, axis=-1).astype(dtype)
    return jnp.sum(per_list * per_list)
  # For every valid item, the number of valid items with a smaller label:
  # a sorted copy of the valid labels and a binary search per item.
  size = labels.shape[-1]
  flat_labels = labels.reshape(-1, size)
  flat_where = where.reshape(-1, size)
  ordered = jnp.sort(jnp.where(flat_where, flat_labels, jnp.inf), axis=-1)
  smaller = jax.vmap(lambda a, v: jnp.searchsorted(a, v, side="left"))(
    ordered, flat_labels
  )
  return jnp.sum(jnp.where(flat_where, smaller, 0)).astype(dtype)


# ---------------------------------------------------------------------------
# Per-pair losses. Derivatives match automatic differentiation of the value
# (in particular ``relu'(0) = 0``).


def _logistic_value(d, dy):
  del dy
  return jax.nn.relu(-d) + jnp.log1p(jnp.exp(-jnp.abs(d)))


def _logistic_grads(d, dy):
  del dy
  p = jax.nn.sigmoid(-d)
  return -p, p - 1.0


LOGISTIC = PairLoss(_logistic_value, _logistic_grads)


def _soft_zero_one_value(d, dy):
  del dy
  return jax.nn.sigmoid(-d)


def _soft_zero_one_grads(d, dy):
  del dy
  p = jax.nn.sigmoid(-d)
  g = p * (p - 1.0)
  return g, g


SOFT_ZERO_ONE = PairLoss(_soft_zero_one_value, _soft_zero_one_grads)


def _mse_value(d, dy):
  return jnp.square(d - dy)


def _mse_grads(d, dy):
  g = 2.0 * (d - dy)
  return g, -g


MSE = PairLoss(_mse_value, _mse_grads)


@functools.cache
def hinge(margin: float) -> PairLoss:
  """``max(0, margin - d)``."""
  return PairLoss(
    value=lambda d, dy: jax.nn.relu(margin - d),
    grads=lambda d, dy: (-positive(margin - d), -positive(margin + d)),
    masked_grads=lambda m, m_rev, d, dy: (
      -positive(jnp.minimum(m, margin - d)),
      -positive(jnp.minimum(m_rev, margin + d)),
    ),
  )


@functools.cache
def quantile(tau: float, squared: bool) -> PairLoss:
  """Quantile-regression pair loss on ``e = dy - d``."""
  if squared:

    def value(d, dy):
      e = dy - d
      return tau * jnp.square(jax.nn.relu(e)) + (1.0 - tau) * jnp.square(
        jax.nn.relu(-e)
      )

    def grads(d, dy):
      e = dy - d
      up, down = jax.nn.relu(e), jax.nn.relu(-e)
      return (
        -2.0 * tau * up + 2.0 * (1.0 - tau) * down,
        -2.0 * tau * down + 2.0 * (1.0 - tau) * up,
      )
  else:

    def value(d, dy):
      e = dy - d
      return tau * jax.nn.relu(e) + (1.0 - tau) * jax.nn.relu(-e)

    def grads(d, dy):
      e = dy - d
      up, down = positive(e), positive(-e)
      return (-tau * up + (1.0 - tau) * down, -tau * down + (1.0 - tau) * up)

    def masked_grads(m, m_rev, d, dy):
      e = dy - d
      step = lambda a, b: positive(jnp.minimum(a, b))
      return (
        -tau * step(m, e) + (1.0 - tau) * step(m, -e),
        -tau * step(m_rev, -e) + (1.0 - tau) * step(m_rev, e),
      )

    return PairLoss(value, grads, masked_grads)
  return PairLoss(value, grads)
