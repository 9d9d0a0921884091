r"""Transformations ("t12n") that turn ranking metrics into losses, and more.

A transformation takes a loss or metric function and returns a new function
with the same calling convention, so transformations compose with each other
and with ``jax.jit``, ``jax.grad`` and ``jax.vmap``:

* :func:`approx_t12n`: smooth ranks and cutoffs (sigmoid) -> ``-metric`` as a
  differentiable loss (ApproxNDCG, ApproxMRR, ...).
* :func:`bound_t12n`: hinge bounds on ranks and cutoffs -> ``-metric`` lower
  bound as a loss.
* :func:`neuralsort_t12n`: NeuralSort relaxed permutation matrices (with
  Sinkhorn scaling) -> ``-metric`` as a loss; NeuralNDCG for ``ndcg_metric``.
* :func:`gumbel_t12n`: evaluates the function on Gumbel-perturbed scores
  (``samples`` draws); needs ``key=``.
* :func:`segment_t12n`: adds ``segments=`` support to a function without it.

Transformed functions carry a readable name (``approx_ndcg_metric``) and the
wrapped docstring.

>>> import jax
>>> import jax.numpy as jnp
>>> from t5rank.ranking import metrics
>>> scores = jnp.array([0., 1., 3., 2.])
>>> labels = jnp.array([0., 0., 1., 2.])
>>> approx_ndcg = approx_t12n(metrics.ndcg_metric)
>>> print(approx_ndcg.__name__)
approx_ndcg_metric
>>> print(f"{approx_ndcg(scores, labels):.5f}")
-0.71789
>>> print(jax.grad(approx_ndcg)(scores, labels))
[ 0.01936509  0.03828059 -0.00640559 -0.05124009]
>>> loss = gumbel_t12n(approx_t12n(metrics.ndcg_metric))
>>> print(bool(jnp.isfinite(loss(scores, labels, key=jax.random.PRNGKey(0)))))
True
"""

import functools
import inspect
from typing import TypeVar

import jax
import jax.numpy as jnp
import numpy as np

from t5rank.ranking import _signatures
from t5rank.ranking import _utils
from t5rank.ranking import metrics
from t5rank.ranking import types

Array = types.Array
LossFn = types.LossFn
MetricFn = types.MetricFn
LossOrMetricFn = TypeVar("LossOrMetricFn", LossFn, MetricFn)


def _with_signature(fn, wrapped, add=(), remove=()):
  """Gives ``fn`` the signature of ``wrapped`` plus/minus keyword-only args."""
  try:
    signature = inspect.signature(wrapped)
  except (TypeError, ValueError):
    return fn
  params = [p for n, p in signature.parameters.items() if n not in remove]
  names = {p.name for p in params}
  var_kw = [p for p in params if p.kind == inspect.Parameter.VAR_KEYWORD]
  params = [p for p in params if p.kind != inspect.Parameter.VAR_KEYWORD]
  for name in add:
    if name not in names:
      params.append(
        inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, default=None)
      )
  fn.__signature__ = signature.replace(parameters=params + var_kw)
  return fn


def _uses_key(fn) -> bool:
  """Whether ``fn`` takes a ``key`` it uses (Rax's rule, plus loss marks).

  As Rax: a function that accepts ``key=`` (by name or ``**kwargs``) uses it;
  except that t5rank's losses which accept ``key`` only for a uniform call
  signature carry an ``_ignores_key`` mark (see ``losses._ranking_loss``).
  """
  try:
    inspect.signature(fn).bind_partial(key=None)
  except (TypeError, ValueError):
    return False
  while isinstance(fn, functools.partial):
    fn = fn.func
  return not getattr(fn, "_ignores_key", False)


def _sanitize_masked(scores, where):
  """Replaces masked scores by 0 so inf/NaN there cannot reach a gradient."""
  if where is None:
    return scores
  return jnp.where(
    jnp.asarray(where).astype(bool), scores, jnp.zeros_like(scores)
  )


def _metric_to_loss(metric_fn, rank_fn, cutoff_fn, namestr, docstr):
  """-metric with the given rank/cutoff functions as defaults."""
  defaults = {}
  if _signatures.takes_argument(metric_fn, "rank_fn"):
    defaults["rank_fn"] = rank_fn
  if _signatures.takes_argument(metric_fn, "cutoff_fn"):
    defaults["cutoff_fn"] = cutoff_fn

  @_utils.wraps(metric_fn, namestr, docstr)
  def loss_fn(scores, labels, **kwargs):
    scores = _sanitize_masked(jnp.asarray(scores), kwargs.get("where"))
    return -metric_fn(scores, labels, **{**defaults, **kwargs})

  return _with_signature(loss_fn, metric_fn)


def approx_t12n(metric_fn: MetricFn, temperature: float = 1.0) -> LossFn:
  r"""Turns ``metric_fn`` into a smooth loss ``-metric`` :cite:`qin2010general`.

  Ranks become :math:`1 + \sum_{j \ne i} \sigma((s_j - s_i) / T)` and top-n
  cutoffs :math:`\sigma((a - t) / T)` (``approx_ranks``/``approx_cutoff``),
  with temperature :math:`T` = ``temperature`` (1.0 as in Rax; TF-Ranking's
  ApproxNDCG uses 0.1). Works for every metric taking ``rank_fn`` and
  ``cutoff_fn``. Builds ``[n, n]`` pairs.

  >>> from t5rank.ranking import metrics
  >>> approx_mrr = approx_t12n(metrics.mrr_metric)
  >>> scores = jnp.array([0., 1., 3., 2.])
  >>> labels = jnp.array([0., 0., 1., 2.])
  >>> print(f"{approx_mrr(scores, labels):.5f}")
  -0.69659

  **Differs from Rax with** ``topn`` **and** ``where`` **together, on
  purpose:** masked (padding) items never take a top-n slot, so a masked
  list scores as the list with its masked items removed. Rax's
  ``approx_cutoff`` is not given the mask, so a high-scoring masked item
  pushes valid items out of the soft top n (here Rax gives -0.20515):

  >>> scores = jnp.array([5., 1., 2.])
  >>> labels = jnp.array([0., 1., 0.])
  >>> where = jnp.array([False, True, True])
  >>> print(f"{approx_mrr(scores, labels, where=where, topn=1):.5f}")
  -0.25562
  >>> print(f"{approx_mrr(scores[1:], labels[1:], topn=1):.5f}")
  -0.25562

  Without ``topn``, or without ``where``, values equal Rax's.

  Args:
    metric_fn: A metric with ``rank_fn``/``cutoff_fn`` arguments.
    temperature: Sigmoid temperature :math:`T > 0`.

  Returns:
    The loss ``approx_<metric name>``.
  """
  if temperature <= 0:
    raise ValueError(
      f"approx_t12n: temperature must be > 0, got temperature={temperature}."
    )
  step_fn = lambda x: jax.nn.sigmoid(x / temperature)
  return _metric_to_loss(
    metric_fn,
    functools.partial(_utils.approx_ranks, step_fn=step_fn),
    functools.partial(_utils.approx_cutoff, step_fn=step_fn),
    "approx_{fun}",
    "Approximate (sigmoid-smoothed) negated {doc}",
  )


def bound_t12n(metric_fn: MetricFn) -> LossFn:
  r"""Turns ``metric_fn`` into a loss ``-(lower bound of the metric)``.

  Ranks use the upper bound :math:`\max(0, x + 1)` of the step function and
  cutoffs the lower bound :math:`1 - \max(0, 1 - x)` (hinge bounds).

  >>> from t5rank.ranking import metrics
  >>> bound_mrr = bound_t12n(metrics.mrr_metric)
  >>> scores = jnp.array([0., 1., 3., 2.])
  >>> labels = jnp.array([0., 1., 0., 1.])
  >>> print(f"{bound_mrr(scores, labels):.5f}")
  -0.33333

  **Differs from Rax with** ``topn`` **and** ``where`` **together, on
  purpose:** as in :func:`approx_t12n`, masked (padding) items never take a
  top-n slot, so a masked list gives the value of the list with its masked
  items removed (Rax gives 1.0 here, the masked item holding the top slot):

  >>> bound_ndcg = bound_t12n(metrics.ndcg_metric)
  >>> scores = jnp.array([5., 1., 2.])
  >>> labels = jnp.array([0., 1., 0.])
  >>> where = jnp.array([False, True, True])
  >>> print(f"{bound_ndcg(scores, labels, where=where, topn=1):.5f}")
  0.50000
  >>> print(f"{bound_ndcg(scores[1:], labels[1:], topn=1):.5f}")
  0.50000

  Without ``topn``, or without ``where``, values equal Rax's.

  Args:
    metric_fn: A metric with ``rank_fn``/``cutoff_fn`` arguments.

  Returns:
    The loss ``bounded_<metric name>``.
  """
  upper = lambda x: jax.nn.relu(x + 1.0)
  lower = lambda x: 1.0 - jax.nn.relu(1.0 - x)
  return _metric_to_loss(
    metric_fn,
    functools.partial(_utils.approx_ranks, step_fn=upper),
    functools.partial(_utils.approx_cutoff, step_fn=lower),
    "bounded_{fun}",
    "Hinge-bounded negated {doc}",
  )


def _repeat(a, samples):
  return jnp.repeat(jnp.expand_dims(a, 0), samples, axis=0)


def gumbel_t12n(
  loss_or_metric_fn: LossOrMetricFn,
  *,
  samples: int = 8,
  beta: float = 1.0,
  smoothing_factor: float | None = None,
) -> LossOrMetricFn:
  r"""Evaluates ``loss_or_metric_fn`` on Gumbel-perturbed scores.

  Each call draws ``samples`` perturbations :math:`\tilde s = s + \beta g`,
  :math:`g \sim \op{Gumbel}(0, 1)` :cite:`bruch2020stochastic`, stacks them on
  a new leading axis (array arguments are repeated along it) and calls the
  function once; with ``reduce_fn=jnp.mean`` the result averages over samples
  and lists, with ``reduce_fn=None`` it keeps the ``[samples, ...]`` axis
  (as Rax). ``key=`` is required; a missing ``key`` raises ``TypeError``.
  Keys are derived as in Rax 0.4.0, so the noise (and the value of a loss
  named like Rax's) equals Rax's for the same key: when the wrapped function
  uses a key, ``key`` is split in two, the first half drawing the noise and
  the second going to the function; otherwise ``key`` draws the noise
  directly. Every t5rank loss accepts ``key``, but only those that use it
  (:func:`~t5rank.ranking.losses.listmle_loss`, metrics with random tie
  breaking, functions outside t5rank that take ``key``) receive a split.
  ``samples`` must be a positive integer (checked when wrapping).
  ``smoothing_factor`` applies
  :math:`\log(\op{softmax}(\tilde s) + \epsilon)` (1e-20 matches TF-Ranking).
  Masked scores are replaced by 0 before adding noise, so ``inf``/``NaN``
  there stays harmless.

  >>> from t5rank.ranking import metrics
  >>> loss_fn = gumbel_t12n(approx_t12n(metrics.ndcg_metric), samples=4)
  >>> scores = jnp.array([0., 1., 3., 2.])
  >>> labels = jnp.array([0., 0., 1., 2.])
  >>> loss = loss_fn(scores, labels, key=jax.random.PRNGKey(0))
  >>> print(bool(-1 <= loss <= 0))
  True
  >>> loss_fn(scores, labels)
  Traceback (most recent call last):
  ...
  TypeError: gumbel_approx_ndcg_metric needs a PRNG key: call it with key=jax.random.PRNGKey(...) (in T5X, a key split from the step's rng).

  Args:
    loss_or_metric_fn: A loss or metric function.
    samples: Number of Gumbel draws per call (8).
    beta: Scale of the Gumbel noise.
    smoothing_factor: Optional :math:`\epsilon` for the log-softmax smoothing.

  Returns:
    ``gumbel_<name>``, which takes an extra required ``key`` argument.
  """
  if (
    isinstance(samples, (bool, np.bool_))
    or not isinstance(samples, (int, np.integer))
    or samples < 1
  ):
    raise ValueError(
      f"gumbel_t12n: samples must be a positive integer, got "
      f"samples={samples!r}."
    )
  samples = int(samples)
  passes_key = _uses_key(loss_or_metric_fn)
  name = "gumbel_" + _utils.fun_name(loss_or_metric_fn)

  @_utils.wraps(
    loss_or_metric_fn, "gumbel_{fun}", "Gumbel-sampled version of {doc}"
  )
  def gumbel_fn(scores, labels, *, key=None, **kwargs):
    if key is None:
      raise TypeError(
        f"{name} needs a PRNG key: call it with key=jax.random.PRNGKey(...)"
        " (in T5X, a key split from the step's rng)."
      )
    scores = _sanitize_masked(jnp.asarray(scores), kwargs.get("where"))
    scores = _repeat(scores, samples)
    labels = _repeat(jnp.asarray(labels), samples)
    kwargs = {
      k: _repeat(v, samples)
      if isinstance(v, (jax.Array, np.ndarray)) and np.ndim(v) >= 1
      else v
      for k, v in kwargs.items()
    }
    if passes_key:
      key, kwargs["key"] = jax.random.split(key)
    noise = jax.random.gumbel(key, scores.shape)
    perturbed = noise * beta + scores
    if smoothing_factor is not None:
      where = kwargs.get("where")
      if where is not None:
        perturbed = jnp.where(where, perturbed, -jnp.inf)
      perturbed = jnp.log(jax.nn.softmax(perturbed) + smoothing_factor)
      if where is not None:
        perturbed = jnp.where(where, perturbed, 0.0)
    return loss_or_metric_fn(perturbed, labels, **kwargs)

  return _with_signature(gumbel_fn, loss_or_metric_fn, add=("key",))


def segment_t12n(loss_or_metric_fn: LossOrMetricFn) -> LossOrMetricFn:
  r"""Adds ``segments=`` to a loss or metric that has no segment support.

  Functions that already take ``segments`` are returned unchanged. Otherwise
  every ``[..., n]`` array argument becomes ``[..., n, n]`` where row ``r``
  is the list masked to the segment of item ``r`` (duplicate rows of one
  segment are masked out), so each segment is scored as its own list. Costs
  :math:`O(n^2)` memory.

  >>> def positives(scores, labels, *, where=None, reduce_fn=jnp.sum):
  ...   return reduce_fn(jnp.where(where, labels, 0.))
  >>> f = segment_t12n(positives)
  >>> print(f(jnp.zeros(3), jnp.array([1., 1., 1.]),
  ...         segments=jnp.array([0, 1, 1])))
  3.0

  Args:
    loss_or_metric_fn: A loss or metric taking ``where=``.

  Returns:
    ``segment_<name>`` (or the function itself if it supports segments).
  """
  if _signatures.takes_argument(loss_or_metric_fn, "segments"):
    return loss_or_metric_fn

  def expand(a):
    a = jnp.asarray(a)
    return jnp.broadcast_to(a[..., None, :], a.shape[:-1] + a.shape[-1:] * 2)

  @_utils.wraps(loss_or_metric_fn, "segment_{fun}", "Segmented {doc}")
  def segmented_fn(scores, labels, *, segments=None, **kwargs):
    if segments is None:
      return loss_or_metric_fn(scores, labels, **kwargs)
    scores, labels = expand(scores), expand(labels)
    for name, value in kwargs.items():
      if (
        name != "key"
        and isinstance(value, (jax.Array, np.ndarray))
        and (np.ndim(value) >= 1)
      ):
        kwargs[name] = expand(value)
    segments = jnp.asarray(segments)
    rows = segments[..., :, None] == segments[..., None, :]
    rows = rows & (jnp.cumsum(rows, axis=-2) == 1)
    if kwargs.get("where") is not None:
      rows = rows & jnp.asarray(kwargs["where"]).astype(bool)
    kwargs["where"] = rows
    return loss_or_metric_fn(scores, labels, **kwargs)

  return _with_signature(segmented_fn, loss_or_metric_fn, add=("segments",))


# ---------------------------------------------------------------------------
# NeuralSort.


def neuralsort_permutation(
  scores: Array,
  *,
  where: Array | None = None,
  temperature: float = 1.0,
  sinkhorn_iterations: int = 50,
) -> Array:
  r"""Relaxed sort matrix :math:`\hat P` of NeuralSort :cite:`grover2019stochastic`.

  Row :math:`i` (rank :math:`i`, 1-based) is a distribution over items:

  .. math:: \hat P_{i,:} = \op{softmax}\Big(\frac{(m + 1 - 2i)\, s -
            A_s \mathbb{1}}{T}\Big), \quad (A_s)_{jk} = |s_j - s_k|

  over the :math:`m` valid items; rows :math:`i > m` and masked columns are 0.
  ``sinkhorn_iterations`` rounds of column/row normalisation then make the
  valid block (nearly) doubly stochastic, as NeuralNDCG does
  :cite:`pobrotyn2021neuralndcg`. As :math:`T \to 0`, :math:`\hat P` tends
  to the sorting permutation.

  >>> p = neuralsort_permutation(jnp.array([1., 3., 2.]), temperature=0.01)
  >>> print(jnp.round(p, 3))
  [[0. 1. 0.]
   [0. 0. 1.]
   [1. 0. 0.]]

  Args:
    scores: ``[..., n]`` scores.
    where: Optional boolean mask of valid items.
    temperature: Softmax temperature :math:`T > 0`.
    sinkhorn_iterations: Rounds of Sinkhorn scaling (0 to skip).

  Returns:
    ``[..., n, n]`` float32 matrix, rows = ranks, columns = items.
  """
  scores = jnp.asarray(scores)
  if scores.dtype != jnp.float32:
    scores = scores.astype(jnp.float32)
  n = scores.shape[-1]
  valid = (
    jnp.ones(scores.shape, bool)
    if where is None
    else jnp.broadcast_to(jnp.asarray(where).astype(bool), scores.shape)
  )
  s = jnp.where(valid, scores, 0.0)
  m = jnp.sum(valid, axis=-1, keepdims=True).astype(jnp.float32)
  pair_valid = valid[..., :, None] & valid[..., None, :]
  spread = jnp.sum(
    jnp.where(pair_valid, jnp.abs(s[..., :, None] - s[..., None, :]), 0.0),
    axis=-1,
  )  # [..., n] over items
  position = jnp.arange(1, n + 1, dtype=jnp.float32)
  scale = m + 1.0 - 2.0 * position  # [..., n] over ranks
  logits = scale[..., :, None] * s[..., None, :] - spread[..., None, :]
  logits = logits / temperature
  row_valid = position <= m  # [..., n] ranks that exist
  block = row_valid[..., :, None] & valid[..., None, :]
  logits = jnp.where(valid[..., None, :], logits, -jnp.inf)
  logits = jnp.where(row_valid[..., :, None], logits, 0.0)
  p = jax.nn.softmax(logits, axis=-1)
  p = jnp.where(block, p, 0.0)
  tiny = 1e-10

  def sinkhorn(_, p):
    p = p / jnp.maximum(jnp.sum(p, axis=-2, keepdims=True), tiny)
    p = p / jnp.maximum(jnp.sum(p, axis=-1, keepdims=True), tiny)
    return jnp.where(block, p, 0.0)

  if sinkhorn_iterations:
    p = jax.lax.fori_loop(0, sinkhorn_iterations, sinkhorn, p)
  return p


def _unwrap_partial(fn):
  keywords = {}
  while isinstance(fn, functools.partial) and not fn.args:
    keywords = {**fn.keywords, **keywords}
    fn = fn.func
  return fn, keywords


def _neural_dcg(
  scores,
  labels,
  *,
  where,
  topn,
  weights,
  gain_fn,
  discount_fn,
  normalize,
  temperature,
  sinkhorn_iterations,
  reduce_fn,
  exclude_lists_without_relevant,
):
  """NeuralNDCG / NeuralDCG: sum_i discount(i) * (P_hat @ gains)_i."""
  scores, labels, where, weights, _ = metrics._check_inputs(  # pylint: disable=protected-access
    "neuralsort_ndcg_metric", scores, labels, where, weights
  )
  p = neuralsort_permutation(
    scores,
    where=where,
    temperature=temperature,
    sinkhorn_iterations=sinkhorn_iterations,
  )
  if normalize:
    gains = metrics._normalized_gains(  # pylint: disable=protected-access
      labels, weights, gain_fn, where, None
    ).astype(jnp.float32)
  else:
    gains = metrics._gains(  # pylint: disable=protected-access
      labels, weights, gain_fn
    ).astype(jnp.float32)
  if where is not None:
    gains = jnp.where(where, gains, 0.0)
  n = scores.shape[-1]
  ranks = jnp.arange(1, n + 1, dtype=jnp.int32)
  discounts = discount_fn(ranks)
  if topn is not None:
    discounts = jnp.where(ranks <= topn, discounts, 0.0)
  expected_gains = jnp.einsum("...ij,...j->...i", p, gains)
  values = jnp.sum(expected_gains * discounts, axis=-1)
  if normalize:
    ideal = metrics._sorted_ideal_dcg(  # pylint: disable=protected-access
      gains, where, topn, discount_fn
    )
    values = values / jnp.where(ideal == 0, 1.0, ideal)
  return metrics._reduce_over_lists(  # pylint: disable=protected-access
    "neuralsort",
    values,
    where=where,
    segments=None,
    has_relevant=_utils.any_valid(gains != 0),
    exclude_lists_without_relevant=exclude_lists_without_relevant,
    reduce_fn=reduce_fn,
    labels=labels,
  )


def neuralsort_t12n(
  metric_fn: MetricFn,
  *,
  temperature: float = 1.0,
  sinkhorn_iterations: int = 50,
) -> LossFn:
  r"""Turns ``metric_fn`` into a NeuralSort-based loss ``-metric``.

  Uses the relaxed sort matrix :math:`\hat P` of
  :func:`neuralsort_permutation`. For ``ndcg_metric`` (and ``dcg_metric``)
  this is NeuralNDCG :cite:`pobrotyn2021neuralndcg`:

  .. math:: \op{NeuralDCG@n} = \sum_{i \le n} \op{discount}(i)
            \sum_j \hat P_{ij}\, \op{gain}(y_j), \quad
            \op{NeuralNDCG} = \op{NeuralDCG} / \op{IDCG}

  with the exact ideal DCG. For every other metric with ``rank_fn`` and
  ``cutoff_fn`` the expected rank :math:`\sum_i i \hat P_{ij}` and the top-n
  probability :math:`\sum_{i \le n} \hat P_{ij}` replace the exact ones.
  Composes with :func:`gumbel_t12n` (stochastic NeuralNDCG) and is
  differentiable everywhere; builds ``[n, n]`` matrices. ``segments`` are
  not supported directly: wrap with :func:`segment_t12n`.

  >>> from t5rank.ranking import metrics
  >>> neural_ndcg = neuralsort_t12n(metrics.ndcg_metric, temperature=0.01)
  >>> scores = jnp.array([2., 1., 3.])
  >>> labels = jnp.array([2., 0., 1.])
  >>> print(neural_ndcg.__name__)
  neuralsort_ndcg_metric
  >>> print(f"{neural_ndcg(scores, labels):.5f}")  # -ndcg_metric at T -> 0
  -0.79671

  Args:
    metric_fn: ``ndcg_metric``, ``dcg_metric`` or a metric with
      ``rank_fn``/``cutoff_fn`` arguments.
    temperature: NeuralSort temperature :math:`T > 0` (1.0, as NeuralNDCG).
    sinkhorn_iterations: Rounds of Sinkhorn scaling (50).

  Returns:
    The loss ``neuralsort_<metric name>``.
  """
  if temperature <= 0:
    raise ValueError(
      f"neuralsort_t12n: temperature must be > 0, got "
      f"temperature={temperature}."
    )
  base, bound_kwargs = _unwrap_partial(metric_fn)
  is_dcg = base in (metrics.ndcg_metric, metrics.dcg_metric)
  name = "neuralsort_" + _utils.fun_name(metric_fn)

  @_utils.wraps(
    metric_fn, "neuralsort_{fun}", "NeuralSort-relaxed negated {doc}"
  )
  def neuralsort_loss(scores, labels, **kwargs):
    if kwargs.get("segments") is not None:
      raise ValueError(
        f"{name}: segments are not supported here; use "
        f"segment_t12n({name}) instead."
      )
    kwargs.pop("segments", None)
    where = kwargs.get("where")
    scores = _sanitize_masked(jnp.asarray(scores), where)
    if is_dcg:
      options = {**bound_kwargs, **kwargs}
      options.pop("key", None)
      for unsupported in ("rank_fn", "cutoff_fn"):
        if unsupported in options:
          raise ValueError(f"{name}: {unsupported}= is set by NeuralSort.")
      return -_neural_dcg(
        scores,
        labels,
        where=where,
        topn=_utils.check_topn(name, options.get("topn")),
        weights=options.get("weights"),
        gain_fn=options.get("gain_fn", metrics.default_gain_fn),
        discount_fn=options.get("discount_fn", metrics.default_discount_fn),
        normalize=base is metrics.ndcg_metric,
        temperature=temperature,
        sinkhorn_iterations=sinkhorn_iterations,
        reduce_fn=options.get("reduce_fn", jnp.mean),
        exclude_lists_without_relevant=options.get(
          "exclude_lists_without_relevant", False
        ),
      )
    p = neuralsort_permutation(
      scores,
      where=where,
      temperature=temperature,
      sinkhorn_iterations=sinkhorn_iterations,
    )
    n = p.shape[-1]
    position = jnp.arange(1, n + 1, dtype=jnp.float32)
    expected_ranks = jnp.einsum("...ij,i->...j", p, position)
    if where is not None:
      expected_ranks = jnp.where(where, expected_ranks, 1.0)

    def rank_fn(s, *, where=None, segments=None, key=None):
      del s, where, segments, key
      return expected_ranks

    def cutoff_fn(a, n=None, *, where=None, segments=None):
      del segments
      if n is None:
        return jnp.ones_like(a)
      top = jnp.sum(jnp.where((position <= n)[:, None], p, 0.0), axis=-2)
      if where is not None:
        top = jnp.where(where, top, 0.0)
      return top

    defaults = {}
    if _signatures.takes_argument(metric_fn, "rank_fn"):
      defaults["rank_fn"] = rank_fn
    if _signatures.takes_argument(metric_fn, "cutoff_fn"):
      defaults["cutoff_fn"] = cutoff_fn
    return -metric_fn(scores, labels, **{**defaults, **kwargs})

  return _with_signature(neuralsort_loss, metric_fn, remove=("segments",))
