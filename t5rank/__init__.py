"""t5rank: learning-to-rank fine-tuning for T5 in JAX.

The ranking library (`t5rank.ranking`, pure JAX) is re-exported here under
Rax's names and call convention, so code moves between Rax and t5rank by
changing the import:

>>> import jax.numpy as jnp
>>> import t5rank
>>> scores = jnp.array([2.0, 1.0, 3.0])
>>> labels = jnp.array([1.0, 0.0, 0.0])
>>> print(f"{t5rank.softmax_loss(scores, labels):.4f}")
1.4076
>>> print(f"{t5rank.mrr_metric(scores, labels):.4f}")
0.5000

Rax's `rax.utils` and `rax.types` are `t5rank.utils` and `t5rank.types`.
Seqio tasks (`t5rank.tasks`), data (`t5rank.data`) and T5X models
(`t5rank.models`) are imported from their modules.
"""

from t5rank import types
from t5rank import utils
from t5rank.ranking.lambdaweights import dcg2_lambdaweight
from t5rank.ranking.lambdaweights import dcg_lambdaweight
from t5rank.ranking.lambdaweights import labeldiff_lambdaweight
from t5rank.ranking.lambdaweights import ndcgloss2pp_lambdaweight
from t5rank.ranking.losses import distillation_kl_loss
from t5rank.ranking.losses import lambdaloss_loss
from t5rank.ranking.losses import listmle_loss
from t5rank.ranking.losses import listnet_loss
from t5rank.ranking.losses import margin_mse_loss
from t5rank.ranking.losses import pairwise_hinge_loss
from t5rank.ranking.losses import pairwise_logistic_loss
from t5rank.ranking.losses import pairwise_loss
from t5rank.ranking.losses import pairwise_mse_loss
from t5rank.ranking.losses import pairwise_qr_loss
from t5rank.ranking.losses import pairwise_soft_zero_one_loss
from t5rank.ranking.losses import pointwise_mse_loss
from t5rank.ranking.losses import pointwise_sigmoid_loss
from t5rank.ranking.losses import poly1_softmax_loss
from t5rank.ranking.losses import softmax_loss
from t5rank.ranking.losses import unique_softmax_loss
from t5rank.ranking.metrics import ap_metric
from t5rank.ranking.metrics import dcg_metric
from t5rank.ranking.metrics import default_discount_fn
from t5rank.ranking.metrics import default_gain_fn
from t5rank.ranking.metrics import err_metric
from t5rank.ranking.metrics import linear_gain_fn
from t5rank.ranking.metrics import mrr_metric
from t5rank.ranking.metrics import ndcg_metric
from t5rank.ranking.metrics import opa_metric
from t5rank.ranking.metrics import precision_metric
from t5rank.ranking.metrics import recall_metric
from t5rank.ranking.metrics import reciprocal_rank_discount_fn
from t5rank.ranking.t12n import approx_t12n
from t5rank.ranking.t12n import bound_t12n
from t5rank.ranking.t12n import gumbel_t12n
from t5rank.ranking.t12n import neuralsort_permutation
from t5rank.ranking.t12n import neuralsort_t12n
from t5rank.ranking.t12n import segment_t12n

__version__ = "0.1.0"

__all__ = [
  "dcg2_lambdaweight",
  "dcg_lambdaweight",
  "labeldiff_lambdaweight",
  "ndcgloss2pp_lambdaweight",
  "distillation_kl_loss",
  "lambdaloss_loss",
  "listmle_loss",
  "listnet_loss",
  "margin_mse_loss",
  "pairwise_hinge_loss",
  "pairwise_logistic_loss",
  "pairwise_loss",
  "pairwise_mse_loss",
  "pairwise_qr_loss",
  "pairwise_soft_zero_one_loss",
  "pointwise_mse_loss",
  "pointwise_sigmoid_loss",
  "poly1_softmax_loss",
  "softmax_loss",
  "unique_softmax_loss",
  "ap_metric",
  "dcg_metric",
  "default_discount_fn",
  "default_gain_fn",
  "err_metric",
  "linear_gain_fn",
  "mrr_metric",
  "ndcg_metric",
  "opa_metric",
  "precision_metric",
  "recall_metric",
  "reciprocal_rank_discount_fn",
  "approx_t12n",
  "bound_t12n",
  "gumbel_t12n",
  "neuralsort_permutation",
  "neuralsort_t12n",
  "segment_t12n",
]
