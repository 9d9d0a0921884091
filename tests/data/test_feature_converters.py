"""Tests of t5rank.data.feature_converters (ranking lists -> model features)."""

import doctest

import numpy as np
import pytest
import seqio
import tensorflow as tf

from t5rank.data import feature_converters as fc

L, T = 4, 5
LENGTHS = {"inputs": (L, T), "targets": (L, 1), "label": (L,), "mask": (L,)}


def _lists(inputs, labels, **extra):
  """A dataset of task examples with ragged inputs (as the tasks produce)."""

  def gen():
    for i, (ids, label) in enumerate(zip(inputs, labels)):
      n = len(ids)
      yield {
        "inputs": tf.ragged.constant(ids, dtype=tf.int32),
        "targets": tf.fill([n, 1], 9),
        "label": tf.constant(label, tf.float32),
        "mask": tf.ones([n], tf.bool),
        "query_id": tf.constant(f"q{i}"),
        "passage_ids": tf.constant([f"p{j}" for j in range(n)]),
        **extra,
      }

  spec = {
    "inputs": tf.RaggedTensorSpec([None, None], tf.int32),
    "targets": tf.TensorSpec([None, 1], tf.int32),
    "label": tf.TensorSpec([None], tf.float32),
    "mask": tf.TensorSpec([None], tf.bool),
    "query_id": tf.TensorSpec([], tf.string),
    "passage_ids": tf.TensorSpec([None], tf.string),
  }
  return tf.data.Dataset.from_generator(gen, output_signature=spec)


INPUTS = [
  [[5, 6, 1], [7, 1]],  # 2 items: list padded to 4
  [[2, 3, 4, 5, 6, 7, 1], [8, 1], [9, 1], [10, 1], [11, 1], [12, 1]],  # 6
]
LABELS = [[1.0, 0.0], [0.0, 2.0, 0.0, 1.0, 0.0, 0.0]]


def test_doctests_pass():
  result = doctest.testmod(fc, optionflags=doctest.NORMALIZE_WHITESPACE)
  assert result.failed == 0 and result.attempted > 0


def test_encdec_converter_pads_lists_and_tokens_and_masks_padding_items():
  ds = fc.RankingEncDecFeatureConverter()(_lists(INPUTS, LABELS), LENGTHS)
  first, second = list(ds.as_numpy_iterator())
  np.testing.assert_array_equal(
    first["encoder_input_tokens"],
    [[5, 6, 1, 0, 0], [7, 1, 0, 0, 0], [0] * 5, [0] * 5],
  )
  assert first["mask"].tolist() == [True, True, False, False]
  assert first["label"].tolist() == [1.0, 0.0, 0.0, 0.0]
  assert first["decoder_target_tokens"].tolist() == [[9], [9], [0], [0]]
  assert first["decoder_input_tokens"].tolist() == [[0]] * 4
  # Truncation: list cut to L items, each item to T tokens.
  np.testing.assert_array_equal(
    second["encoder_input_tokens"],
    [[2, 3, 4, 5, 6], [8, 1, 0, 0, 0], [9, 1, 0, 0, 0], [10, 1, 0, 0, 0]],
  )
  assert second["label"].tolist() == [0.0, 2.0, 0.0, 1.0]
  assert second["mask"].tolist() == [True] * 4


def test_encdec_converter_output_has_exact_static_shapes_and_dtypes():
  ds = fc.RankingEncDecFeatureConverter()(_lists(INPUTS, LABELS), LENGTHS)
  spec = {k: (v.shape.as_list(), v.dtype) for k, v in ds.element_spec.items()}
  assert spec == {
    "encoder_input_tokens": ([L, T], tf.int32),
    "decoder_input_tokens": ([L, 1], tf.int32),
    "decoder_target_tokens": ([L, 1], tf.int32),
    "label": ([L], tf.float32),
    "mask": ([L], tf.bool),
  }
  batched = ds.batch(2, drop_remainder=True)
  batch = next(iter(batched))
  assert batch["encoder_input_tokens"].shape == (2, L, T)
  assert batch["decoder_target_tokens"].shape == (2, L, 1)
  assert batch["mask"].shape == (2, L)


def test_encoder_converter_emits_only_encoder_features():
  ds = fc.RankingEncoderFeatureConverter()(_lists(INPUTS, LABELS), LENGTHS)
  assert sorted(ds.element_spec) == ["encoder_input_tokens", "label", "mask"]
  first = next(ds.as_numpy_iterator())
  assert first["encoder_input_tokens"].shape == (L, T)
  assert first["mask"].tolist() == [True, True, False, False]


def test_converters_run_inside_seqio_get_dataset_with_batching():
  vocab = seqio.ByteVocabulary()
  passthrough = seqio.PassThroughVocabulary(size=0)
  name = "t5rank_test_converter_task"
  if name in seqio.TaskRegistry.names():
    seqio.TaskRegistry.remove(name)
  seqio.TaskRegistry.add(
    name,
    source=seqio.FunctionDataSource(
      lambda split, shuffle_files: _lists(INPUTS, LABELS), ["train"]
    ),
    preprocessors=[],
    output_features={
      "inputs": seqio.Feature(vocab, rank=2),
      "targets": seqio.Feature(vocab, add_eos=False, rank=2),
      "label": seqio.Feature(passthrough, add_eos=False, dtype=tf.float32),
      "mask": seqio.Feature(passthrough, add_eos=False, dtype=tf.bool),
    },
  )
  try:
    for converter in (
      fc.RankingEncDecFeatureConverter,
      fc.RankingEncoderFeatureConverter,
    ):
      # T5X builds the converter this way from its DatasetConfig.
      ds = seqio.get_dataset(
        name,
        task_feature_lengths=LENGTHS,
        dataset_split="train",
        shuffle=False,
        feature_converter=converter(pack=False, use_custom_packing_ops=False),
        batch_size=2,
      )
      batch = next(iter(ds))
      assert batch["encoder_input_tokens"].shape == (2, L, T)
      assert batch["label"].shape == (2, L)
  finally:
    seqio.TaskRegistry.remove(name)


@pytest.mark.parametrize(
  "cls", [fc.RankingEncDecFeatureConverter, fc.RankingEncoderFeatureConverter]
)
def test_pack_true_is_rejected_with_the_gin_setting_named(cls):
  with pytest.raises(ValueError, match="DatasetConfig.pack = False"):
    cls(pack=True)


def test_lengths_that_disagree_on_the_list_size_are_rejected():
  lengths = dict(LENGTHS, label=(L + 1,))
  with pytest.raises(ValueError, match="disagree on the list size"):
    fc.RankingEncDecFeatureConverter().get_model_feature_lengths(lengths)


def test_inputs_length_must_be_list_size_and_tokens():
  with pytest.raises(ValueError, match=r"task_feature_lengths\['inputs'\]"):
    fc.RankingEncDecFeatureConverter().get_model_feature_lengths(
      {"inputs": (L, T, 2), "targets": (L, 1), "label": (L,), "mask": (L,)}
    )


def test_model_feature_lengths_follow_task_feature_lengths():
  assert fc.RankingEncDecFeatureConverter().get_model_feature_lengths(
    LENGTHS
  ) == {
    "encoder_input_tokens": (L, T),
    "decoder_input_tokens": (L, 1),
    "decoder_target_tokens": (L, 1),
    "label": (L,),
    "mask": (L,),
  }


def test_lengths_measured_by_seqio_evaluator_are_understood():
  # With infer_eval task_feature_lengths=None seqio measures each feature along
  # its sequence dim: the longest item for inputs, the longest list for label.
  measured = {"inputs": 7, "targets": 1, "label": 6, "mask": 6}
  ds = fc.RankingEncDecFeatureConverter()(_lists(INPUTS, LABELS), measured)
  second = list(ds.as_numpy_iterator())[1]
  assert second["encoder_input_tokens"].shape == (6, 7)
  assert second["encoder_input_tokens"][0].tolist() == INPUTS[1][0]
  assert second["mask"].tolist() == [True] * 6
