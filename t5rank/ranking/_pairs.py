r"""Fused pairwise losses: value and gradient in one pass over the item pairs.

A pairwise loss sums a function of the score difference ``d_ij = s_i - s_j``
(and of the label difference ``dy_ij = y_i - y_j``) over the valid pairs of
each list, each pair weighted by ``c_ij``:

.. math:: L = \sum_{ij} c_{ij} f(d_{ij}, dy_{ij}), \qquad
          \partial L / \partial s_k = \sum_j c_{kj} f'(d_{kj}) -
                                      \sum_i c_{ik} f'(d_{ik})

Automatic differentiation of the plain expression writes and reads several
``[..., n, n]`` intermediates. Here a :func:`jax.custom_vjp` computes the loss
and the per-item gradient together on the forward pass, so the gradient costs
two reductions of one pair matrix and no second sweep through the
transcendental functions. Pair validity is built from ``[..., n]`` vectors
inside the same expression and the number of valid pairs (the denominator of
the mean) is counted with a sort instead of an ``[n, n]`` sum.

Everything here is private; :mod:`t5rank.ranking.losses` is the public face.
"""

import functools
from typing import Callable, NamedTuple, Optional

import jax
from jax import lax
import jax.numpy as jnp

from t5rank.ranking import types

Array = types.Array


class PairLoss(NamedTuple):
  """A per-pair loss ``value(d, dy)`` and its derivative in ``d``."""
  value: Callable[[Array, Array], Array]
  grad: Callable[[Array, Array], Array]


# Which ordered pairs (i, j) of valid items count.
GREATER = "greater"  # y_i > y_j (each unordered pair with distinct labels once).
ALL = "all"  # every ordered pair, i == j included (Rax's pairwise MSE).


def pair_weights(
    labels: Array,
    *,
    where: Array,
    segments: Optional[Array],
    weights: Optional[Array],
    lambdaweights: Optional[Array],
    pairs: str,
) -> Array:
  """The pair weight matrix ``c_ij`` (0 for pairs that do not count)."""
  dtype = labels.dtype
  if pairs == GREATER:
    # A masked item never wins (its label is -inf as i) and never loses
    # (+inf as j), so one comparison decides validity.
    high = jnp.where(where, labels, -jnp.inf)
    low = jnp.where(where, labels, jnp.inf)
    valid = high[..., :, None] > low[..., None, :]
  else:
    valid = where[..., :, None] & where[..., None, :]
  if segments is not None:
    valid = valid & (segments[..., :, None] == segments[..., None, :])
  c = valid.astype(dtype)
  if weights is not None:
    c = c * weights[..., :, None]
  if lambdaweights is not None:
    c = c * lambdaweights
  return c


def _pair_terms(pair_loss, scores, labels, c, with_grad):
  d = scores[..., :, None] - scores[..., None, :]
  dy = labels[..., :, None] - labels[..., None, :]
  total = jnp.sum(c * pair_loss.value(d, dy))
  if not with_grad:
    return total, None
  g = c * pair_loss.grad(d, dy)
  return total, jnp.sum(g, axis=-1) - jnp.sum(g, axis=-2)


@functools.partial(jax.custom_vjp, nondiff_argnums=(0,))
def _fused_total(pair_loss, scores, labels, c):
  return _pair_terms(pair_loss, scores, labels, c, False)[0]


def _fused_total_fwd(pair_loss, scores, labels, c):
  total, grad = _pair_terms(pair_loss, scores, labels, c, True)
  return total, grad


def _fused_total_bwd(pair_loss, grad, cotangent):
  del pair_loss
  return cotangent * grad, None, None


_fused_total.defvjp(_fused_total_fwd, _fused_total_bwd)


def fused_total(pair_loss: PairLoss, scores: Array, labels: Array,
                c: Array) -> Array:
  r"""``sum_ij c_ij f(s_i - s_j, y_i - y_j)``, differentiable in ``scores``.

  ``labels`` and ``c`` are treated as constants (no gradient flows to them).
  """
  return _fused_total(pair_loss, scores, lax.stop_gradient(labels),
                      lax.stop_gradient(c))


def count_pairs(
    labels: Array,
    *,
    where: Array,
    segments: Optional[Array],
    pairs: str,
) -> Array:
  """Number of valid ordered pairs over the whole batch (a float scalar)."""
  if segments is not None:
    valid = pair_weights(labels, where=where, segments=segments, weights=None,
                         lambdaweights=None, pairs=pairs)
    return jnp.sum(valid)
  if pairs == ALL:
    per_list = jnp.sum(where, axis=-1).astype(labels.dtype)
    return jnp.sum(per_list * per_list)
  # For every valid item, the number of valid items with a smaller label:
  # a sorted copy of the valid labels and a binary search per item.
  size = labels.shape[-1]
  flat_labels = labels.reshape(-1, size)
  flat_where = where.reshape(-1, size)
  ordered = jnp.sort(jnp.where(flat_where, flat_labels, jnp.inf), axis=-1)
  smaller = jax.vmap(lambda a, v: jnp.searchsorted(a, v, side="left"))(
      ordered, flat_labels)
  return jnp.sum(jnp.where(flat_where, smaller, 0)).astype(labels.dtype)


# ---------------------------------------------------------------------------
# Per-pair losses. Each derivative matches what automatic differentiation of
# the value gives (in particular ``relu'(0) = 0``).


def _hinge(margin: float) -> PairLoss:
  return PairLoss(
      value=lambda d, dy: jax.nn.relu(margin - d),
      grad=lambda d, dy: -(margin - d > 0).astype(d.dtype),
  )


def _logistic_value(d, dy):
  del dy
  return jax.nn.relu(-d) + jnp.log1p(jnp.exp(-jnp.abs(d)))


def _logistic_grad(d, dy):
  del dy
  return -jax.nn.sigmoid(-d)


LOGISTIC = PairLoss(_logistic_value, _logistic_grad)


def _soft_zero_one_value(d, dy):
  del dy
  return jax.nn.sigmoid(-d)


def _soft_zero_one_grad(d, dy):
  del dy
  p = jax.nn.sigmoid(-d)
  return -p * (1.0 - p)


SOFT_ZERO_ONE = PairLoss(_soft_zero_one_value, _soft_zero_one_grad)


def _mse_value(d, dy):
  return jnp.square(d - dy)


def _mse_grad(d, dy):
  return 2.0 * (d - dy)


MSE = PairLoss(_mse_value, _mse_grad)


_PAIR_LOSS_CACHE = {}


def hinge(margin: float) -> PairLoss:
  key = ("hinge", float(margin))
  if key not in _PAIR_LOSS_CACHE:
    _PAIR_LOSS_CACHE[key] = _hinge(float(margin))
  return _PAIR_LOSS_CACHE[key]


def quantile(tau: float, squared: bool) -> PairLoss:
  """Quantile-regression pair loss on ``e = dy - d``."""
  key = ("qr", float(tau), bool(squared))
  if key in _PAIR_LOSS_CACHE:
    return _PAIR_LOSS_CACHE[key]
  tau = float(tau)

  if squared:
    def value(d, dy):
      e = dy - d
      return (tau * jnp.square(jax.nn.relu(e)) +
              (1.0 - tau) * jnp.square(jax.nn.relu(-e)))

    def grad(d, dy):
      e = dy - d
      return -2.0 * tau * jax.nn.relu(e) + 2.0 * (1.0 - tau) * jax.nn.relu(-e)
  else:
    def value(d, dy):
      e = dy - d
      return tau * jax.nn.relu(e) + (1.0 - tau) * jax.nn.relu(-e)

    def grad(d, dy):
      e = dy - d
      return (-tau * (e > 0).astype(d.dtype) +
              (1.0 - tau) * (e < 0).astype(d.dtype))

  _PAIR_LOSS_CACHE[key] = PairLoss(value, grad)
  return _PAIR_LOSS_CACHE[key]
