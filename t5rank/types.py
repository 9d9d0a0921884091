"""Protocols of the ranking callables under Rax's ``rax.types`` names.

``LossFn``, ``MetricFn``, ``LambdaweightFn``, ``RankFn``, ``CutoffFn`` and
``ReduceFn`` describe the call conventions of ``t5rank``'s (and Rax's)
functions for type annotations; ``GainFn`` and ``DiscountFn`` those of the
metrics' ``gain_fn``/``discount_fn``. Nothing needs to subclass them.

>>> import t5rank
>>> from t5rank import types
>>> loss_fn: types.LossFn = t5rank.softmax_loss
"""

from t5rank.ranking.types import Array
from t5rank.ranking.types import CutoffFn
from t5rank.ranking.types import DiscountFn
from t5rank.ranking.types import GainFn
from t5rank.ranking.types import LambdaweightFn
from t5rank.ranking.types import LossFn
from t5rank.ranking.types import MetricFn
from t5rank.ranking.types import RankFn
from t5rank.ranking.types import ReduceFn

__all__ = [
  "Array",
  "CutoffFn",
  "DiscountFn",
  "GainFn",
  "LambdaweightFn",
  "LossFn",
  "MetricFn",
  "RankFn",
  "ReduceFn",
]
