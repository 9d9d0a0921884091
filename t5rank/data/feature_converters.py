"""Feature converters from ranking task features to T5X model features.

A ranking task yields one list per example (see `t5rank.data.preprocessors`):
``inputs`` int32 ``[n, None]`` (ragged), ``targets`` int32 ``[n, 1]``,
``label`` float32 ``[n]``, ``mask`` bool ``[n]``, plus string ids. The
converters cut or pad both the list dimension (to ``L``) and the token
dimension (to ``T``) and rename the features for the model:

==========================  =============  =======  ==========================
model feature               shape          dtype    from
==========================  =============  =======  ==========================
``encoder_input_tokens``    ``[L, T]``     int32    ``inputs`` (0 = padding)
``decoder_input_tokens``    ``[L, 1]``     int32    zeros (BOS of T5)
``decoder_target_tokens``   ``[L, 1]``     int32    ``targets`` (score token)
``label``                   ``[L]``        float32  ``label`` (padding: 0)
``mask``                    ``[L]``        bool     ``mask`` (padding: False)
==========================  =============  =======  ==========================

The encoder-only converter emits only ``encoder_input_tokens``, ``label`` and
``mask``. T5X batches the elements to ``[B, L, ...]``. The string ids are
dropped here; seqio's evaluator keeps them in its cached task dataset for the
metric functions (`t5rank.data.metric_fns`).

``task_feature_lengths`` (T5X's ``TASK_FEATURE_LENGTHS``) are tuples::

  {"inputs": (L, T), "targets": (L, 1), "label": (L,), "mask": (L,)}

and `get_model_feature_lengths` maps them the same way (tuples of the model
features' shapes), as Rax's T5X example does. The converters never pack: a
packed layout lives in `t5rank.data.packing`. seqio's own length check only
understands one sequence dimension per feature, so it is replaced by a check
of the tuples here; the output shapes are exact and static by construction.

Gin configures the classes through dynamic registration (``from __gin__ import
dynamic_registration``, as T5X's configs do), so this module does not import
gin.

>>> import tensorflow as tf
>>> ds = tf.data.Dataset.from_tensors({
...     "inputs": tf.ragged.constant([[5, 6, 1], [7, 1]]),
...     "targets": [[9], [9]], "label": [1., 0.], "mask": [True, True],
...     "query_id": "q"})
>>> lengths = {"inputs": (3, 2), "targets": (3, 1), "label": (3,), "mask": (3,)}
>>> ex = next(iter(RankingEncDecFeatureConverter()(ds, lengths)))
>>> ex["encoder_input_tokens"].numpy().tolist()
[[5, 6], [7, 1], [0, 0]]
>>> ex["mask"].numpy().tolist(), ex["decoder_target_tokens"].numpy().tolist()
([True, True, False], [[9], [9], [0]])
"""

from collections.abc import Mapping
from collections.abc import Sequence

import seqio
import tensorflow as tf

_Spec = seqio.FeatureConverter.FeatureSpec
LengthsType = Mapping[str, int | Sequence[int]]

_LIST_TASK_FEATURES = {
  "inputs": _Spec(dtype=tf.int32, rank=2, sequence_dim=1),
  "targets": _Spec(dtype=tf.int32, rank=2, sequence_dim=1),
  "label": _Spec(dtype=tf.float32),
  "mask": _Spec(dtype=tf.bool),
}


def list_and_token_lengths(
  task_feature_lengths: LengthsType,
) -> tuple[int, int, int]:
  """Returns ``(L, T, target length)`` from ranking ``task_feature_lengths``.

  Checks that every feature names the same list size ``L``. Plain ints for
  ``inputs``/``targets`` (what seqio's evaluator measures when T5X's
  ``infer_eval`` lengths are None) are token lengths, with ``L`` from
  ``label``/``mask``.

  >>> list_and_token_lengths({"inputs": (10, 128), "targets": (10, 1),
  ...                         "label": (10,), "mask": 10})
  (10, 128, 1)
  >>> list_and_token_lengths({"inputs": 77, "targets": 1, "label": 30,
  ...                         "mask": 30})
  (30, 77, 1)
  """

  def as_tuple(name, rank):
    if name not in task_feature_lengths:
      raise ValueError(
        f"task_feature_lengths has no {name!r}: {dict(task_feature_lengths)}"
      )
    value = task_feature_lengths[name]
    value = (value,) if isinstance(value, int) else tuple(value)
    if len(value) != rank or not all(
      isinstance(v, int) and v > 0 for v in value
    ):
      shape = "(list_size, tokens)" if rank == 2 else "(list_size,)"
      raise ValueError(
        f"task_feature_lengths[{name!r}]={value!r}: expected "
        f"{shape} of positive ints"
      )
    return value

  sizes = {}
  for name in ("label", "mask"):
    if name in task_feature_lengths:
      sizes[name] = as_tuple(name, 1)[0]
  lengths = {}
  for name in ("inputs", "targets"):
    if isinstance(task_feature_lengths.get(name), int) and sizes:
      # seqio's evaluator measures each feature along its sequence dim only.
      lengths[name] = task_feature_lengths[name]
    elif name in task_feature_lengths or name == "inputs":
      sizes[name], lengths[name] = as_tuple(name, 2)
  if len(set(sizes.values())) != 1:
    raise ValueError(f"task_feature_lengths disagree on the list size: {sizes}")
  return next(iter(sizes.values())), lengths["inputs"], lengths.get("targets")


def _ragged_to_dense(features: Mapping[str, tf.Tensor]) -> dict:
  """Ragged features -> dense, padded with 0 (seqio's padding id)."""
  return {
    k: v.to_tensor(0) if isinstance(v, tf.RaggedTensor) else v
    for k, v in features.items()
  }


def _trim_and_pad_lists(
  ds: tf.data.Dataset, feature_shapes: Mapping[str, Sequence[int]]
) -> tf.data.Dataset:
  """Cuts/pads each named feature to its shape (list and token dims at once).

  Pads with 0 / 0.0 / False, so padding items are masked. Other features pass
  through. Shared by the ranking converters (and usable by packed ones).
  """
  ds = ds.map(_ragged_to_dense, num_parallel_calls=tf.data.AUTOTUNE)
  return seqio.utils.trim_and_pad_dataset(
    ds, {k: tuple(v) for k, v in feature_shapes.items()}
  )


def _with_fused_maps(ds: tf.data.Dataset) -> tf.data.Dataset:
  """Lets tf.data fuse the pipeline's consecutive per-example maps.

  A ranking example passes some ten small maps (seqio preprocessors, then this
  converter); fused, they cost about half the CPU per list. Options set on the
  converted dataset apply to the whole input pipeline behind it.
  """
  options = tf.data.Options()
  options.experimental_optimization.map_fusion = True
  return ds.with_options(options)


class _PaddedListsConverter(seqio.FeatureConverter):
  """What the padding ranking converters share: task features, constructor."""

  TASK_FEATURES = _LIST_TASK_FEATURES
  PACKING_FEATURE_DTYPES = None

  def __init__(
    self,
    pack: bool = False,
    use_custom_packing_ops: bool = False,
    apply_length_check: bool = False,
    bos_id: int = 0,
  ):
    """Initialises the converter; T5X passes ``pack`` from its DatasetConfig.

    Args:
      pack: must be False (this converter pads; see `t5rank.data.packing`).
      use_custom_packing_ops: unused; accepted because T5X passes it.
      apply_length_check: accepted for gin configs written for Rax's example;
        the lengths are checked by `list_and_token_lengths` either way.
      bos_id: the decoder's start id; the decoder input is filled with it.
    """
    if pack:
      raise ValueError(
        f"{type(self).__name__} pads lists and does not pack (pack=True). "
        "Set `utils.DatasetConfig.pack = False` for train and train_eval in "
        "gin, or use t5rank.data.packing.RankingPackedFeatureConverter."
      )
    del apply_length_check  # seqio's check does not handle (L, T) lengths.
    super().__init__(
      pack=False,
      use_custom_packing_ops=use_custom_packing_ops,
      apply_length_check=False,
      bos_id=bos_id,
    )


class RankingEncDecFeatureConverter(_PaddedListsConverter):
  """Pads ranking lists for an encoder-decoder model with one decoder step.

  Model features: ``encoder_input_tokens`` ``[L, T]``,
  ``decoder_input_tokens`` ``[L, 1]`` (zeros), ``decoder_target_tokens``
  ``[L, 1]``, ``label`` ``[L]``, ``mask`` ``[L]`` (padding items False).
  """

  MODEL_FEATURES = {
    "encoder_input_tokens": _Spec(dtype=tf.int32, rank=2, sequence_dim=1),
    "decoder_input_tokens": _Spec(dtype=tf.int32, rank=2, sequence_dim=1),
    "decoder_target_tokens": _Spec(dtype=tf.int32, rank=2, sequence_dim=1),
    "label": _Spec(dtype=tf.float32),
    "mask": _Spec(dtype=tf.bool),
  }

  def _convert_features(
    self, ds: tf.data.Dataset, task_feature_lengths: LengthsType
  ) -> tf.data.Dataset:
    """Pads/cuts to ``(L, T)`` and renames to the model's features."""
    shapes = self.get_model_feature_lengths(task_feature_lengths)
    bos_id = self.bos_id

    def rename(features):
      return {
        "encoder_input_tokens": features["inputs"],
        "decoder_input_tokens": tf.fill(
          tf.shape(features["targets"]), tf.constant(bos_id, tf.int32)
        ),
        "decoder_target_tokens": features["targets"],
        "label": features["label"],
        "mask": features["mask"],
      }

    ds = ds.map(rename, num_parallel_calls=tf.data.AUTOTUNE)
    return _with_fused_maps(_trim_and_pad_lists(ds, shapes))

  def get_model_feature_lengths(
    self, task_feature_lengths: LengthsType
  ) -> dict[str, tuple[int, ...]]:
    """Model feature shapes (tuples) from task feature lengths.

    >>> RankingEncDecFeatureConverter().get_model_feature_lengths(
    ...     {"inputs": (4, 16), "targets": (4, 1), "label": (4,), "mask": (4,)})
    ... # doctest: +NORMALIZE_WHITESPACE
    {'encoder_input_tokens': (4, 16), 'decoder_input_tokens': (4, 1),
     'decoder_target_tokens': (4, 1), 'label': (4,), 'mask': (4,)}
    """
    list_size, tokens, target_length = list_and_token_lengths(
      task_feature_lengths
    )
    if target_length is None:
      raise ValueError("task_feature_lengths needs 'targets': (list_size, 1)")
    return {
      "encoder_input_tokens": (list_size, tokens),
      "decoder_input_tokens": (list_size, target_length),
      "decoder_target_tokens": (list_size, target_length),
      "label": (list_size,),
      "mask": (list_size,),
    }


class RankingEncoderFeatureConverter(_PaddedListsConverter):
  """Pads ranking lists for an encoder-only model (no decoder features).

  Model features: ``encoder_input_tokens`` ``[L, T]``, ``label`` ``[L]``,
  ``mask`` ``[L]``. Its task features include ``targets`` (dropped) so that the
  same ``TASK_FEATURE_LENGTHS`` and tasks serve both model kinds.
  """

  MODEL_FEATURES = {
    "encoder_input_tokens": _Spec(dtype=tf.int32, rank=2, sequence_dim=1),
    "label": _Spec(dtype=tf.float32),
    "mask": _Spec(dtype=tf.bool),
  }

  def _convert_features(
    self, ds: tf.data.Dataset, task_feature_lengths: LengthsType
  ) -> tf.data.Dataset:
    """Pads/cuts to ``(L, T)`` and keeps the encoder's features."""
    shapes = self.get_model_feature_lengths(task_feature_lengths)

    def rename(features):
      return {
        "encoder_input_tokens": features["inputs"],
        "label": features["label"],
        "mask": features["mask"],
      }

    ds = ds.map(rename, num_parallel_calls=tf.data.AUTOTUNE)
    return _with_fused_maps(_trim_and_pad_lists(ds, shapes))

  def get_model_feature_lengths(
    self, task_feature_lengths: LengthsType
  ) -> dict[str, tuple[int, ...]]:
    """Model feature shapes (tuples) from task feature lengths.

    >>> RankingEncoderFeatureConverter().get_model_feature_lengths(
    ...     {"inputs": (4, 16), "targets": (4, 1), "label": (4,), "mask": (4,)})
    {'encoder_input_tokens': (4, 16), 'label': (4,), 'mask': (4,)}
    """
    list_size, tokens, _ = list_and_token_lengths(task_feature_lengths)
    return {
      "encoder_input_tokens": (list_size, tokens),
      "label": (list_size,),
      "mask": (list_size,),
    }
