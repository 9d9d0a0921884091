"""Protocols describing the callables of ``t5rank.ranking``.

They exist for type checking and documentation only: any plain function with
the right call signature fits, nothing needs to subclass them. They mirror
Rax's conventions so Rax functions and ours can be swapped.
"""

from collections.abc import Sequence
from typing import Protocol

import jax

Array = jax.Array


class RankFn(Protocol):
  """Maps scores to 1-based ranks (exact or approximate)."""

  def __call__(
    self,
    scores: Array,
    *,
    where: Array | None = None,
    segments: Array | None = None,
    key: Array | None = None,
  ) -> Array:
    """Returns ranks shaped like ``scores``; masked items rank last."""


class CutoffFn(Protocol):
  """Maps values to a (soft) indicator of the ``n`` largest per list."""

  def __call__(
    self,
    a: Array,
    n: int | None = None,
    *,
    where: Array | None = None,
    segments: Array | None = None,
  ) -> Array:
    """Returns values in [0, 1] shaped like ``a``; ``n=None`` keeps all."""


class ReduceFn(Protocol):
  """Reduces an array, honouring a ``where`` mask (``jnp.mean``, ``jnp.sum``)."""

  def __call__(
    self,
    a: Array,
    axis: int | Sequence[int] | None = None,
    *,
    where: Array | None = None,
  ) -> Array:
    """Returns the reduction of the entries of ``a`` where ``where``."""


class LossFn(Protocol):
  """A ranking loss: ``loss(scores, labels, *, where=None, **kwargs)``."""

  def __call__(
    self,
    scores: Array,
    labels: Array,
    *,
    where: Array | None = None,
    **kwargs,
  ) -> Array:
    """Returns the loss for ``[..., list_size]`` scores and labels."""


class MetricFn(Protocol):
  """A ranking metric: ``metric(scores, labels, *, where=None, **kwargs)``."""

  def __call__(
    self,
    scores: Array,
    labels: Array,
    *,
    where: Array | None = None,
    **kwargs,
  ) -> Array:
    """Returns the metric for ``[..., list_size]`` scores and labels."""


class LambdaweightFn(Protocol):
  """Pairwise weights ``[..., list_size, list_size]`` for pairwise losses."""

  def __call__(
    self,
    scores: Array,
    labels: Array,
    *,
    where: Array | None = None,
    weights: Array | None = None,
    **kwargs,
  ) -> Array:
    """Returns one weight per item pair ``(i, j)``."""


class GainFn(Protocol):
  """Maps relevance labels to gains (default ``2**y - 1``)."""

  def __call__(self, labels: Array) -> Array:
    """Returns the gain of each label."""


class DiscountFn(Protocol):
  """Maps 1-based ranks to discounts (default ``1 / log2(rank + 1)``)."""

  def __call__(self, ranks: Array) -> Array:
    """Returns the discount of each rank."""
