"""From packed rows back to lists: the model side of packed ranking batches.

`t5rank.data.packing.RankingPackedFeatureConverter` emits packs of `G` lists
whose real items share `R` encoder rows; T5X batches `N` packs, so a packed
batch holds row features `[N, R, T]` (encoder) / `[N, R, S]` (decoder, one
token per segment) and list features `item_row`, `item_segment`, `label`,
`mask` `[N, G, L]`. A model:

1. runs the network on the rows, flattened pack-major to `[N·R, ...]`
   (`flatten_rows`), which keeps the data-parallel split of `N`;
2. computes one value per segment slot, `[N, R, S, ...]` (the decoder output
   of column `s`, or the pooled encoder states of segment `s + 1`);
3. gathers each list slot's value with `gather_items` into `[N, G, L, ...]`:
   the index of a slot only points inside its own pack, so the gather is a
   batched gather over `N` and stays on each device;
4. views lists as `[N·G, L]` (`flatten_lists`) for the listwise loss and
   metrics. Padded slots (`mask` False) hold some real value and are masked.

`token_logits` (enc-dec: the score-token logits of each item's decoder
column) and `encoder_scores` (encoder-only: each item's tokens pooled by
`pool_items`, then the dense head) run these steps for the T5X models
(`RankingEncDecModel` / `RankingEncoderModel` call them when `is_packed`).

>>> import jax.numpy as jnp
>>> scores = jnp.array([[[1., 2.], [3., 0.]]])      # [N=1, R=2, S=2]
>>> item_row = jnp.array([[[1, 0, 0]]])             # [N=1, G=1, L=3]
>>> item_segment = jnp.array([[[1, 2, 1]]])
>>> gather_items(scores, item_row, item_segment)
Array([[[3., 2., 1.]]], dtype=float32)
"""

from typing import Any, Mapping, Optional, Sequence

import jax
import jax.numpy as jnp

from t5rank.models import network

Array = jnp.ndarray
PyTree = Any

ROW_FEATURES = (
    "encoder_input_tokens",
    "encoder_segment_ids",
    "encoder_positions",
    "decoder_input_tokens",
    "decoder_target_tokens",
    "decoder_segment_ids",
    "decoder_positions",
)


def is_packed(batch: Mapping[str, Array]) -> bool:
  """Whether `batch` comes from the packed ranking converter."""
  return "item_row" in batch


def flatten_rows(batch: Mapping[str, Array]) -> dict[str, Array]:
  """Row features `[N, R, X]` -> `[N·R, X]` (pack-major), others dropped."""
  return {
      name: jnp.reshape(x, (-1,) + tuple(x.shape[2:]))
      for name, x in batch.items() if name in ROW_FEATURES
  }


def gather_items(segment_values: Array, item_row: Array,
                 item_segment: Array) -> Array:
  """Each list slot's segment value: `[N, R, S, ...] -> [N, G, L, ...]`.

  `out[n, g, l] = segment_values[n, item_row[n, g, l], item_segment[n, g, l]
  - 1]`; rows index only into their own pack `n`.

  Args:
    segment_values: `[N, R, S, ...]` one value (or vector) per segment slot.
    item_row: int `[N, G, L]`, row of each list slot within its pack.
    item_segment: int `[N, G, L]`, 1-based segment of each list slot.

  Returns:
    `[N, G, L, ...]`.
  """
  num_packs, rows, segments = segment_values.shape[:3]
  flat = jnp.reshape(segment_values,
                     (num_packs, rows * segments) + segment_values.shape[3:])
  index = item_row * segments + item_segment - 1
  gathered = jax.vmap(lambda v, i: v[i])(
      flat, jnp.reshape(index, (num_packs, -1)))
  return jnp.reshape(gathered, item_row.shape + segment_values.shape[3:])


def flatten_lists(x: Array) -> Array:
  """`[N, G, L, ...] -> [N·G, L, ...]`: packs of lists to a batch of lists."""
  return jnp.reshape(x, (-1,) + tuple(x.shape[2:]))


def pool_items(encoded: Array, segment_ids: Array, positions: Array,
               item_row: Array, item_segment: Array, pooling: str) -> Array:
  """Pools each list slot's tokens: `[N, R, T, d] -> [N, G, L, d]`.

  The item of slot `[n, g, l]` is the set of tokens `t` of row
  `r = item_row[n, g, l]` with `segment_ids[n, r, t] == item_segment[n, g,
  l]`. 'first' takes the state of its token at position 0, 'mean' averages
  its tokens (as `network.pool_segments` does for one item per row). A slot
  whose segment has no tokens pools to zeros, never NaN. The pooling weights
  are `[N, G·L, R, T]`, so no per-item copy of the states is made.

  Args:
    encoded: `[N, R, T, d]` encoder states of the packed rows.
    segment_ids: int `[N, R, T]`, 1-based, 0 = padding.
    positions: int `[N, R, T]`, position of each token inside its item.
    item_row: int `[N, G, L]`.
    item_segment: int `[N, G, L]`.
    pooling: 'first' or 'mean'.

  Returns:
    float32 `[N, G, L, d]`.

  >>> states = jnp.array([[[[1.], [3.], [5.], [0.]]]])  # [N=1, R=1, T=4, 1]
  >>> seg, pos = jnp.array([[[1, 1, 2, 0]]]), jnp.array([[[0, 1, 0, 0]]])
  >>> row, item = jnp.array([[[0, 0]]]), jnp.array([[[2, 1]]])
  >>> pool_items(states, seg, pos, row, item, "mean")[..., 0]
  Array([[[5., 2.]]], dtype=float32)
  """
  if pooling not in network.POOLINGS:
    raise ValueError(
        f"pooling={pooling!r}; expected one of {network.POOLINGS}")
  num_packs, rows = segment_ids.shape[:2]
  slots = jnp.reshape(item_row, (num_packs, -1))  # [N, G·L]
  wanted = jnp.reshape(item_segment, (num_packs, -1))
  on_row = slots[:, :, None] == jnp.arange(rows)[None, None, :]  # [N, I, R]
  member = (on_row[..., None]
            & (segment_ids[:, None] == wanted[:, :, None, None]))  # [N,I,R,T]
  if pooling == "first":
    member = member & (positions[:, None] == 0)
  weights = member.astype(jnp.float32)
  if pooling == "mean":
    weights = weights / jnp.maximum(
        weights.sum((-2, -1), keepdims=True), 1.0)
  pooled = jnp.einsum("nirt,nrtd->nid", weights,
                      jnp.asarray(encoded, jnp.float32))
  return jnp.reshape(pooled, item_row.shape + encoded.shape[-1:])


def _rngs(dropout_rng: Optional[Array]):
  return {"dropout": dropout_rng} if dropout_rng is not None else None


def _check_packed(batch: Mapping[str, Array], names: Sequence[str]) -> None:
  missing = [n for n in names if n not in batch]
  if missing:
    raise KeyError(
        f"packed batch lacks {missing} (found {sorted(batch)}); use "
        "t5rank.data.packing's converters")
  tokens = batch["encoder_input_tokens"]
  if tokens.ndim != 3:
    raise ValueError(
        "packed encoder_input_tokens must be [packs, rows, length]; got "
        f"shape {tokens.shape}")


def token_logits(module, params: PyTree, batch: Mapping[str, Array],
                 token_ids: Optional[Sequence[int]],
                 dropout_rng: Optional[Array] = None) -> Array:
  """Enc-dec: logits of the score token(s) of every list slot, `[N·G, L, K]`.

  Runs `module.score_tokens` (a `network.RankingTransformer`) on the rows
  `[N·R, ...]` with T5X's packing features; decoder column `s` of a row is
  the one decoder step of its segment `s + 1`. Then `gather_items` and
  `flatten_lists`.

  Args:
    module: the `RankingTransformer`.
    params: its parameters.
    batch: a packed enc-dec batch (see the module docstring).
    token_ids: K fixed output ids, or None for each item's own target token
      (`decoder_target_tokens`, K = 1).
    dropout_rng: training rng, None for deterministic scoring.

  Returns:
    float32 `[N·G, L, K]`.
  """
  _check_packed(batch, ROW_FEATURES + ("item_row", "item_segment"))
  rows = flatten_rows(batch)
  num_packs, num_rows = batch["encoder_input_tokens"].shape[:2]
  if token_ids is None:
    ids = rows["decoder_target_tokens"][..., None]  # [N·R, S, 1]
  else:
    ids = jnp.asarray(token_ids, jnp.int32)
  rngs = _rngs(dropout_rng)
  logits = module.apply(
      {"params": params},
      rows["encoder_input_tokens"],
      rows["decoder_input_tokens"],
      rows["decoder_target_tokens"],
      ids,
      encoder_segment_ids=rows["encoder_segment_ids"],
      decoder_segment_ids=rows["decoder_segment_ids"],
      encoder_positions=rows["encoder_positions"],
      decoder_positions=rows["decoder_positions"],
      enable_dropout=rngs is not None,
      rngs=rngs,
      method=module.score_tokens,
  )  # [N·R, S, K]
  logits = jnp.reshape(logits, (num_packs, num_rows) + logits.shape[1:])
  return flatten_lists(
      gather_items(logits, batch["item_row"], batch["item_segment"]))


def _encoder_item_scores(module, tokens, segment_ids, positions, item_row,
                         item_segment, *, enable_dropout):
  """`RankingEncoder`'s encoder and head around `pool_items` (packed rows)."""
  num_packs, num_rows, length = tokens.shape
  flat = jnp.reshape(tokens, (-1, length))
  segment_ids = jnp.where(tokens > 0, segment_ids, 0)
  mask = network.encoder_attention_mask(
      flat, jnp.reshape(segment_ids, (-1, length)), module.config.dtype)
  encoded = module.encoder(flat, mask, deterministic=not enable_dropout)
  encoded = jnp.reshape(encoded, (num_packs, num_rows) + encoded.shape[1:])
  pooled = pool_items(encoded, segment_ids, positions, item_row,
                      item_segment, module.pooling)
  return module.score_head(pooled)


def encoder_scores(module, params: PyTree, batch: Mapping[str, Array],
                   dropout_rng: Optional[Array] = None) -> Array:
  """Encoder-only: one score per list slot, `[N·G, L]`.

  Encodes the rows `[N·R, T]` with the segment mask (an item attends only to
  itself), pools each slot's item with `pool_items` (the module's pooling)
  and applies the module's dense head: the same parameters and, for every
  real item, the same score as the item alone on an unpadded row.

  Args:
    module: a `network.RankingEncoder`.
    params: its parameters.
    batch: a packed encoder batch.
    dropout_rng: training rng, None for deterministic scoring.

  Returns:
    float32 `[N·G, L]`.
  """
  names = ("encoder_input_tokens", "encoder_segment_ids", "encoder_positions",
           "item_row", "item_segment")
  _check_packed(batch, names)
  rngs = _rngs(dropout_rng)
  scores = module.apply(
      {"params": params},
      *(batch[n] for n in names),
      enable_dropout=rngs is not None,
      rngs=rngs,
      method=_encoder_item_scores,
  )  # [N, G, L]
  return flatten_lists(scores)


def packing_metrics(batch: Mapping[str, Array]) -> dict[str, Any]:
  """T5X metrics of the truncation the packer did to fit its rows.

  `packing/truncated_items` and `packing/truncated_tokens`: totals summed
  over the steps and batches of a summary period (`t5x.metrics.Sum`), so a
  nonzero value says rows per pack are too few for the data.
  """
  from t5x import metrics as metrics_lib  # pylint: disable=g-import-not-at-top

  return {
      f"packing/{name}": metrics_lib.Sum(
          jnp.sum(jnp.asarray(batch[f"packing_{name}"], jnp.float32)))
      for name in ("truncated_items", "truncated_tokens")
      if f"packing_{name}" in batch
  }
