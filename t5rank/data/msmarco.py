"""MS-MARCO passage ranking: a directory of files -> list examples.

`PassageRankingFiles` names the files of a data directory, split by split; its
defaults are the official MS-MARCO names (``collection.tsv``, ``queries.train.tsv``,
``qrels.train.tsv``, ``queries.dev.small.tsv``, ``qrels.dev.small.tsv``) plus a
candidate run per split (``run.train.tsv``, ``run.dev.small.tsv``: e.g. BM25 from
Anserini/Pyserini; TREC 6-column, MS-MARCO 3-column and ``top1000.*`` 4-column files are
all read). `passage_ranking_lists` reads them with validation and yields the list
examples of `t5rank.data.lists.build_lists`:

* split "train" (``training=None`` means ``split == "train"``): positives from the
  qrels plus hard negatives sampled from the run's top ``depth`` (or random ones),
  items shuffled, queries without a positive dropped (counted in the report).
* other splits: the run's top ``list_size`` candidates in run order, labelled from
  the qrels; every query of the queries file with a candidate is kept.

Training input that cannot teach stops before any list is built, with
`t5rank.data.lists.NoTrainingListsError` naming the file and its counts: an empty
collection, qrels without a relevant passage of the collection, or a run without a
candidate for the split's queries (lists of positives only). What only shows while
building (e.g. a run whose candidates are all relevant) stops at the end of the pass.

The collection is read into memory when it is small (< 64 MB, like the demo corpus)
and through an on-disk `t5rank.data.collection.PassageIndex` otherwise. Every file
may be gzip-compressed (``collection.tsv`` may hold gzip data; see
`t5rank.data.formats`).

>>> from t5rank.data import demo
>>> lists = passage_ranking_lists(demo.demo_dir(), "dev", list_size=4,
...                               files=demo.DEMO_FILES)
>>> example = next(lists)
>>> sorted(example), len(example["passages"])
(['label', 'passage_ids', 'passages', 'query', 'query_id'], 4)
"""

from __future__ import annotations

import dataclasses
import logging
import os
from typing import Any

from t5rank.data import collection as collection_lib
from t5rank.data import formats
from t5rank.data import lists as lists_lib

logger = logging.getLogger(__name__)

_IN_MEMORY_BYTES = 64 << 20


@dataclasses.dataclass(frozen=True)
class SplitFiles:
  """File names (relative to the data directory) of one split.

  Attributes:
    queries: ``qid \\t query`` file.
    qrels: TREC qrels; None when the split has no judgements (labels are then 0).
    run: candidate run; None when lists use random negatives only.
  """

  queries: str
  qrels: str | None
  run: str | None


@dataclasses.dataclass(frozen=True)
class PassageRankingFiles:
  """File names of an MS-MARCO-style passage ranking directory."""

  collection: str = "collection.tsv"
  splits: tuple[tuple[str, SplitFiles], ...] = (
    (
      "train",
      SplitFiles("queries.train.tsv", "qrels.train.tsv", "run.train.tsv"),
    ),
    (
      "dev",
      SplitFiles(
        "queries.dev.small.tsv", "qrels.dev.small.tsv", "run.dev.small.tsv"
      ),
    ),
  )

  def split(self, name: str) -> SplitFiles:
    """The files of split ``name``; `KeyError` names the known splits."""
    for split_name, files in self.splits:
      if split_name == name:
        return files
    raise KeyError(
      f"split={name!r}; this directory layout has splits "
      f"{[n for n, _ in self.splits]}"
    )

  def replace_split(self, name: str, files: SplitFiles) -> PassageRankingFiles:
    """A copy with split ``name`` set to ``files`` (added when new)."""
    splits = tuple((n, f) for n, f in self.splits if n != name) + (
      (name, files),
    )
    return dataclasses.replace(self, splits=splits)


MSMARCO_FILES = PassageRankingFiles()


def open_collection(
  path: str | os.PathLike[str],
  *,
  in_memory: bool | None = None,
  cache_dir: str | None = None,
  encoding_errors: formats.EncodingErrors = "strict",
  on_duplicate: formats.OnDuplicate = "error",
) -> Any:
  """A ``{pid: passage}`` dict (small files or ``in_memory=True``) or a `PassageIndex`."""
  if in_memory is None:
    # gzip shrinks MS-MARCO's text about 3x; judge by the uncompressed size.
    size = os.path.getsize(path) * (4 if formats.is_gzip(path) else 1)
    in_memory = size < _IN_MEMORY_BYTES
  if in_memory:
    return formats.read_collection(
      path, encoding_errors=encoding_errors, on_duplicate=on_duplicate
    )
  return collection_lib.PassageIndex(
    path,
    cache_dir=cache_dir,
    encoding_errors=encoding_errors,
    on_duplicate=on_duplicate,
  )


def passage_ranking_lists(
  data_dir: str | os.PathLike[str],
  split: str,
  *,
  list_size: int,
  seed: int = 0,
  files: PassageRankingFiles = MSMARCO_FILES,
  training: bool | None = None,
  negatives: lists_lib.Negatives | None = None,
  depth: int | None = None,
  max_positives: int | None = None,
  keep_queries_without_positive: bool | None = None,
  shuffle: bool | None = None,
  on_unknown: formats.OnUnknown = "skip",
  encoding_errors: formats.EncodingErrors = "strict",
  in_memory: bool | None = None,
  cache_dir: str | None = None,
  on_duplicate: formats.OnDuplicate = "error",
  passages: Any = None,
) -> lists_lib.ListIterator:
  """Yields the list examples of one split of an MS-MARCO-style directory.

  Args:
    data_dir: the directory holding ``files``.
    split: a split of ``files`` ("train", "dev", ...).
    list_size: the most items per list.
    seed: seed of negative sampling and shuffling (same seed, same lists).
    files: the directory's file names (`MSMARCO_FILES`, or e.g.
      `t5rank.data.demo.DEMO_FILES`).
    training: training lists (positives + negatives) or reranking lists (the run's
      top ``list_size``); None means ``split == "train"``.
    negatives: "run" or "random"; None means "run" when the split has a run.
    depth: how deep into the run training negatives are drawn (None: all of it).
    max_positives: see `build_lists`.
    keep_queries_without_positive: None means ``not training``.
    shuffle: shuffle items within lists; None means ``training``.
    on_unknown: "skip" (count, log) or "error" for qrel/run rows naming a qid not in
      the queries file or a pid not in the collection.
    encoding_errors: "strict" or "replace" for invalid UTF-8.
    in_memory: read the collection into a dict; None decides by file size (< 64 MB).
    cache_dir: where a `PassageIndex` keeps its index (None: next to the collection).
    on_duplicate: "error" or "keep_first" for a pid twice in the collection, a qid
      twice in the queries, a (qid, pid) twice in the qrels or the run.
    passages: an already open passage source (skips opening the collection).

  Returns:
    A `lists.ListIterator`; ``.report`` counts dropped queries, ``.read_reports``
    holds the `formats.ReadReport` of each file read.
  """
  data_dir = os.fspath(data_dir)
  split_files = files.split(split)
  training = split == "train" if training is None else training
  negatives = negatives or ("run" if split_files.run else "random")
  collection_path = os.path.join(data_dir, files.collection)
  if passages is None:
    passages = open_collection(
      collection_path,
      in_memory=in_memory,
      cache_dir=cache_dir,
      encoding_errors=encoding_errors,
      on_duplicate=on_duplicate,
    )
  if training and not len(passages):
    raise lists_lib.NoTrainingListsError(
      f"{collection_path}: no passages (empty file?): no training list can be built"
    )
  queries = formats.read_queries(
    os.path.join(data_dir, split_files.queries),
    encoding_errors=encoding_errors,
    on_duplicate=on_duplicate,
  )
  read_reports = [queries.report]
  qrels: Any = {}
  if split_files.qrels:
    qrels = formats.read_qrels(
      os.path.join(data_dir, split_files.qrels),
      known_qids=queries,
      known_pids=passages,
      on_unknown=on_unknown,
      on_duplicate=on_duplicate,
      encoding_errors=encoding_errors,
    )
    read_reports.append(qrels.report)
    if training and not any(
      g > 0 for judged in qrels.values() for g in judged.values()
    ):
      raise lists_lib.NoTrainingListsError(
        f"{qrels.report.summary()}: no relevant (grade > 0) passage of "
        f"{collection_path} ({len(passages)} passages) for a query of "
        f"{queries.report.path} ({len(queries)} queries): no training list can be built"
      )
  run = None
  if split_files.run and (negatives == "run" or not training):
    run_depth = depth if training else list_size
    run = formats.read_run(
      os.path.join(data_dir, split_files.run),
      depth=run_depth,
      known_qids=queries,
      known_pids=passages,
      on_unknown=on_unknown,
      on_duplicate=on_duplicate,
      encoding_errors=encoding_errors,
    )
    read_reports.append(run.report)
    if training and not run.num_rows:
      raise lists_lib.NoTrainingListsError(
        f"{run.report.summary()}: no candidate for a query of {queries.report.path} "
        f"({len(queries)} queries) in {collection_path}: training lists would hold "
        "positives only and teach nothing; check that the run is the split's (its "
        "qids those of the queries file), or use negatives='random'"
      )
  iterator = lists_lib.build_lists(
    queries,
    qrels,
    passages,
    list_size=list_size,
    run=run,
    negatives=negatives,
    depth=depth,
    include_positives=training,
    max_positives=max_positives,
    keep_queries_without_positive=(
      not training
      if keep_queries_without_positive is None
      else keep_queries_without_positive
    ),
    shuffle=training if shuffle is None else shuffle,
    seed=seed,
    on_unknown=on_unknown,
  )
  iterator.read_reports = read_reports
  return iterator
