"""Throughput of the packed-batch planner and converter (t5rank.data.packing).

Lists are MS-MARCO-like: 8 lists x 10 items, ~15% padded items, item lengths
log-normal with mean ~75 tokens and a tail past 200 (cut at 256). Reports, in
one process:

* `plan_packing` (pure planning) and `pack_lists` (planning + row arrays):
  lists/s and items/s;
* the tf.data converter (`RankingPackedFeatureConverter`, pack=True) from
  dense task lists to packed features: lists/s;
* anchor: seqio's own `trim_and_pack_dataset` packing the same items as a
  flat stream into rows of the same length (what T5X does for plain text):
  items/s, and the ratio;
* rows estimated per pack, token utilisation, truncations.

Run: python benchmarks/packing_planner.py [--packs 300]
"""

import argparse
import time

import numpy as np
import seqio
import tensorflow as tf

from t5rank.data import packing

LISTS, LIST_SIZE, TOKENS = 8, 10, 256
ROW_LENGTH, SEGMENTS = 512, 16


def _lengths(rng, shape):
  x = rng.lognormal(mean=np.log(65.0), sigma=0.55, size=shape)
  return np.clip(np.round(x), 8, TOKENS).astype(np.int32)


def _batch(rng):
  lengths = _lengths(rng, (LISTS, LIST_SIZE))
  mask = rng.random((LISTS, LIST_SIZE)) >= 0.15
  mask[:, 0] = True
  tokens = np.zeros((LISTS, LIST_SIZE, TOKENS), np.int32)
  for b in range(LISTS):
    for l in range(LIST_SIZE):
      tokens[b, l, : lengths[b, l]] = rng.integers(3, 32000, lengths[b, l])
  return lengths, mask, tokens


def _rate(fn, n):
  start = time.perf_counter()
  for i in range(n):
    fn(i)
  return n / (time.perf_counter() - start)


def main():
  parser = argparse.ArgumentParser()
  parser.add_argument("--packs", type=int, default=300)
  args = parser.parse_args()
  rng = np.random.default_rng(0)
  batches = [_batch(rng) for _ in range(args.packs)]
  items = sum(int(m.sum()) for _, m, _ in batches)
  sample = [l[m] for l, m, _ in batches[:100] for l, m in zip(l, m)]
  rows = packing.estimate_rows(
    sample,
    lists_per_pack=LISTS,
    row_length=ROW_LENGTH,
    max_segments_per_row=SEGMENTS,
  )
  kwargs = dict(
    num_rows=rows, row_length=ROW_LENGTH, max_segments_per_row=SEGMENTS
  )

  plan_rate = _rate(
    lambda i: packing.plan_packing(batches[i][0], batches[i][1], **kwargs),
    args.packs,
  )
  truncated = 0

  def pack(i):
    nonlocal truncated
    out = packing.pack_lists(
      batches[i][2], batches[i][1], np.full((LISTS, LIST_SIZE), 5), **kwargs
    )
    truncated += int(out["packing_truncated_items"])

  pack_rate = _rate(pack, args.packs)

  dense = {
    "inputs": np.stack([t for _, _, t in batches]).reshape(
      -1, LIST_SIZE, TOKENS
    ),
    "targets": np.full((args.packs * LISTS, LIST_SIZE, 1), 5, np.int32),
    "label": np.zeros((args.packs * LISTS, LIST_SIZE), np.float32),
    "mask": np.stack([m for _, m, _ in batches]).reshape(-1, LIST_SIZE),
  }
  converter = packing.RankingPackedFeatureConverter(
    row_length=ROW_LENGTH,
    max_segments_per_row=SEGMENTS,
    lists_per_pack=LISTS,
    rows_per_pack=rows,
  )
  ds = converter(
    tf.data.Dataset.from_tensor_slices(dense),
    {
      "inputs": (LIST_SIZE, TOKENS),
      "targets": (LIST_SIZE, 1),
      "label": (LIST_SIZE,),
      "mask": (LIST_SIZE,),
    },
  )
  start = time.perf_counter()
  used = sum(
    int((f["encoder_segment_ids"] > 0).sum()) for f in ds.as_numpy_iterator()
  )
  converter_rate = args.packs * LISTS / (time.perf_counter() - start)

  flat = [t[m] for _, m, t in batches]
  flat = np.concatenate(flat)
  flat_ds = tf.data.Dataset.from_tensor_slices(flat).map(
    lambda t: {"inputs": tf.boolean_mask(t, t > 0)}
  )
  packed = seqio.utils.trim_and_pack_dataset(flat_ds, {"inputs": ROW_LENGTH})
  start = time.perf_counter()
  seqio_rows = sum(1 for _ in packed.as_numpy_iterator())
  seqio_rate = items / (time.perf_counter() - start)

  print(
    f"{args.packs} packs of {LISTS} lists x {LIST_SIZE} items "
    f"({items / args.packs:.1f} real items/pack), rows of {ROW_LENGTH} "
    f"tokens, <= {SEGMENTS} items/row"
  )
  print(
    f"estimated rows/pack: {rows} (seqio stream packing needs "
    f"{seqio_rows / args.packs:.1f}); token utilisation "
    f"{used / (args.packs * rows * ROW_LENGTH):.1%}; padded layout "
    f"{LISTS * LIST_SIZE * TOKENS} tokens vs packed {rows * ROW_LENGTH} "
    f"({LISTS * LIST_SIZE * TOKENS / (rows * ROW_LENGTH):.2f}x fewer)"
  )
  print(f"truncated items: {truncated} of {items}")
  print(
    f"plan_packing:    {plan_rate * LISTS:9.0f} lists/s "
    f"{plan_rate * items / args.packs:9.0f} items/s"
  )
  print(
    f"pack_lists:      {pack_rate * LISTS:9.0f} lists/s "
    f"{pack_rate * items / args.packs:9.0f} items/s"
  )
  print(
    f"converter (tf):  {converter_rate:9.0f} lists/s "
    f"{converter_rate * items / (args.packs * LISTS):9.0f} items/s"
  )
  print(
    f"seqio trim_and_pack_dataset (anchor): {seqio_rate:9.0f} items/s; "
    f"converter / anchor = "
    f"{converter_rate * items / (args.packs * LISTS) / seqio_rate:.2f}x"
  )


if __name__ == "__main__":
  main()
