r"""Lambda weights for pairwise losses.

A lambda weight ``lambda_ij`` rescales the loss of the item pair ``(i, j)`` by
how much swapping the two items would change a ranking metric, which turns a
pairwise loss into a metric-driven one (LambdaRank, LambdaLoss). Every
function here maps ``[..., list_size]`` scores and labels to one weight per
ordered pair, shaped ``[..., list_size * list_size]`` with pair ``(i, j)`` at
``i * list_size + j`` (Rax's layout, so Rax's and these lambda weights swap
freely), and is passed to a pairwise loss as ``lambdaweight_fn``:

>>> from t5rank.ranking import losses
>>> scores = jnp.array([1.2, 0.4, 1.9])
>>> labels = jnp.array([1.0, 2.0, 0.0])
>>> loss = losses.pairwise_logistic_loss(
...     scores, labels, lambdaweight_fn=labeldiff_lambdaweight)
>>> print(f"{loss:.5f}")
1.89237

(Rax's documented example.) The names, arguments and values follow Rax 0.4.0
(DCG weights are scaled by the list size, as in Rax), plus
:func:`ndcgloss2pp_lambdaweight`, the NDCG-Loss2++ weights of LambdaLoss.
Pairs that involve a masked item, or two items of different segments, get
weight 0. Ranks come from the scores with ties kept in list order; they are
piecewise constant, so no gradient flows through a lambda weight.
"""

from collections.abc import Callable

import jax.numpy as jnp

from t5rank.ranking import _segments
from t5rank.ranking import _sorting
from t5rank.ranking import metrics
from t5rank.ranking import types

Array = types.Array


def _valid_pairs(where, segments, shape):
  valid = jnp.ones(shape + shape[-1:], dtype=bool)
  if where is not None:
    where = jnp.asarray(where).astype(bool)
    valid = valid & where[..., :, None] & where[..., None, :]
  if segments is not None:
    valid = valid & _segments.same_segment_mask(jnp.asarray(segments))
  return valid


def _flatten(pairs):
  """``[..., n, n]`` to Rax's ``[..., n * n]``."""
  return pairs.reshape(pairs.shape[:-2] + (pairs.shape[-1] ** 2,))


def labeldiff_lambdaweight(
  scores: Array,
  labels: Array,
  *,
  where: Array | None = None,
  segments: Array | None = None,
  weights: Array | None = None,
) -> Array:
  r"""Absolute label difference.

  .. math:: \lambda_{ij} = |y_i - y_j|

  Rax gives pairs of two *masked* items their label difference too; here
  every pair with a masked item is 0 (no loss counts those pairs either way).

  >>> print(labeldiff_lambdaweight(jnp.array([0., 0.]), jnp.array([2., 0.5])))
  [0.  1.5 1.5 0. ]

  Args:
    scores: ``[..., list_size]`` scores (unused).
    labels: ``[..., list_size]`` labels.
    where: Optional boolean mask of valid items.
    segments: Optional segment ids.
    weights: Unused (as in Rax).

  Returns:
    ``[..., list_size * list_size]`` lambda weights.
  """
  del weights
  labels = jnp.asarray(labels)
  if not jnp.issubdtype(labels.dtype, jnp.floating):
    labels = labels.astype(jnp.float32)
  del scores
  diff = jnp.abs(labels[..., :, None] - labels[..., None, :])
  return _flatten(
    jnp.where(_valid_pairs(where, segments, labels.shape), diff, 0.0)
  )


def _gains_and_ranks(
  scores,
  labels,
  where,
  segments,
  weights,
  topn,
  normalize,
  gain_fn,
  discount_fn,
):
  """Per-item (normalised) gains and 1-based ranks by score."""
  scores = jnp.asarray(scores)
  labels = jnp.asarray(labels)
  ranks = _sorting.ranks(scores, where=where, segments=segments)
  gains = gain_fn(labels)
  if not jnp.issubdtype(gains.dtype, jnp.floating):
    gains = gains.astype(jnp.float32)
  if weights is not None:
    gains = gains * weights
  if normalize:
    gains = gains / _ideal_dcg(
      gains, where=where, segments=segments, topn=topn, discount_fn=discount_fn
    )
  return gains, ranks


def _ideal_dcg(gains, *, where, segments, topn, discount_fn):
  """DCG of the list sorted by gain; 1 where that is 0 (Rax's convention).

  Shaped ``[..., 1]`` without segments, ``[..., list_size]`` (each item's
  segment) with them.
  """
  ideal_ranks = _sorting.ranks(gains, where=where, segments=segments)
  contrib = gains * discount_fn(ideal_ranks)
  keep = jnp.ones(gains.shape, dtype=bool)
  if topn is not None:
    keep = ideal_ranks <= topn
  if where is not None:
    keep = keep & jnp.asarray(where).astype(bool)
  contrib = jnp.where(keep, contrib, 0.0)
  if segments is None:
    ideal = jnp.sum(contrib, axis=-1, keepdims=True)
  else:
    ideal = _segments.segment_sum(contrib, segments, where=where)
  return jnp.where(ideal == 0.0, 1.0, ideal)


def _rank_discount_diff(ranks, topn, discount_fn):
  """``|D(r_i) - D(r_j)|`` with ``D`` 0 below the cutoff (LambdaRank)."""
  discounts = discount_fn(ranks)
  if topn is not None:
    discounts = jnp.where(ranks <= topn, discounts, 0.0)
  return jnp.abs(discounts[..., :, None] - discounts[..., None, :])


def _rank_gap_discount(ranks, topn, discount_fn, light):
  """``|D(|r_i - r_j|) - D(|r_i - r_j| + 1)|`` (LambdaLoss' delta_ij)."""
  gap = jnp.abs(ranks[..., :, None] - ranks[..., None, :])
  safe_gap = jnp.maximum(gap, 1)
  if light:
    discounts = jnp.abs(discount_fn(safe_gap))
  else:
    discounts = jnp.abs(discount_fn(safe_gap) - discount_fn(safe_gap + 1))
  discounts = jnp.where(gap != 0, discounts, 0.0)
  if topn is not None:
    # Jagerman et al. (2022): pairs whose lower item is below the cutoff are
    # scaled up by 1 / (1 - D(max rank)).
    lower = jnp.maximum(ranks[..., :, None], ranks[..., None, :])
    scale = 1.0 / (1.0 - discount_fn(jnp.maximum(lower, 2)))
    discounts = discounts * jnp.where(lower > topn, scale, 1.0)
  return discounts


def _dcg_family(
  scores,
  labels,
  pair_discount,
  *,
  where,
  segments,
  weights,
  topn,
  normalize,
  gain_fn,
  discount_fn,
):
  gains, ranks = _gains_and_ranks(
    scores,
    labels,
    where,
    segments,
    weights,
    topn,
    normalize,
    gain_fn,
    discount_fn,
  )
  gain_diff = jnp.abs(gains[..., :, None] - gains[..., None, :])
  # Rax scales DCG lambda weights by the list size to avoid tiny values.
  size = ranks.shape[-1]
  out = gain_diff * pair_discount(ranks) * size
  return _flatten(
    jnp.where(_valid_pairs(where, segments, ranks.shape), out, 0.0)
  )


def dcg_lambdaweight(
  scores: Array,
  labels: Array,
  *,
  where: Array | None = None,
  segments: Array | None = None,
  weights: Array | None = None,
  topn: int | None = None,
  normalize: bool = False,
  gain_fn: Callable[[Array], Array] = metrics.default_gain_fn,
  discount_fn: Callable[[Array], Array] = metrics.default_discount_fn,
) -> Array:
  r"""DCG (LambdaRank) lambda weights :cite:`burges2006learning`.

  .. math::
      \lambda_{ij} = n \cdot |G_i - G_j| \cdot |D(r_i) - D(r_j)|

  with ``G = gain_fn(y) * weights`` (divided by the ideal DCG when
  ``normalize``, i.e. NDCG), ``r`` the ranks by score, ``D = discount_fn``
  set to 0 for ranks beyond ``topn`` and ``n`` the list size (Rax's scale).

  >>> print(dcg_lambdaweight(jnp.array([1., 0.]), jnp.array([1., 0.])))
  [0.         0.73814046 0.73814046 0.        ]

  (``2 * |1 - 0| * |1 - 1/log2(3)|``.)

  Args:
    scores: ``[..., list_size]`` scores.
    labels: ``[..., list_size]`` labels.
    where: Optional boolean mask of valid items.
    segments: Optional segment ids.
    weights: Optional per-item weights (scale the gains).
    topn: Optional rank cutoff.
    normalize: Divide gains by the ideal DCG (NDCG weights).
    gain_fn: Maps labels to gains.
    discount_fn: Maps 1-based ranks to discounts.

  Returns:
    ``[..., list_size * list_size]`` lambda weights.
  """
  pair_discount = lambda r: _rank_discount_diff(r, topn, discount_fn)
  return _dcg_family(
    scores,
    labels,
    pair_discount,
    where=where,
    segments=segments,
    weights=weights,
    topn=topn,
    normalize=normalize,
    gain_fn=gain_fn,
    discount_fn=discount_fn,
  )


def dcg2_lambdaweight(
  scores: Array,
  labels: Array,
  *,
  where: Array | None = None,
  segments: Array | None = None,
  weights: Array | None = None,
  topn: int | None = None,
  normalize: bool = False,
  gain_fn: Callable[[Array], Array] = metrics.default_gain_fn,
  discount_fn: Callable[[Array], Array] = metrics.default_discount_fn,
  light_discount: bool = False,
) -> Array:
  r"""DCG v2 ("LambdaLoss") lambda weights :cite:`wang2018lambdaloss`.

  .. math::
      \lambda_{ij} = n \cdot |G_i - G_j| \cdot
          |D(|r_i - r_j|) - D(|r_i - r_j| + 1)|

  or ``n |G_i - G_j| D(|r_i - r_j|)`` with ``light_discount``; 0 for
  ``i == j``. With ``topn`` pairs whose lower-ranked item is beyond the
  cutoff are scaled by ``1 / (1 - D(max(r_i, r_j)))``
  :cite:`jagerman2022optimizing`. Gains, ranks and ``n`` as in
  :func:`dcg_lambdaweight`; with ``normalize`` this is NDCG-Loss2.

  >>> print(dcg2_lambdaweight(jnp.array([1., 0.]), jnp.array([1., 0.])))
  [0.         0.73814046 0.73814046 0.        ]

  (``2 * |1 - 0| * |D(1) - D(2)|``.)

  Args:
    scores: ``[..., list_size]`` scores.
    labels: ``[..., list_size]`` labels.
    where: Optional boolean mask of valid items.
    segments: Optional segment ids.
    weights: Optional per-item weights (scale the gains).
    topn: Optional rank cutoff.
    normalize: Divide gains by the ideal DCG.
    gain_fn: Maps labels to gains.
    discount_fn: Maps 1-based ranks to discounts.
    light_discount: Use ``D(|r_i - r_j|)`` instead of the difference.

  Returns:
    ``[..., list_size * list_size]`` lambda weights.
  """
  pair_discount = lambda r: _rank_gap_discount(
    r, topn, discount_fn, light_discount
  )
  return _dcg_family(
    scores,
    labels,
    pair_discount,
    where=where,
    segments=segments,
    weights=weights,
    topn=topn,
    normalize=normalize,
    gain_fn=gain_fn,
    discount_fn=discount_fn,
  )


def ndcgloss2pp_lambdaweight(
  scores: Array,
  labels: Array,
  *,
  where: Array | None = None,
  segments: Array | None = None,
  weights: Array | None = None,
  topn: int | None = None,
  mu: float = 10.0,
  normalize: bool = True,
  gain_fn: Callable[[Array], Array] = metrics.default_gain_fn,
  discount_fn: Callable[[Array], Array] = metrics.default_discount_fn,
) -> Array:
  r"""NDCG-Loss2++ lambda weights of LambdaLoss :cite:`wang2018lambdaloss`.

  .. math::
      \lambda_{ij} = n \cdot |G_i - G_j| \cdot (\rho_{ij} + \mu\, \delta_{ij}),
      \quad \rho_{ij} = |D(r_i) - D(r_j)|, \quad
      \delta_{ij} = |D(|r_i - r_j|) - D(|r_i - r_j| + 1)|

  with ``G`` the gains divided by the ideal DCG (``normalize=True``), i.e.
  exactly ``dcg_lambdaweight(..., normalize=True) + mu *
  dcg2_lambdaweight(..., normalize=True)`` (``topn`` is passed to both).
  The list-size factor ``n`` follows Rax's DCG weights; it rescales the loss
  (and so the learning rate), not the direction. ``mu=10`` is the default of
  allRank's public LambdaLoss implementation; Wang et al. tune it.
  Use it with :func:`~t5rank.ranking.losses.pairwise_logistic_loss`, or call
  :func:`~t5rank.ranking.losses.lambdaloss_loss`.

  >>> print(ndcgloss2pp_lambdaweight(jnp.array([1., 0.]),
  ...                                jnp.array([1., 0.]), mu=1.0))
  [0.        1.4762809 1.4762809 0.       ]

  (``rho = delta = 1 - 1/log2(3)``, so ``2 * 1 * 2 * 0.36907``.)

  Args:
    scores: ``[..., list_size]`` scores.
    labels: ``[..., list_size]`` labels.
    where: Optional boolean mask of valid items.
    segments: Optional segment ids.
    weights: Optional per-item weights (scale the gains).
    topn: Optional rank cutoff.
    mu: Weight of the NDCG-Loss2 term ``delta`` against the LambdaRank term
      ``rho``.
    normalize: Divide gains by the ideal DCG (NDCG; False gives DCG).
    gain_fn: Maps labels to gains.
    discount_fn: Maps 1-based ranks to discounts.

  Returns:
    ``[..., list_size * list_size]`` lambda weights.
  """

  def pair_discount(ranks):
    rho = _rank_discount_diff(ranks, topn, discount_fn)
    delta = _rank_gap_discount(ranks, topn, discount_fn, light=False)
    return rho + mu * delta

  return _dcg_family(
    scores,
    labels,
    pair_discount,
    where=where,
    segments=segments,
    weights=weights,
    topn=topn,
    normalize=normalize,
    gain_fn=gain_fn,
    discount_fn=discount_fn,
  )
