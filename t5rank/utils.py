"""Rank, cutoff, pair and reduction utilities under Rax's ``rax.utils`` names.

Code written against ``rax.utils`` runs unchanged with ``t5rank.utils``: the
names, argument names, positional parameters and output shapes are Rax's
(``compute_pairs`` returns ``[..., n * n]``). The implementations are those
every t5rank loss and metric uses (``t5rank.ranking._utils``,
``_sorting``), so ranks here and in the metrics always agree;
``pairwise_loss``, Rax's generic pairwise loss, is
``t5rank.ranking.losses.pairwise_loss``.

>>> import jax.numpy as jnp
>>> from t5rank import utils
>>> scores = jnp.array([2., 5., 2., 1.])
>>> print(utils.ranks(scores))
[2 1 3 4]
>>> print(utils.cutoff(scores, 2))
[1. 1. 0. 0.]
>>> print(utils.compute_pairs(jnp.array([1., 2.]), jnp.subtract))
[ 0. -1.  1.  0.]
>>> print(utils.normalize_probabilities(unscaled_probabilities=scores[1:3]))
[0.71428573 0.2857143 ]
"""

from collections.abc import Callable

from t5rank.ranking import _utils
from t5rank.ranking import types
from t5rank.ranking._sorting import ranks
from t5rank.ranking._sorting import sort_by
from t5rank.ranking._utils import approx_cutoff
from t5rank.ranking._utils import approx_ranks
from t5rank.ranking._utils import cutoff
from t5rank.ranking._utils import logcumsumexp
from t5rank.ranking._utils import normalize_probabilities
from t5rank.ranking._utils import safe_reduce
from t5rank.ranking.losses import pairwise_loss

Array = types.Array


def compute_pairs(a: Array, op: Callable[[Array, Array], Array]) -> Array:
  """``op(a[..., i], a[..., j])`` for all pairs, flattened to ``[..., n * n]``.

  Entry ``i * n + j`` of the last axis holds the pair ``(i, j)``, as in Rax.

  >>> import jax.numpy as jnp
  >>> print(compute_pairs(jnp.array([[1., 2., 4.]]), jnp.subtract).shape)
  (1, 9)

  Args:
    a: Values whose last axis forms the pairs.
    op: A binary function applied to every pair.

  Returns:
    An array with ``a``'s leading axes and a last axis of ``n * n`` pairs.
  """
  pairs = _utils.compute_pairs(a, op)
  return pairs.reshape(pairs.shape[:-2] + (-1,))


__all__ = [
  "approx_cutoff",
  "approx_ranks",
  "compute_pairs",
  "cutoff",
  "logcumsumexp",
  "normalize_probabilities",
  "pairwise_loss",
  "ranks",
  "safe_reduce",
  "sort_by",
]
