"""Shared pieces of t5rank's seqio ranking tasks: features, source, registration.

Every ranking task has the same output features (shapes per example)::

  inputs   int32   [L, None]  tokens of "Query: q Document: d", EOS at the end
  targets  int32   [L, 1]     the score token's id
  label    float32 [L]        relevance label
  mask     bool    [L]        True for real items

and keeps ``query_id`` (scalar string) and ``passage_ids`` ([L] strings) for
evaluation and run writing. ``L`` and the token budget come from T5X's
``TASK_FEATURE_LENGTHS = {"inputs": (L, T), "targets": (L, 1), "label": (L,),
"mask": (L,)}``; the list builders produce lists of ``list_size`` items, so set
``list_size`` to the same ``L`` (see `register_list_task`). A list longer than ``L``
is an error (`check_lists_fit`), never cut: cutting a shuffled training list can
drop its positive, and cutting a validation list drops candidates from the metrics.
"""

from collections.abc import Callable
from collections.abc import Iterable
from collections.abc import Iterator
from collections.abc import Mapping
from collections.abc import Sequence
import functools
import itertools
import os

import numpy as np
import seqio
import tensorflow as tf

from t5rank.data import metric_fns
from t5rank.data import preprocessors

ListsFn = Callable[..., Iterable[dict]]

# seqio.SentencePieceVocabulary loads its model on first use, so building one
# at import never touches the file system or the network.
DEFAULT_SPM_PATH = "gs://t5-data/vocabs/cc_all.32000/sentencepiece.model"
T5_EXTRA_IDS = 100

_LIST_SIGNATURE = {
  "query_id": tf.TensorSpec([], tf.string),
  "query": tf.TensorSpec([], tf.string),
  "passage_ids": tf.TensorSpec([None], tf.string),
  "passages": tf.TensorSpec([None], tf.string),
  "label": tf.TensorSpec([None], tf.float32),
}


def t5_vocabulary(spm_path: str | None = None) -> seqio.Vocabulary:
  """T5's SentencePiece vocabulary with its 100 sentinels (32100 ids).

  The model file is ``spm_path``, else ``$T5RANK_SPM_PATH``, else T5's public
  ``gs://t5-data/vocabs/cc_all.32000/sentencepiece.model``. It is the same
  vocabulary as T5X's T5.1.1 configs (``extra_ids = 100``).
  """
  path = spm_path or os.environ.get("T5RANK_SPM_PATH") or DEFAULT_SPM_PATH
  return seqio.SentencePieceVocabulary(path, extra_ids=T5_EXTRA_IDS)


def output_features(vocabulary: seqio.Vocabulary) -> dict[str, seqio.Feature]:
  """The output features of a ranking task (see the module docstring)."""
  passthrough = seqio.PassThroughVocabulary(size=0)
  return {
    "inputs": seqio.Feature(vocabulary=vocabulary, add_eos=True, rank=2),
    "targets": seqio.Feature(vocabulary=vocabulary, add_eos=False, rank=2),
    "label": seqio.Feature(
      vocabulary=passthrough,
      add_eos=False,
      required=False,
      dtype=tf.float32,
      rank=1,
    ),
    "mask": seqio.Feature(
      vocabulary=passthrough,
      add_eos=False,
      required=False,
      dtype=tf.bool,
      rank=1,
    ),
  }


def list_preprocessors(
  template: str = preprocessors.DEFAULT_TEMPLATE,
  score_token=None,
) -> list[Callable[..., tf.data.Dataset]]:
  """Preprocessors from list examples to the ranking output features."""
  return [
    preprocessors.truncate_lists,
    functools.partial(preprocessors.format_inputs, template=template),
    preprocessors.tokenize_inputs,
    functools.partial(preprocessors.add_score_targets, score_token=score_token),
    preprocessors.add_item_mask,
  ]


def check_lists_fit(
  dataset: tf.data.Dataset,
  sequence_length: Mapping[str, preprocessors.LengthType] | None = None,
) -> tf.data.Dataset:
  """Fails on a list with more items than the ``L`` of the task feature lengths.

  seqio hands the preprocessors T5X's ``TASK_FEATURE_LENGTHS`` (training) or
  ``EVAL_TASK_FEATURE_LENGTHS`` (inference evaluation) as ``sequence_length``;
  the lists come from the task's ``list_size`` / ``eval_list_size``. When the
  two disagree the later truncation would cut items silently, so iterating the
  dataset raises `tf.errors.InvalidArgumentError` naming both numbers, the
  query and the gin macros to change.
  """
  # pylint: disable-next=protected-access
  list_size, _ = preprocessors._list_and_token_lengths(sequence_length)
  if list_size is None:
    return dataset
  message = (
    f"a list has more items than L={list_size}, the list size of the task "
    "feature lengths; cutting it would drop items (a training list may lose "
    "its positive). Make them agree: LIST_SIZE (the task's list_size) and the "
    "L of TASK_FEATURE_LENGTHS for training, EVAL_LIST_SIZE (eval_list_size, "
    "or eval_chunk_size=L) and the L of EVAL_TASK_FEATURE_LENGTHS for "
    "evaluation. The list's query_id and number of items:"
  )

  @seqio.map_over_dataset
  def check(features):
    items = tf.size(features["label"])
    fits = tf.debugging.Assert(
      items <= list_size, [message, features["query_id"], items]
    )
    with tf.control_dependencies([fits]):
      return {k: tf.identity(v) for k, v in features.items()}

  return check(dataset)


def _check_list(example: Mapping, where: str) -> dict:
  """Validates one list example from Python; names the query on errors."""
  missing = [k for k in _LIST_SIGNATURE if k not in example]
  if missing:
    raise ValueError(f"{where}: list example without {missing}")
  qid = example["query_id"]
  n = len(example["passages"])
  if n == 0:
    raise ValueError(f"{where}: query_id={qid} has an empty list")
  if len(example["passage_ids"]) != n or len(example["label"]) != n:
    raise ValueError(
      f"{where}: query_id={qid} has {n} passages, "
      f"{len(example['passage_ids'])} passage_ids and "
      f"{len(example['label'])} labels"
    )
  return {k: example[k] for k in _LIST_SIGNATURE}


_CHUNK = 64
_RAGGED = ("passage_ids", "passages", "label")
_CHUNK_SIGNATURE = {
  "query_id": tf.TensorSpec([None], tf.string),
  "query": tf.TensorSpec([None], tf.string),
  "passage_ids": tf.TensorSpec([None], tf.string),
  "passages": tf.TensorSpec([None], tf.string),
  "label": tf.TensorSpec([None], tf.float32),
  "row_lengths": tf.TensorSpec([None], tf.int64),
}


def _stack(chunk: Sequence[dict]) -> dict:
  """Lists -> one chunk: scalars stacked, list features concatenated."""
  out = {
    k: np.array([ex[k] for ex in chunk], dtype=object)
    for k in ("query_id", "query")
  }
  for k in _RAGGED:
    out[k] = np.concatenate(
      [
        np.asarray(ex[k], dtype=np.float32 if k == "label" else object)
        for ex in chunk
      ]
    )
  out["row_lengths"] = np.array([len(ex["label"]) for ex in chunk], np.int64)
  return out


def _unstack(chunk: dict) -> dict:
  lengths = chunk["row_lengths"]
  out = {k: chunk[k] for k in ("query_id", "query")}
  for k in _RAGGED:
    out[k] = tf.RaggedTensor.from_row_lengths(chunk[k], lengths)
  return out


class ListExamplesSource(seqio.FunctionDataSource):
  """A seqio source over a Python iterator of list examples.

  ``lists_fn(split)`` returns the split's list examples (dicts with
  ``query_id, query, passage_ids, passages, label``); they reach TF through
  ``tf.data.Dataset.from_generator``. The source shards itself: with
  ``shard_info`` (T5X passes one per data-parallel host) shard ``i`` of ``k``
  keeps lists ``i, i + k, i + 2k, ...``, so hosts never see the same list and
  no host tokenises lists it would drop. Lists cross from Python to TF in
  chunks of 64 (one ``from_generator`` element per chunk), which is several
  times faster than one list at a time.

  Shuffling of examples is left to seqio (``Task.get_dataset(shuffle=True)``);
  the lists themselves are built deterministically from the builder's seed.
  """

  def __init__(
    self,
    lists_fn: Callable[[str], Iterable[dict]],
    splits: Sequence[str],
    num_input_examples: Mapping[str, int] | None = None,
  ):
    self._lists_fn = lists_fn
    super().__init__(
      dataset_fn=self._dataset_fn,
      splits=splits,
      num_input_examples=num_input_examples,
    )

  @property
  def supports_arbitrary_sharding(self) -> bool:
    return True

  def _dataset_fn(
    self, split: str, shuffle_files: bool, seed: int | None = None
  ) -> tf.data.Dataset:
    del shuffle_files, seed
    return self._make_dataset(split, None)

  def get_dataset(
    self,
    split: str = "train",
    shuffle: bool = True,
    seed: int | None = None,
    shard_info: seqio.ShardInfo | None = None,
    *,
    sequence_length=None,
    use_cached: bool = False,
    num_epochs: int | None = 1,
  ) -> tf.data.Dataset:
    del shuffle, seed, sequence_length, use_cached, num_epochs
    if split not in self.splits:
      raise ValueError(f"split={split!r}; this source has {list(self.splits)}")
    return self._make_dataset(split, shard_info)

  def _make_dataset(
    self, split: str, shard_info: seqio.ShardInfo | None
  ) -> tf.data.Dataset:
    lists_fn = self._lists_fn
    # The files are read and the first list built now, in Python, so that a
    # split with no list stops here with its files and counts, not later as an
    # end of input deep inside the trainer. The first pass continues from it.
    pending = [_started(lists_fn(split), split)]

    def generate() -> Iterator[dict]:
      lists: Iterable[dict] = pending.pop() if pending else lists_fn(split)
      if shard_info is not None and shard_info.num_shards > 1:
        lists = itertools.islice(
          lists, shard_info.index, None, shard_info.num_shards
        )
      chunk = []
      for i, example in enumerate(lists):
        chunk.append(_check_list(example, f"split={split!r} list {i}"))
        if len(chunk) == _CHUNK:
          yield _stack(chunk)
          chunk = []
      if chunk:
        yield _stack(chunk)

    # Crossing from Python to TF costs about as much per element as the whole
    # TF pipeline after it, so lists cross in chunks and are split again here.
    ds = tf.data.Dataset.from_generator(
      generate, output_signature=_CHUNK_SIGNATURE
    )
    ds = ds.map(_unstack, num_parallel_calls=tf.data.AUTOTUNE).unbatch()
    # unbatch() leaves ragged specs of ragged_rank 0; make them plain tensors.
    return ds.map(dict, num_parallel_calls=tf.data.AUTOTUNE)


def _started(lists: Iterable[dict], split: str) -> Iterator[dict]:
  """``lists`` with its first list already built; a clear error when it has none.

  A `t5rank.data.lists.ListIterator` of training lists raises its own
  `NoTrainingListsError` (files and counts); any other empty split raises
  `ValueError` with the counts the iterator kept.
  """
  iterator = iter(lists)
  try:
    first = next(iterator)
  except StopIteration:
    report = getattr(lists, "report", None)
    files = "; ".join(r.summary() for r in getattr(lists, "read_reports", ()))
    raise ValueError(
      f"split={split!r} has no list examples"
      + (f" ({report.summary()})" if report is not None else "")
      + (f"; files: {files}" if files else "")
    ) from None
  return itertools.chain([first], iterator)


def register_task(name: str, **kwargs) -> seqio.Task:
  """`seqio.TaskRegistry.add`, replacing a task of the same name (idempotent)."""
  if name in seqio.TaskRegistry.names():
    seqio.TaskRegistry.remove(name)
  return seqio.TaskRegistry.add(name, **kwargs)


def register_list_task(
  name: str,
  lists_fn: Callable[[str], Iterable[dict]],
  *,
  vocabulary: seqio.Vocabulary,
  splits: Sequence[str] = ("train", "validation"),
  template: str = preprocessors.DEFAULT_TEMPLATE,
  score_token=None,
  metric_fn: Callable = metric_fns.ranking_metrics,
  num_input_examples: Mapping[str, int] | None = None,
) -> seqio.Task:
  """Registers a ranking task over Python list examples (files on disk).

  Args:
    name: the task's name in seqio's registry (an older task of that name is
      replaced, so re-registering is harmless).
    lists_fn: ``lists_fn(split)`` -> iterable of list examples.
    vocabulary: tokenises ``inputs`` and gives the score token's id.
    splits: seqio split names.
    template: item text, with ``{query}`` and ``{passage}``.
    score_token: the targets' token (see `preprocessors.score_token_id`).
    metric_fn: seqio score metric fn over the whole split.
    num_input_examples: lists per split, when known.

  Returns:
    The registered `seqio.Task`.
  """
  return register_task(
    name,
    source=ListExamplesSource(
      lists_fn, splits, num_input_examples=num_input_examples
    ),
    preprocessors=[check_lists_fit, *list_preprocessors(template, score_token)],
    output_features=output_features(vocabulary),
    postprocess_fn=metric_fns.postprocess_targets,
    metric_fns=[metric_fn],
  )
