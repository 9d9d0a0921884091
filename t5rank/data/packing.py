"""Packed ranking batches: the real items of several lists share encoder rows.

A batch of ranking lists padded to `[B, L, T]` spends most of its compute on
padding: MS-MARCO query+passage inputs average ~75 T5 tokens against a budget
of 256 or 512, and some list slots are padding items. Packing lays the real
items of a *pack* of lists end to end into `R` encoder rows of `row_length`
tokens, the way T5X's own packing does:

* `encoder_segment_ids[r, t]` is the 1-based index of the item occupying token
  `t` of row `r` (0 = padding); T5X's network turns it into a block-diagonal
  attention mask, so an item attends only to itself.
* `encoder_positions[r, t]` restarts at 0 for each item.
* Enc-dec: one decoder token per item. Decoder column `j` of row `r` belongs to
  segment `j + 1` of that row (`decoder_segment_ids[r, j] = j + 1`,
  `decoder_positions = 0`, `decoder_input_tokens = 0` as BOS), so cross
  attention only sees its own item and decoder self-attention only sees itself.
* For each list slot `[g, l]` of the pack, `item_row[g, l]` and
  `item_segment[g, l]` say where the item lies; its score is the decoder output
  at `[item_row, item_segment - 1]` (enc-dec) or the pooled encoder states of
  segment `item_segment` of row `item_row` (encoder-only). Padded slots
  (`mask` False) are not packed at all and point at row 0, segment 1.

T5's relative position bias depends only on the distance between two tokens of
the same row, and each item occupies a contiguous run of tokens, so every
in-item distance is what it is unpacked: packing is exact for T5, not an
approximation (tests/models/test_packing_exactness.py checks it to 1e-5).

Shapes are static: a pack has a fixed number of rows, sized from the data (see
`estimate_rows`). If the items of one pack do not fit, the longest items are
truncated to a common cap, as little as possible, until they fit; no item is
ever dropped. The numbers of truncated items and tokens travel with the pack
(`packing_truncated_items`, `packing_truncated_tokens`) and are logged.

Batching and data parallelism: T5X batches the converter's output elements.
With `pack=True` (T5X's training configs) one element is a pack of
`lists_per_pack` lists with all its rows, so after T5X's batching the leading
axis counts packs and is the data-parallel axis: a pack never spans devices and
the gather from `[N, R, S]` scores into `[N, G, L]` is local to each device.
With `pack=False` (T5X's inference configs) each element is one list packed
into its own `rows_per_list` rows, so one element is still one list, as the
seqio evaluator expects. `t5rank.models.packed_scores` holds the model side
(flatten rows, gather segment scores back into lists).

Standalone use of the planner:

>>> plan = plan_packing(
...     np.array([[5, 3, 4, 0]]), np.array([[True, True, True, False]]),
...     num_rows=2, row_length=8, max_segments_per_row=4)
>>> [a.tolist() for a in (plan.item_row, plan.item_segment, plan.item_offset)]
[[[0, 0, 1, 0]], [[1, 2, 1, 1]], [[0, 5, 0, 0]]]

Longest first: the 5-token item opens row 0, the 4-token item does not fit
beside it and opens row 1, the 3-token item fills row 0; the padded slot is
not packed.
"""

from collections.abc import Iterable
from collections.abc import Mapping
from collections.abc import Sequence
import dataclasses
import math
import threading

from absl import logging
import numpy as np
import seqio
import tensorflow as tf

from t5rank.data import feature_converters

_Spec = seqio.FeatureConverter.FeatureSpec


@dataclasses.dataclass(frozen=True)
class PackingPlan:
  """Where each item of a batch of lists lies in the packed rows.

  All arrays are `[B, L]` int32. Padded slots have row = first row of their
  shard, segment 1, offset 0, length 0.

  Attributes:
    item_row: row holding the item.
    item_segment: 1-based segment id of the item within its row.
    item_offset: first token of the item within its row.
    item_length: tokens of the item kept in the row (after any truncation).
    truncated_items: number of real items that lost tokens.
    truncated_tokens: number of tokens cut from them in total.
  """

  item_row: np.ndarray
  item_segment: np.ndarray
  item_offset: np.ndarray
  item_length: np.ndarray
  truncated_items: int
  truncated_tokens: int


def _first_fit_decreasing(
  lengths: Sequence[int],
  num_rows: int,
  row_length: int,
  max_segments_per_row: int,
):
  """First-fit decreasing bin packing; returns (row, segment, offset) or None.

  Items are taken longest first (ties by index) and each goes to the first
  row with enough free tokens and a free segment; segments of a row are
  numbered 1, 2, ... in placement order and lie contiguously.
  """
  order = sorted(range(len(lengths)), key=lambda i: -lengths[i])
  used = [0] * num_rows
  segments = [0] * num_rows
  row_of = [0] * len(lengths)
  segment_of = [0] * len(lengths)
  offset_of = [0] * len(lengths)
  for i in order:
    length = lengths[i]
    for r in range(num_rows):
      if used[r] + length <= row_length and segments[r] < max_segments_per_row:
        break
    else:
      return None
    row_of[i] = r
    offset_of[i] = used[r]
    segments[r] += 1
    segment_of[i] = segments[r]
    used[r] += length
  return row_of, segment_of, offset_of


def _fit_with_truncation(
  lengths: Sequence[int],
  num_rows: int,
  row_length: int,
  max_segments_per_row: int,
):
  """Packs `lengths`, capping the longest items until everything fits.

  Returns (placement, kept_lengths). The cap is the largest value `c` (found
  by bisection) such that lengths `min(length, c)` pack; cap 1 always packs
  because callers check `num_rows * min(row_length, max_segments_per_row)`
  against the number of items.
  """
  lengths = [min(length, row_length) for length in lengths]
  placement = _first_fit_decreasing(
    lengths, num_rows, row_length, max_segments_per_row
  )
  if placement is not None:
    return placement, lengths
  lo, hi = 1, max(lengths) - 1  # lo always fits, hi + 1 does not.
  best = None
  while lo <= hi:
    cap = (lo + hi) // 2
    capped = [min(length, cap) for length in lengths]
    fit = _first_fit_decreasing(
      capped, num_rows, row_length, max_segments_per_row
    )
    if fit is None:
      hi = cap - 1
    else:
      best, lo = (fit, capped), cap + 1
  if best is None:  # Only cap 1 is left; first-fit is not monotone in sizes.
    capped = [1] * len(lengths)
    best = (
      _first_fit_decreasing(capped, num_rows, row_length, max_segments_per_row),
      capped,
    )
  return best


def plan_packing(
  lengths: np.ndarray,
  mask: np.ndarray,
  *,
  num_rows: int,
  row_length: int,
  max_segments_per_row: int,
  num_shards: int = 1,
) -> PackingPlan:
  """Plans how the real items of `B` lists pack into `num_rows` rows.

  Lists `b` of shard `s = b // (B / num_shards)` use only rows
  `[s * num_rows / num_shards, (s + 1) * num_rows / num_shards)`, so a list
  never reads scores from another data shard. Within a shard, items are placed
  first-fit decreasing into rows of `row_length` tokens holding at most
  `max_segments_per_row` items; padded items (`mask` False) take no room.
  Items longer than `row_length` are cut to it, and if the shard's items still
  do not fit, the longest are cut to the largest common cap that fits. Every
  real item is placed exactly once.

  Args:
    lengths: `[B, L]` token counts of the items.
    mask: `[B, L]` bool, True for real items (which must have length >= 1).
    num_rows: rows for the whole batch, divisible by `num_shards`.
    row_length: tokens per row.
    max_segments_per_row: most items per row.
    num_shards: data shards; `B` and `num_rows` must be divisible by it.

  Returns:
    A `PackingPlan`.

  Raises:
    ValueError: for inconsistent shapes or sizes, a real item without tokens,
      or a shard with more real items than its rows have segments.

  >>> plan = plan_packing(np.array([[6, 6], [2, 0]]),
  ...                     np.array([[True, True], [True, False]]),
  ...                     num_rows=2, row_length=8, max_segments_per_row=2,
  ...                     num_shards=2)
  >>> plan.item_row.tolist(), plan.item_length.tolist(), plan.truncated_tokens
  ([[0, 0], [1, 1]], [[4, 4], [2, 0]], 4)
  """
  lengths = np.asarray(lengths)
  mask = np.asarray(mask, dtype=bool)
  if lengths.ndim != 2 or lengths.shape != mask.shape:
    raise ValueError(
      f"lengths and mask must both be [B, L]; got lengths.shape="
      f"{lengths.shape}, mask.shape={mask.shape}"
    )
  num_lists, list_size = lengths.shape
  if num_shards < 1 or num_lists % num_shards or num_rows % num_shards:
    raise ValueError(
      f"num_shards={num_shards} must divide the number of lists "
      f"({num_lists}) and num_rows={num_rows}"
    )
  _check_sizes(row_length, max_segments_per_row)
  empty = mask & (lengths < 1)
  if empty.any():
    b, l = np.argwhere(empty)[0]
    raise ValueError(
      f"item [{b}, {l}] is a real item (mask=True) but has length "
      f"{lengths[b, l]}; real items need at least one token"
    )

  lists_per_shard = num_lists // num_shards
  rows_per_shard = num_rows // num_shards
  shape = (num_lists, list_size)
  item_row = np.zeros(shape, np.int32)
  item_segment = np.ones(shape, np.int32)
  item_offset = np.zeros(shape, np.int32)
  item_length = np.zeros(shape, np.int32)
  truncated_items = truncated_tokens = 0
  for shard in range(num_shards):
    lists = slice(shard * lists_per_shard, (shard + 1) * lists_per_shard)
    first_row = shard * rows_per_shard
    item_row[lists] = first_row
    where = np.argwhere(mask[lists])
    if not len(where):
      continue
    capacity = rows_per_shard * min(row_length, max_segments_per_row)
    if len(where) > capacity:
      raise ValueError(
        f"shard {shard} has {len(where)} real items but its "
        f"{rows_per_shard} rows hold at most {capacity} items "
        f"(max_segments_per_row={max_segments_per_row}, "
        f"row_length={row_length}); raise the rows per pack"
      )
    wanted = [int(x) for x in lengths[lists][mask[lists]]]
    (rows, segments, offsets), kept = _fit_with_truncation(
      wanted, rows_per_shard, row_length, max_segments_per_row
    )
    b = where[:, 0] + shard * lists_per_shard
    l = where[:, 1]
    item_row[b, l] = np.asarray(rows, np.int32) + first_row
    item_segment[b, l] = segments
    item_offset[b, l] = offsets
    item_length[b, l] = kept
    cut = np.asarray(wanted) - np.asarray(kept)
    truncated_items += int(np.count_nonzero(cut))
    truncated_tokens += int(cut.sum())
  return PackingPlan(
    item_row,
    item_segment,
    item_offset,
    item_length,
    truncated_items,
    truncated_tokens,
  )


def _check_sizes(row_length: int, max_segments_per_row: int) -> None:
  if row_length < 1 or max_segments_per_row < 1:
    raise ValueError(
      f"row_length={row_length} and max_segments_per_row="
      f"{max_segments_per_row} must be positive"
    )


def pack_lists(
  tokens: np.ndarray,
  mask: np.ndarray,
  targets: np.ndarray | None = None,
  *,
  num_rows: int,
  row_length: int,
  max_segments_per_row: int,
  num_shards: int = 1,
) -> dict[str, np.ndarray]:
  """Packs a batch of tokenised lists into rows (NumPy; the converter's core).

  Args:
    tokens: `[B, L, T]` int tokens, 0-padded after each item's tokens.
    mask: `[B, L]` bool, True for real items.
    targets: `[B, L]` int decoder target token per item (enc-dec), or None for
      encoder-only packing. Real items need a non-zero target, since T5X masks
      decoder positions whose target is 0.
    num_rows: rows for the batch.
    row_length: tokens per row.
    max_segments_per_row: most items per row (decoder length for enc-dec).
    num_shards: data shards, see `plan_packing`.

  Returns:
    A dict of NumPy arrays: `encoder_input_tokens`, `encoder_segment_ids`,
    `encoder_positions` `[R, row_length]`; with targets also
    `decoder_input_tokens`, `decoder_target_tokens`, `decoder_segment_ids`,
    `decoder_positions` `[R, max_segments_per_row]`; `item_row`,
    `item_segment` `[B, L]`; `packing_truncated_items` and
    `packing_truncated_tokens` scalars. All int32.

  >>> out = pack_lists(np.array([[[7, 8, 1], [9, 1, 0]]]),
  ...                  np.array([[True, True]]), np.array([[5, 5]]),
  ...                  num_rows=1, row_length=6, max_segments_per_row=2)
  >>> out["encoder_input_tokens"], out["encoder_segment_ids"]
  (array([[7, 8, 1, 9, 1, 0]], dtype=int32), array([[1, 1, 1, 2, 2, 0]], \
dtype=int32))
  >>> out["encoder_positions"], out["decoder_target_tokens"]
  (array([[0, 1, 2, 0, 1, 0]], dtype=int32), array([[5, 5]], dtype=int32))
  """
  tokens = np.asarray(tokens)
  mask = np.asarray(mask, dtype=bool)
  if tokens.ndim != 3 or tokens.shape[:2] != mask.shape:
    raise ValueError(
      f"tokens must be [B, L, T] and mask [B, L]; got tokens.shape="
      f"{tokens.shape}, mask.shape={mask.shape}"
    )
  # An item's length is up to its last non-pad token.
  nonpad = tokens != 0
  lengths = np.where(
    nonpad.any(-1), tokens.shape[-1] - np.argmax(nonpad[..., ::-1], -1), 0
  )
  plan = plan_packing(
    lengths,
    mask,
    num_rows=num_rows,
    row_length=row_length,
    max_segments_per_row=max_segments_per_row,
    num_shards=num_shards,
  )

  b, l = np.nonzero(mask)
  kept = plan.item_length[b, l]
  # One entry per packed token: which item, which position inside it.
  item = np.repeat(np.arange(len(b)), kept)
  position = np.arange(item.size) - np.repeat(np.cumsum(kept) - kept, kept)
  rows = plan.item_row[b, l][item]
  columns = plan.item_offset[b, l][item] + position
  encoder_input_tokens = np.zeros((num_rows, row_length), np.int32)
  encoder_segment_ids = np.zeros((num_rows, row_length), np.int32)
  encoder_positions = np.zeros((num_rows, row_length), np.int32)
  encoder_input_tokens[rows, columns] = tokens[b[item], l[item], position]
  encoder_segment_ids[rows, columns] = plan.item_segment[b, l][item]
  encoder_positions[rows, columns] = position
  out = {
    "encoder_input_tokens": encoder_input_tokens,
    "encoder_segment_ids": encoder_segment_ids,
    "encoder_positions": encoder_positions,
    "item_row": plan.item_row,
    "item_segment": plan.item_segment,
    "packing_truncated_items": np.int32(plan.truncated_items),
    "packing_truncated_tokens": np.int32(plan.truncated_tokens),
  }
  if targets is not None:
    targets = np.asarray(targets)
    if targets.shape != mask.shape:
      raise ValueError(
        f"targets must be [B, L] like mask; got targets.shape="
        f"{targets.shape}, mask.shape={mask.shape}"
      )
    if (targets[mask] == 0).any():
      b0, l0 = np.argwhere(mask & (targets == 0))[0]
      raise ValueError(
        f"item [{b0}, {l0}] is a real item with target token 0 (padding); "
        "T5X would mask its decoder position"
      )
    shape = (num_rows, max_segments_per_row)
    decoder_target_tokens = np.zeros(shape, np.int32)
    decoder_segment_ids = np.zeros(shape, np.int32)
    slot = (plan.item_row[b, l], plan.item_segment[b, l] - 1)
    decoder_target_tokens[slot] = targets[b, l]
    decoder_segment_ids[slot] = plan.item_segment[b, l]
    out.update(
      decoder_input_tokens=np.zeros(shape, np.int32),
      decoder_target_tokens=decoder_target_tokens,
      decoder_segment_ids=decoder_segment_ids,
      decoder_positions=np.zeros(shape, np.int32),
    )
  return out


def estimate_rows(
  list_lengths: Iterable[Sequence[int]],
  *,
  lists_per_pack: int,
  row_length: int,
  max_segments_per_row: int,
  margin: float = 0.0,
  num_trials: int = 1000,
  seed: int = 0,
) -> int:
  """Rows per pack that fit `lists_per_pack` lists drawn like the sample.

  Draws `num_trials` packs of `lists_per_pack` lists (with replacement) from
  the sample, packs each first-fit decreasing into as many rows as it needs,
  and returns the largest count seen times `1 + margin`, rounded up. Rarer
  packs that need more rows than this are truncated (and counted) by the
  converter, never dropped.

  Args:
    list_lengths: per sampled list, the token counts of its real items.
    lists_per_pack: lists per pack.
    row_length: tokens per row.
    max_segments_per_row: most items per row.
    margin: safety margin on top of the largest pack seen.
    num_trials: packs drawn.
    seed: seed of the draw.

  Returns:
    The number of rows, at least 1.

  >>> estimate_rows([[100, 100, 50]], lists_per_pack=2, row_length=256,
  ...               max_segments_per_row=8, margin=0.0)
  2
  """
  _check_sizes(row_length, max_segments_per_row)
  sample = [
    [min(int(x), row_length) for x in lengths if x > 0]
    for lengths in list_lengths
  ]
  if not sample:
    raise ValueError("estimate_rows needs at least one list in the sample")
  rng = np.random.default_rng(seed)
  needed = 1
  for _ in range(num_trials):
    picks = rng.integers(len(sample), size=lists_per_pack)
    items = [x for i in picks for x in sample[i]]
    if not items:
      continue
    rows, _, _ = _first_fit_decreasing(
      items, len(items), row_length, max_segments_per_row
    )
    needed = max(needed, max(rows) + 1)
  return max(1, math.ceil(needed * (1.0 + margin)))


def _item_lengths(inputs) -> tf.Tensor:
  """[L] token counts of a list's items, for ragged or 0-padded inputs."""
  if isinstance(inputs, tf.RaggedTensor):
    return tf.cast(inputs.row_lengths(), tf.int32)
  nonpad = tf.cast(tf.not_equal(inputs, 0), tf.int32)
  width = tf.shape(inputs)[-1]
  last = tf.argmax(tf.reverse(nonpad, [-1]), axis=-1, output_type=tf.int32)
  return tf.where(tf.reduce_any(nonpad > 0, -1), width - last, 0)


def sample_list_lengths(
  ds: tf.data.Dataset, num_lists: int = 1000
) -> list[np.ndarray]:
  """Token counts of the real items of the first `num_lists` lists of `ds`.

  `ds` yields task features (`inputs` [L, T], ragged or 0-padded, and `mask`
  [L]); the result feeds `estimate_rows`.
  """

  def lengths(ex):
    return tf.boolean_mask(_item_lengths(ex["inputs"]), ex["mask"])

  return [
    np.asarray(x) for x in ds.take(num_lists).map(lengths).as_numpy_iterator()
  ]


class RankingPackedFeatureConverter(seqio.FeatureConverter):
  """Packs ranking lists into encoder rows with one decoder token per item.

  Task features (as the unpacked ranking converters): `inputs` int32 [L, T]
  (ragged or 0-padded), `targets` int32 [L, 1], `label` float32 [L], `mask`
  bool [L]. Each output element is a pack of `G` lists (`G = lists_per_pack`
  when `pack=True`, else 1) in `R` rows (`rows_per_pack` or `rows_per_list`):

  * `encoder_input_tokens`, `encoder_segment_ids`, `encoder_positions`:
    int32 [R, row_length].
  * `decoder_input_tokens`, `decoder_target_tokens`, `decoder_segment_ids`,
    `decoder_positions`: int32 [R, max_segments_per_row] (enc-dec only).
  * `item_row`, `item_segment`: int32 [G, L]; `label`: float32 [G, L];
    `mask`: bool [G, L].
  * `packing_truncated_items`, `packing_truncated_tokens`: int32 scalars.

  After T5X batches `N` elements, the score of list `n * G + g`, item `l`, is
  the decoder output at `[n, item_row[n, g, l], item_segment[n, g, l] - 1]`.
  A final short pack is filled with empty lists (`mask` all False), so no list
  is dropped. Rows sized `None` are estimated from the first
  `num_sample_lists` lists of the dataset with `estimate_rows`; set them
  explicitly on multi-host jobs, where every host must agree on shapes.

  T5X calls the class with seqio's `pack` flag from its `DatasetConfig`
  (True for training, False for inference): it chooses packs of several lists
  or one list per element; items are packed in both cases.
  """

  # The task features of the padding ranking converters.
  TASK_FEATURES = feature_converters._LIST_TASK_FEATURES
  _ENCODER_FEATURES = {
    "encoder_input_tokens": _Spec(dtype=tf.int32, rank=2),
    "encoder_segment_ids": _Spec(dtype=tf.int32, rank=2),
    "encoder_positions": _Spec(dtype=tf.int32, rank=2),
    "item_row": _Spec(dtype=tf.int32, rank=2),
    "item_segment": _Spec(dtype=tf.int32, rank=2),
    "label": _Spec(dtype=tf.float32, rank=2),
    "mask": _Spec(dtype=tf.bool, rank=2),
    "packing_truncated_items": _Spec(dtype=tf.int32, rank=0),
    "packing_truncated_tokens": _Spec(dtype=tf.int32, rank=0),
  }
  _DECODER_FEATURES = {
    "decoder_input_tokens": _Spec(dtype=tf.int32, rank=2),
    "decoder_target_tokens": _Spec(dtype=tf.int32, rank=2),
    "decoder_segment_ids": _Spec(dtype=tf.int32, rank=2),
    "decoder_positions": _Spec(dtype=tf.int32, rank=2),
  }
  MODEL_FEATURES = {**_ENCODER_FEATURES, **_DECODER_FEATURES}
  PACKING_FEATURE_DTYPES = {}
  _WITH_DECODER = True

  def __init__(
    self,
    pack: bool = True,
    use_custom_packing_ops: bool = False,
    apply_length_check: bool = True,
    bos_id: int = 0,
    *,
    row_length: int = 512,
    max_segments_per_row: int = 16,
    lists_per_pack: int = 8,
    rows_per_pack: int | None = None,
    rows_per_list: int | None = None,
    row_margin: float = 0.0,
    num_sample_lists: int = 1000,
  ):
    """Initialises the converter.

    Args:
      pack: seqio's flag, passed by T5X: True packs `lists_per_pack` lists per
        element (training), False one list per element (inference).
      use_custom_packing_ops: unused (seqio's flag; accepted for T5X).
      apply_length_check: unused; shapes are set by this converter.
      bos_id: decoder BOS id; must be 0 as in T5.
      row_length: tokens per encoder row.
      max_segments_per_row: most items per row; the decoder length.
      lists_per_pack: lists per element when `pack=True`.
      rows_per_pack: rows per element when `pack=True`; None estimates.
      rows_per_list: rows per element when `pack=False`; None estimates.
      row_margin: safety margin of the estimate.
      num_sample_lists: lists read to estimate rows.
    """
    del use_custom_packing_ops, apply_length_check
    if bos_id != 0:
      raise ValueError(f"bos_id={bos_id}: packed decoding uses BOS 0 as T5")
    _check_sizes(row_length, max_segments_per_row)
    if lists_per_pack < 1:
      raise ValueError(f"lists_per_pack={lists_per_pack} must be positive")
    # seqio's own packing (rank-1 features) is never used: pack=False here.
    super().__init__(pack=False, apply_length_check=False, bos_id=bos_id)
    self.row_length = row_length
    self.max_segments_per_row = max_segments_per_row
    self.lists_per_pack = lists_per_pack if pack else 1
    self.num_rows = rows_per_pack if pack else rows_per_list
    self.row_margin = row_margin
    self.num_sample_lists = num_sample_lists
    self._lock = threading.Lock()
    self.truncated_items = 0
    self.truncated_tokens = 0
    self.packs = 0

  def _list_size(self, task_feature_lengths) -> tuple[int, int]:
    list_size, max_tokens, _ = feature_converters.list_and_token_lengths(
      task_feature_lengths
    )
    return list_size, max_tokens

  def _check_rows(self, list_size: int) -> None:
    capacity = self.num_rows * min(self.row_length, self.max_segments_per_row)
    if capacity < self.lists_per_pack * list_size:
      raise ValueError(
        f"{self.num_rows} rows x {self.max_segments_per_row} segments hold "
        f"{capacity} items, fewer than lists_per_pack x LIST_SIZE = "
        f"{self.lists_per_pack} x {list_size}; raise rows or "
        "max_segments_per_row so no item can be dropped"
      )

  def _convert_features(
    self, ds: tf.data.Dataset, task_feature_lengths: Mapping[str, int]
  ) -> tf.data.Dataset:
    list_size, max_tokens = self._list_size(task_feature_lengths)
    if self.num_rows is None:
      estimate = estimate_rows(
        sample_list_lengths(ds, self.num_sample_lists),
        lists_per_pack=self.lists_per_pack,
        row_length=self.row_length,
        max_segments_per_row=self.max_segments_per_row,
        margin=self.row_margin,
      )
      # Enough segments for full lists, so an item never lacks a slot.
      least = -(
        -self.lists_per_pack
        * list_size
        // min(self.row_length, self.max_segments_per_row)
      )
      self.num_rows = max(estimate, least)
      logging.info(
        "Packed ranking batches: %d rows of %d tokens per %d list(s), "
        "estimated from the first %d lists",
        self.num_rows,
        self.row_length,
        self.lists_per_pack,
        self.num_sample_lists,
      )
    self._check_rows(list_size)

    def to_dense(ex):
      inputs = ex["inputs"]
      if isinstance(inputs, tf.RaggedTensor):
        inputs = inputs.to_tensor(shape=[list_size, max_tokens])
      else:
        inputs = _pad_to(inputs, [list_size, max_tokens])
      return {
        "inputs": inputs,
        "targets": _pad_to(ex["targets"][:, :1], [list_size, 1])[:, 0],
        "label": _pad_to(ex["label"], [list_size]),
        "mask": _pad_to(ex["mask"], [list_size]),
      }

    ds = ds.map(to_dense, num_parallel_calls=tf.data.AUTOTUNE)
    ds = ds.batch(self.lists_per_pack)
    return ds.map(self._pack_batch, num_parallel_calls=tf.data.AUTOTUNE)

  def _numpy_outputs(self) -> list[str]:
    names = list(self._ENCODER_FEATURES)[:5]
    if self._WITH_DECODER:
      names += list(self._DECODER_FEATURES)
    return names + ["packing_truncated_items", "packing_truncated_tokens"]

  def _pack_batch(self, batch):
    """Packs one tf batch of up to G dense lists into a pack element."""
    names = self._numpy_outputs()
    outputs = tf.numpy_function(
      self._pack_numpy,
      [batch["inputs"], batch["mask"], batch["targets"]],
      [tf.int32] * len(names),
      stateful=False,
    )
    features = dict(zip(names, outputs))
    groups = self.lists_per_pack
    for name, value in features.items():
      if name.startswith("packing_"):
        value.set_shape([])
      elif name.startswith("item_"):
        value.set_shape([groups, None])
      elif name.startswith("encoder_"):
        value.set_shape([self.num_rows, self.row_length])
      else:
        value.set_shape([self.num_rows, self.max_segments_per_row])
    list_size = batch["mask"].shape[1]
    for name in ("item_row", "item_segment"):
      features[name] = tf.ensure_shape(features[name], [groups, list_size])
    features["label"] = _pad_to(batch["label"], [groups, list_size])
    features["mask"] = _pad_to(batch["mask"], [groups, list_size])
    return features

  def _pack_numpy(self, tokens, mask, targets):
    groups = self.lists_per_pack
    missing = groups - tokens.shape[0]
    if missing:  # A final short pack: fill with empty lists.
      tokens = np.pad(tokens, [(0, missing), (0, 0), (0, 0)])
      mask = np.pad(mask, [(0, missing), (0, 0)])
      targets = np.pad(targets, [(0, missing), (0, 0)])
    out = pack_lists(
      tokens,
      mask,
      targets if self._WITH_DECODER else None,
      num_rows=self.num_rows,
      row_length=self.row_length,
      max_segments_per_row=self.max_segments_per_row,
    )
    items = int(out["packing_truncated_items"])
    with self._lock:
      self.packs += 1
      if items:
        self.truncated_items += items
        self.truncated_tokens += int(out["packing_truncated_tokens"])
        logging.log_every_n_seconds(
          logging.WARNING,
          "Packed ranking batches: %d items of %d packs truncated so far "
          "(%d tokens) to fit %d rows of %d tokens; raise rows_per_pack / "
          "rows_per_list if this is frequent",
          60,
          self.truncated_items,
          self.packs,
          self.truncated_tokens,
          self.num_rows,
          self.row_length,
        )
    return [np.asarray(out[name], np.int32) for name in self._numpy_outputs()]

  def get_model_feature_lengths(
    self, task_feature_lengths: Mapping[str, int]
  ) -> Mapping[str, int]:
    """Full shapes of one element's model features (ranks follow the table)."""
    list_size, _ = self._list_size(task_feature_lengths)
    if self.num_rows is None:
      raise ValueError(
        "rows per pack are estimated when the dataset is converted; set "
        "rows_per_pack / rows_per_list to know the shapes beforehand"
      )
    rows = (self.num_rows, self.row_length)
    lists = (self.lists_per_pack, list_size)
    lengths = {
      "encoder_input_tokens": rows,
      "encoder_segment_ids": rows,
      "encoder_positions": rows,
      "item_row": lists,
      "item_segment": lists,
      "label": lists,
      "mask": lists,
      "packing_truncated_items": (),
      "packing_truncated_tokens": (),
    }
    if self._WITH_DECODER:
      for name in self._DECODER_FEATURES:
        lengths[name] = (self.num_rows, self.max_segments_per_row)
    return lengths


class RankingPackedEncoderFeatureConverter(RankingPackedFeatureConverter):
  """`RankingPackedFeatureConverter` without decoder features (RankT5-Enc).

  The score of an item comes from pooling the encoder states of segment
  `item_segment` of row `item_row`.
  """

  MODEL_FEATURES = dict(RankingPackedFeatureConverter._ENCODER_FEATURES)
  _WITH_DECODER = False


def _pad_to(x: tf.Tensor, shape: Sequence[int]) -> tf.Tensor:
  """Cuts or zero-pads `x` to the static `shape`."""
  x = x[tuple(slice(0, n) for n in shape)]
  paddings = [[0, n - tf.shape(x)[i]] for i, n in enumerate(shape)]
  return tf.ensure_shape(tf.pad(x, paddings), shape)


def select_feature_converter(use_packing: bool, packed, unpacked):
  """`packed` if `use_packing` else `unpacked`: the gin switch `PACK_LISTS`.

  Gin cannot branch, so gin/runs/packed.gin binds a model's
  `feature_converter_cls` to this function's result, with both converter
  classes given as gin references (so their own bindings, e.g. `row_length`,
  apply) and `use_packing = %PACK_LISTS`.

  >>> select_feature_converter(False, "packed", "padded")
  'padded'
  """
  if not isinstance(use_packing, bool):
    raise TypeError(f"use_packing={use_packing!r}: expected True or False")
  return packed if use_packing else unpacked
