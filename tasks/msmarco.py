"""seqio tasks for MS-MARCO passage ranking, MS-MARCO QnA v2.1 and the demo.

Registered on import of `t5rank.tasks`:

``msmarco_passage_ranking``
  MS-MARCO passage-ranking files (``collection.tsv``, ``queries.*.tsv``,
  qrels, candidate runs; names in `t5rank.data.msmarco.MSMARCO_FILES`) in the
  directory ``$T5RANK_MSMARCO_DIR``, read when a dataset is built. Split
  "train": positives + hard negatives from the run; "validation": the dev
  run's top candidates, labelled from the dev qrels. T5's SentencePiece
  vocabulary (``$T5RANK_SPM_PATH`` or T5's public file).
``msmarco_qna21_ranking``
  TFDS ``huggingface:ms_marco/v2.1`` (splits train and validation): each
  record's passages form a list, labels from ``is_selected``; items shuffled
  per query (seeded), as Rax's T5X example does.
``t5rank_demo``
  The demo corpus shipped with t5rank (`t5rank.data.demo.demo_dir()`),
  ``seqio.ByteVocabulary()``, splits train and validation.

List sizes and the seed: ``list_size`` (items per training list),
``eval_list_size`` (candidates per validation list) and ``seed`` are arguments
of the ``register_*`` functions, set from gin (the run files bind them to
``LIST_SIZE`` / ``EVAL_LIST_SIZE``); the tasks registered on import use 10
items (8 for the demo, as ``gin/demo``), validation lists of the same size and
seed 0. The environment gives only the defaults of the data directory
(``$T5RANK_MSMARCO_DIR``) and the vocabulary (``$T5RANK_SPM_PATH``). Keep
``list_size`` equal to the ``L`` of ``TASK_FEATURE_LENGTHS`` (and
``eval_list_size`` to that of ``EVAL_TASK_FEATURE_LENGTHS``): a longer list is
an error naming both numbers (`common.check_lists_fit`), never cut. To rerank a
deep candidate list (e.g. BM25's top 1000) with lists of
``L``, register with ``eval_list_size=1000, eval_chunk_size=L``: each query
then spans several validation examples, which the metric fns join again by
query id. From gin, register with the run's ``LIST_SIZE`` and use the
returned name::

  MIXTURE_OR_TASK_NAME = @t5rank.tasks.register_msmarco_passage_ranking()
  t5rank.tasks.register_msmarco_passage_ranking:
    data_dir = '/data/msmarco'
    list_size = %LIST_SIZE
"""

from collections.abc import Callable
from collections.abc import Sequence
import functools
import os

import seqio
from t5rank.tasks import common

from t5rank.data import preprocessors

PASSAGE_TASK = "msmarco_passage_ranking"
QNA_TASK = "msmarco_qna21_ranking"
DEMO_TASK = "t5rank_demo"
QNA_TFDS_NAME = "huggingface:ms_marco/v2.1"

DEFAULT_LIST_SIZE = 10
DEMO_LIST_SIZE = 8

# seqio split -> split of t5rank.data.msmarco's file layout.
_FILE_SPLITS = {"train": "train", "validation": "dev"}


def _chunks(lists, size: int):
  """Cuts each list into consecutive lists of at most ``size`` items."""
  for example in lists:
    n = len(example["passage_ids"])
    for start in range(0, n, size):
      yield {
        "query_id": example["query_id"],
        "query": example["query"],
        **{
          k: example[k][start : start + size]
          for k in ("passage_ids", "passages", "label")
        },
      }


def _resolve_data_dir(data_dir: str | None) -> str:
  if data_dir is None:
    data_dir = os.environ.get("T5RANK_MSMARCO_DIR")
    if not data_dir:
      raise ValueError(
        f"{PASSAGE_TASK}: no data directory; set T5RANK_MSMARCO_DIR or "
        "register the task with register_msmarco_passage_ranking(data_dir=)"
      )
  return data_dir


def _eval_qrels(
  data_dir: str | None,
  files,
  split: str = "validation",
  file_splits: dict[str, str] | None = None,
):
  """The qrels of ``split``, read when the metric fn runs (None: no qrels).

  The metric fns need them to know the judged queries, including those
  without candidates (`t5rank.data.metric_fns.evaluate`).
  """
  from t5rank.data import formats  # pylint: disable=g-import-not-at-top
  from t5rank.data import msmarco  # pylint: disable=g-import-not-at-top

  file_splits = file_splits or _FILE_SPLITS
  split_files = (files or msmarco.MSMARCO_FILES).split(
    file_splits.get(split, split)
  )
  if not split_files.qrels:
    return None
  return formats.read_qrels(
    os.path.join(_resolve_data_dir(data_dir), split_files.qrels)
  )


def _default_metric_fn(
  data_dir: str | None, files, run_path=None, file_splits=None
):
  return common.metric_fns.make_ranking_metric_fn(
    qrels=functools.partial(
      _eval_qrels, data_dir, files, file_splits=file_splits
    ),
    run_path=run_path,
  )


def _without_queries_of(lists, data_dir: str, files, split: str):
  """``lists`` minus those whose query is in ``split``'s queries file."""
  from absl import logging  # pylint: disable=g-import-not-at-top

  from t5rank.data import formats  # pylint: disable=g-import-not-at-top

  path = os.path.join(data_dir, files.split(split).queries)
  held_out = formats.read_queries(path)
  kept = dropped = 0
  for example in lists:
    if example["query_id"] in held_out:
      dropped += 1
      continue
    kept += 1
    yield example
  logging.info(
    "training lists: %d kept, %d held out (the queries of %s)",
    kept,
    dropped,
    path,
  )


def _passage_lists(
  split: str,
  *,
  data_dir: str | None,
  list_size: int | None,
  eval_list_size: int | None,
  seed: int,
  default_list_size: int,
  files=None,
  eval_chunk_size: int | None = None,
  file_splits: dict[str, str] | None = None,
  held_out_split: str | None = None,
  **lists_kwargs,
):
  """Lists of one seqio split (the data directory may come from the env).

  ``file_splits`` maps seqio splits to the files' (None: train -> train,
  validation -> dev); the training lists leave out the queries of the files'
  ``held_out_split`` when one is given.
  """
  from t5rank.data import msmarco  # pylint: disable=g-import-not-at-top

  data_dir = _resolve_data_dir(data_dir)
  if list_size is None:
    list_size = default_list_size
  if eval_list_size is None:
    eval_list_size = list_size
  if files is not None:
    lists_kwargs["files"] = files
  file_splits = file_splits or _FILE_SPLITS
  lists = msmarco.passage_ranking_lists(
    data_dir,
    file_splits.get(split, split),
    list_size=list_size if split == "train" else eval_list_size,
    seed=seed,
    **lists_kwargs,
  )
  if held_out_split and split == "train":
    return _without_queries_of(lists, data_dir, files, held_out_split)
  if eval_chunk_size and split != "train":
    return _chunks(lists, eval_chunk_size)
  return lists


def register_msmarco_passage_ranking(
  data_dir: str | None = None,
  *,
  name: str = PASSAGE_TASK,
  list_size: int | None = None,
  eval_list_size: int | None = None,
  eval_chunk_size: int | None = None,
  seed: int = 0,
  spm_path: str | None = None,
  vocabulary: seqio.Vocabulary | None = None,
  template: str = preprocessors.DEFAULT_TEMPLATE,
  score_token=None,
  splits: Sequence[str] = ("train", "validation"),
  files=None,
  metric_fn: Callable | None = None,
  **lists_kwargs,
) -> str:
  """Registers (or re-registers) an MS-MARCO passage-ranking task; returns its name.

  Args:
    data_dir: directory of MS-MARCO files; None reads ``$T5RANK_MSMARCO_DIR``
      when the data is read.
    name: task name.
    list_size: items per training list (None: 10).
    eval_list_size: candidates per validation list (None: ``list_size``).
    eval_chunk_size: when set, each validation list is cut into examples of
      at most this many consecutive candidates (e.g. the ``L`` of
      ``TASK_FEATURE_LENGTHS``), so a top-1000 rerank fits lists of 10; the
      metric fns join a query's examples again (`t5rank.data.metric_fns`).
    seed: list-building seed.
    spm_path: SentencePiece model (None: ``$T5RANK_SPM_PATH`` or T5's).
    vocabulary: overrides the SentencePiece vocabulary.
    template: item text template.
    score_token: the targets' token (None: ``<extra_id_10>``).
    splits: seqio splits; "train" and "validation" map to the files' "train"
      and "dev", other names are passed through.
    files: a `t5rank.data.msmarco.PassageRankingFiles` (None: MS-MARCO names).
    metric_fn: the seqio score metric fn (None:
      `t5rank.data.metric_fns.make_ranking_metric_fn` with the validation
      split's qrels, so the means are over its judged queries); e.g.
      ``make_ranking_metric_fn(qrels=..., run_path=...)`` also writes a TREC
      run.
    **lists_kwargs: more options of `t5rank.data.msmarco.passage_ranking_lists`
      (``negatives``, ``depth``, ``on_unknown``, ``cache_dir``,
      ``on_duplicate='keep_first'``...; in gin
      ``t5rank.tasks.register_msmarco_passage_ranking.on_duplicate``).

  Returns:
    ``name``, so gin can use the call as ``MIXTURE_OR_TASK_NAME``.
  """
  lists_fn = functools.partial(
    _passage_lists,
    data_dir=data_dir,
    list_size=list_size,
    eval_list_size=eval_list_size,
    seed=seed,
    default_list_size=DEFAULT_LIST_SIZE,
    files=files,
    eval_chunk_size=eval_chunk_size,
    **lists_kwargs,
  )
  common.register_list_task(
    name,
    lists_fn,
    vocabulary=vocabulary or common.t5_vocabulary(spm_path),
    splits=splits,
    template=template,
    score_token=score_token,
    metric_fn=metric_fn or _default_metric_fn(data_dir, files),
  )
  return name


def register_t5rank_demo(
  *,
  name: str = DEMO_TASK,
  list_size: int | None = None,
  eval_list_size: int | None = None,
  seed: int = 0,
  vocabulary: seqio.Vocabulary | None = None,
  template: str = preprocessors.DEFAULT_TEMPLATE,
  score_token=None,
  metric_fn: Callable | None = None,
  run_path: str | None = None,
  validation_split: str = "dev",
) -> str:
  """Registers the demo task (demo corpus); returns its name.

  Options as `register_msmarco_passage_ranking`; ``list_size`` defaults to
  8. The vocabulary defaults to ``seqio.ByteVocabulary()``, whose score token
  is id 258 (byte 0xFF, never in UTF-8 text),
  `preprocessors.BYTE_SCORE_TOKEN_ID`; the demo's gin files give the demo's
  own SentencePiece vocabulary, `t5rank.data.demo.vocabulary()`.
  ``run_path`` makes the default metric fn also write the validation scores
  as a TREC run there at each evaluation (the last one stays).

  ``validation_split`` is the corpus split behind seqio's "validation":
  "dev" (the default, what the demo reports) or "tune", for choosing
  settings without the dev queries. "tune" holds the training queries about
  200 held-out (place, fact) pairs, and the training split then leaves them
  out (`t5rank.data.demo`, "The tune split").
  """
  from t5rank.data import demo  # pylint: disable=g-import-not-at-top

  if validation_split not in ("dev", "tune"):
    raise ValueError(
      f"register_t5rank_demo: validation_split={validation_split!r}; "
      "expected 'dev' or 'tune'"
    )
  tuning = validation_split == "tune"
  file_splits = {"train": "train", "validation": validation_split}
  lists_fn = functools.partial(
    _passage_lists,
    data_dir=demo.demo_dir(),
    list_size=list_size,
    eval_list_size=eval_list_size,
    seed=seed,
    default_list_size=DEMO_LIST_SIZE,
    files=demo.DEMO_FILES,
    file_splits=file_splits,
    held_out_split="tune" if tuning else None,
  )
  common.register_list_task(
    name,
    lists_fn,
    vocabulary=vocabulary or seqio.ByteVocabulary(),
    template=template,
    score_token=score_token,
    metric_fn=metric_fn
    or _default_metric_fn(
      demo.demo_dir(), demo.DEMO_FILES, run_path, file_splits
    ),
    # Every demo query has judged passages and candidates: one list each.
    num_input_examples={
      "train": demo.NUM_TRAIN_QUERIES
      - (demo.NUM_TUNE_QUERIES if tuning else 0),
      "validation": demo.NUM_TUNE_QUERIES if tuning else demo.NUM_DEV_PAIRS,
    },
  )
  return name


def qna_preprocessors(
  seed: int = 0,
  template: str = preprocessors.DEFAULT_TEMPLATE,
  score_token=None,
):
  """QnA v2.1 records -> ranking features (shuffle, then the list steps)."""
  return [
    preprocessors.qna_to_list_examples,
    functools.partial(preprocessors.shuffle_lists, seed=seed),
    *common.list_preprocessors(template, score_token),
  ]


def register_msmarco_qna21_ranking(
  *,
  name: str = QNA_TASK,
  tfds_name: str = QNA_TFDS_NAME,
  tfds_data_dir: str | None = None,
  splits: Sequence[str] = ("train", "validation"),
  seed: int = 0,
  spm_path: str | None = None,
  vocabulary: seqio.Vocabulary | None = None,
  template: str = preprocessors.DEFAULT_TEMPLATE,
  score_token=None,
) -> str:
  """Registers the MS-MARCO QnA v2.1 ranking task over TFDS; returns its name.

  Each record's passages (about 10) form one list, shuffled per query with
  ``seed`` and cut to the
  ``L`` of ``TASK_FEATURE_LENGTHS``. Nothing is downloaded at registration;
  TFDS prepares ``tfds_name`` (in ``tfds_data_dir``) on first use.
  """
  common.register_task(
    name,
    source=seqio.TfdsDataSource(
      tfds_name=tfds_name, tfds_data_dir=tfds_data_dir, splits=list(splits)
    ),
    preprocessors=qna_preprocessors(seed, template, score_token),
    output_features=common.output_features(
      vocabulary or common.t5_vocabulary(spm_path)
    ),
    postprocess_fn=common.metric_fns.postprocess_targets,
    metric_fns=[common.metric_fns.ranking_metrics],
  )
  return name


def register_msmarco_qna21_jsonl(
  files,
  *,
  name: str = "msmarco_qna21_jsonl_ranking",
  list_size: int | None = None,
  seed: int = 0,
  spm_path: str | None = None,
  vocabulary: seqio.Vocabulary | None = None,
  template: str = preprocessors.DEFAULT_TEMPLATE,
  score_token=None,
) -> str:
  """Registers a QnA v2.1 ranking task over JSON-lines files; returns its name.

  Args:
    files: ``{seqio split: path}`` of QnA v2.1 JSON lines (the Hugging Face
      records; see `t5rank.data.qna`).
    name: task name.
    list_size: the most items per list (None: all of the record's
      passages); training lists keep their selected passages.
    seed: shuffling seed of training lists.
    spm_path, vocabulary, template, score_token: as
      `register_msmarco_passage_ranking`.
  """
  files = dict(files)

  def lists_fn(split):
    from t5rank.data import qna  # pylint: disable=g-import-not-at-top

    return qna.qna_lists(
      qna.read_qna_jsonl(files[split]),
      list_size=list_size,
      training=split == "train",
      seed=seed,
    )

  common.register_list_task(
    name,
    lists_fn,
    vocabulary=vocabulary or common.t5_vocabulary(spm_path),
    splits=tuple(files),
    template=template,
    score_token=score_token,
  )
  return name
