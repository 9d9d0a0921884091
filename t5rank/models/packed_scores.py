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

>>> import jax.numpy as jnp
>>> scores = jnp.array([[[1., 2.], [3., 0.]]])      # [N=1, R=2, S=2]
>>> item_row = jnp.array([[[1, 0, 0]]])             # [N=1, G=1, L=3]
>>> item_segment = jnp.array([[[1, 2, 1]]])
>>> gather_items(scores, item_row, item_segment)
Array([[[3., 2., 1.]]], dtype=float32)
"""

from typing import Mapping

import jax
import jax.numpy as jnp

Array = jnp.ndarray

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
