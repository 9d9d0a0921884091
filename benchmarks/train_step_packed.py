"""`train_step.py` with packed rows: the same lists, the same step, packed.

Adds to `train_step.VARIANTS` (same T5 config, same 8 x 10 lists, same
jit-compiled `value_and_grad(model.loss_fn)` + Adafactor step, interleaved
rounds, medians) the packed layouts of `t5rank.data.packing`:

* `encdec-packed`: `t5rank.models.RankingEncDecModel` on one pack of the 8
  lists: the 68 real items laid end to end in rows of ROW_LENGTH = 256 tokens
  (the items' token budget; segment ids keep attention inside each item, one
  decoder token per item), as few rows as hold them untruncated (21 here,
  95% real tokens, against 80 x 256 padded tokens); table-lookup embedding.
  `--row_length 512` packs into 11 rows of 512 instead (more attention
  work per token).
* `encdec-packed-onehot`: the same with T5X's one-hot embedding.
* `encoder-packed`: `t5rank.models.RankingEncoderModel`, same pack, gather.

Run: python benchmarks/train_step_packed.py [--row_length 256] [--rounds 4]
     [--variants a,b] [--no-rss]   (train_step.py's flags and variants)
"""

import json
import os
import subprocess
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import jax.numpy as jnp  # pylint: disable=g-import-not-at-top,wrong-import-position
import train_step  # pylint: disable=g-import-not-at-top,wrong-import-position

ROW_LENGTH, MAX_SEGMENTS = 256, 16


def packed_rows(
  lists: train_step.Lists, targets: bool
) -> dict[str, np.ndarray]:
  """All lists as one pack in the fewest 512-token rows with no truncation."""
  from t5rank.data import packing  # pylint: disable=g-import-not-at-top

  lengths = (lists.tokens != 0).sum(-1)
  rows = max(
    -(-int(lengths.sum()) // ROW_LENGTH), -(-lists.real_items // MAX_SEGMENTS)
  )
  while True:
    out = packing.pack_lists(
      lists.tokens,
      lists.mask,
      np.where(lists.mask, train_step.SCORE_TOKEN, 0) if targets else None,
      num_rows=rows,
      row_length=ROW_LENGTH,
      max_segments_per_row=MAX_SEGMENTS,
    )
    if int(out["packing_truncated_items"]) == 0:
      return out
    rows += 1


def packed_batch(
  lists: train_step.Lists, targets: bool
) -> dict[str, jnp.ndarray]:
  """The packed features of one pack, batched as T5X does ([N=1, ...])."""
  out = packed_rows(lists, targets)
  out["label"], out["mask"] = lists.label, lists.mask
  return {k: jnp.asarray(v)[None] for k, v in out.items()}


def _packed(build_unpacked, targets: bool):
  def build(lists):
    model, _ = build_unpacked(lists)
    return model, packed_batch(lists, targets)

  return build


PACKED_VARIANTS = (
  train_step.Variant(
    "encdec-packed",
    "t5rank enc-dec, packed rows, gather",
    _packed(train_step._t5rank_encdec(False), True),
  ),  # pylint: disable=protected-access
  train_step.Variant(
    "encdec-packed-onehot",
    "t5rank enc-dec, packed rows, one-hot",
    _packed(train_step._t5rank_encdec(True), True),
  ),  # pylint: disable=protected-access
  train_step.Variant(
    "encoder-packed",
    "t5rank encoder-only, packed rows, gather",
    _packed(train_step._t5rank_encoder(False), False),
  ),  # pylint: disable=protected-access
)


def _rss_in_subprocess(name: str) -> dict[str, float]:
  out = subprocess.run(
    [sys.executable, os.path.abspath(__file__), "--rss-only", name],
    check=True,
    capture_output=True,
    text=True,
  )
  return json.loads(out.stdout.strip().splitlines()[-1])


def main():
  global ROW_LENGTH
  if "--row_length" in sys.argv:
    i = sys.argv.index("--row_length")
    ROW_LENGTH = int(sys.argv[i + 1])
    del sys.argv[i : i + 2]
  train_step.VARIANTS = tuple(train_step.VARIANTS) + PACKED_VARIANTS
  train_step._rss_in_subprocess = _rss_in_subprocess  # pylint: disable=protected-access
  if "--rss-only" not in sys.argv:
    lists = train_step.make_lists()
    rows = packed_rows(lists, targets=True)["encoder_input_tokens"]
    print(
      f"packed: {rows.shape[0]} rows x {ROW_LENGTH} tokens "
      f"({(rows != 0).mean():.0%} real tokens) vs {lists.tokens.size} "
      "padded tokens",
      flush=True,
    )
  train_step.main()


if __name__ == "__main__":
  main()
