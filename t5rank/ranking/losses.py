r"""Ranking losses in JAX.

A ranking loss is a differentiable cost of the ranking that scores induce,
measured against relevance labels. Every loss here is a plain function of
``[..., list_size]`` arrays with Rax's calling convention::

  loss(scores, labels, *, where=None, segments=None, weights=None, key=None,
       reduce_fn=jnp.mean, ...)

The last axis is the list; leading axes are batch axes. ``where`` is a boolean
mask of valid items, ``segments`` splits a list into independent sub-lists,
``weights`` weighs items, ``key`` is a PRNG key (accepted by every loss so a
trainer can always pass one; only :func:`listmle_loss` uses it) and
``reduce_fn`` reduces the per-list (per-pair for pairwise losses, per-item for
pointwise losses) values: ``jnp.mean``, ``jnp.sum`` or ``None`` for no
reduction.

The losses named like Rax's keep Rax 0.4.0's values when called with Rax's
arguments. Beyond Rax there are :func:`listnet_loss`, :func:`lambdaloss_loss`
(pairwise logistic loss with NDCG-Loss2++ lambda weights),
:func:`distillation_kl_loss` and :func:`margin_mse_loss`.

Robustness, for every loss: masked items never influence the value or the
gradient, whatever their score (``±inf`` and ``NaN`` included); a list with no
valid item, with no relevant item, or with a single item gives a finite value
and gradient; ``bfloat16`` inputs are computed in ``float32`` and the result
is returned in the input's dtype.

Standalone use (Rax's documented example):

>>> scores = jnp.array([2., 1., 3.])
>>> labels = jnp.array([1., 0., 0.])
>>> print(f"{softmax_loss(scores, labels):.5f}")
1.40761

A batch of lists with a mask of valid items:

>>> scores = jnp.array([[2., 1., 0.], [1., 0.5, 1.5]])
>>> labels = jnp.array([[1., 0., 0.], [0., 0., 1.]])
>>> where = jnp.array([[True, True, False], [True, True, True]])
>>> print(f"{pairwise_hinge_loss(scores, labels, where=where):.5f}")
0.16667

Gradients with :func:`jax.grad`:

>>> scores = jnp.asarray([[0., 1., 3.], [1., 2., 0.]])
>>> labels = jnp.asarray([[0., 0., 1.], [1., 0., 0.]])
>>> print(jax.grad(softmax_loss)(scores, labels))
[[ 0.02100503  0.0570976  -0.07810265]
 [-0.37763578  0.33262047  0.04501529]]
"""

from collections.abc import Callable
import functools
from typing import NamedTuple

import jax
from jax import lax
import jax.numpy as jnp

from t5rank.ranking import _label_order
from t5rank.ranking import _pairs
from t5rank.ranking import _segments
from t5rank.ranking import _sorting
from t5rank.ranking import _utils
from t5rank.ranking import lambdaweights as lambdaweights_lib
from t5rank.ranking import metrics
from t5rank.ranking import types

Array = types.Array
LambdaweightFn = types.LambdaweightFn
ReduceFn = types.ReduceFn


# ---------------------------------------------------------------------------
# Input handling shared by every loss.


class _Inputs(NamedTuple):
  scores: Array  # float32 (or wider); masked items set to 0.
  labels: Array  # same dtype as scores; masked items set to 0.
  valid: Array  # bool, all True when no `where` was given.
  where: Array | None  # the caller's mask as bool, or None.
  weights: Array | None  # same dtype as scores; masked items set to 0.
  segments: Array | None
  out_dtype: jnp.dtype


def _prepare(
  name, scores, labels, where, weights=None, segments=None, reduce_fn=None
):
  """Validates shapes, promotes to float32 and neutralises masked items."""
  scores = jnp.asarray(scores)
  labels = jnp.asarray(labels)
  if scores.ndim == 0:
    raise ValueError(
      f"{name}: scores must have shape [..., list_size], got a "
      f"scalar (scores.shape={scores.shape})."
    )
  if labels.shape != scores.shape:
    raise ValueError(
      f"{name}: labels must have the shape of scores, got "
      f"scores.shape={scores.shape}, labels.shape="
      f"{labels.shape}."
    )
  if reduce_fn is not None and not callable(reduce_fn):
    raise TypeError(
      f"{name}: reduce_fn must be callable or None, got "
      f"reduce_fn={reduce_fn!r}."
    )
  if jnp.issubdtype(scores.dtype, jnp.floating):
    out_dtype = scores.dtype
  else:
    out_dtype = jnp.dtype(jnp.float32)
  dtype = jnp.promote_types(out_dtype, jnp.float32)
  scores = scores.astype(dtype)
  labels = labels.astype(dtype)
  if where is None:
    valid = jnp.ones(scores.shape, dtype=bool)
  else:
    where = _broadcast(name, "where", where, scores.shape).astype(bool)
    valid = where
    scores = jnp.where(valid, scores, jnp.zeros_like(scores))
    labels = jnp.where(valid, labels, jnp.zeros_like(labels))
  if weights is not None:
    weights = _broadcast(name, "weights", weights, scores.shape).astype(dtype)
    weights = jnp.where(valid, weights, jnp.zeros_like(weights))
  if segments is not None:
    segments = _broadcast(name, "segments", segments, scores.shape)
  return _Inputs(scores, labels, valid, where, weights, segments, out_dtype)


_broadcast = _utils.broadcast_arg


def _to_output_dtype(value, inputs):
  """Casts a loss to its output dtype: the scores' float dtype (else f32)."""
  return value.astype(inputs.out_dtype)


def _reduce_lists(per_list, inputs, reduce_fn, has_valid=None):
  """Reduces per-list (or per-segment) values over lists with a valid item.

  With ``segments`` the values keep the list axis (each item carries its
  segment's value) and only the first valid item of every segment counts.
  ``has_valid`` (per list) saves the reduction of the mask where a loss
  already knows it.
  """
  if inputs.segments is not None:
    mask = _segments.first_item_segment_mask(
      inputs.segments, where=inputs.valid
    )
  elif inputs.where is not None:
    mask = _utils.any_valid(inputs.valid) if has_valid is None else has_valid
  else:
    mask = None
  return _utils.safe_reduce(per_list, where=mask, reduce_fn=reduce_fn)


def _list_sum(values, inputs):
  """Sum over the valid items of each list (or of each item's segment)."""
  if inputs.segments is None:
    return jnp.sum(jnp.where(inputs.valid, values, 0.0), axis=-1)
  return _segments.segment_sum(
    jnp.where(inputs.valid, values, 0.0), inputs.segments, where=inputs.valid
  )


def _log_softmax(x, valid, segments=None):
  """Log-softmax over the valid items (per segment); masked items get 0.

  Finite for lists with no valid item and for masked entries of any value.
  """
  if segments is None:
    peak = jnp.max(jnp.where(valid, x, -jnp.inf), axis=-1, keepdims=True)
  else:
    peak = _segments.segment_max(x, segments, where=valid)
  peak = lax.stop_gradient(jnp.where(jnp.isfinite(peak), peak, 0.0))
  shifted = jnp.where(valid, x - peak, 0.0)
  exp = jnp.where(valid, jnp.exp(shifted), 0.0)
  if segments is None:
    total = jnp.sum(exp, axis=-1, keepdims=True)
  else:
    total = _segments.segment_sum(exp, segments, where=valid)
  total = jnp.where(total > 0, total, 1.0)
  return jnp.where(valid, shifted - jnp.log(total), 0.0)


def _identity_label_fn(labels, *, where=None):
  del where
  return labels


def _ranking_loss(uses_key: bool = False):
  """Decorates a public loss: empty lists, and whether ``key`` is used.

  A list axis of size 0 (``[..., 0]``) is scored as lists with one masked
  item, so every loss gives 0 (lists with no valid item are left out of the
  mean), a zero gradient, and ``reduce_fn=None`` keeps a size-0 item axis.

  ``uses_key=False`` marks a loss whose ``key`` is unused. Every loss accepts ``key`` so a trainer can always pass one, but only the
  ones that use it should consume randomness: ``t12n.gumbel_t12n`` splits
  its key for the wrapped function only when that function uses one, as Rax
  does (Rax's losses other than ListMLE take no
  key), so Gumbel samples equal Rax's for the same key. The mark is an
  attribute, which ``functools.wraps`` (and so gin) carries over.
  """

  def decorator(fn):
    @functools.wraps(fn)
    def loss(scores, labels, *args, **kwargs):
      if jnp.shape(scores)[-1:] == (0,) and (
        jnp.shape(labels) == jnp.shape(scores)
      ):
        return _on_one_masked_item(fn, scores, labels, args, kwargs)
      return fn(scores, labels, *args, **kwargs)

    if not uses_key:
      loss._ignores_key = True  # pylint: disable=protected-access
    return loss

  return decorator


def _on_one_masked_item(fn, scores, labels, args, kwargs):
  """Calls ``fn`` on ``[..., 0]`` lists padded with one masked item."""
  scores, labels = jnp.asarray(scores), jnp.asarray(labels)
  shape = scores.shape
  kwargs = dict(kwargs)
  try:
    for name, fill in (("where", False), ("weights", 0), ("segments", 0)):
      value = kwargs.get(name)
      if value is None and name != "where":
        continue
      value = jnp.broadcast_to(
        jnp.asarray(True if value is None else value), shape
      )
      kwargs[name] = _pad_last(value, fill)
  except ValueError:
    return fn(scores, labels, *args, **kwargs)  # fn names the bad argument.
  out = fn(_pad_last(scores, 0), _pad_last(labels, 0), *args, **kwargs)
  if kwargs.get("reduce_fn", jnp.mean) is None and out.ndim == len(shape):
    out = out[..., :0]  # per-item or per-pair values: none.
  return out


def _pad_last(a, fill):
  return jnp.concatenate(
    [a, jnp.full(a.shape[:-1] + (1,), fill, a.dtype)], axis=-1
  )


# ---------------------------------------------------------------------------
# Pointwise losses.


@_ranking_loss()
def pointwise_sigmoid_loss(
  scores: Array,
  labels: Array,
  *,
  where: Array | None = None,
  segments: Array | None = None,
  weights: Array | None = None,
  key: Array | None = None,
  reduce_fn: ReduceFn | None = jnp.mean,
) -> Array:
  r"""Sigmoid cross-entropy of every item's score against its label.

  .. math::
      \ell_i = -y_i \log \sigma(s_i) - (1 - y_i) \log(1 - \sigma(s_i))

  with labels clipped to ``[0, 1]``, multiplied by ``weights``; ``reduce_fn``
  reduces over the valid items (the mean is over valid items of the whole
  batch, as in Rax).

  >>> loss = pointwise_sigmoid_loss(jnp.array([0., 2.]), jnp.array([1., 0.]))
  >>> print(f"{loss:.5f}")
  1.41004

  (``(log 2 + log(1 + e^2)) / 2``.)

  Args:
    scores: ``[..., list_size]`` scores.
    labels: ``[..., list_size]`` labels.
    where: Optional boolean mask of valid items.
    segments: Accepted for interface compatibility; pointwise losses do not
      depend on segments.
    weights: Optional per-item weights.
    key: Unused.
    reduce_fn: ``jnp.mean``, ``jnp.sum`` or None (per-item losses).

  Returns:
    The loss.
  """
  del segments, key
  inputs = _prepare(
    "pointwise_sigmoid_loss",
    scores,
    labels,
    where,
    weights,
    reduce_fn=reduce_fn,
  )
  s = inputs.scores
  y = jnp.clip(inputs.labels, 0.0, 1.0)
  loss = jax.nn.relu(s) - s * y + jnp.log1p(jnp.exp(-jnp.abs(s)))
  if inputs.weights is not None:
    loss = loss * inputs.weights
  out = _utils.safe_reduce(loss, where=inputs.where, reduce_fn=reduce_fn)
  return _to_output_dtype(out, inputs)


@_ranking_loss()
def pointwise_mse_loss(
  scores: Array,
  labels: Array,
  *,
  where: Array | None = None,
  segments: Array | None = None,
  weights: Array | None = None,
  key: Array | None = None,
  reduce_fn: ReduceFn | None = jnp.mean,
) -> Array:
  r"""Squared error of every item's score against its label.

  .. math:: \ell_i = (y_i - s_i)^2

  multiplied by ``weights``; ``reduce_fn`` reduces over the valid items.

  >>> print(pointwise_mse_loss(jnp.array([1., 3.]), jnp.array([0., 1.])))
  2.5

  Args:
    scores: ``[..., list_size]`` scores.
    labels: ``[..., list_size]`` labels.
    where: Optional boolean mask of valid items.
    segments: Accepted for interface compatibility; unused.
    weights: Optional per-item weights.
    key: Unused.
    reduce_fn: ``jnp.mean``, ``jnp.sum`` or None (per-item losses).

  Returns:
    The loss.
  """
  del segments, key
  inputs = _prepare(
    "pointwise_mse_loss", scores, labels, where, weights, reduce_fn=reduce_fn
  )
  loss = jnp.square(inputs.scores - inputs.labels)
  if inputs.weights is not None:
    loss = loss * inputs.weights
  out = _utils.safe_reduce(loss, where=inputs.where, reduce_fn=reduce_fn)
  return _to_output_dtype(out, inputs)


# ---------------------------------------------------------------------------
# Pairwise losses.


def _pairwise(
  name,
  pair_loss,
  scores,
  labels,
  *,
  where,
  segments,
  weights,
  lambdaweight_fn,
  reduce_fn,
  pairs=_pairs.GREATER,
):
  """Shared body of the pairwise losses (see :mod:`t5rank.ranking._pairs`)."""
  inputs = _prepare(
    name, scores, labels, where, weights, segments, reduce_fn=reduce_fn
  )
  s, y, valid = inputs.scores, inputs.labels, inputs.valid
  lam = None
  if lambdaweight_fn is not None:
    lam = lambdaweight_fn(
      s, y, where=inputs.where, segments=inputs.segments, weights=inputs.weights
    )
    # Rax's convention: pairs flattened to [..., n * n] (index i * n + j).
    lam = jnp.reshape(jnp.asarray(lam, s.dtype), s.shape + s.shape[-1:])
    lam = lax.stop_gradient(lam)
  if reduce_fn is jnp.mean or reduce_fn is jnp.sum:
    pair_inputs = _pairs.pair_inputs(
      s,
      y,
      where=valid,
      segments=inputs.segments,
      weights=inputs.weights,
      lambdaweights=lam,
      pairs=pairs,
    )
    total = _pairs.fused_total(pair_loss, pair_inputs)
    if reduce_fn is jnp.sum:
      return _to_output_dtype(total, inputs)
    count = _pairs.count_pairs(
      y, where=valid, segments=inputs.segments, pairs=pairs
    )
    return _to_output_dtype(total / jnp.maximum(count, 1.0), inputs)
  # Any other reduction sees the pair losses flattened to [..., n * n], as
  # in Rax.
  d = _utils.compute_pairs(s, jnp.subtract)
  dy = _utils.compute_pairs(y, jnp.subtract)
  valid_pairs = _pairs.valid_pairs(
    y, where=valid, segments=inputs.segments, pairs=pairs
  )
  losses = pair_loss.value(d, dy)
  if inputs.weights is not None:
    losses = losses * inputs.weights[..., :, None]
  if lam is not None:
    losses = losses * jnp.where(valid_pairs, lam, 0.0)
  flat_shape = s.shape[:-1] + (s.shape[-1] ** 2,)
  out = _utils.safe_reduce(
    losses.reshape(flat_shape),
    where=valid_pairs.reshape(flat_shape),
    reduce_fn=reduce_fn,
  )
  return _to_output_dtype(out, inputs)


def pairwise_loss(
  scores: Array,
  labels: Array,
  *,
  pair_loss_fn: Callable[[Array, Array], tuple[Array, Array]],
  lambdaweight_fn: LambdaweightFn | None = None,
  where: Array | None = None,
  segments: Array | None = None,
  weights: Array | None = None,
  reduce_fn: ReduceFn | None = jnp.mean,
) -> Array:
  r"""A pairwise loss from a function of score and label differences.

  Rax's generic ``rax.utils.pairwise_loss``: ``pair_loss_fn(scores_diff,
  labels_diff)`` gets :math:`s_i - s_j` and :math:`y_i - y_j` for every pair,
  flattened to ``[..., n * n]`` (pair ``(i, j)`` at ``i * n + j``), and
  returns ``(pair_losses, valid_pairs)``. Pairs with a masked item or across
  segments are dropped; each pair's loss is multiplied by ``weights[i]`` and
  by ``lambdaweight_fn(scores, labels, where=, segments=, weights=)``; the
  result is :func:`t5rank.utils.safe_reduce` over the valid pairs (``None``
  returns the ``[..., n * n]`` pair losses, invalid pairs 0). Masked scores
  are replaced by 0 first, so ``NaN`` or ``inf`` there reaches neither the
  value nor the gradient. The named pairwise losses give the same values
  through a fused path that never builds the pair arrays.

  >>> hinge = lambda ds, dy: (jax.nn.relu(1.0 - ds), dy > 0)
  >>> scores, labels = jnp.array([2., 1., 3.]), jnp.array([1., 0., 0.])
  >>> print(pairwise_loss(scores, labels, pair_loss_fn=hinge))
  1.0
  >>> print(pairwise_hinge_loss(scores, labels))
  1.0

  Args:
    scores: ``[..., list_size]`` scores.
    labels: ``[..., list_size]`` labels.
    pair_loss_fn: ``(scores_diff, labels_diff) -> (pair_losses,
      valid_pairs)`` on ``[..., n * n]`` arrays.
    lambdaweight_fn: Optional lambda weights, ``[..., n * n]``.
    where: Optional boolean mask of valid items.
    segments: Optional segment ids; only pairs within a segment count.
    weights: Optional per-item weights (the pair's first item's).
    reduce_fn: ``jnp.mean``, ``jnp.sum``, None or any ``reduce_fn(a,
      where=)``.

  Returns:
    The loss.
  """
  scores, labels = jnp.asarray(scores), jnp.asarray(labels)
  n = scores.shape[-1]
  if where is not None:
    where = jnp.asarray(where).astype(bool)
    scores = jnp.where(where, scores, jnp.zeros_like(scores))
  flat = lambda pairs: pairs.reshape(pairs.shape[:-2] + (n * n,))
  pair_losses, valid_pairs = pair_loss_fn(
    flat(_utils.compute_pairs(scores, jnp.subtract)),
    flat(_utils.compute_pairs(labels, jnp.subtract)),
  )
  valid_pairs = jnp.asarray(valid_pairs).astype(bool)
  if where is not None:
    valid_pairs = valid_pairs & flat(
      _utils.compute_pairs(where, jnp.logical_and)
    )
  if segments is not None:
    valid_pairs = valid_pairs & flat(
      _segments.same_segment_mask(jnp.asarray(segments))
    )
  if weights is not None:
    pair_losses = pair_losses * jnp.repeat(jnp.asarray(weights), n, axis=-1)
  if lambdaweight_fn is not None:
    pair_losses = pair_losses * lambdaweight_fn(
      scores, labels, where=where, segments=segments, weights=weights
    )
  return _utils.safe_reduce(pair_losses, where=valid_pairs, reduce_fn=reduce_fn)


_PAIRWISE_ARGS = """
  Only pairs of valid items with ``y_i > y_j`` (in the same segment) count.
  Each pair's loss is multiplied by the weight of its first (more relevant)
  item ``weights[i]`` and by ``lambdaweight_fn(...)[i, j]``. With
  ``reduce_fn=jnp.mean`` the result is the mean over all valid pairs of the
  batch (Rax's reduction: every list's pairs pooled, pairs with a zero lambda
  weight still counted); ``jnp.sum`` sums them; ``None`` returns the pair
  losses with invalid pairs 0, shaped ``[..., list_size * list_size]`` (pair
  ``(i, j)`` at ``i * list_size + j``, as in Rax); any other ``reduce_fn``
  is called on that array with ``where=`` the valid pairs.
  Lambda weights are treated as constants (no gradient flows through them;
  Rax's lambda weights depend on the scores only through ranks, whose
  gradient is zero). Value and gradient come from one fused pass over the
  pairs.
"""


@_ranking_loss()
def pairwise_hinge_loss(
  scores: Array,
  labels: Array,
  *,
  where: Array | None = None,
  segments: Array | None = None,
  weights: Array | None = None,
  key: Array | None = None,
  lambdaweight_fn: LambdaweightFn | None = None,
  margin: float = 1.0,
  reduce_fn: ReduceFn | None = jnp.mean,
) -> Array:
  r"""Pairwise hinge loss.

  .. math:: \ell(s, y) = \sum_{i,j:\, y_i > y_j} \max(0, m - (s_i - s_j))

  with margin ``m`` (1 in Rax, which has no ``margin`` argument).
  {pairwise}
  >>> scores = jnp.array([[2., 1., 0.], [1., 0.5, 1.5]])
  >>> labels = jnp.array([[1., 0., 0.], [0., 0., 1.]])
  >>> where = jnp.array([[True, True, False], [True, True, True]])
  >>> print(f"{pairwise_hinge_loss(scores, labels, where=where):.5f}")
  0.16667

  (Three valid pairs: ``max(0, 1 - 1) + max(0, 1 - 0.5) + max(0, 1 - 1)``
  over 3.)

  Args:
    scores: ``[..., list_size]`` scores.
    labels: ``[..., list_size]`` labels.
    where: Optional boolean mask of valid items.
    segments: Optional segment ids; only pairs within a segment count.
    weights: Optional per-item weights.
    key: Unused.
    lambdaweight_fn: Optional lambda weights (see
      :mod:`t5rank.ranking.lambdaweights`).
    margin: The hinge margin.
    reduce_fn: ``jnp.mean``, ``jnp.sum``, None, or any ``fn(a, where=...)``.

  Returns:
    The loss.
  """
  del key
  return _pairwise(
    "pairwise_hinge_loss",
    _pairs.hinge(margin),
    scores,
    labels,
    where=where,
    segments=segments,
    weights=weights,
    lambdaweight_fn=lambdaweight_fn,
    reduce_fn=reduce_fn,
  )


@_ranking_loss()
def pairwise_logistic_loss(
  scores: Array,
  labels: Array,
  *,
  where: Array | None = None,
  segments: Array | None = None,
  weights: Array | None = None,
  key: Array | None = None,
  lambdaweight_fn: LambdaweightFn | None = None,
  reduce_fn: ReduceFn | None = jnp.mean,
) -> Array:
  r"""Pairwise logistic loss (RankNet) :cite:`burges2005learning`.

  .. math:: \ell(s, y) = \sum_{i,j:\, y_i > y_j} \log(1 + e^{-(s_i - s_j)})
  {pairwise}
  >>> scores = jnp.array([1.2, 0.4, 1.9])
  >>> labels = jnp.array([1.0, 2.0, 0.0])
  >>> print(f"{pairwise_logistic_loss(scores, labels):.5f}")
  1.32523

  (Pairs (1, 0), (1, 2), (0, 2): ``softplus(0.8) + softplus(1.5) +
  softplus(0.7)``, i.e. ``(1.17110 + 1.70141 + 1.10319) / 3``.)

  Args:
    scores: ``[..., list_size]`` scores.
    labels: ``[..., list_size]`` labels.
    where: Optional boolean mask of valid items.
    segments: Optional segment ids; only pairs within a segment count.
    weights: Optional per-item weights.
    key: Unused.
    lambdaweight_fn: Optional lambda weights.
    reduce_fn: ``jnp.mean``, ``jnp.sum``, None, or any ``fn(a, where=...)``.

  Returns:
    The loss.
  """
  del key
  return _pairwise(
    "pairwise_logistic_loss",
    _pairs.LOGISTIC,
    scores,
    labels,
    where=where,
    segments=segments,
    weights=weights,
    lambdaweight_fn=lambdaweight_fn,
    reduce_fn=reduce_fn,
  )


@_ranking_loss()
def pairwise_soft_zero_one_loss(
  scores: Array,
  labels: Array,
  *,
  where: Array | None = None,
  segments: Array | None = None,
  weights: Array | None = None,
  key: Array | None = None,
  lambdaweight_fn: LambdaweightFn | None = None,
  reduce_fn: ReduceFn | None = jnp.mean,
) -> Array:
  r"""Pairwise soft zero-one loss.

  .. math:: \ell(s, y) = \sum_{i,j:\, y_i > y_j} \sigma(-(s_i - s_j))
  {pairwise}
  >>> loss = pairwise_soft_zero_one_loss(jnp.array([0., 0.]),
  ...                                    jnp.array([1., 0.]))
  >>> print(f"{loss:.5f}")
  0.50000

  Args:
    scores: ``[..., list_size]`` scores.
    labels: ``[..., list_size]`` labels.
    where: Optional boolean mask of valid items.
    segments: Optional segment ids; only pairs within a segment count.
    weights: Optional per-item weights.
    key: Unused.
    lambdaweight_fn: Optional lambda weights.
    reduce_fn: ``jnp.mean``, ``jnp.sum``, None, or any ``fn(a, where=...)``.

  Returns:
    The loss.
  """
  del key
  return _pairwise(
    "pairwise_soft_zero_one_loss",
    _pairs.SOFT_ZERO_ONE,
    scores,
    labels,
    where=where,
    segments=segments,
    weights=weights,
    lambdaweight_fn=lambdaweight_fn,
    reduce_fn=reduce_fn,
  )


@_ranking_loss()
def pairwise_qr_loss(
  scores: Array,
  labels: Array,
  *,
  where: Array | None = None,
  segments: Array | None = None,
  weights: Array | None = None,
  key: Array | None = None,
  tau: float = 0.5,
  squared: bool = False,
  lambdaweight_fn: LambdaweightFn | None = None,
  reduce_fn: ReduceFn | None = jnp.mean,
) -> Array:
  r"""Pairwise quantile-regression loss.

  .. math::
      \ell(s, y) = \sum_{i,j:\, y_i > y_j}
          \tau \max(0, e_{ij}) + (1 - \tau) \max(0, -e_{ij}),
      \quad e_{ij} = (y_i - y_j) - (s_i - s_j)

  With ``squared=True`` both hinges are squared. ``tau`` in ``(0, 1]``;
  ``tau=0.5`` is median regression of the score margins on the label margins.
  {pairwise}
  >>> print(pairwise_qr_loss(jnp.array([0., 1.]), jnp.array([2., 0.]),
  ...                        tau=0.8))
  2.4

  (One pair, ``e = 2 - (-1) = 3``: ``0.8 * 3``.)

  Args:
    scores: ``[..., list_size]`` scores.
    labels: ``[..., list_size]`` labels.
    where: Optional boolean mask of valid items.
    segments: Optional segment ids; only pairs within a segment count.
    weights: Optional per-item weights.
    key: Unused.
    tau: The quantile, in ``(0, 1]``.
    squared: Square each hinge.
    lambdaweight_fn: Optional lambda weights.
    reduce_fn: ``jnp.mean``, ``jnp.sum``, None, or any ``fn(a, where=...)``.

  Returns:
    The loss.
  """
  del key
  if not 0.0 < tau <= 1.0:
    raise ValueError(f"pairwise_qr_loss: tau must be in (0, 1], got tau={tau}.")
  return _pairwise(
    "pairwise_qr_loss",
    _pairs.quantile(tau, squared),
    scores,
    labels,
    where=where,
    segments=segments,
    weights=weights,
    lambdaweight_fn=lambdaweight_fn,
    reduce_fn=reduce_fn,
  )


@_ranking_loss()
def pairwise_mse_loss(
  scores: Array,
  labels: Array,
  *,
  where: Array | None = None,
  segments: Array | None = None,
  weights: Array | None = None,
  key: Array | None = None,
  lambdaweight_fn: LambdaweightFn | None = None,
  reduce_fn: ReduceFn | None = jnp.mean,
) -> Array:
  r"""Pairwise squared error of score margins against label margins.

  .. math:: \ell(s, y) = \sum_{i,j} ((y_i - y_j) - (s_i - s_j))^2

  Unlike the other pairwise losses this one counts *every* ordered pair of
  valid items, ``i == j`` included (Rax's definition, kept for parity): the
  mean is over ``n_valid**2`` pairs per list. The loss is symmetric, so the
  mean over pairs with ``y_i > y_j`` only would differ just by that
  denominator and by ignoring tied labels. Pair ``(i, j)`` is weighted by
  ``weights[i]`` and the lambda weight. Without lambda weights and segments
  the value is computed in ``O(list_size)`` from centred sums.

  >>> print(pairwise_mse_loss(jnp.array([0., 1.]), jnp.array([1., 0.])))
  2.0

  (Pairs (0, 1) and (1, 0) each ``(1 - (-1))**2 = 4``; (0, 0) and (1, 1)
  give 0; mean 8 / 4.)

  Args:
    scores: ``[..., list_size]`` scores.
    labels: ``[..., list_size]`` labels.
    where: Optional boolean mask of valid items.
    segments: Optional segment ids; only pairs within a segment count.
    weights: Optional per-item weights.
    key: Unused.
    lambdaweight_fn: Optional lambda weights.
    reduce_fn: ``jnp.mean``, ``jnp.sum``, None, or any ``fn(a, where=...)``.

  Returns:
    The loss.
  """
  del key
  name = "pairwise_mse_loss"
  if (
    lambdaweight_fn is None
    and segments is None
    and (reduce_fn is jnp.mean or reduce_fn is jnp.sum)
  ):
    inputs = _prepare(name, scores, labels, where, weights, reduce_fn=reduce_fn)
    valid = inputs.valid.astype(inputs.scores.dtype)
    row = valid if inputs.weights is None else inputs.weights
    # sum_ij row_i valid_j (r_i - r_j)^2 with r = s - y, via the valid mean
    # of r: n u_i^2 + sum_j u_j^2 per i, u = r - mean(r).
    r = jnp.where(inputs.valid, inputs.scores - inputs.labels, 0.0)
    n = jnp.sum(valid, axis=-1, keepdims=True)
    mean = jnp.sum(r, axis=-1, keepdims=True) / jnp.maximum(n, 1.0)
    u = jnp.where(inputs.valid, r - mean, 0.0)
    spread = jnp.sum(jnp.square(u), axis=-1, keepdims=True)
    total = jnp.sum(row * (n * jnp.square(u) + spread))
    if reduce_fn is jnp.sum:
      return _to_output_dtype(total, inputs)
    count = jnp.sum(jnp.square(n))
    return _to_output_dtype(total / jnp.maximum(count, 1.0), inputs)
  return _pairwise(
    name,
    _pairs.MSE,
    scores,
    labels,
    where=where,
    segments=segments,
    weights=weights,
    lambdaweight_fn=lambdaweight_fn,
    reduce_fn=reduce_fn,
    pairs=_pairs.ALL,
  )


for _fn in (
  pairwise_hinge_loss,
  pairwise_logistic_loss,
  pairwise_soft_zero_one_loss,
  pairwise_qr_loss,
):
  _fn.__doc__ = _fn.__doc__.replace("{pairwise}", _PAIRWISE_ARGS)
del _fn


@_ranking_loss()
def lambdaloss_loss(
  scores: Array,
  labels: Array,
  *,
  where: Array | None = None,
  segments: Array | None = None,
  weights: Array | None = None,
  key: Array | None = None,
  topn: int | None = None,
  mu: float = 10.0,
  reduce_fn: ReduceFn | None = jnp.mean,
) -> Array:
  r"""LambdaLoss with NDCG-Loss2++ weights :cite:`wang2018lambdaloss`.

  The pairwise logistic loss weighted by
  :func:`~t5rank.ranking.lambdaweights.ndcgloss2pp_lambdaweight`:

  .. math::
      \ell(s, y) = \sum_{i,j:\, y_i > y_j}
          (\rho_{ij} + \mu \delta_{ij}) |G_i - G_j| \log(1 + e^{-(s_i - s_j)})

  It is exactly ``pairwise_logistic_loss(scores, labels,
  lambdaweight_fn=functools.partial(ndcgloss2pp_lambdaweight, topn=topn,
  mu=mu))``, which is also how to build it from parts (e.g. in gin).

  >>> scores = jnp.array([0., 1.])
  >>> labels = jnp.array([1., 0.])
  >>> print(f"{lambdaloss_loss(scores, labels):.5f}")
  10.66309

  (Item 1 ranks first. Normalised gains ``(1, 0)``; ``rho = |D(2) - D(1)| =
  1 - 1/log2(3) = 0.36907`` and ``delta = |D(1) - D(2)| = 0.36907``; with the
  list size 2 the weight is ``2 * (0.36907 + 10 * 0.36907) = 8.11955``; the
  one valid pair (0, 1) has ``softplus(1) = 1.31326``.)

  Args:
    scores: ``[..., list_size]`` scores.
    labels: ``[..., list_size]`` labels.
    where: Optional boolean mask of valid items.
    segments: Optional segment ids.
    weights: Optional per-item weights.
    key: Unused.
    topn: Optional rank cutoff of the NDCG the weights target.
    mu: Weight of the NDCG-Loss2 term relative to the LambdaRank term.
    reduce_fn: ``jnp.mean``, ``jnp.sum``, None, or any ``fn(a, where=...)``.

  Returns:
    The loss.
  """
  del key
  lambdaweight_fn = functools.partial(
    lambdaweights_lib.ndcgloss2pp_lambdaweight, topn=topn, mu=mu
  )
  return _pairwise(
    "lambdaloss_loss",
    _pairs.LOGISTIC,
    scores,
    labels,
    where=where,
    segments=segments,
    weights=weights,
    lambdaweight_fn=lambdaweight_fn,
    reduce_fn=reduce_fn,
  )


# ---------------------------------------------------------------------------
# Listwise losses.


@_ranking_loss()
def softmax_loss(
  scores: Array,
  labels: Array,
  *,
  where: Array | None = None,
  segments: Array | None = None,
  weights: Array | None = None,
  key: Array | None = None,
  label_fn: Callable[..., Array] = _identity_label_fn,
  reduce_fn: ReduceFn | None = jnp.mean,
) -> Array:
  r"""Softmax cross-entropy loss.

  .. math:: \ell(s, y) = -\sum_i y_i \log \frac{e^{s_i}}{\sum_j e^{s_j}}

  over the valid items of each list (each segment with ``segments``). Labels
  are multiplied by ``weights`` and then mapped by ``label_fn(labels,
  where=where)`` (identity by default, as in Rax: labels are not normalised;
  pass :func:`t5rank.utils.normalize_probabilities`-like functions to
  normalise). ``reduce_fn`` reduces over lists (segments) with at least one
  valid item.

  >>> loss = softmax_loss(jnp.array([2., 1., 3.]), jnp.array([1., 0., 0.]))
  >>> print(f"{loss:.5f}")
  1.40761

  Args:
    scores: ``[..., list_size]`` scores.
    labels: ``[..., list_size]`` labels.
    where: Optional boolean mask of valid items.
    segments: Optional segment ids; the softmax runs within each segment.
    weights: Optional per-item weights (scale the labels).
    key: Unused.
    label_fn: Maps (weighted) labels to target probabilities.
    reduce_fn: ``jnp.mean``, ``jnp.sum`` or None (per-list losses).

  Returns:
    The loss.
  """
  del key
  inputs = _prepare(
    "softmax_loss",
    scores,
    labels,
    where,
    weights,
    segments,
    reduce_fn=reduce_fn,
  )
  labels = inputs.labels
  if inputs.weights is not None:
    labels = labels * inputs.weights
  targets = label_fn(labels, where=inputs.where)
  log_p = _log_softmax(inputs.scores, inputs.valid, inputs.segments)
  per_list = -_list_sum(targets * log_p, inputs)
  return _to_output_dtype(_reduce_lists(per_list, inputs, reduce_fn), inputs)


@_ranking_loss()
def poly1_softmax_loss(
  scores: Array,
  labels: Array,
  *,
  epsilon: float = 1.0,
  where: Array | None = None,
  segments: Array | None = None,
  weights: Array | None = None,
  key: Array | None = None,
  reduce_fn: ReduceFn | None = jnp.mean,
) -> Array:
  r"""Poly-1 softmax loss :cite:`leng2022polyloss`.

  .. math::
      \ell(s, y) = \op{softmax\_loss}(s, y) + \epsilon (1 - p_t), \quad
      p_t = \sum_i \frac{y_i}{\sum_j y_j} \frac{e^{s_i}}{\sum_j e^{s_j}}

  Labels are multiplied by ``weights`` first. A list whose valid labels are
  all zero uses uniform target probabilities for ``p_t``; a list with no
  valid item has loss 0 and is left out of the mean.

  >>> loss = poly1_softmax_loss(jnp.array([0., 0.]), jnp.array([1., 0.]))
  >>> print(f"{loss:.5f}")
  1.19315

  (``log 2 + 1 - 1/2``.)

  Args:
    scores: ``[..., list_size]`` scores.
    labels: ``[..., list_size]`` labels.
    epsilon: Weight of the leading polynomial term.
    where: Optional boolean mask of valid items.
    segments: Optional segment ids.
    weights: Optional per-item weights (scale the labels).
    key: Unused.
    reduce_fn: ``jnp.mean``, ``jnp.sum`` or None (per-list losses).

  Returns:
    The loss.
  """
  del key
  inputs = _prepare(
    "poly1_softmax_loss",
    scores,
    labels,
    where,
    weights,
    segments,
    reduce_fn=reduce_fn,
  )
  labels = inputs.labels
  if inputs.weights is not None:
    labels = labels * inputs.weights
  log_p = _log_softmax(inputs.scores, inputs.valid, inputs.segments)
  ce = -_list_sum(labels * log_p, inputs)
  targets = _utils.normalize_probabilities(
    labels, where=inputs.valid, segments=inputs.segments
  )
  p = jnp.where(inputs.valid, jnp.exp(log_p), 0.0)
  pt = _list_sum(targets * p, inputs)
  has_valid = (
    _utils.any_valid(inputs.valid)
    if inputs.segments is None
    else _list_sum(jnp.ones_like(p), inputs) > 0
  )
  pt = jnp.where(has_valid, pt, 1.0)
  per_list = ce + epsilon * (1.0 - pt)
  return _to_output_dtype(_reduce_lists(per_list, inputs, reduce_fn), inputs)


@_ranking_loss()
def unique_softmax_loss(
  scores: Array,
  labels: Array,
  *,
  where: Array | None = None,
  segments: Array | None = None,
  weights: Array | None = None,
  key: Array | None = None,
  gain_fn: Callable[[Array], Array] | None = metrics.default_gain_fn,
  reduce_fn: ReduceFn | None = jnp.mean,
) -> Array:
  r"""Unique-softmax loss :cite:`zhu2020listwise`.

  .. math::
      \ell(s, y) = -\sum_i \op{gain}(y_i) \log
          \frac{e^{s_i}}{e^{s_i} + \sum_{j:\, y_j < y_i} e^{s_j}}

  over valid items (within each segment), each term multiplied by
  ``weights[i]``; ``gain_fn=None`` means gain 1. Without segments the
  denominators come from one sort by label and a pass over the groups of
  equal labels (``O(n log n)``), not from an ``[n, n]`` matrix.

  >>> loss = unique_softmax_loss(jnp.array([0., 0., 0.]),
  ...                            jnp.array([2., 1., 0.]))
  >>> print(f"{loss:.5f}")
  3.98898

  (``3 log 3 + log 2``: item 0 competes with all three, item 1 with items
  1 and 2, item 2 with itself and has gain 0.)

  Args:
    scores: ``[..., list_size]`` scores.
    labels: ``[..., list_size]`` labels.
    where: Optional boolean mask of valid items.
    segments: Optional segment ids.
    weights: Optional per-item weights.
    key: Unused.
    gain_fn: Maps labels to the weight of each item's term, or None.
    reduce_fn: ``jnp.mean``, ``jnp.sum`` or None (per-list losses).

  Returns:
    The loss.
  """
  del key
  inputs = _prepare(
    "unique_softmax_loss",
    scores,
    labels,
    where,
    weights,
    segments,
    reduce_fn=reduce_fn,
  )
  s, y, valid = inputs.scores, inputs.labels, inputs.valid
  item_weights = jnp.ones_like(s) if gain_fn is None else gain_fn(y)
  if inputs.weights is not None:
    item_weights = item_weights * inputs.weights
  if inputs.segments is None:
    total, has_valid = _label_order.weighted_log_likelihood(
      s, y, valid, item_weights
    )
    loss = _reduce_lists(-total, inputs, reduce_fn, has_valid=has_valid)
  else:
    log_p = _unique_log_softmax_pairs(s, y, valid, inputs.segments)
    loss = _reduce_lists(
      -_list_sum(log_p * item_weights, inputs), inputs, reduce_fn
    )
  return _to_output_dtype(loss, inputs)


def _unique_log_softmax_pairs(s, y, valid, segments):
  """The same with an ``[n, n]`` mask, for lists split into segments."""
  n = s.shape[-1]
  allowed = (
    (y[..., None, :] < y[..., :, None])
    & valid[..., None, :]
    & _segments.same_segment_mask(segments)
  )
  allowed = allowed | jnp.eye(n, dtype=bool)
  pairs = jnp.broadcast_to(s[..., None, :], allowed.shape)
  peak = lax.stop_gradient(
    jnp.max(jnp.where(allowed, pairs, -jnp.inf), axis=-1)
  )
  total = jnp.sum(
    jnp.where(allowed, jnp.exp(pairs - peak[..., None]), 0.0), axis=-1
  )
  return jnp.where(valid, s - peak - jnp.log(total), 0.0)


@_ranking_loss(uses_key=True)
def listmle_loss(
  scores: Array,
  labels: Array,
  *,
  key: Array | None = None,
  where: Array | None = None,
  segments: Array | None = None,
  weights: Array | None = None,
  reduce_fn: ReduceFn | None = jnp.mean,
) -> Array:
  r"""ListMLE loss :cite:`xia2008listwise`.

  The negative Plackett-Luce log-likelihood of the ranking by labels:

  .. math::
      \ell(s, y) = -\sum_k \log
          \frac{e^{s_{\pi(k)}}}{\sum_{m \ge k} e^{s_{\pi(m)}}}

  where ``pi`` sorts the valid items by decreasing label (within each
  segment). Tied labels keep list order, or are broken uniformly at random
  when a PRNG ``key`` is given (pass one when labels have ties, e.g. binary
  labels). ``weights`` multiply the term of the item placed at each position
  (Rax has no ``weights`` here; with ``weights=None`` values equal Rax's).

  >>> print(f"{listmle_loss(jnp.array([0., 0.]), jnp.array([1., 0.])):.5f}")
  0.69315

  (``-log(1/2) - log(1)``.)

  Args:
    scores: ``[..., list_size]`` scores.
    labels: ``[..., list_size]`` labels.
    key: Optional PRNG key for random tie breaking.
    where: Optional boolean mask of valid items.
    segments: Optional segment ids.
    weights: Optional per-item weights.
    reduce_fn: ``jnp.mean``, ``jnp.sum`` or None (per-list losses).

  Returns:
    The loss.
  """
  inputs = _prepare(
    "listmle_loss",
    scores,
    labels,
    where,
    weights,
    segments,
    reduce_fn=reduce_fn,
  )
  s, y, valid = inputs.scores, inputs.labels, inputs.valid
  w = inputs.weights if inputs.weights is not None else jnp.ones_like(s)
  sorted_scores, sorted_valid, sorted_w = _sorting.sort_by(
    y, [s, valid, w], where=valid, segments=inputs.segments, key=key
  )
  # For each position: logsumexp of the valid scores placed at or after it
  # (in its segment).
  if inputs.segments is None:
    lse = _utils.logcumsumexp(sorted_scores, where=sorted_valid, reverse=True)
  else:
    lse = _segments.segment_logcumsumexp(
      sorted_scores, inputs.segments, where=sorted_valid, reverse=True
    )
  terms = jnp.where(sorted_valid, (sorted_scores - lse) * sorted_w, 0.0)
  if inputs.segments is None:
    per_list = -jnp.sum(terms, axis=-1)
  else:
    # `terms` is in sorted slots: each segment keeps the slots it held, so
    # the slot's segment id is unchanged but its validity is `sorted_valid`.
    per_list = -_segments.segment_sum(
      terms, inputs.segments, where=sorted_valid
    )
  return _to_output_dtype(_reduce_lists(per_list, inputs, reduce_fn), inputs)


@_ranking_loss()
def listnet_loss(
  scores: Array,
  labels: Array,
  *,
  where: Array | None = None,
  segments: Array | None = None,
  weights: Array | None = None,
  key: Array | None = None,
  reduce_fn: ReduceFn | None = jnp.mean,
) -> Array:
  r"""ListNet loss :cite:`cao2007learning` (top-one probabilities).

  Cross-entropy between the top-one distribution of the labels and that of
  the scores, both a softmax over the valid items of the list (segment):

  .. math::
      \ell(s, y) = -\sum_i w_i \frac{e^{y_i}}{\sum_j e^{y_j}}
                   \log \frac{e^{s_i}}{\sum_j e^{s_j}}

  with ``w = weights`` (1 by default). Unlike :func:`softmax_loss` the target
  is the softmax of the labels, so a list whose labels are all equal pulls
  the scores towards a uniform distribution instead of contributing nothing.
  ``reduce_fn`` reduces over lists (segments) with a valid item.

  >>> print(f"{listnet_loss(jnp.array([0., 0.]), jnp.array([1., 1.])):.5f}")
  0.69315

  Args:
    scores: ``[..., list_size]`` scores.
    labels: ``[..., list_size]`` labels.
    where: Optional boolean mask of valid items.
    segments: Optional segment ids.
    weights: Optional per-item weights.
    key: Unused.
    reduce_fn: ``jnp.mean``, ``jnp.sum`` or None (per-list losses).

  Returns:
    The loss.
  """
  del key
  inputs = _prepare(
    "listnet_loss",
    scores,
    labels,
    where,
    weights,
    segments,
    reduce_fn=reduce_fn,
  )
  targets = jnp.exp(_log_softmax(inputs.labels, inputs.valid, inputs.segments))
  targets = jnp.where(inputs.valid, targets, 0.0)
  if inputs.weights is not None:
    targets = targets * inputs.weights
  log_p = _log_softmax(inputs.scores, inputs.valid, inputs.segments)
  per_list = -_list_sum(targets * log_p, inputs)
  return _to_output_dtype(_reduce_lists(per_list, inputs, reduce_fn), inputs)


@_ranking_loss()
def distillation_kl_loss(
  scores: Array,
  labels: Array,
  *,
  where: Array | None = None,
  segments: Array | None = None,
  weights: Array | None = None,
  key: Array | None = None,
  temperature: float = 1.0,
  reduce_fn: ReduceFn | None = jnp.mean,
) -> Array:
  r"""Listwise distillation: KL divergence from teacher to student.

  ``labels`` are the teacher's scores (logits). With temperature ``T``, over
  the valid items of each list (segment):

  .. math::
      \ell(s, t) = \sum_i w_i\, p_i (\log p_i - \log q_i), \quad
      p = \op{softmax}(t / T), \quad q = \op{softmax}(s / T)

  with ``w = weights`` (1 by default); items the teacher gives probability 0
  (``t_i = -inf``) contribute 0. The value is the plain KL at temperature
  ``T``; multiply by ``T**2`` to keep gradient magnitudes comparable across
  temperatures :cite:`hinton2015distilling`. ``reduce_fn`` reduces over lists
  (segments) with a valid item.

  >>> scores = jnp.array([0., 0.])
  >>> teacher = jnp.log(jnp.array([3., 1.]))
  >>> print(f"{distillation_kl_loss(scores, teacher):.5f}")
  0.13081

  (``0.75 log 1.5 + 0.25 log 0.5``.)

  Args:
    scores: ``[..., list_size]`` student scores.
    labels: ``[..., list_size]`` teacher scores.
    where: Optional boolean mask of valid items.
    segments: Optional segment ids.
    weights: Optional per-item weights.
    key: Unused.
    temperature: Softmax temperature ``T > 0`` for teacher and student.
    reduce_fn: ``jnp.mean``, ``jnp.sum`` or None (per-list losses).

  Returns:
    The loss.
  """
  del key
  if not temperature > 0:
    raise ValueError(
      f"distillation_kl_loss: temperature must be > 0, got "
      f"temperature={temperature}."
    )
  inputs = _prepare(
    "distillation_kl_loss",
    scores,
    labels,
    where,
    weights,
    segments,
    reduce_fn=reduce_fn,
  )
  teacher = lax.stop_gradient(inputs.labels) / temperature
  log_t = _log_softmax(teacher, inputs.valid, inputs.segments)
  t = jnp.where(inputs.valid, jnp.exp(log_t), 0.0)
  log_q = _log_softmax(
    inputs.scores / temperature, inputs.valid, inputs.segments
  )
  terms = jnp.where(t > 0, t * (log_t - log_q), 0.0)
  if inputs.weights is not None:
    terms = terms * inputs.weights
  per_list = _list_sum(terms, inputs)
  return _to_output_dtype(_reduce_lists(per_list, inputs, reduce_fn), inputs)


@_ranking_loss()
def margin_mse_loss(
  scores: Array,
  labels: Array,
  *,
  where: Array | None = None,
  segments: Array | None = None,
  weights: Array | None = None,
  key: Array | None = None,
  reduce_fn: ReduceFn | None = jnp.mean,
) -> Array:
  r"""Margin-MSE distillation :cite:`hofstatter2020improving`, for lists.

  ``labels`` are the teacher's scores. Hofstätter et al. train on triples
  and regress the student's margin ``s_pos - s_neg`` on the teacher's margin
  ``t_pos - t_neg``. For a list this loss takes every unordered pair of valid
  items once and averages the squared margin error over the list's pairs:

  .. math::
      \ell(s, t) = \frac{1}{\binom{n}{2}} \sum_{i<j} w_i w_j
          \big((s_i - s_j) - (t_i - t_j)\big)^2

  where ``n`` is the number of valid items of the list (segment) and ``w =
  weights`` (1 by default). A two-item list ``[pos, neg]`` gives exactly
  Hofstätter's loss; the squared error is symmetric, so which item is the
  positive does not matter. ``reduce_fn`` reduces over lists (segments) with
  at least two valid items; others have loss 0 and are left out of the mean.
  Computed in ``O(n)`` from centred sums (no pair matrix).

  >>> scores = jnp.array([3., 1.])
  >>> teacher = jnp.array([10., 7.])
  >>> print(margin_mse_loss(scores, teacher))
  1.0

  (``((3 - 1) - (10 - 7))**2``.)

  Args:
    scores: ``[..., list_size]`` student scores.
    labels: ``[..., list_size]`` teacher scores.
    where: Optional boolean mask of valid items.
    segments: Optional segment ids.
    weights: Optional per-item weights.
    key: Unused.
    reduce_fn: ``jnp.mean``, ``jnp.sum`` or None (per-list losses).

  Returns:
    The loss.
  """
  del key
  inputs = _prepare(
    "margin_mse_loss",
    scores,
    labels,
    where,
    weights,
    segments,
    reduce_fn=reduce_fn,
  )
  valid = inputs.valid
  a = valid.astype(inputs.scores.dtype)
  if inputs.weights is not None:
    a = a * inputs.weights
  r = jnp.where(valid, inputs.scores - lax.stop_gradient(inputs.labels), 0.0)
  # sum_{i<j} a_i a_j (r_i - r_j)^2 = A * sum_i a_i (r_i - rbar)^2 with
  # A = sum a and rbar the a-weighted mean of r.
  if inputs.segments is None:
    list_sum = lambda v: jnp.sum(v, axis=-1, keepdims=True)
  else:
    list_sum = lambda v: _segments.segment_sum(v, inputs.segments, where=valid)
  total_a = list_sum(a)
  mean = list_sum(a * r) / jnp.where(total_a > 0, total_a, 1.0)
  spread = list_sum(a * jnp.square(r - mean))
  n = list_sum(valid.astype(a.dtype))
  pairs = n * (n - 1.0) / 2.0
  per_list = total_a * spread / jnp.maximum(pairs, 1.0)
  if inputs.segments is None:
    per_list = per_list[..., 0]
    mask = pairs[..., 0] > 0
  else:
    mask = _segments.first_item_segment_mask(inputs.segments, where=valid) & (
      pairs > 0
    )
  out = _utils.safe_reduce(per_list, where=mask, reduce_fn=reduce_fn)
  return _to_output_dtype(out, inputs)
