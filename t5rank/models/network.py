"""T5.1.1 networks for ranking: token-logit scoring and encoder-only scoring.

Two Flax modules built from T5X's own T5.1.1 layers
(`t5x.examples.t5.network` and `t5x.examples.t5.layers`):

* `RankingTransformer` is T5X's encoder-decoder `Transformer` with the same
  parameter tree (a stock T5X T5.1.1 checkpoint loads unchanged). Called as
  usual it returns the full-vocabulary logits, exactly like T5X. Its
  `score_tokens` method instead returns the logits of a few chosen output
  tokens only: with `h` the final decoder state (after `decoder_norm` and
  dropout) and `W` the output projection (`decoder/logits_dense/kernel`, or
  the shared embedding scaled by `1/sqrt(d_model)` when
  `logits_via_embedding`), the logit of token `t` is `h · W[:, t]`. The
  `[items, vocab]` logits are never formed.
* `RankingEncoder` (RankT5-Enc) is the T5 encoder of the same tree
  (`token_embedder`, `encoder/...`) followed by pooling and a dense head that
  gives one score per item, so the encoder part of a T5 checkpoint loads.

Both accept T5X packing features (`*_segment_ids`, `*_positions`): several
items can share one row, attention stays inside an item, and the encoder pools
per segment. T5 uses relative position biases, so an item packed inside a row
gets the same hidden states as on a row of its own.

`one_hot_embedding=True` embeds tokens with a one-hot matmul over the
vocabulary as T5X does (good for TPU partitioning); `False` gathers rows of the
same table, which is far cheaper on CPU/GPU. Parameters and values are the
same either way.

Example (a tiny random network)::

  config = network.T5Config(vocab_size=512, emb_dim=32, num_heads=2, ...)
  module = RankingTransformer(config, one_hot_embedding=False)
  variables = module.init(rng, tokens, decoder_inputs, decoder_targets,
                          enable_dropout=False)
  logits = module.apply(variables, tokens, decoder_inputs, decoder_targets,
                        enable_dropout=False)                  # [N, 1, vocab]
  scores = module.apply(variables, tokens, decoder_inputs, decoder_targets,
                        token_ids=jnp.array([32089]), enable_dropout=False,
                        method=RankingTransformer.score_tokens)  # [N, 1, 1]
  # scores == logits[..., 32089:32090]
"""

from typing import Optional

from flax import linen as nn
from flax.linen import partitioning
import jax.numpy as jnp
from t5x.examples.t5 import layers
from t5x.examples.t5 import network

Array = jnp.ndarray

POOLINGS = ("first", "mean")


def _token_embedder(config: network.T5Config, one_hot: bool) -> layers.Embed:
  """The shared token embedding exactly as T5X's `Transformer` declares it."""
  return layers.Embed(
      num_embeddings=config.vocab_size,
      features=config.emb_dim,
      dtype=config.dtype,
      attend_dtype=jnp.float32,
      embedding_init=nn.initializers.normal(stddev=1.0),
      one_hot=one_hot,
      name="token_embedder",
  )


def encoder_attention_mask(
    encoder_input_tokens: Array,
    encoder_segment_ids: Optional[Array] = None,
    dtype=jnp.float32,
) -> Array:
  """Self-attention mask of the encoder: non-pad tokens of the same segment.

  Same mask as `t5x.examples.t5.network.Transformer.encode` builds.

  Args:
    encoder_input_tokens: int [N, T], 0 is padding.
    encoder_segment_ids: optional int [N, T] for packed rows.
    dtype: dtype of the mask.

  Returns:
    [N, 1, T, T] mask, 1 where query and key may attend.
  """
  mask = layers.make_attention_mask(
      encoder_input_tokens > 0, encoder_input_tokens > 0, dtype=dtype
  )
  if encoder_segment_ids is not None:
    mask = layers.combine_masks(
        mask,
        layers.make_attention_mask(
            encoder_segment_ids, encoder_segment_ids, jnp.equal, dtype=dtype
        ),
    )
  return mask


def _logits_of_rows(y: Array, rows: Array) -> Array:
  """Logits of chosen output rows `[..., K, d]` (or shared `[K, d]`) for `y`."""
  y = jnp.asarray(y, jnp.float32)
  rows = jnp.asarray(rows, jnp.float32)
  if rows.ndim == 2:
    return jnp.dot(y, rows.T)
  return jnp.einsum("...d,...kd->...k", y, rows)


class _OutputProjection(nn.Module):
  """T5X's `logits_dense` (a bias-free [d_model, vocab] kernel), by columns.

  Declares the parameter `kernel` exactly as `layers.DenseGeneral(vocab_size,
  kernel_axes=('embed', 'vocab'))` does, so the tree and initialisation are
  T5X's. Called with `token_ids` it multiplies by those columns only.
  """

  vocab_size: int
  kernel_init: layers.Initializer = nn.initializers.variance_scaling(
      1.0, "fan_in", "truncated_normal"
  )

  @nn.compact
  def __call__(self, inputs: Array, token_ids: Optional[Array] = None) -> Array:
    kernel = partitioning.param_with_axes(
        "kernel",
        self.kernel_init,
        (inputs.shape[-1], self.vocab_size),
        jnp.float32,
        axes=("embed", "vocab"),
    )
    if token_ids is None:
      return jnp.dot(jnp.asarray(inputs, jnp.float32), kernel)
    return _logits_of_rows(inputs, jnp.take(kernel.T, token_ids, axis=0))


class RankingDecoder(network.Decoder):
  """T5X's T5.1.1 `Decoder` that can also stop at the chosen output tokens.

  Same submodules and parameter names as `network.Decoder`. Extra arguments:
  `token_ids` returns the logits of those tokens only, [N, T, K]: int [K] for
  the same tokens at every position, or int [N, T, K] per position;
  `return_hidden=True` returns the final state `h` [N, T, d_model] (after
  `decoder_norm` and dropout) instead of logits.
  """

  @nn.compact
  def __call__(
      self,
      encoded,
      decoder_input_tokens,
      decoder_positions=None,
      decoder_mask=None,
      encoder_decoder_mask=None,
      deterministic=False,
      decode=False,
      max_decode_length=None,
      token_ids: Optional[Array] = None,
      return_hidden: bool = False,
  ):
    cfg = self.config
    if decoder_input_tokens.ndim != 2:
      raise ValueError(
          "decoder_input_tokens must be [batch, length]; got shape "
          f"{decoder_input_tokens.shape}"
      )
    rel_emb = layers.RelativePositionBiases(
        num_buckets=32,
        max_distance=128,
        num_heads=cfg.num_heads,
        dtype=cfg.dtype,
        embedding_init=nn.initializers.variance_scaling(
            1.0, "fan_avg", "uniform"
        ),
        name="relpos_bias",
    )
    y = self.shared_embedding(decoder_input_tokens.astype("int32"))
    y = nn.Dropout(rate=cfg.dropout_rate, broadcast_dims=(-2,))(
        y, deterministic=deterministic
    )
    y = y.astype(cfg.dtype)
    for lyr in range(cfg.num_decoder_layers):
      y = network.DecoderLayer(
          config=cfg, relative_embedding=rel_emb, name=f"layers_{lyr}"
      )(
          y,
          encoded,
          decoder_mask=decoder_mask,
          encoder_decoder_mask=encoder_decoder_mask,
          deterministic=deterministic,
          decode=decode,
          max_decode_length=max_decode_length,
      )
    y = layers.LayerNorm(dtype=cfg.dtype, name="decoder_norm")(y)
    y = nn.Dropout(rate=cfg.dropout_rate, broadcast_dims=(-2,))(
        y, deterministic=deterministic
    )
    if return_hidden:
      return y

    if cfg.logits_via_embedding:
      if token_ids is None:
        logits = self.shared_embedding.attend(y)
      else:
        rows = jnp.take(self.shared_embedding.embedding, token_ids, axis=0)
        logits = _logits_of_rows(y, rows)
      return logits / jnp.sqrt(y.shape[-1])
    return _OutputProjection(cfg.vocab_size, name="logits_dense")(y, token_ids)


class RankingTransformer(network.Transformer):
  """T5X's T5.1.1 encoder-decoder `Transformer` with token-logit scoring.

  Attributes:
    config: T5X's `network.T5Config`.
    one_hot_embedding: True embeds by a one-hot matmul (T5X, TPU); False by a
      table lookup (same parameters and values, faster on CPU/GPU).

  `__call__`, `encode` and `decode` behave as T5X's (full-vocabulary logits);
  `score_tokens` and `decode(..., token_ids=...)` return chosen columns only.
  """

  one_hot_embedding: bool = True

  def setup(self):
    cfg = self.config
    self.shared_embedding = _token_embedder(cfg, self.one_hot_embedding)
    self.encoder = network.Encoder(
        config=cfg, shared_embedding=self.shared_embedding
    )
    self.decoder = RankingDecoder(
        config=cfg, shared_embedding=self.shared_embedding
    )

  def decode(
      self,
      encoded,
      encoder_input_tokens,
      decoder_input_tokens,
      decoder_target_tokens,
      encoder_segment_ids=None,
      decoder_segment_ids=None,
      decoder_positions=None,
      enable_dropout=True,
      decode=False,
      max_decode_length=None,
      token_ids: Optional[Array] = None,
      return_hidden: bool = False,
  ):
    """T5X's `Transformer.decode`, optionally for `token_ids` or the state."""
    cfg = self.config
    if decode:
      if token_ids is not None or return_hidden:
        raise ValueError(
            "token_ids/return_hidden are for scoring, not for decode=True"
        )
      return super().decode(
          encoded,
          encoder_input_tokens,
          decoder_input_tokens,
          decoder_target_tokens,
          encoder_segment_ids=encoder_segment_ids,
          decoder_segment_ids=decoder_segment_ids,
          decoder_positions=decoder_positions,
          enable_dropout=enable_dropout,
          decode=decode,
          max_decode_length=max_decode_length,
      )
    decoder_mask = layers.make_decoder_mask(
        decoder_target_tokens=decoder_target_tokens,
        dtype=cfg.dtype,
        decoder_segment_ids=decoder_segment_ids,
    )
    encoder_decoder_mask = layers.make_attention_mask(
        decoder_target_tokens > 0, encoder_input_tokens > 0, dtype=cfg.dtype
    )
    if encoder_segment_ids is not None:
      if decoder_segment_ids is None:
        raise ValueError(
            "encoder_segment_ids is given but decoder_segment_ids is None; "
            "packed rows need both"
        )
      encoder_decoder_mask = layers.combine_masks(
          encoder_decoder_mask,
          layers.make_attention_mask(
              decoder_segment_ids,
              encoder_segment_ids,
              jnp.equal,
              dtype=cfg.dtype,
          ),
      )
    return self.decoder(
        encoded,
        decoder_input_tokens=decoder_input_tokens,
        decoder_positions=decoder_positions,
        decoder_mask=decoder_mask,
        encoder_decoder_mask=encoder_decoder_mask,
        deterministic=not enable_dropout,
        token_ids=token_ids,
        return_hidden=return_hidden,
    )

  def score_tokens(
      self,
      encoder_input_tokens,
      decoder_input_tokens,
      decoder_target_tokens,
      token_ids: Array,
      encoder_segment_ids=None,
      decoder_segment_ids=None,
      encoder_positions=None,
      decoder_positions=None,
      *,
      enable_dropout: bool = True,
  ) -> Array:
    """Logits of `token_ids` at every decoder position: [N, T_dec, K].

    Equal to `self(...)[..., token_ids]` without computing the other columns.
    A decoder position whose `decoder_target_tokens` is 0 sees neither itself
    nor the encoder (T5X's padding masks), so its values are meaningless and
    should be masked by the caller.

    Args:
      encoder_input_tokens: int [N, T_enc].
      decoder_input_tokens: int [N, T_dec] (0 = start token for one step).
      decoder_target_tokens: int [N, T_dec]; only `> 0` matters (masks).
      token_ids: output-vocabulary ids to score: int [K] (the same at every
        position) or int [N, T_dec, K] (per position, e.g. each item's own
        target token).
      encoder_segment_ids: packing, as T5X.
      decoder_segment_ids: packing, as T5X.
      encoder_positions: accepted for T5X's packing features; unused (T5 has
        relative positions).
      decoder_positions: packing, as T5X.
      enable_dropout: training mode.

    Returns:
      float32 [N, T_dec, K].
    """
    del encoder_positions  # Relative position biases need no positions.
    encoded = self.encode(
        encoder_input_tokens,
        encoder_segment_ids=encoder_segment_ids,
        enable_dropout=enable_dropout,
    )
    return self.decode(
        encoded,
        encoder_input_tokens,
        decoder_input_tokens,
        decoder_target_tokens,
        encoder_segment_ids=encoder_segment_ids,
        decoder_segment_ids=decoder_segment_ids,
        decoder_positions=decoder_positions,
        enable_dropout=enable_dropout,
        token_ids=jnp.asarray(token_ids, jnp.int32),
    )


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


class RankingEncoder(nn.Module):
  """RankT5-Enc: T5.1.1 encoder, pooling, dense head -> one score per item.

  Parameters: `token_embedder/embedding` and `encoder/...` exactly as in T5X's
  `Transformer` (so the encoder half of a T5 checkpoint loads), plus
  `score_head/{kernel [d_model], bias []}`.

  Attributes:
    config: T5X's `network.T5Config` (decoder fields unused).
    pooling: 'first' (state of an item's first token) or 'mean' (mean over
      its non-pad tokens).
    one_hot_embedding: as in `RankingTransformer`.
  """

  config: network.T5Config
  pooling: str = "first"
  one_hot_embedding: bool = True

  def setup(self):
    if self.pooling not in POOLINGS:
      raise ValueError(f"pooling={self.pooling!r}; expected one of {POOLINGS}")
    self.shared_embedding = _token_embedder(self.config, self.one_hot_embedding)
    self.encoder = network.Encoder(
        config=self.config, shared_embedding=self.shared_embedding
    )
    self.score_head = _ScoreHead()

  def __call__(
      self,
      encoder_input_tokens: Array,
      encoder_segment_ids: Optional[Array] = None,
      encoder_positions: Optional[Array] = None,
      *,
      num_segments: int = 1,
      enable_dropout: bool = True,
  ) -> Array:
    """Scores each segment of each row: [R, num_segments] float32.

    Unpacked rows (no segment ids): one item per row, `num_segments` must be
    1, result [R, 1]. Packed rows: `encoder_segment_ids` and
    `encoder_positions` as T5X packs them; slot `s - 1` scores segment `s`.
    """
    if encoder_input_tokens.ndim != 2:
      raise ValueError(
          "encoder_input_tokens must be [rows, length]; got shape "
          f"{encoder_input_tokens.shape}"
      )
    tokens = encoder_input_tokens
    mask = encoder_attention_mask(tokens, encoder_segment_ids, self.config.dtype)
    encoded = self.encoder(tokens, mask, deterministic=not enable_dropout)
    if encoder_segment_ids is None:
      if num_segments != 1:
        raise ValueError(
            f"num_segments={num_segments} needs encoder_segment_ids"
        )
      encoder_segment_ids = (tokens > 0).astype(jnp.int32)
      encoder_positions = jnp.broadcast_to(
          jnp.arange(tokens.shape[-1], dtype=jnp.int32), tokens.shape
      )
    elif encoder_positions is None:
      raise ValueError("packed rows need encoder_positions with segment ids")
    else:
      # Padding tokens carry segment id 0 in T5X packing; be explicit anyway.
      encoder_segment_ids = jnp.where(tokens > 0, encoder_segment_ids, 0)
    pooled = pool_segments(
        encoded,
        encoder_segment_ids,
        encoder_positions,
        num_segments,
        self.pooling,
    )
    return self.score_head(pooled)
