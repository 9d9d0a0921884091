"""Tests for t5rank.data.packing: the planner and the packed converter."""

import doctest

from hypothesis import given
from hypothesis import settings
from hypothesis import strategies as st
import numpy as np
import pytest
import tensorflow as tf

from t5rank.data import packing

TASK_LENGTHS = {
  "inputs": (4, 12),
  "targets": (4, 1),
  "label": (4,),
  "mask": (4,),
}


def _check_plan(
  plan,
  lengths,
  mask,
  *,
  num_rows,
  row_length,
  max_segments_per_row,
  num_shards=1,
):
  """Asserts every invariant a plan must satisfy; returns per-row usage."""
  num_lists = lengths.shape[0]
  lists_per_shard = num_lists // num_shards
  rows_per_shard = num_rows // num_shards
  used = np.zeros(num_rows, int)
  segments = {}
  for b, l in zip(*np.nonzero(mask)):
    row, seg = int(plan.item_row[b, l]), int(plan.item_segment[b, l])
    shard = b // lists_per_shard
    assert shard * rows_per_shard <= row < (shard + 1) * rows_per_shard
    assert 1 <= seg <= max_segments_per_row
    assert (row, seg) not in segments, "two items share a segment"
    segments[row, seg] = (plan.item_offset[b, l], plan.item_length[b, l])
    assert 1 <= plan.item_length[b, l] <= min(lengths[b, l], row_length)
    used[row] += plan.item_length[b, l]
  assert (used <= row_length).all()
  for row in range(num_rows):
    segs = sorted(s for r, s in segments if r == row)
    assert segs == list(range(1, len(segs) + 1))
    offset = 0
    for s in segs:  # segments lie contiguously, in order, from token 0
      assert segments[row, s][0] == offset
      offset += segments[row, s][1]
  assert (plan.item_length[~mask] == 0).all()
  cut = np.where(mask, lengths - plan.item_length, 0)
  assert plan.truncated_tokens == cut.sum()
  assert plan.truncated_items == np.count_nonzero(cut)
  return used


def test_docstring_examples():
  assert doctest.testmod(packing).failed == 0


def test_every_real_item_placed_once_within_row_and_segment_caps():
  rng = np.random.default_rng(0)
  lengths = rng.integers(1, 200, size=(8, 10))
  mask = rng.random((8, 10)) < 0.85
  plan = packing.plan_packing(
    lengths, mask, num_rows=32, row_length=256, max_segments_per_row=8
  )
  _check_plan(
    plan, lengths, mask, num_rows=32, row_length=256, max_segments_per_row=8
  )
  assert plan.truncated_items == 0


def test_padded_items_take_no_room():
  # Two huge padded items would not fit; as padding they are not packed.
  lengths = np.array([[10, 500, 500, 5]])
  mask = np.array([[True, False, False, True]])
  plan = packing.plan_packing(
    lengths, mask, num_rows=1, row_length=16, max_segments_per_row=4
  )
  assert plan.truncated_items == 0
  assert plan.item_length.tolist() == [[10, 0, 0, 5]]


def test_segment_cap_opens_new_rows():
  lengths = np.ones((1, 6), int)
  mask = np.ones((1, 6), bool)
  plan = packing.plan_packing(
    lengths, mask, num_rows=3, row_length=100, max_segments_per_row=2
  )
  assert sorted(plan.item_row[0].tolist()) == [0, 0, 1, 1, 2, 2]


def test_lists_of_a_shard_use_only_that_shards_rows():
  rng = np.random.default_rng(1)
  lengths = rng.integers(1, 60, size=(8, 5))
  mask = rng.random((8, 5)) < 0.8
  plan = packing.plan_packing(
    lengths,
    mask,
    num_rows=8,
    row_length=128,
    max_segments_per_row=8,
    num_shards=4,
  )
  _check_plan(
    plan,
    lengths,
    mask,
    num_rows=8,
    row_length=128,
    max_segments_per_row=8,
    num_shards=4,
  )
  # Padded slots also point into their own shard.
  assert (plan.item_row // 2 == np.arange(8)[:, None] // 2).all()


def test_overflow_truncates_longest_items_and_counts_them():
  lengths = np.array([[100, 90, 10, 5]])
  mask = np.ones((1, 4), bool)
  plan = packing.plan_packing(
    lengths, mask, num_rows=1, row_length=120, max_segments_per_row=4
  )
  # 15 short tokens stay; the two long items share 105 tokens, capped at 52.
  assert plan.item_length.tolist() == [[52, 52, 10, 5]]
  assert plan.truncated_items == 2
  assert plan.truncated_tokens == 100 + 90 - 104


def test_items_longer_than_a_row_are_cut_to_the_row():
  plan = packing.plan_packing(
    np.array([[30]]),
    np.array([[True]]),
    num_rows=1,
    row_length=8,
    max_segments_per_row=2,
  )
  assert plan.item_length.tolist() == [[8]]
  assert (plan.truncated_items, plan.truncated_tokens) == (1, 22)


@pytest.mark.parametrize(
  "lengths,mask,kwargs,match",
  [
    (np.array([[0, 3]]), np.array([[True, True]]), {}, "at least one token"),
    (np.ones((1, 5), int), np.ones((1, 5), bool), {}, "hold at most 4 items"),
    (
      np.ones((3, 1), int),
      np.ones((3, 1), bool),
      {"num_shards": 2},
      "num_shards=2",
    ),
    (np.ones((1, 2), int), np.ones((1, 3), bool), {}, "must both be"),
  ],
)
def test_bad_input_raises_naming_the_problem(lengths, mask, kwargs, match):
  with pytest.raises(ValueError, match=match):
    packing.plan_packing(
      lengths, mask, num_rows=2, row_length=8, max_segments_per_row=2, **kwargs
    )


@settings(max_examples=200, deadline=None)
@given(
  st.integers(1, 6).flatmap(
    lambda b: st.tuples(
      st.just(b),
      st.lists(
        st.lists(
          st.tuples(st.integers(1, 80), st.booleans()), min_size=1, max_size=6
        ),
        min_size=b,
        max_size=b,
      ),
    )
  ),
  st.integers(8, 64),
  st.integers(1, 5),
  st.integers(1, 3),
)
def test_planner_invariants_hold_for_any_batch(
  batch, row_length, max_segs, extra_rows
):
  num_lists, lists = batch
  list_size = max(len(x) for x in lists)
  lengths = np.ones((num_lists, list_size), int)
  mask = np.zeros((num_lists, list_size), bool)
  for b, items in enumerate(lists):
    for l, (n, real) in enumerate(items):
      lengths[b, l], mask[b, l] = n, real
  num_shards = 2 if num_lists % 2 == 0 else 1
  per_shard = max(mask.reshape(num_shards, -1).sum(-1).max(), 1)
  rows_per_shard = -(-per_shard // min(row_length, max_segs)) + extra_rows - 1
  num_rows = rows_per_shard * num_shards
  plan = packing.plan_packing(
    lengths,
    mask,
    num_rows=num_rows,
    row_length=row_length,
    max_segments_per_row=max_segs,
    num_shards=num_shards,
  )
  _check_plan(
    plan,
    lengths,
    mask,
    num_rows=num_rows,
    row_length=row_length,
    max_segments_per_row=max_segs,
    num_shards=num_shards,
  )
  # Nothing is cut when each shard's items fit one per row, uncapped.
  if (
    all(mask.reshape(num_shards, -1).sum(-1) <= rows_per_shard)
    and (lengths[mask] <= row_length).all()
  ):
    assert plan.truncated_items == 0


def _unpack(features, g, l):
  """Tokens of list slot [g, l] read back from the packed rows."""
  row = features["item_row"][g, l]
  seg = features["item_segment"][g, l]
  in_item = features["encoder_segment_ids"][row] == seg
  return features["encoder_input_tokens"][row][in_item]


def _random_lists(rng, num_lists, list_size, max_tokens):
  tokens = np.zeros((num_lists, list_size, max_tokens), np.int32)
  mask = rng.random((num_lists, list_size)) < 0.8
  for b in range(num_lists):
    for l in range(list_size):
      n = rng.integers(1, max_tokens + 1)
      tokens[b, l, :n] = rng.integers(3, 1000, size=n)
  return tokens, mask


def test_pack_lists_round_trips_every_items_tokens():
  rng = np.random.default_rng(2)
  tokens, mask = _random_lists(rng, 4, 6, 20)
  targets = np.full((4, 6), 32089)
  out = packing.pack_lists(
    tokens, mask, targets, num_rows=8, row_length=48, max_segments_per_row=6
  )
  assert out["packing_truncated_items"] == 0
  for b, l in zip(*np.nonzero(mask)):
    item = tokens[b, l][tokens[b, l] != 0]
    np.testing.assert_array_equal(_unpack(out, b, l), item)
    row, seg = out["item_row"][b, l], out["item_segment"][b, l]
    in_item = out["encoder_segment_ids"][row] == seg
    assert out["encoder_positions"][row][in_item].tolist() == list(
      range(len(item))
    )
    assert out["decoder_segment_ids"][row, seg - 1] == seg
    assert out["decoder_target_tokens"][row, seg - 1] == 32089
  # Padding tokens are exactly the tokens outside every segment.
  np.testing.assert_array_equal(
    out["encoder_segment_ids"] == 0, out["encoder_input_tokens"] == 0
  )
  assert (out["encoder_positions"][out["encoder_segment_ids"] == 0] == 0).all()
  # Decoder slots without an item are padding (target 0, segment 0).
  np.testing.assert_array_equal(
    out["decoder_segment_ids"] == 0, out["decoder_target_tokens"] == 0
  )
  assert (out["decoder_input_tokens"] == 0).all()
  assert (out["decoder_positions"] == 0).all()
  assert np.count_nonzero(out["decoder_segment_ids"]) == mask.sum()


def test_pack_lists_rejects_a_real_item_with_target_zero():
  with pytest.raises(ValueError, match="target token 0"):
    packing.pack_lists(
      np.ones((1, 2, 3), np.int32),
      np.ones((1, 2), bool),
      np.array([[5, 0]]),
      num_rows=1,
      row_length=8,
      max_segments_per_row=2,
    )


def test_estimate_rows_covers_every_pack_of_the_sample_without_margin():
  rng = np.random.default_rng(3)
  sample = [rng.integers(20, 200, size=rng.integers(5, 11)) for _ in range(50)]
  rows = packing.estimate_rows(
    sample,
    lists_per_pack=4,
    row_length=256,
    max_segments_per_row=16,
    margin=0.0,
    num_trials=300,
  )
  assert rows >= -(-sum(sorted(map(sum, sample))[-4:]) // 256)
  # Packs drawn like the estimate's fit without truncation.
  for seed in range(20):
    picks = np.random.default_rng(seed).integers(50, size=4)
    lengths = np.zeros((4, 10), int)
    for b, i in enumerate(picks):
      lengths[b, : len(sample[i])] = sample[i]
    plan = packing.plan_packing(
      lengths,
      lengths > 0,
      num_rows=rows + 1,
      row_length=256,
      max_segments_per_row=16,
    )
    assert plan.truncated_items == 0


def _task_dataset(lists):
  """A task-like dataset of ragged lists [(tokens per item, label), ...]."""

  def gen():
    for items in lists:
      yield {
        "inputs": tf.ragged.constant([t for t, _ in items], dtype=tf.int32),
        "targets": tf.fill([len(items), 1], 32089),
        "label": tf.constant([y for _, y in items], tf.float32),
        "mask": tf.ones([len(items)], tf.bool),
        "query_id": "q",  # string ids pass the task, not the converter
      }

  return tf.data.Dataset.from_generator(
    gen,
    output_signature={
      "inputs": tf.RaggedTensorSpec([None, None], tf.int32),
      "targets": tf.TensorSpec([None, 1], tf.int32),
      "label": tf.TensorSpec([None], tf.float32),
      "mask": tf.TensorSpec([None], tf.bool),
      "query_id": tf.TensorSpec([], tf.string),
    },
  )


def _random_task_lists(seed, num_lists):
  rng = np.random.default_rng(seed)
  return [
    [
      (
        list(rng.integers(3, 300, size=rng.integers(1, 13))),
        float(rng.integers(0, 3)),
      )
      for _ in range(rng.integers(1, 5))
    ]
    for _ in range(num_lists)
  ]


@pytest.mark.parametrize("pack", [True, False])
@pytest.mark.parametrize(
  "converter_cls",
  [
    packing.RankingPackedFeatureConverter,
    packing.RankingPackedEncoderFeatureConverter,
  ],
)
def test_converter_shapes_are_static_and_round_trip(converter_cls, pack):
  lists = _random_task_lists(4, 5)
  converter = converter_cls(
    pack=pack,
    row_length=16,
    max_segments_per_row=4,
    lists_per_pack=2,
    rows_per_pack=6,
    rows_per_list=3,
  )
  ds = converter(_task_dataset(lists), TASK_LENGTHS)
  groups, rows = (2, 6) if pack else (1, 3)
  expected = {
    k: tuple(v)
    for k, v in converter.get_model_feature_lengths(TASK_LENGTHS).items()
  }
  assert {k: tuple(s.shape) for k, s in ds.element_spec.items()} == expected
  assert expected["encoder_input_tokens"] == (rows, 16)
  assert expected["item_row"] == (groups, 4)
  has_decoder = converter_cls is packing.RankingPackedFeatureConverter
  assert ("decoder_target_tokens" in expected) == has_decoder
  for name, spec in ds.element_spec.items():
    want = {"label": tf.float32, "mask": tf.bool}.get(name, tf.int32)
    assert spec.dtype == want, name
  # T5X batches the elements; every list comes back, in order, none dropped.
  batch = next(ds.batch(10).as_numpy_iterator())
  seen = 0
  for n in range(batch["mask"].shape[0]):
    for g in range(groups):
      features = {k: v[n] for k, v in batch.items()}
      if seen < len(lists):
        items = lists[seen]
        assert features["mask"][g].tolist() == (
          [True] * len(items) + [False] * (4 - len(items))
        )
        assert features["label"][g, : len(items)].tolist() == [
          y for _, y in items
        ]
        for l, (tokens, _) in enumerate(items):
          assert _unpack(features, g, l).tolist() == tokens
      else:  # the short final pack is filled with empty lists
        assert not features["mask"][g].any()
      seen += 1
  assert seen >= len(lists)


def test_converter_overflow_keeps_every_item_and_reports_the_count():
  # Three lists of four 12-token items cannot fit 2 rows of 16 tokens.
  lists = [[(list(range(3, 15)), 1.0)] * 4] * 3
  converter = packing.RankingPackedFeatureConverter(
    row_length=16, max_segments_per_row=4, lists_per_pack=1, rows_per_pack=2
  )
  ds = converter(_task_dataset(lists), TASK_LENGTHS)
  packs = list(ds.as_numpy_iterator())
  for features in packs:
    assert features["mask"].sum() == 4
    for l in range(4):
      kept = _unpack(features, 0, l)
      assert kept.tolist() == list(range(3, 3 + len(kept))) and len(kept) >= 1
    assert features["packing_truncated_items"] == 4
    assert features["packing_truncated_tokens"] == 4 * 12 - 32
  assert converter.truncated_items == 12
  assert converter.truncated_tokens == 3 * (4 * 12 - 32)


def test_converter_estimates_rows_from_the_data_when_unset():
  lists = _random_task_lists(5, 30)
  converter = packing.RankingPackedFeatureConverter(
    row_length=16, max_segments_per_row=4, lists_per_pack=2
  )
  ds = converter(_task_dataset(lists), TASK_LENGTHS)
  rows = ds.element_spec["encoder_input_tokens"].shape[0]
  assert rows == converter.num_rows >= 2  # 2 lists x 4 items / 4 segments
  truncated = sum(
    int(f["packing_truncated_items"]) for f in ds.as_numpy_iterator()
  )
  assert truncated <= 2  # the estimate's margin covers nearly every pack


def test_converter_rejects_rows_that_cannot_hold_a_full_pack():
  converter = packing.RankingPackedFeatureConverter(
    row_length=16, max_segments_per_row=2, lists_per_pack=2, rows_per_pack=3
  )
  with pytest.raises(ValueError, match="no item can be dropped"):
    converter(_task_dataset(_random_task_lists(6, 2)), TASK_LENGTHS)


def test_converter_accepts_dense_zero_padded_inputs():
  tokens = tf.constant([[5, 6, 0], [7, 0, 0]], tf.int32)
  ds = tf.data.Dataset.from_tensors(
    {
      "inputs": tokens,
      "targets": tf.fill([2, 1], 9),
      "label": tf.constant([1.0, 0.0]),
      "mask": tf.constant([True, True]),
    }
  )
  converter = packing.RankingPackedEncoderFeatureConverter(
    pack=False, row_length=8, max_segments_per_row=4, rows_per_list=1
  )
  features = next(converter(ds, TASK_LENGTHS).as_numpy_iterator())
  assert features["encoder_input_tokens"].tolist() == [[5, 6, 7, 0, 0, 0, 0, 0]]
  assert features["encoder_segment_ids"].tolist() == [[1, 1, 2, 0, 0, 0, 0, 0]]


def test_converter_reads_evaluator_style_int_lengths():
  # seqio's evaluator measures each feature along its sequence dim only.
  lengths = {"inputs": 12, "targets": 1, "label": 4, "mask": 4}
  converter = packing.RankingPackedFeatureConverter(
    pack=False, row_length=16, max_segments_per_row=4, rows_per_list=2
  )
  ds = converter(_task_dataset(_random_task_lists(7, 3)), lengths)
  assert ds.element_spec["item_row"].shape == (1, 4)
  assert len(list(ds.as_numpy_iterator())) == 3
