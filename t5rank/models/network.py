"""T5.1.1 networks for ranking, composed from T5X's `Transformer`.

Both modules subclass `t5x.examples.t5.network.Transformer` and keep its
`setup`, so they declare T5X's own submodules (`token_embedder`, `encoder`,
`decoder`) under T5X's names: a stock T5X T5.1.1 checkpoint loads unchanged.
Nothing of T5X's computation is re-written here; the modules call it.

* `RankingTransformer` (RankT5-EncDec, monoT5) is T5X's encoder-decoder
  unchanged. `token_logits` runs T5X's forward pass and returns the columns of
  a few output tokens of its full-vocabulary logits. Rankers run one decoder
  step per item, where that projection is a small part of a step (about
  `d_model · vocab` multiply-adds per item against the encoder's
  `length · layers · 12 · d_model²`).
* `RankingEncoder` (RankT5-Enc) calls T5X's `encode` (embedding, segment
  masks, encoder stack) and then pools the states of each item and maps them to
  one score with a dense head (`score_head`). T5X's decoder is declared but
  never called, so it has no parameters: the tree is `token_embedder`,
  `encoder` (the encoder half of a T5 checkpoint) and `score_head`.

Both accept T5X's packing features (`*_segment_ids`, `*_positions`): several
items share one row, attention stays inside an item, and the encoder pools per
segment. T5 uses relative position biases, so an item packed inside a row gets
the same hidden states as on a row of its own.

`one_hot_embedding=True` (T5X's choice, good for TPU partitioning) keeps T5X's
one-hot matmul embedding. `False` intercepts the calls of T5X's `Embed` (with
`flax.linen.intercept_methods`) and looks the rows up in the same table, which
is far cheaper on CPU/GPU. Parameters, values and gradients are the same.

Example (a tiny random network)::

  config = network.T5Config(vocab_size=512, emb_dim=32, num_heads=2, ...)
  module = RankingTransformer(config, one_hot_embedding=False)
  variables = module.init(rng, tokens, decoder_inputs, decoder_targets,
                          enable_dropout=False)
  logits = module.apply(variables, tokens, decoder_inputs, decoder_targets,
                        enable_dropout=False)                  # [N, 1, vocab]
  scores = module.apply(variables, tokens, decoder_inputs, decoder_targets,
                        jnp.array([32089]), enable_dropout=False,
                        method=RankingTransformer.token_logits)  # [N, 1, 1]
  # scores == logits[..., 32089:32090]
"""

import contextlib

from flax import linen as nn
from flax.linen import partitioning
import jax.numpy as jnp
from t5x.examples.t5 import layers
from t5x.examples.t5 import network

Array = jnp.ndarray

POOLINGS = ("first", "mean")


def _look_up_embedding(next_fun, args, kwargs, context):
  """Method interceptor: T5X's `Embed.__call__` as a row lookup.

  T5X's `Transformer` builds its `Embed` with `one_hot=True`; this gives the
  rows of the same `embedding` parameter by a gather (the gradient is a
  scatter-add instead of a `[tokens, vocab]` matmul). Other calls pass on.
  """
  embed = context.module
  is_embedding = isinstance(embed, layers.Embed)
  if not (is_embedding and context.method_name == "__call__"):
    return next_fun(*args, **kwargs)
  (token_ids,) = args
  rows = jnp.take(embed.embedding, token_ids, axis=0, mode="clip")
  return rows.astype(embed.dtype)


def _embedding_mode(one_hot: bool):
  """Context in which T5X's modules embed one-hot (as built) or by lookup."""
  if one_hot:
    return contextlib.nullcontext()
  return nn.intercept_methods(_look_up_embedding)


def columns(logits: Array, token_ids: Array) -> Array:
  """The logits of `token_ids`: `[..., vocab] -> [..., K]`, float32.

  Args:
    logits: `[..., vocab]`.
    token_ids: int `[K]` (the same tokens everywhere) or int `[..., K]` with
      the leading shape of `logits` (per position, e.g. each item's own
      target token).

  Returns:
    float32 `[..., K]`.

  >>> columns(jnp.array([[0., 1., 2.], [3., 4., 5.]]), jnp.array([2, 0]))
  Array([[2., 0.],
         [5., 3.]], dtype=float32)
  """
  token_ids = jnp.asarray(token_ids, jnp.int32)
  if token_ids.ndim == 1:
    picked = jnp.take(logits, token_ids, axis=-1)
  else:
    picked = jnp.take_along_axis(logits, token_ids, axis=-1)
  return jnp.asarray(picked, jnp.float32)


class RankingTransformer(network.Transformer):
  """T5X's T5.1.1 encoder-decoder `Transformer` with token-logit scoring.

  Attributes:
    config: T5X's `network.T5Config`.
    one_hot_embedding: True embeds by T5X's one-hot matmul (TPU); False by a
      table lookup (same parameters and values, faster on CPU/GPU).

  `__call__`, `encode` and `decode` are T5X's (full-vocabulary logits), run
  with the chosen embedding; `token_logits` returns chosen columns.
  """

  one_hot_embedding: bool = True

  def __call__(self, *args, **kwargs):
    with _embedding_mode(self.one_hot_embedding):
      return super().__call__(*args, **kwargs)

  def encode(self, *args, **kwargs):
    with _embedding_mode(self.one_hot_embedding):
      return super().encode(*args, **kwargs)

  def decode(self, *args, **kwargs):
    with _embedding_mode(self.one_hot_embedding):
      return super().decode(*args, **kwargs)

  def token_logits(
    self,
    encoder_input_tokens: Array,
    decoder_input_tokens: Array,
    decoder_target_tokens: Array,
    token_ids: Array,
    *,
    enable_dropout: bool = True,
    **packing: Array,
  ) -> Array:
    """Logits of `token_ids` at every decoder position: [N, T_dec, K].

    `columns(self(...), token_ids)`: T5X's forward pass, then the chosen
    columns. A decoder position whose `decoder_target_tokens` is 0 sees
    neither itself nor the encoder (T5X's padding masks), so its values are
    meaningless and should be masked by the caller.

    Args:
      encoder_input_tokens: int [N, T_enc].
      decoder_input_tokens: int [N, T_dec] (0 = start token for one step).
      decoder_target_tokens: int [N, T_dec]; only `> 0` matters (masks).
      token_ids: output-vocabulary ids to score: int [K] (the same at every
        position) or int [N, T_dec, K] (per position, e.g. each item's own
        target token).
      enable_dropout: training mode.
      **packing: T5X's packing features (`encoder_segment_ids`,
        `decoder_segment_ids`, `encoder_positions`, `decoder_positions`).

    Returns:
      float32 [N, T_dec, K].
    """
    logits = self(
      encoder_input_tokens,
      decoder_input_tokens,
      decoder_target_tokens,
      enable_dropout=enable_dropout,
      **packing,
    )
    return columns(logits, token_ids)


def pool_segments(
  encoded: Array,
  segment_ids: Array,
  positions: Array,
  num_segments: int,
  pooling: str,
) -> Array:
  """Pools the encoder states of each segment of each row.

  Segment `s` (1-based) of row `r` is the set of tokens with
  `segment_ids[r, t] == s`; id 0 is padding. 'first' takes the state of the
  token at `positions == 0` of the segment; 'mean' averages the states of its
  tokens. A segment without tokens pools to zeros (never NaN).

  An unpacked row is one segment: `segment_ids = tokens > 0`,
  `positions = arange(T)`, `num_segments = 1`.

  Args:
    encoded: [R, T, d] encoder states.
    segment_ids: int [R, T].
    positions: int [R, T], position of each token inside its segment.
    num_segments: S, the number of segment slots per row.
    pooling: 'first' or 'mean'.

  Returns:
    [R, S, d] pooled states; slot `s - 1` holds segment `s`.

  Example: states [[1.], [3.], [5.], [0.]] with segment_ids [1, 1, 2, 0] and
  positions [0, 1, 0, 0] pool by 'mean' to [[2.], [5.]] and by 'first' to
  [[1.], [5.]].
  """
  if pooling not in POOLINGS:
    raise ValueError(f"pooling={pooling!r}; expected one of {POOLINGS}")
  slots = jnp.arange(1, num_segments + 1, dtype=jnp.int32)
  member = segment_ids[:, None, :] == slots[None, :, None]  # [R, S, T]
  if pooling == "first":
    member = member & (positions[:, None, :] == 0)
  weights = member.astype(jnp.float32)
  if pooling == "mean":
    weights = weights / jnp.maximum(weights.sum(-1, keepdims=True), 1.0)
  pooled = jnp.einsum(
    "rst,rtd->rsd", weights, jnp.asarray(encoded, jnp.float32)
  )
  return pooled


class _ScoreHead(nn.Module):
  """Dense layer from a pooled state [..., d] to one score [...] (float32)."""

  @nn.compact
  def __call__(self, pooled: Array) -> Array:
    kernel = partitioning.param_with_axes(
      "kernel",
      nn.initializers.normal(stddev=pooled.shape[-1] ** -0.5),
      (pooled.shape[-1],),
      jnp.float32,
      axes=("embed",),
    )
    bias = partitioning.param_with_axes(
      "bias", nn.initializers.zeros, (), jnp.float32, axes=()
    )
    return jnp.dot(jnp.asarray(pooled, jnp.float32), kernel) + bias


class RankingEncoder(network.Transformer):
  """RankT5-Enc: T5.1.1 encoder, pooling, dense head -> one score per item.

  T5X's `Transformer` with its `encode` only: parameters
  `token_embedder/embedding` and `encoder/...` exactly as T5X's (so the
  encoder half of a T5 checkpoint loads), plus
  `score_head/{kernel [d_model], bias []}`.

  Attributes:
    config: T5X's `network.T5Config` (decoder fields unused).
    pooling: 'first' (state of an item's first token) or 'mean' (mean over
      its non-pad tokens).
    one_hot_embedding: as in `RankingTransformer`.
  """

  pooling: str = "first"
  one_hot_embedding: bool = True

  def setup(self):
    if self.pooling not in POOLINGS:
      raise ValueError(f"pooling={self.pooling!r}; expected one of {POOLINGS}")
    super().setup()
    self.score_head = _ScoreHead()

  def __call__(
    self,
    encoder_input_tokens: Array,
    encoder_segment_ids: Array | None = None,
    encoder_positions: Array | None = None,
    *,
    num_segments: int = 1,
    enable_dropout: bool = True,
  ) -> Array:
    """Scores each segment of each row: [R, num_segments] float32.

    Unpacked rows (no segment ids): one item per row, `num_segments` must be
    1, result [R, 1]. Packed rows: `encoder_segment_ids` and
    `encoder_positions` as T5X packs them; slot `s - 1` scores segment `s`
    (an empty slot pools to zeros and scores the head's bias).
    """
    tokens = encoder_input_tokens
    if tokens.ndim != 2:
      raise ValueError(
        f"encoder_input_tokens must be [rows, length]; got shape {tokens.shape}"
      )
    if encoder_segment_ids is None:
      if num_segments != 1:
        raise ValueError(
          f"num_segments={num_segments} needs encoder_segment_ids"
        )
      segments = (tokens > 0).astype(jnp.int32)
      positions = jnp.broadcast_to(
        jnp.arange(tokens.shape[-1], dtype=jnp.int32), tokens.shape
      )
    elif encoder_positions is None:
      raise ValueError("packed rows need encoder_positions with segment ids")
    else:
      # Padding tokens carry segment id 0 in T5X packing; be explicit anyway.
      segments = jnp.where(tokens > 0, encoder_segment_ids, 0)
      positions = encoder_positions
    with _embedding_mode(self.one_hot_embedding):
      encoded = self.encode(
        tokens, encoder_segment_ids, enable_dropout=enable_dropout
      )
    pooled = pool_segments(
      encoded, segments, positions, num_segments, self.pooling
    )
    return self.score_head(pooled)
