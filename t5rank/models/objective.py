"""The training objective of a list ranker: which lists count, and how.

T5X models in t5rank score a batch of lists `[B, L]` and hand the scores to
any ranking loss that follows Rax's calling convention,
`loss_fn(scores, labels, *, where=None, reduce_fn=..., key=...)`. This module
holds that glue, so every model (enc-dec, encoder-only, packed or not) trains
on the same objective:

* A list *counts* when it has at least one valid item and, with
  `exclude_lists_without_positive=True` (the default), at least one valid item
  with label > 0. Lists that do not count leave the loss entirely.
* The loss is `loss_fn(..., where=mask & counts, reduce_fn=jnp.sum)` divided by
  the number of lists that count (1 when none count, giving 0). For listwise
  losses this is the mean per-list loss; for pairwise and pointwise losses it
  is the per-list sum of pair or item losses, averaged over lists. There is
  no other normalising constant.
* A `key` is passed only to losses whose signature names one
  (`t5rank.ranking._signatures.takes_argument`, as the t12n transformations
  decide), so Rax losses without `key` work unchanged and
  `gumbel_t12n(...)` or ListMLE get their randomness.

>>> import jax.numpy as jnp
>>> def sum_of_scores(scores, labels, *, where=None, reduce_fn=jnp.sum):
...   return reduce_fn(jnp.where(where, scores, 0.0))
>>> scores = jnp.array([[1.0, 2.0], [3.0, 4.0], [5.0, 6.0]])
>>> labels = jnp.array([[0.0, 1.0], [0.0, 0.0], [1.0, 0.0]])
>>> mask = jnp.array([[True, True], [True, True], [True, False]])
>>> loss, counts = list_loss(sum_of_scores, scores, labels, mask)
>>> print(loss, counts)  # (1 + 2 + 5) / 2: the second list has no positive
4.0 [ True False  True]
"""

from collections.abc import Callable
from collections.abc import Mapping

from clu import metrics as clu_metrics
import jax
import jax.numpy as jnp
from t5x import metrics as metrics_lib

from t5rank.ranking import _signatures

Array = jnp.ndarray
LossFn = Callable[..., Array]
MetricFn = Callable[..., Array]


def counted_lists(
  labels: Array, mask: Array, *, exclude_lists_without_positive: bool = True
) -> Array:
  """Lists that enter the loss: bool [...] over the leading list axes.

  A list counts when it has a valid item and, if
  `exclude_lists_without_positive`, a valid item with label > 0.
  """
  counts = jnp.any(mask, axis=-1)
  if exclude_lists_without_positive:
    counts = counts & jnp.any(mask & (labels > 0), axis=-1)
  return counts


def list_loss(
  loss_fn: LossFn,
  scores: Array,
  labels: Array,
  mask: Array,
  *,
  key: Array | None = None,
  exclude_lists_without_positive: bool = True,
) -> tuple[Array, Array]:
  """Mean loss over the lists that count; see the module docstring.

  Args:
    loss_fn: a Rax-convention loss; it gets `where`, `reduce_fn=jnp.sum` and,
      when it accepts one and `key` is given, `key`.
    scores: float [B, L].
    labels: float [B, L].
    mask: bool [B, L], False for padding items.
    key: PRNG key for random losses.
    exclude_lists_without_positive: leave lists without a positive out.

  Returns:
    (loss, counts): the scalar float32 loss and the bool [B] lists counted.
  """
  mask = jnp.asarray(mask, jnp.bool_)
  counts = counted_lists(
    labels,
    mask,
    exclude_lists_without_positive=exclude_lists_without_positive,
  )
  kwargs = {"where": mask & counts[..., None], "reduce_fn": jnp.sum}
  if key is not None and _signatures.takes_argument(loss_fn, "key"):
    kwargs["key"] = key
  # Items outside `where` may hold any finite value; zero them so that even a
  # loss that forgets `where` cannot see padding scores.
  scores = jnp.where(kwargs["where"], scores, jnp.zeros_like(scores))
  total = loss_fn(scores, labels, **kwargs)
  num_lists = jnp.sum(counts)
  loss = total / jnp.maximum(num_lists, 1).astype(total.dtype)
  return jnp.asarray(loss, jnp.float32), counts


def train_metrics(
  loss: Array,
  scores: Array,
  labels: Array,
  mask: Array,
  counts: Array,
  metric_fns: Mapping[str, MetricFn],
) -> metrics_lib.MetricsMap:
  """T5X/CLU metrics of a ranking step.

  * `loss`: the step's loss (averaged over steps);
  * `metrics/<name>` for each of `metric_fns` (e.g. `ndcg@10`, `mrr@10`):
    averaged over the lists with a valid item, across steps and eval batches
    (lists without a positive score 0 and count, as in Rax and MS-MARCO);
  * `debug/scores_mean`, `debug/labels_mean` (over valid items),
    `debug/items_per_list`, `debug/lists_in_loss_fraction` (lists that count
    over all lists), `debug/lists_in_loss` (per step);
  * T5X's `timing/steps_per_second`, `timing/seconds` and
    `timing/lists_per_second`.
  """
  mask = jnp.asarray(mask, jnp.bool_)
  num_items = jnp.sum(mask)
  lists_with_items = jnp.any(mask, axis=-1)
  num_lists = jnp.sum(lists_with_items)
  num_slots = jnp.asarray(counts.size, jnp.int32)
  scores = jnp.where(mask, scores, 0.0)
  metrics = {
    "loss": metrics_lib.AveragePerStep(total=loss),
    "debug/scores_mean": clu_metrics.Average(
      total=jnp.sum(scores), count=num_items
    ),
    "debug/labels_mean": clu_metrics.Average(
      total=jnp.sum(jnp.where(mask, labels, 0.0)), count=num_items
    ),
    "debug/items_per_list": clu_metrics.Average(
      total=num_items.astype(jnp.float32), count=num_slots
    ),
    "debug/lists_in_loss_fraction": clu_metrics.Average(
      total=jnp.sum(counts).astype(jnp.float32), count=num_slots
    ),
    "debug/lists_in_loss": metrics_lib.AveragePerStep(
      total=jnp.sum(counts).astype(jnp.float32)
    ),
    "timing/steps_per_second": metrics_lib.StepsPerTime.from_model_output(),
    "timing/seconds": metrics_lib.Time(),
    "timing/lists_per_second": metrics_lib.TimeRate.from_model_output(
      numerator=num_lists
    ),
  }
  for name, metric_fn in metric_fns.items():
    total = metric_fn(
      jax.lax.stop_gradient(scores), labels, where=mask, reduce_fn=jnp.sum
    )
    metrics[f"metrics/{name}"] = clu_metrics.Average(
      total=jnp.asarray(total, jnp.float32), count=num_lists
    )
  return metrics
