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
when ``label >= 1``; ties are broken by passage id descending, as trec_eval
orders a run. The means follow the official MS-MARCO script and
``trec_eval -c`` (`evaluate`): they are over the *judged* queries (at least one
qrel); a judged query without candidates or without a relevant candidate
scores 0 and counts; unjudged queries never enter a metric. Which queries are
judged comes from the split's qrels (``make_ranking_metric_fn(qrels=...)``,
which the tasks pass); without qrels every query of the split is judged.

Reported keys: ``mrr@10``, ``ndcg@10``, ``ndcg``, ``map``, ``recall@k`` for
each ``k`` below the longest list (100 and 1000 by default), and the counts
``num_queries`` (in the means), ``num_judged_queries``,
``num_judged_without_candidates``, ``num_unjudged_queries``,
``num_queries_without_relevant`` and ``num_duplicate_items``. With qrels,
recall and MAP divide by all the judged relevant passages and NDCG by the
ideal ordering of all judged grades, as trec_eval does; without them, by what
the list holds.

>>> import numpy as np
>>> targets = [postprocess_targets("", example={
...     "label": np.array([0., 1.]), "mask": np.array([True, True]),
...     "query_id": b"q1", "passage_ids": np.array([b"a", b"b"])}, is_target=True)]
>>> out = ranking_metrics(targets, np.array([[2.0, 1.0]]))
>>> round(float(out["mrr@10"]), 4), round(float(out["ndcg"]), 4)
(0.5, 0.6309)
"""

import collections
from collections.abc import Callable
from collections.abc import Iterable
from collections.abc import Mapping
from collections.abc import Sequence
import dataclasses
import functools
import os
from typing import Any
from typing import Union

from absl import logging
import numpy as np

TargetType = Mapping[str, Any]


def _to_str(value: Any) -> str:
  if isinstance(value, bytes):
    return value.decode("utf-8")
  if isinstance(value, np.ndarray) and value.ndim == 0:
    return _to_str(value.item())
  return str(value)


def postprocess_targets(
  target: Any,
  example: Mapping[str, Any] | None = None,
  is_target: bool = False,
) -> Any:
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
      f"{mask.shape} and {len(passage_ids)} passage_ids disagree"
    )
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


def group_by_query(
  targets: Sequence[TargetType], scores: Sequence[Sequence[float]]
) -> QueryLists:
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
        f"{row.shape[0]} scores"
      )
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
    logging.warning(
      "%d duplicate (query_id, passage_id) items were scored "
      "once (first occurrence kept).",
      duplicates,
    )
  return QueryLists(
    query_ids=list(items),
    passage_ids=[list(v) for v in items.values()],
    scores=out_scores,
    labels=out_labels,
    mask=out_mask,
    num_duplicates=duplicates,
  )


QrelsLike = Mapping[str, Mapping[str, int]]
QrelsSource = Union[str, "os.PathLike[str]", QrelsLike, Callable[[], Any]]
MISSING_QUERIES = ("zero", "exclude")


def load_qrels(qrels: QrelsSource | None) -> QrelsLike | None:
  """``{qid: {pid: grade}}`` from a mapping, a TREC qrels path or a callable.

  A callable is called (with no arguments) and its result loaded the same way,
  so a task can name a file that is only known when its data is read.

  >>> load_qrels(lambda: {"q": {"d": 1}})
  {'q': {'d': 1}}
  """
  if qrels is None:
    return None
  if callable(qrels):
    return load_qrels(qrels())
  if isinstance(qrels, (str, os.PathLike)):
    from t5rank.data import formats  # pylint: disable=g-import-not-at-top

    return formats.read_qrels(qrels)
  return qrels


def query_lists_from_run(run: Mapping[str, Mapping[str, float]]) -> QueryLists:
  """A run ``{qid: {pid: score}}`` as `QueryLists` (labels 0: see `evaluate`).

  >>> g = query_lists_from_run({"q1": {"a": 1.0, "b": 2.0}, "q2": {}})
  >>> g.query_ids, g.passage_ids, g.scores[0, :2].tolist()
  (['q1', 'q2'], [['a', 'b'], []], [1.0, 2.0])
  """
  targets = [
    {
      "label": np.zeros(len(c), np.float32),
      "mask": np.ones(len(c), bool),
      "query_id": qid,
      "passage_ids": list(c),
    }
    for qid, c in run.items()
  ]
  rows = [np.fromiter(c.values(), np.float32, len(c)) for c in run.values()]
  return group_by_query(targets, rows)


def _ideal_dcg(grades: np.ndarray, topn: int | None) -> float:
  """DCG of ``grades`` sorted best first (gain 2^y - 1, 1/log2(r+1))."""
  gains = np.sort(2.0 ** np.maximum(grades, 0) - 1)[::-1][:topn]
  return float(np.sum(gains / np.log2(np.arange(2, gains.size + 2))))


def _metric_specs(mrr_topns, ndcg_topns, map_topns, recall_topns, longest):
  specs = [("mrr", "mrr_metric", k) for k in mrr_topns]
  specs += [("ndcg", "ndcg_metric", k) for k in ndcg_topns]
  specs += [("map", "ap_metric", k) for k in map_topns]
  skipped = [k for k in recall_topns if k >= longest]
  specs += [("recall", "recall_metric", k) for k in recall_topns if k < longest]
  if skipped:  # One line per evaluation.
    logging.info(
      "%s skipped: the longest list has %d items.",
      ", ".join(f"recall@{k}" for k in skipped),
      longest,
    )
  return tuple(specs)


def evaluate(
  lists: QueryLists,
  qrels: QrelsLike | None = None,
  *,
  mrr_topns: Iterable[int | None] = (10,),
  ndcg_topns: Iterable[int | None] = (10, None),
  map_topns: Iterable[int | None] = (None,),
  recall_topns: Iterable[int] = (100, 1000),
  missing_queries: str = "zero",
  exclude_queries_without_relevant: bool = False,
) -> dict[str, float]:
  """Ranking metrics of scored lists, averaged over the judged queries.

  Semantics of the official MS-MARCO script and of ``trec_eval -c``:

  * A query is *judged* when ``qrels`` has at least one line for it (any
    grade). Only judged queries enter a mean.
  * A judged query without candidates (not in ``lists``, or all its items
    masked) scores 0 and counts (``missing_queries="zero"``, the default);
    ``missing_queries="exclude"`` leaves it out, as ``trec_eval`` does without
    ``-c``.
  * A judged query without a relevant candidate scores 0 and counts
    (``exclude_queries_without_relevant=True`` leaves it out).
  * Unjudged queries in ``lists`` are left out of every metric.

  With ``qrels``, an item's label is its grade in ``qrels`` (0 when not
  judged), and recall, MAP and NDCG divide by what the qrels hold, as
  trec_eval does: recall and MAP by all the query's relevant passages
  (``grade >= 1``), NDCG by the ideal DCG of all its judged grades, whether or
  not they are among the candidates. Without ``qrels`` every query of
  ``lists`` is judged, labels come from ``lists`` and the denominators from
  the lists themselves. Ties are broken by passage id descending, as
  trec_eval orders a run (so the numbers are trec_eval's on a run file).

  The counts reported with the metrics: ``num_queries`` (in the means),
  ``num_judged_queries``, ``num_judged_without_candidates``,
  ``num_unjudged_queries``, ``num_queries_without_relevant`` (judged queries
  with candidates but none relevant) and ``num_duplicate_items``.

  Example (the queries 101-105; qrels for 101-103; a run holding 101, 102,
  104, 105; a perfect ranker): MRR@10 is 2/3 (103 counts 0; 104 and 105 are
  left out), and 1.0 when judged queries missing from the run are left out:

  >>> lists = query_lists_from_run({"101": {"a": 1.0}, "102": {"b": 1.0},
  ...                               "104": {"c": 1.0}, "105": {"d": 1.0}})
  >>> qrels = {"101": {"a": 1}, "102": {"b": 1}, "103": {"e": 1}}
  >>> out = evaluate(lists, qrels)
  >>> round(out["mrr@10"], 4), out["num_queries"], out["num_unjudged_queries"]
  (0.6667, 3, 2)
  >>> evaluate(lists, qrels, missing_queries="exclude")["mrr@10"]
  1.0
  """
  if missing_queries not in MISSING_QUERIES:
    raise ValueError(
      f"missing_queries={missing_queries!r}; expected one of {MISSING_QUERIES}"
    )
  mrr_topns, ndcg_topns = tuple(mrr_topns), tuple(ndcg_topns)
  map_topns, recall_topns = tuple(map_topns), tuple(recall_topns)
  # Items in passage id descending order: ties by list position are then
  # ties by docno descending, trec_eval's order.
  scores = np.zeros_like(lists.scores)
  labels = np.zeros_like(lists.labels)
  mask = np.zeros_like(lists.mask)
  for q, (qid, pids) in enumerate(zip(lists.query_ids, lists.passage_ids)):
    order = sorted(range(len(pids)), key=pids.__getitem__, reverse=True)
    n = len(order)
    scores[q, :n] = lists.scores[q, order]
    mask[q, :n] = lists.mask[q, order]
    if qrels is None:
      labels[q, :n] = lists.labels[q, order]
    else:
      judged = qrels.get(qid, {})
      labels[q, :n] = [max(judged.get(pids[j], 0), 0) for j in order]
  has_items = mask.any(-1)
  relevant = ((labels >= 1) & mask).any(-1)
  longest = int(mask.sum(-1).max(initial=0))
  specs = _metric_specs(mrr_topns, ndcg_topns, map_topns, recall_topns, longest)
  values = {
    name: np.asarray(v, np.float64)
    for name, v in _compiled_metrics(specs)(scores, labels, mask).items()
  }
  if qrels is not None:  # trec_eval's denominators: everything judged.
    for q, qid in enumerate(lists.query_ids):
      judged = qrels.get(qid)
      if not judged or not has_items[q]:
        continue
      grades = np.fromiter(judged.values(), np.float64, len(judged))
      n_rel = float((grades >= 1).sum())
      n_rel_list = float(((labels[q] >= 1) & mask[q]).sum())
      row_grades = labels[q][mask[q]]
      for prefix, _, topn in specs:
        name = prefix if topn is None else f"{prefix}@{topn}"
        if prefix in ("recall", "map"):
          values[name][q] *= n_rel_list / n_rel if n_rel else 0.0
        elif prefix == "ndcg":
          ideal = _ideal_dcg(grades, topn)
          values[name][q] *= (
            _ideal_dcg(row_grades, topn) / ideal if ideal else 0.0
          )
  if qrels is None:
    judged_ids = {q for q, ok in zip(lists.query_ids, has_items) if ok}
  else:
    judged_ids = {q for q, judged in qrels.items() if len(judged)}
  in_lists = {q: i for i, q in enumerate(lists.query_ids) if has_items[i]}
  rows = [in_lists[q] for q in in_lists if q in judged_ids]
  without_candidates = len(judged_ids) - len(rows)
  counted = np.asarray(rows, np.int64)
  if exclude_queries_without_relevant:
    counted = counted[relevant[counted]]
    without_candidates_counted = 0
  else:
    without_candidates_counted = (
      without_candidates if missing_queries == "zero" else 0
    )
  denominator = len(counted) + without_candidates_counted
  out = {}
  for name, per_query in values.items():
    total = float(per_query[counted].sum()) if len(counted) else 0.0
    out[name] = total / denominator if denominator else 0.0
  if not denominator:
    logging.warning("No judged query to evaluate: every metric is 0.")
  out["num_queries"] = denominator
  out["num_judged_queries"] = len(judged_ids)
  out["num_judged_without_candidates"] = without_candidates
  out["num_unjudged_queries"] = sum(q not in judged_ids for q in in_lists)
  out["num_queries_without_relevant"] = (
    int((~relevant[np.asarray(rows, np.int64)]).sum()) if rows else 0
  )
  out["num_duplicate_items"] = lists.num_duplicates
  return out


def make_ranking_metric_fn(
  *,
  mrr_topns: Iterable[int | None] = (10,),
  ndcg_topns: Iterable[int | None] = (10, None),
  map_topns: Iterable[int | None] = (None,),
  recall_topns: Iterable[int] = (100, 1000),
  exclude_queries_without_relevant: bool = False,
  qrels: QrelsSource | None = None,
  missing_queries: str = "zero",
  run_path: str | None = None,
) -> Callable[[Sequence[TargetType], Any], dict[str, float]]:
  """Builds a seqio score metric fn ``fn(targets, scores) -> {name: value}``.

  The metrics and the means follow `evaluate` (official MS-MARCO /
  ``trec_eval -c`` semantics over the judged queries).

  Args:
    mrr_topns: cutoffs for MRR (None = no cutoff); ``mrr@10`` is MS-MARCO's.
    ndcg_topns: cutoffs for NDCG (gain ``2^y - 1``, discount ``1/log2(r+1)``).
    map_topns: cutoffs for MAP.
    recall_topns: cutoffs for recall; a cutoff not below the longest list is
      skipped (logged).
    exclude_queries_without_relevant: leave judged queries without a relevant
      candidate out of the means (default False: they score 0, as MS-MARCO's
      script).
    qrels: the split's qrels (``{qid: {pid: grade}}``, a TREC qrels path, or
      a callable returning either, called at each evaluation). They say which
      queries are judged, so that judged queries without candidates count and
      unjudged ones do not. None: every query of the targets is judged.
    missing_queries: "zero" (judged queries without candidates score 0, as
      ``trec_eval -c``) or "exclude" (left out, trec_eval's default).
    run_path: when set, also writes the scores as a TREC run to this path
      (ties by passage id descending, as trec_eval orders them).

  Returns:
    A function with the positional arguments ``(targets, scores)`` that seqio
    recognises as a score metric function.
  """
  if missing_queries not in MISSING_QUERIES:
    raise ValueError(
      f"missing_queries={missing_queries!r}; expected one of {MISSING_QUERIES}"
    )
  options = dict(
    mrr_topns=tuple(mrr_topns),
    ndcg_topns=tuple(ndcg_topns),
    map_topns=tuple(map_topns),
    recall_topns=tuple(recall_topns),
    missing_queries=missing_queries,
    exclude_queries_without_relevant=(exclude_queries_without_relevant),
  )

  def ranking_metrics(targets, scores):
    lists = group_by_query(targets, scores)
    if run_path:
      write_trec_run(
        run_path,
        lists.query_ids,
        lists.passage_ids,
        lists.scores,
        mask=lists.mask,
      )
    return evaluate(lists, load_qrels(qrels), **options)

  return ranking_metrics


@functools.cache
def _compiled_metrics(specs: tuple[tuple[str, str, int | None], ...]):
  """One jitted function computing every (prefix, metric name, topn) of specs.

  Per query (no reduction). Compiling them together once per shape is several
  times faster than running the metrics op by op, and later evaluations of the
  same size reuse it.
  """
  # Imported here: the ranking room is pure JAX and costs nothing until used.
  import jax  # pylint: disable=g-import-not-at-top

  from t5rank.ranking import metrics  # pylint: disable=g-import-not-at-top

  def compute(scores, labels, where):
    return {
      prefix if topn is None else f"{prefix}@{topn}": getattr(metrics, fn_name)(
        scores, labels, where=where, topn=topn, reduce_fn=None
      )
      for prefix, fn_name, topn in specs
    }

  return jax.jit(compute)


ranking_metrics = make_ranking_metric_fn()
ranking_metrics.__doc__ = (
  "MRR@10, NDCG@10, NDCG, MAP, recall@100/@1000 over the split (see "
  "`make_ranking_metric_fn`)."
)


def write_trec_run(
  path: str,
  query_ids: Sequence[str],
  passage_ids: Sequence[Sequence[str]],
  scores: Sequence[Sequence[float]],
  *,
  mask: Sequence[Sequence[bool]] | None = None,
  tag: str = "t5rank",
  depth: int | None = None,
) -> int:
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
  if directory and "://" not in path:
    os.makedirs(directory, exist_ok=True)
  return formats.write_run(path, run, format="trec", tag=tag, depth=depth)
