"""T5X models that score lists of items and train on ranking losses.

A ranking batch holds `B` lists of `L` items: `encoder_input_tokens` [B, L, T],
`label` [B, L], `mask` [B, L] (False for padding items), and for enc-dec also
`decoder_input_tokens` / `decoder_target_tokens` [B, L, 1]. The models flatten
the list axis into the batch axis (`[B, L, T] -> [B·L, T]`, list-major, so a
data-parallel split of `B` stays a split of `B·L`), score every item, reshape
the scores back to `[B, L]` and give them to a Rax-convention loss
(`t5rank.models.objective.list_loss`).

* `RankingEncDecModel` (RankT5-EncDec, a `t5x.models.EncoderDecoderModel`):
  with `scoring='logit'` the score is the logit of one token at decoder step
  0: by default the item's own target token `decoder_target_tokens[..., 0]`
  (the task's score token, as in Rax's T5X example: `<extra_id_10>` with T5's
  vocabulary), or a fixed `score_token`; with `scoring='monot5'` it is
  `log p(true)` from a log-softmax over the logits of `monot5_tokens` (default
  `("true", "false")`). Both read those columns of T5X's logits
  (`RankingTransformer.token_logits`).
* `RankingEncoderModel` (RankT5-Enc): `RankingEncoder` pools the encoder
  states of an item and maps them to one score.

Randomness of losses: a loss that accepts `key` gets one. In training it is
split from the step's `dropout_rng`; without a `dropout_rng` (T5X's eval) it is
the fixed `PRNGKey(eval_key_seed)`, so evaluation is repeatable.

`score_batch` (and `predict_batch`, `predict_batch_with_aux`) return the
scores [B, L]: T5X's evaluator gives them to the tasks' seqio score metric
functions, and inference writes them.

`score_lists(params, batch, dropout_rng=None) -> [B, L]` is the one place
where the network runs. A packed batch (`t5rank.data.packing`'s converters:
`G` lists per pack, their real items sharing encoder rows) takes the path of
`t5rank.models.packed_scores` there and gives scores `[N·G, L]`; the loss,
metrics and `score_batch` then see `N·G` lists (`N` at inference, G = 1).
"""

from collections.abc import Callable
from collections.abc import Mapping
from collections.abc import Sequence
import functools
from typing import Any

from flax import core as flax_core
from flax.core import scope as flax_scope
import jax
import jax.numpy as jnp
import seqio
from t5x import models
from t5x import optimizers

from t5rank.models import network
from t5rank.models import objective
from t5rank.models import packed_scores
from t5rank.models import score_tokens
from t5rank.ranking import _signatures
from t5rank.ranking import losses as ranking_losses
from t5rank.ranking import metrics as ranking_metrics

Array = jnp.ndarray
PyTree = Any

SCORINGS = ("logit", "monot5")


def _default_metric_fns() -> Mapping[str, objective.MetricFn]:
  return {
    "ndcg@10": functools.partial(ranking_metrics.ndcg_metric, topn=10),
    "mrr@10": functools.partial(ranking_metrics.mrr_metric, topn=10),
  }


def _flatten_list_shape(shape: Sequence[int]) -> tuple[int, ...]:
  shape = tuple(shape)
  if len(shape) != 3:
    raise ValueError(f"expected a [batch, list, length] shape; got {shape}")
  return (shape[0] * shape[1], shape[2])


class _ListRankingMixin:
  """Loss, metrics and T5X eval/infer entry points shared by the rankers.

  Subclasses implement `score_lists(params, batch, dropout_rng=None)`.
  """

  def _init_ranking(
    self,
    loss_fn: objective.LossFn | None,
    metric_fns: Mapping[str, objective.MetricFn] | None,
    exclude_lists_without_positive: bool,
    eval_key_seed: int,
  ):
    self._ranking_loss_fn = (
      loss_fn if loss_fn is not None else ranking_losses.softmax_loss
    )
    if not callable(self._ranking_loss_fn):
      raise TypeError(f"loss_fn={self._ranking_loss_fn!r} is not callable")
    self._loss_takes_key = _signatures.takes_argument(
      self._ranking_loss_fn, "key"
    )
    self._metric_fns = dict(
      metric_fns if metric_fns is not None else _default_metric_fns()
    )
    self._exclude_lists_without_positive = exclude_lists_without_positive
    self._eval_key_seed = eval_key_seed

  @property
  def ranking_loss_fn(self) -> objective.LossFn:
    return self._ranking_loss_fn

  def score_lists(
    self,
    params: PyTree,
    batch: Mapping[str, Array],
    dropout_rng: Array | None = None,
  ) -> Array:
    raise NotImplementedError

  def _loss_key_and_dropout_rng(
    self, dropout_rng: Array | None
  ) -> tuple[Array | None, Array | None]:
    if not self._loss_takes_key:
      return None, dropout_rng
    if dropout_rng is None:
      return jax.random.PRNGKey(self._eval_key_seed), None
    dropout_rng, key = jax.random.split(dropout_rng)
    return key, dropout_rng

  def loss_fn(
    self,
    params: PyTree,
    batch: Mapping[str, Array],
    dropout_rng: Array | None,
  ) -> tuple[Array, Mapping[str, Any]]:
    """Ranking loss of a batch of lists and its T5X metrics.

    See `t5rank.models.objective.list_loss` (which lists count, how the loss
    is normalised) and `objective.train_metrics` (metric names).

    Args:
      params: model parameters.
      batch: features with `label` [B, L] and `mask` [B, L].
      dropout_rng: the step's rng in training; None in eval.

    Returns:
      (loss, metrics).
    """
    for name in ("label", "mask"):
      if name not in batch:
        raise KeyError(
          f"batch has no {name!r} feature (found {sorted(batch)}); use the "
          "ranking feature converters of t5rank.data.feature_converters"
        )
    key, dropout_rng = self._loss_key_and_dropout_rng(dropout_rng)
    scores = self.score_lists(params, batch, dropout_rng)
    # Lists may arrive grouped (e.g. packs [N, G, L]); scores are [lists, L].
    labels = jnp.reshape(jnp.asarray(batch["label"], jnp.float32), scores.shape)
    mask = jnp.reshape(jnp.asarray(batch["mask"], jnp.bool_), scores.shape)
    loss, counts = objective.list_loss(
      self._ranking_loss_fn,
      scores,
      labels,
      mask,
      key=key,
      exclude_lists_without_positive=self._exclude_lists_without_positive,
    )
    metrics = objective.train_metrics(
      loss, scores, labels, mask, counts, self._metric_fns
    )
    if packed_scores.is_packed(batch):
      metrics.update(packed_scores.packing_metrics(batch))
    return loss, metrics

  def _compute_logits(
    self,
    params: PyTree,
    batch: Mapping[str, Array],
    dropout_rng: Array | None = None,
    mutable: flax_scope.CollectionFilter = False,
    other_variables: PyTree | None = None,
  ) -> Array:
    """T5X's hook, here the per-item scores [B, L] (as Rax's example)."""
    if mutable or other_variables:
      raise NotImplementedError(
        "ranking models keep no mutable collections; got "
        f"mutable={mutable!r}, other_variables={other_variables!r}"
      )
    return self.score_lists(params, batch, dropout_rng)

  def score_batch(
    self,
    params: PyTree,
    batch: Mapping[str, Array],
    return_intermediates: bool = False,
  ) -> Array:
    """Per-item scores [B, L] (padding items hold arbitrary finite values)."""
    if return_intermediates:
      raise NotImplementedError("return_intermediates is not supported")
    return self.score_lists(params, batch)

  def predict_batch_with_aux(
    self,
    params: PyTree,
    batch: Mapping[str, Array],
    rng: Array | None = None,
    **unused_decoder_kwargs,
  ) -> tuple[Array, Mapping[str, Array]]:
    """Ranking has nothing to decode: predictions are the scores [B, L]."""
    del rng
    scores = self.score_lists(params, batch)
    return scores, {"scores": scores}


class RankingEncDecModel(_ListRankingMixin, models.EncoderDecoderModel):
  """RankT5-EncDec / monoT5: an item's score is a decoder-step-0 token logit.

  Constructor arguments beyond T5X's `EncoderDecoderModel`:
    loss_fn: Rax-convention ranking loss (gin `LOSS_FN`); default
      `t5rank.ranking.losses.softmax_loss`.
    scoring: 'logit' (logit of the score token) or 'monot5' (log-softmax over
      the logits of `monot5_tokens`, score = log p(first token)).
    score_token: None (default) scores each item's own target token,
      `decoder_target_tokens[..., 0]`, which t5rank's tasks set to their
      score token (`<extra_id_10>` for T5's vocabulary, id 258 for
      ByteVocabulary). An int id or a token string (see
      `t5rank.models.score_tokens.resolve_token_id`, e.g. `"<extra_id_10>"`)
      fixes the token whatever the targets hold.
    monot5_tokens: (positive, negative) tokens, default ("true", "false").
    exclude_lists_without_positive: leave lists without a positive label out
      of the loss (default True).
    metric_fns: in-train metrics {name: Rax-convention metric}; default NDCG@10
      and MRR@10 from `t5rank.ranking.metrics`.
    eval_key_seed: seed of the fixed loss key when there is no dropout rng.

  Token strings are resolved with `output_vocabulary` at the first scoring
  call, so building the model (e.g. when gin parses) loads no vocabulary.
  """

  def __init__(
    self,
    module: network.RankingTransformer,
    input_vocabulary: seqio.Vocabulary,
    output_vocabulary: seqio.Vocabulary,
    optimizer_def: optimizers.OptimizerDefType,
    loss_fn: objective.LossFn | None = None,
    *,
    scoring: str = "logit",
    score_token: score_tokens.Token | None = None,
    monot5_tokens: tuple[score_tokens.Token, score_tokens.Token] = (
      "true",
      "false",
    ),
    exclude_lists_without_positive: bool = True,
    metric_fns: Mapping[str, objective.MetricFn] | None = None,
    eval_key_seed: int = 0,
    feature_converter_cls: Callable[..., seqio.FeatureConverter] | None = None,
  ):
    if not hasattr(module, "token_logits"):
      raise TypeError(
        f"module={type(module).__name__} cannot score single tokens; use "
        "t5rank.models.network.RankingTransformer (same parameters as T5X's "
        "Transformer)"
      )
    if scoring not in SCORINGS:
      raise ValueError(f"scoring={scoring!r}; expected one of {SCORINGS}")
    if feature_converter_cls is None:
      from t5rank.data import feature_converters  # pylint: disable=g-import-not-at-top

      feature_converter_cls = feature_converters.RankingEncDecFeatureConverter
    super().__init__(
      module=module,
      input_vocabulary=input_vocabulary,
      output_vocabulary=output_vocabulary,
      optimizer_def=optimizer_def,
      feature_converter_cls=feature_converter_cls,
    )
    self._scoring = scoring
    self._score_token = score_token
    self._monot5_tokens = tuple(monot5_tokens)
    if len(self._monot5_tokens) != 2:
      raise ValueError(f"monot5_tokens={monot5_tokens!r}: expected two tokens")
    self._init_ranking(
      loss_fn, metric_fns, exclude_lists_without_positive, eval_key_seed
    )

  @property
  def scoring(self) -> str:
    """'logit' or 'monot5' (see the class docstring)."""
    return self._scoring

  @functools.cached_property
  def score_token_ids(self) -> tuple[int, ...] | None:
    """Fixed output ids the score reads (1 or 2); None: each item's target."""
    if self._scoring == "logit":
      if self._score_token is None:
        return None
      tokens = (self._score_token,)
    else:
      tokens = self._monot5_tokens
    return tuple(
      score_tokens.resolve_token_id(self.output_vocabulary, t) for t in tokens
    )

  def get_initial_variables(
    self,
    rng: Array,
    input_shapes: Mapping[str, Sequence[int]],
    input_types: Mapping[str, jnp.dtype] | None = None,
  ) -> flax_scope.FrozenVariableDict:
    """T5X's initialisation with list batches [B, L, T] flattened to [B·L, T]."""
    input_shapes = dict(input_shapes)
    for name in packed_scores.ROW_FEATURES:
      if name in input_shapes and len(input_shapes[name]) == 3:
        input_shapes[name] = _flatten_list_shape(input_shapes[name])
    return super().get_initial_variables(rng, input_shapes, input_types)

  def _token_logits(
    self,
    params: PyTree,
    batch: Mapping[str, Array],
    dropout_rng: Array | None,
  ) -> Array:
    """Logits of the score token(s) at decoder step 0: [B, L, K]."""
    if packed_scores.is_packed(batch):  # Packs [N, G, L] -> lists [N·G, L].
      return packed_scores.token_logits(
        self.module, params, batch, self.score_token_ids, dropout_rng
      )
    tokens = batch["encoder_input_tokens"]
    if tokens.ndim != 3:
      raise ValueError(
        "encoder_input_tokens must be [batch, list, length]; got shape "
        f"{tokens.shape}"
      )
    batch_size, list_size = tokens.shape[:2]
    decoder_targets = batch.get("decoder_target_tokens")
    token_ids = self.score_token_ids
    if decoder_targets is None:
      if token_ids is None:
        raise KeyError(
          "batch has no 'decoder_target_tokens' to read the score token "
          "from; give the model a score_token"
        )
      # One decoder step per real item; padding items see nothing.
      valid = jnp.asarray(batch["mask"], jnp.bool_)[..., None]
      decoder_targets = jnp.where(valid, token_ids[0], 0)
    decoder_targets = packed_scores.flatten_lists(decoder_targets)
    if token_ids is None:
      # Each item's own target token at step 0: [B·L, 1, 1].
      token_ids = decoder_targets[:, :1, None]
    decoder_inputs = batch.get("decoder_input_tokens")
    decoder_inputs = (
      jnp.zeros_like(decoder_targets)
      if decoder_inputs is None
      else packed_scores.flatten_lists(decoder_inputs)
    )
    rngs = {"dropout": dropout_rng} if dropout_rng is not None else None
    logits = self.module.apply(
      {"params": params},
      packed_scores.flatten_lists(tokens),
      decoder_inputs,
      decoder_targets,
      jnp.asarray(token_ids, jnp.int32),
      enable_dropout=rngs is not None,
      rngs=rngs,
      method=self.module.token_logits,
    )  # [B·L, T_dec, K]
    return jnp.reshape(logits[:, 0, :], (batch_size, list_size, -1))

  def score_lists(
    self,
    params: PyTree,
    batch: Mapping[str, Array],
    dropout_rng: Array | None = None,
  ) -> Array:
    """Per-item scores [B, L] from decoder step 0 (see the class docstring)."""
    logits = self._token_logits(params, batch, dropout_rng)
    if self._scoring == "monot5":
      return jax.nn.log_softmax(logits, axis=-1)[..., 0]
    return logits[..., 0]


class RankingEncoderModel(_ListRankingMixin, models.BaseTransformerModel):
  """RankT5-Enc: T5 encoder, pooling and a dense head; one score per item.

  `module` is a `t5rank.models.network.RankingEncoder`. The vocabularies are
  kept for T5X's data pipeline (`output_vocabulary` defaults to the input
  vocabulary). Other arguments as `RankingEncDecModel`.
  """

  def __init__(
    self,
    module: network.RankingEncoder,
    input_vocabulary: seqio.Vocabulary,
    output_vocabulary: seqio.Vocabulary | None = None,
    optimizer_def: optimizers.OptimizerDefType = None,
    loss_fn: objective.LossFn | None = None,
    *,
    exclude_lists_without_positive: bool = True,
    metric_fns: Mapping[str, objective.MetricFn] | None = None,
    eval_key_seed: int = 0,
    feature_converter_cls: Callable[..., seqio.FeatureConverter] | None = None,
  ):
    if feature_converter_cls is None:
      from t5rank.data import feature_converters  # pylint: disable=g-import-not-at-top

      feature_converter_cls = feature_converters.RankingEncoderFeatureConverter
    self.FEATURE_CONVERTER_CLS = feature_converter_cls  # pylint: disable=invalid-name
    super().__init__(
      module=module,
      input_vocabulary=input_vocabulary,
      output_vocabulary=output_vocabulary or input_vocabulary,
      optimizer_def=optimizer_def,
    )
    self._init_ranking(
      loss_fn, metric_fns, exclude_lists_without_positive, eval_key_seed
    )

  def get_initial_variables(
    self,
    rng: Array,
    input_shapes: Mapping[str, Sequence[int]],
    input_types: Mapping[str, jnp.dtype] | None = None,
  ) -> flax_scope.FrozenVariableDict:
    """Initialises the encoder for list batches [B, L, T] (or rows [R, T])."""
    input_types = {} if input_types is None else input_types
    shape = tuple(input_shapes["encoder_input_tokens"])
    if len(shape) == 3:
      shape = _flatten_list_shape(shape)
    tokens = jnp.ones(
      shape, input_types.get("encoder_input_tokens", jnp.int32)
    ).astype(jnp.int32)
    return flax_core.freeze(self.module.init(rng, tokens, enable_dropout=False))

  def score_lists(
    self,
    params: PyTree,
    batch: Mapping[str, Array],
    dropout_rng: Array | None = None,
  ) -> Array:
    """Per-item scores [B, L] of the encoder head."""
    if packed_scores.is_packed(batch):  # Packs [N, G, L] -> lists [N·G, L].
      return packed_scores.encoder_scores(
        self.module, params, batch, dropout_rng
      )
    tokens = batch["encoder_input_tokens"]
    if tokens.ndim != 3:
      raise ValueError(
        "encoder_input_tokens must be [batch, list, length]; got shape "
        f"{tokens.shape}"
      )
    rngs = {"dropout": dropout_rng} if dropout_rng is not None else None
    scores = self.module.apply(
      {"params": params},
      packed_scores.flatten_lists(tokens),
      enable_dropout=rngs is not None,
      rngs=rngs,
    )  # [B·L, 1]
    return jnp.reshape(scores, tokens.shape[:2])
