"""MS-MARCO QnA v2.1 records -> list examples.

Each QnA v2.1 query comes with about ten passages from Bing, some marked as used by the
answer writer (``is_selected``). Ranking them is a ready-made list: labels are the
``is_selected`` flags. The record layout is that of TFDS ``huggingface:ms_marco/v2.1``
(and of the Hugging Face ``ms_marco`` v2.1 dataset saved as JSON lines): ``passages``
is a dict of parallel lists::

  {"query": "what is a corporation?", "query_id": 1102432, "query_type": "DESCRIPTION",
   "answers": [...], "wellFormedAnswers": [...],
   "passages": {"is_selected": [0, 1, ...], "passage_text": ["...", ...],
                "url": ["https://...", ...]}}

`qna_list_example` turns one record (a JSON object, or a TFDS record whose strings are
bytes and lists NumPy arrays) into a list example (`t5rank.data.lists`):
``query_id`` is ``str(query_id)``, ``passage_ids`` are ``"<query_id>-<i>"`` (i = the
passage's position in the record, as the passages have no ids), ``label`` is
``is_selected`` as float32. `read_qna_jsonl` streams a JSON-lines file and validates
each line (errors name file:line); `qna_lists` applies list options (list size with
positives kept first, dropping queries without a selected passage, seeded shuffle).

>>> record = {"query": "capital of avel", "query_id": 7, "passages": {
...     "is_selected": [0, 1], "passage_text": ["Avel has rivers.", "Orin is its capital."],
...     "url": ["a", "b"]}}
>>> example = qna_list_example(record)
>>> example["query_id"], example["passage_ids"], example["label"]
('7', ['7-0', '7-1'], array([0., 1.], dtype=float32))
"""

from __future__ import annotations

from collections.abc import Iterable
from collections.abc import Iterator
from collections.abc import Mapping
import json
import os
from typing import Any

import numpy as np

from t5rank.data import formats
from t5rank.data import lists as lists_lib


class _RecordError(ValueError):
  pass


def _as_text(value: Any, name: str, *, allow_int: bool = False) -> str:
  if isinstance(value, np.ndarray) and value.shape == ():
    value = value.item()
  if isinstance(value, bytes):
    try:
      value = value.decode("utf-8")
    except UnicodeDecodeError:
      raise _RecordError(f"{name} is not valid UTF-8") from None
  if (
    allow_int
    and isinstance(value, (int, np.integer))
    and not isinstance(value, bool)
  ):
    return str(int(value))
  if not isinstance(value, str):
    raise _RecordError(
      f"{name} should be a string, found {type(value).__name__}"
    )
  return value


def _as_list(value: Any, name: str) -> list:
  if isinstance(value, np.ndarray):
    return value.tolist()
  if not isinstance(value, (list, tuple)):
    raise _RecordError(f"{name} should be a list, found {type(value).__name__}")
  return list(value)


def _convert(record: Mapping[str, Any]) -> lists_lib.ListExample:
  if not isinstance(record, Mapping):
    raise _RecordError(f"expected a JSON object, found {type(record).__name__}")
  for key in ("query", "query_id", "passages"):
    if key not in record:
      raise _RecordError(f"missing field {key!r}")
  query = _as_text(record["query"], "query")
  if not query.strip():
    raise _RecordError("empty query")
  query_id = _as_text(record["query_id"], "query_id", allow_int=True).strip()
  if not query_id:
    raise _RecordError("empty query_id")
  passages = record["passages"]
  if not isinstance(passages, Mapping):
    raise _RecordError(
      "passages should be an object of parallel lists "
      "{is_selected, passage_text, url}, found "
      f"{type(passages).__name__}"
    )
  for key in ("is_selected", "passage_text"):
    if key not in passages:
      raise _RecordError(f"missing field 'passages.{key}'")
  texts = [
    _as_text(t, f"passages.passage_text[{i}]")
    for i, t in enumerate(
      _as_list(passages["passage_text"], "passages.passage_text")
    )
  ]
  selected = _as_list(passages["is_selected"], "passages.is_selected")
  if len(selected) != len(texts):
    raise _RecordError(
      f"passages.is_selected has {len(selected)} entries but "
      f"passages.passage_text has {len(texts)}"
    )
  if "url" in passages and len(
    _as_list(passages["url"], "passages.url")
  ) != len(texts):
    raise _RecordError(
      "passages.url and passages.passage_text differ in length"
    )
  labels = []
  for i, flag in enumerate(selected):
    if isinstance(flag, bool) or flag not in (0, 1):
      raise _RecordError(f"passages.is_selected[{i}]={flag!r}; expected 0 or 1")
    labels.append(float(flag))
  if not texts:
    raise _RecordError("no passages")
  return {
    "query_id": query_id,
    "query": query,
    "passage_ids": [f"{query_id}-{i}" for i in range(len(texts))],
    "passages": texts,
    "label": np.asarray(labels, dtype=np.float32),
  }


def qna_list_example(
  record: Mapping[str, Any],
  *,
  source: str = "<record>",
  line: int | None = None,
) -> lists_lib.ListExample:
  """One QnA v2.1 record -> one list example with all its passages in record order.

  Args:
    record: a JSON object or TFDS record (bytes / NumPy values are decoded).
    source, line: where the record came from, for error messages.

  Raises:
    formats.FormatError: a missing or mistyped field, parallel lists of different
      lengths, an ``is_selected`` other than 0/1, no passages.
  """
  try:
    return _convert(record)
  except _RecordError as e:
    raise formats.FormatError(source, line, str(e)) from None


def read_qna_jsonl(
  path: str | os.PathLike[str],
  *,
  encoding_errors: formats.EncodingErrors = "strict",
  report: formats.ReadReport | None = None,
) -> Iterator[lists_lib.ListExample]:
  """Streams the list examples of a QnA v2.1 JSON-lines file, one per line.

  Blank lines are skipped and counted; invalid JSON or records raise
  `formats.FormatError` naming file:line. Pass a `formats.ReadReport` to see counts.
  """
  report = (
    report if report is not None else formats.ReadReport(os.fspath(path), "qna")
  )
  for number, line in formats.iter_lines(
    path, encoding_errors=encoding_errors, report=report
  ):
    try:
      record = json.loads(line)
    except json.JSONDecodeError as e:
      raise formats.FormatError(
        path, number, f"invalid JSON: {e.msg} at column {e.colno}"
      ) from None
    example = qna_list_example(record, source=os.fspath(path), line=number)
    report.rows += 1
    yield example
  report.log()


def qna_lists(
  examples: Iterable[lists_lib.ListExample],
  *,
  list_size: int | None = None,
  training: bool = True,
  keep_queries_without_positive: bool | None = None,
  shuffle: bool | None = None,
  seed: int = 0,
) -> lists_lib.ListIterator:
  """Applies list options to QnA list examples (as `lists.build_lists` does).

  Training lists keep the selected passages first when truncating to ``list_size``
  and drop queries without a selected passage (counted); eval lists keep the record
  order and every query. Shuffling is seeded per query. Training lists that run out
  with no list, or none with an unselected passage, raise
  `lists.NoTrainingListsError` with the counts.
  """
  keep = (
    (not training)
    if keep_queries_without_positive is None
    else (keep_queries_without_positive)
  )
  shuffle = training if shuffle is None else shuffle
  report = lists_lib.ListReport()

  if list_size is not None and list_size < 1:
    raise ValueError(f"list_size={list_size}; expected None or an integer >= 1")

  def generate() -> Iterator[lists_lib.ListExample]:
    for example in examples:
      qid, ids = example["query_id"], example["passage_ids"]
      yield from lists_lib._generate(  # pylint: disable=protected-access
        {qid: example["query"]},
        {qid: {pid: int(y) for pid, y in zip(ids, example["label"])}},
        dict(zip(ids, example["passages"])),
        {qid: ids},
        report,
        list_size=list_size or len(ids),
        negatives="run",
        depth=None,
        include_positives=training,
        max_positives=None,
        keep=keep,
        shuffle=shuffle,
        seed=seed,
        qids=None,
        on_unknown="error",
      )
    lists_lib.logger.info("qna_lists: %s", report.summary())

  return lists_lib.ListIterator(generate(), report, training=training)
