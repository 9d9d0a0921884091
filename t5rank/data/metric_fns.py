"""seqio metric functions for ranking: MRR@10, NDCG, MAP and recall over a split.

T5X evaluates a task by scoring every cached example with the model
(``score_batch`` returns one float per item, ``[L]`` per example) and calling
the task's *score* metric functions ``fn(targets, scores)`` once for the whole
split. ``targets`` is what the task's ``postprocess_fn`` made of each example;
here `postprocess_targets` keeps what ranking needs::

  {"label": float32 [n], "mask": bool [n], "query_id": str,
   "passage_ids": [n] str}

``scores`` has one row per example, padded by the feature converter to ``L``
(``n <= L``; the first ``n`` columns belong to the items).

`ranking_metrics` (made by `make_ranking_metric_fn`) groups the items by
``query_id`` (a query split over several examples becomes one list again;
a passage seen twice for a query counts once, the first time) and computes
with `t5rank.ranking.metrics`, i.e. Rax's definitions: an item is relevant
when ``label >= 1``; ties are broken by list position. Semantics of the
official MS-MARCO evaluation: a query without any relevant passage in its list
scores 0 and still counts in the mean (MRR@10 is then exactly
``msmarco_eval.py``'s number on the same candidates).

Reported keys: ``mrr@10``, ``ndcg@10``, ``ndcg``, ``map``, ``recall@k`` for
each ``k`` below the longest list (100 and 1000 by default; a larger ``k``
would only count queries with any relevant candidate), and the counts
``num_queries``, ``num_queries_without_relevant``, ``num_duplicate_items``.
MAP divides by the relevant items present in the list (Rax's ``ap_metric``);
trec_eval divides by all judged relevant passages, which is the same number
when the list holds every judged passage.

>>> import numpy as np
>>> targets = [postprocess_targets("", example={
...     "label": np.array([0., 1.]), "mask": np.array([True, True]),
...     "query_id": b"q1", "passage_ids": np.array([b"a", b"b"])}, is_target=True)]
>>> out = ranking_metrics(targets, np.array([[2.0, 1.0]]))
>>> round(float(out["mrr@10"]), 4), round(float(out["ndcg"]), 4)
(0.5, 0.6309)
"""

import collections
import dataclasses
import functools
import os
from typing import Any, Callable, Iterable, Mapping, Optional, Sequence

from absl import logging
import numpy as np

TargetType = Mapping[str, Any]


def _to_str(value: Any) -> str:
  if isinstance(value, bytes):
    return value.decode("utf-8")
  if isinstance(value, np.ndarray) and value.ndim == 0:
    return _to_str(value.item())
  return str(value)


def postprocess_targets(target: Any,
                        example: Optional[Mapping[str, Any]] = None,
                        is_target: bool = False) -> Any:
  """Turns one cached task example into the ranking target of the metric fns.

  seqio calls ``postprocess_fn(target, example=ex, is_target=True)`` for the
  targets of every example (``ex`` is the numpy task example). Model outputs
  (``is_target=False``) pass through unchanged.

  >>> t = postprocess_targets("<extra_id_10>", example={
  ...     "label": [1., 0.], "query_id": b"7", "passage_ids": [b"x", b"y"]},
  ...     is_target=True)
  >>> t["query_id"], t["passage_ids"], t["mask"].tolist()
  ('7', ['x', 'y'], [True, True])
  """
  if not is_target:
    return target
  if example is None:
    raise ValueError("postprocess_targets needs example= (the task example)")
  label = np.asarray(example["label"], np.float32)
  if label.ndim != 1:
    raise ValueError(f"example['label'] has shape {label.shape}; expected [n]")
  mask = example.get("mask")
  mask = np.ones(label.shape, bool) if mask is None else np.asarray(mask, bool)
  passage_ids = [_to_str(p) for p in np.asarray(example["passage_ids"])]
  if mask.shape != label.shape or len(passage_ids) != label.shape[0]:
    raise ValueError(
        f"query_id={_to_str(example['query_id'])}: label {label.shape}, mask "
        f"{mask.shape} and {len(passage_ids)} passage_ids disagree")
  return {
      "label": label,
      "mask": mask,
      "query_id": _to_str(example["query_id"]),
      "passage_ids": passage_ids,
  }


@dataclasses.dataclass(frozen=True)
class QueryLists:
  """Items grouped by query, padded to the longest list.

  Attributes:
    query_ids: [Q] query ids in order of first appearance.
    passage_ids: per query, the ids of its items (unpadded).
    scores: float32 [Q', M], 0 on padding (Q' >= Q and M >= the longest
      list, both powers of two: rows past Q are all padding).
    labels: float32 [Q', M], 0 on padding.
    mask: bool [Q', M], False on padding and on items masked in the task.
    num_duplicates: items dropped because their (query, passage) came before.
  """
  query_ids: list[str]
  passage_ids: list[list[str]]
  scores: np.ndarray
  labels: np.ndarray
  mask: np.ndarray
  num_duplicates: int


def _bucket(n: int) -> int:
  return max(8, 1 << (n - 1).bit_length())


def group_by_query(targets: Sequence[TargetType],
                   scores: Sequence[Sequence[float]]) -> QueryLists:
  """Joins each target with its row of scores and groups items by query id.

  >>> g = group_by_query(
  ...     [{"label": [1.], "mask": [True], "query_id": "q", "passage_ids": ["a"]},
  ...      {"label": [0., 0.], "mask": [True, True], "query_id": "q",
  ...       "passage_ids": ["b", "a"]}],
  ...     [[3., 0.], [2., 1.]])
  >>> g.query_ids, g.passage_ids, g.scores[0, :2].tolist(), g.num_duplicates
  (['q'], [['a', 'b']], [3.0, 2.0], 1)
  """
  if len(targets) != len(scores):
    raise ValueError(f"{len(targets)} targets but {len(scores)} rows of scores")
  items = collections.OrderedDict()  # qid -> {pid: (score, label, valid)}
  duplicates = 0
  for i, (target, row) in enumerate(zip(targets, scores)):
    row = np.asarray(row, np.float32).reshape(-1)
    label = np.asarray(target["label"], np.float32)
    mask = np.asarray(target["mask"], bool)
    n = label.shape[0]
    if row.shape[0] < n:
      raise ValueError(
          f"example {i} (query_id={target['query_id']}): {n} items but "
          f"{row.shape[0]} scores")
    query_items = items.setdefault(target["query_id"], {})
    for pid, s, y, m in zip(target["passage_ids"], row[:n], label, mask):
      if pid in query_items:
        duplicates += 1
        continue
      query_items[pid] = (s, y, m)
  # Padded to powers of two so that evaluations of similar size reuse the
  # compiled metric functions; all-masked padding rows count in no mean.
  width = _bucket(max([len(v) for v in items.values()] + [1]))
  shape = (_bucket(len(items)), width)
  out_scores = np.zeros(shape, np.float32)
  out_labels = np.zeros(shape, np.float32)
  out_mask = np.zeros(shape, bool)
  for q, query_items in enumerate(items.values()):
    for j, (s, y, m) in enumerate(query_items.values()):
      out_scores[q, j], out_labels[q, j], out_mask[q, j] = s, y, m
  if duplicates:
    logging.warning("%d duplicate (query_id, passage_id) items were scored "
                    "once (first occurrence kept).", duplicates)
  return QueryLists(
      query_ids=list(items),
      passage_ids=[list(v) for v in items.values()],
      scores=out_scores,
      labels=out_labels,
      mask=out_mask,
      num_duplicates=duplicates)


def make_ranking_metric_fn(
    *,
    mrr_topns: Iterable[Optional[int]] = (10,),
    ndcg_topns: Iterable[Optional[int]] = (10, None),
    map_topns: Iterable[Optional[int]] = (None,),
    recall_topns: Iterable[int] = (100, 1000),
    exclude_queries_without_relevant: bool = False,
    run_path: Optional[str] = None,
) -> Callable[[Sequence[TargetType], Any], dict[str, float]]:
  """Builds a seqio score metric fn ``fn(targets, scores) -> {name: value}``.

  Args:
    mrr_topns: cutoffs for MRR (None = no cutoff); ``mrr@10`` is MS-MARCO's.
    ndcg_topns: cutoffs for NDCG (gain ``2^y - 1``, discount ``1/log2(r+1)``).
    map_topns: cutoffs for MAP.
    recall_topns: cutoffs for recall; a cutoff not below the longest list is
      skipped (logged), since every retrieved item would count.
    exclude_queries_without_relevant: leave queries without a relevant item
      out of the means (default False: they score 0, as MS-MARCO's script).
    run_path: when set, also writes the scores as a TREC run to this path
      (ties by passage id descending, as trec_eval orders them).

  Returns:
    A function with the positional arguments ``(targets, scores)`` that seqio
    recognises as a score metric function.
  """
  mrr_topns, ndcg_topns = tuple(mrr_topns), tuple(ndcg_topns)
  map_topns, recall_topns = tuple(map_topns), tuple(recall_topns)

  def ranking_metrics(targets, scores):
    lists = group_by_query(targets, scores)
    if run_path:
      write_trec_run(run_path, lists.query_ids, lists.passage_ids,
                     lists.scores, mask=lists.mask)
    relevant = np.any((lists.labels >= 1) & lists.mask, axis=-1)
    where = lists.mask
    if exclude_queries_without_relevant:
      where = where & relevant[:, None]
    longest = int(lists.mask.sum(-1).max(initial=0))
    specs = [("mrr", "mrr_metric", k) for k in mrr_topns]
    specs += [("ndcg", "ndcg_metric", k) for k in ndcg_topns]
    specs += [("map", "ap_metric", k) for k in map_topns]
    skipped = [k for k in recall_topns if k >= longest]
    specs += [("recall", "recall_metric", k) for k in recall_topns
              if k < longest]
    if skipped:  # One line per evaluation.
      logging.info("%s skipped: the longest list has %d items.",
                   ", ".join(f"recall@{k}" for k in skipped), longest)
    values = _compiled_metrics(tuple(specs))(lists.scores, lists.labels, where)
    out = {name: float(v) for name, v in values.items()}
    out["num_queries"] = int(np.any(where, axis=-1).sum())
    out["num_queries_without_relevant"] = int(
        (~relevant & np.any(lists.mask, axis=-1)).sum())
    out["num_duplicate_items"] = lists.num_duplicates
    return out

  return ranking_metrics


@functools.lru_cache(maxsize=None)
def _compiled_metrics(specs: tuple[tuple[str, str, Optional[int]], ...]):
  """One jitted function computing every (prefix, metric name, topn) of specs.

  Compiling them together once per shape is several times faster than running
  the metrics op by op, and later evaluations of the same size reuse it.
  """
  # Imported here: the ranking room is pure JAX and costs nothing until used.
  import jax  # pylint: disable=g-import-not-at-top
  from t5rank.ranking import metrics  # pylint: disable=g-import-not-at-top

  def compute(scores, labels, where):
    return {
        prefix if topn is None else f"{prefix}@{topn}": getattr(
            metrics, fn_name)(scores, labels, where=where, topn=topn)
        for prefix, fn_name, topn in specs
    }

  return jax.jit(compute)


ranking_metrics = make_ranking_metric_fn()
ranking_metrics.__doc__ = (
    "MRR@10, NDCG@10, NDCG, MAP, recall@100/@1000 over the split (see "
    "`make_ranking_metric_fn`).")


def write_trec_run(path: str,
                   query_ids: Sequence[str],
                   passage_ids: Sequence[Sequence[str]],
                   scores: Sequence[Sequence[float]],
                   *,
                   mask: Optional[Sequence[Sequence[bool]]] = None,
                   tag: str = "t5rank",
                   depth: Optional[int] = None) -> int:
  """Writes scored lists as a TREC run (``qid Q0 pid rank score tag``).

  Row ``i`` scores ``passage_ids[i][j]`` for query ``query_ids[i]`` with
  ``scores[i][j]`` (rows may be padded past their ids; padding and items with
  ``mask`` False are left out). Rows of the same query are merged, a passage
  seen twice keeping its first score. Each query's rows are ordered as
  trec_eval orders a run, score descending and ties by passage id descending
  (`t5rank.data.formats.rank_candidates`), so the rank column agrees with what
  trec_eval evaluates. ``depth`` keeps each query's top ``depth``. Returns the
  number of rows written.

  >>> import tempfile, os
  >>> path = os.path.join(tempfile.mkdtemp(), "run.trec")
  >>> write_trec_run(path, ["q1"], [["d1", "d2", "d3"]], [[0.5, 0.9, 0.5, 7.0]])
  3
  >>> print(open(path).read(), end="")
  q1 Q0 d2 1 0.900000 t5rank
  q1 Q0 d3 2 0.500000 t5rank
  q1 Q0 d1 3 0.500000 t5rank
  """
  from t5rank.data import formats  # pylint: disable=g-import-not-at-top
  run = {}
  for i, (qid, pids) in enumerate(zip(query_ids, passage_ids)):
    row = np.asarray(scores[i], np.float64).reshape(-1)
    query_run = run.setdefault(qid, {})
    for j, pid in enumerate(pids):
      if (mask is None or mask[i][j]) and pid not in query_run:
        query_run[pid] = float(row[j])
  directory = os.path.dirname(path)
  if directory:
    os.makedirs(directory, exist_ok=True)
  return formats.write_run(path, run, format="trec", tag=tag, depth=depth)
