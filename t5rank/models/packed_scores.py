"""From packed rows back to lists: the model side of packed ranking batches.

`t5rank.data.packing.RankingPackedFeatureConverter` emits packs of `G` lists
whose real items share `R` encoder rows; T5X batches `N` packs, so a packed
batch holds row features `[N, R, T]` (encoder) / `[N, R, S]` (decoder, one
token per segment) and list features `item_row`, `item_segment`, `label`,
`mask` `[N, G, L]`. A model:

1. runs the network on the rows, flattened pack-major to `[N·R, ...]`
   (`flatten_rows`), which keeps the data-parallel split of `N`;
2. computes one value per segment slot, `[N, R, S, ...]` (the decoder output
   of column `s`, or the encoder head's score of segment `s + 1`);
3. gathers each list slot's value with `gather_items` into `[N, G, L, ...]`:
   the index of a slot only points inside its own pack, so the gather is a
   batched gather over `N` and stays on each device;
4. views lists as `[N·G, L]` (`flatten_lists`) for the listwise loss and
   metrics. Padded slots (`mask` False) hold some real value and are masked.

`token_logits` (enc-dec: the score-token logits of each item's decoder
column) and `encoder_scores` (encoder-only: the module's pooling and head for
each segment slot) run these steps for the T5X models (`RankingEncDecModel` /
`RankingEncoderModel` call them when `is_packed`). The network call is the
one the unpacked path makes, with T5X's packing features added.

>>> import jax.numpy as jnp
>>> scores = jnp.array([[[1., 2.], [3., 0.]]])      # [N=1, R=2, S=2]
>>> item_row = jnp.array([[[1, 0, 0]]])             # [N=1, G=1, L=3]
>>> item_segment = jnp.array([[[1, 2, 1]]])
>>> gather_items(scores, item_row, item_segment)
Array([[[3., 2., 1.]]], dtype=float32)
"""

from collections.abc import Mapping
from collections.abc import Sequence
from typing import Any

import jax
import jax.numpy as jnp

Array = jnp.ndarray
PyTree = Any

_ENCODER_FEATURES = (
  "encoder_input_tokens",
  "encoder_segment_ids",
  "encoder_positions",
)
# Features whose `[N, R, X]` (or unpacked `[B, L, X]`) arrays hold rows.
ROW_FEATURES = _ENCODER_FEATURES + (
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
    for name, x in batch.items()
    if name in ROW_FEATURES
  }


def gather_items(
  segment_values: Array, item_row: Array, item_segment: Array
) -> Array:
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
  flat = jnp.reshape(
    segment_values, (num_packs, rows * segments) + segment_values.shape[3:]
  )
  index = item_row * segments + item_segment - 1
  gathered = jax.vmap(lambda v, i: v[i])(
    flat, jnp.reshape(index, (num_packs, -1))
  )
  return jnp.reshape(gathered, item_row.shape + segment_values.shape[3:])


def flatten_lists(x: Array) -> Array:
  """The first two axes as one, major first: `[N, G, ...] -> [N·G, ...]`.

  Packs of lists `[N, G, L]` become a batch of lists `[N·G, L]`; lists of
  items `[B, L, T]` become rows `[B·L, T]`. Nothing of two entries of the
  first axis is mixed, so a data-parallel split of `N` (or `B`) stays one.
  """
  return jnp.reshape(x, (-1,) + tuple(x.shape[2:]))


def _rngs(dropout_rng: Array | None):
  return {"dropout": dropout_rng} if dropout_rng is not None else None


def _check_packed(batch: Mapping[str, Array], names: Sequence[str]) -> None:
  missing = [n for n in names if n not in batch]
  if missing:
    raise KeyError(
      f"packed batch lacks {missing} (found {sorted(batch)}); use "
      "t5rank.data.packing's converters"
    )
  tokens = batch["encoder_input_tokens"]
  if tokens.ndim != 3:
    raise ValueError(
      "packed encoder_input_tokens must be [packs, rows, length]; got "
      f"shape {tokens.shape}"
    )


def token_logits(
  module,
  params: PyTree,
  batch: Mapping[str, Array],
  token_ids: Sequence[int] | None,
  dropout_rng: Array | None = None,
) -> Array:
  """Enc-dec: logits of the score token(s) of every list slot, `[N·G, L, K]`.

  Runs `module.token_logits` (a `network.RankingTransformer`) on the rows
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
    method=module.token_logits,
  )  # [N·R, S, K]
  logits = jnp.reshape(logits, (num_packs, num_rows) + logits.shape[1:])
  return flatten_lists(
    gather_items(logits, batch["item_row"], batch["item_segment"])
  )


def encoder_scores(
  module,
  params: PyTree,
  batch: Mapping[str, Array],
  dropout_rng: Array | None = None,
) -> Array:
  """Encoder-only: one score per list slot, `[N·G, L]`.

  Runs the module (a `network.RankingEncoder`) on the rows `[N·R, T]` with
  their packing features: T5X's segment mask keeps each item to itself, and
  the module pools and scores every segment slot of a row, `[N·R, S]` with
  `S = min(T, G·L)` (a row holds at most that many items). Then
  `gather_items` and `flatten_lists`, as `token_logits`. Every real item gets
  the same score as alone on an unpadded row.

  Args:
    module: a `network.RankingEncoder`.
    params: its parameters.
    batch: a packed encoder batch.
    dropout_rng: training rng, None for deterministic scoring.

  Returns:
    float32 `[N·G, L]`.
  """
  _check_packed(batch, _ENCODER_FEATURES + ("item_row", "item_segment"))
  rows = flatten_rows(batch)
  num_packs, num_rows, length = batch["encoder_input_tokens"].shape
  item_row = batch["item_row"]
  num_segments = min(length, item_row.shape[1] * item_row.shape[2])
  rngs = _rngs(dropout_rng)
  scores = module.apply(
    {"params": params},
    *(rows[name] for name in _ENCODER_FEATURES),
    num_segments=num_segments,
    enable_dropout=rngs is not None,
    rngs=rngs,
  )  # [N·R, S]
  scores = jnp.reshape(scores, (num_packs, num_rows, num_segments))
  return flatten_lists(gather_items(scores, item_row, batch["item_segment"]))


def packing_metrics(batch: Mapping[str, Array]) -> dict[str, Any]:
  """T5X metrics of the truncation the packer did to fit its rows.

  `packing/truncated_items` and `packing/truncated_tokens`: totals summed
  over the steps and batches of a summary period (`t5x.metrics.Sum`), so a
  nonzero value says rows per pack are too few for the data.
  """
  from t5x import metrics as metrics_lib  # pylint: disable=g-import-not-at-top

  return {
    f"packing/{name}": metrics_lib.Sum(
      jnp.sum(jnp.asarray(batch[f"packing_{name}"], jnp.float32))
    )
    for name in ("truncated_items", "truncated_tokens")
    if f"packing_{name}" in batch
  }
