"""Files of a rerank: candidates in, scored pairs on the way, a TREC run out.

`t5rank-rerank` (`t5rank.rerank`) scores the (query, passage) pairs of a
candidate run with a trained model; this module holds everything about it that
needs no model:

* `read_candidates`: the run (TREC 6-column, MS-MARCO 3-column or top1000; the
  readers of `t5rank.data.formats`) checked against the queries and the
  collection, cut into the pairs to score (each query's top ``depth``) and the
  rest, which stays below in its original order.
* `PartialScores`: scored pairs appended to ``<output>.partial`` in
  ``fsync``'d chunks, so a stopped rerank continues where it stopped.
* `reranked_run` and `write_reranked_run`: the final run, sorted by score,
  ties by docno descending (trec_eval's order, `formats.rank_candidates`).
* `compare_runs`: the metrics of the input and the reranked run side by side
  (`t5rank.data.metric_fns.evaluate`: means over the judged queries).

>>> cands = Candidates(["q"], [["a", "b", "c"]], depth=2)
>>> cands.pairs, cands.rest
([('q', 'a'), ('q', 'b')], {'q': ['c']})
>>> run = reranked_run(cands, {("q", "a"): 0.5, ("q", "b"): 1.5})
>>> formats.rank_candidates(run["q"])
[('b', 1.5), ('a', 0.5), ('c', -0.5)]
"""

from collections.abc import Mapping
from collections.abc import Sequence
import dataclasses
import os

from absl import logging
import numpy as np

from t5rank.data import formats
from t5rank.data import metric_fns

Pair = tuple[str, str]


@dataclasses.dataclass
class Candidates:
  """A candidate run cut at ``depth``.

  Attributes:
    query_ids: queries in run order.
    passage_ids: per query, its candidates best first (run order).
    depth: how many of each query's candidates are reranked (None: all).
  """

  query_ids: list[str]
  passage_ids: list[list[str]]
  depth: int | None = None

  @property
  def pairs(self) -> list[Pair]:
    """The (qid, pid) pairs to score, query by query, in run order."""
    return [
      (q, p)
      for q, pids in zip(self.query_ids, self.passage_ids)
      for p in pids[: self.depth]
    ]

  @property
  def rest(self) -> dict[str, list[str]]:
    """Per query, the candidates below ``depth`` (kept in run order)."""
    return {
      q: pids[self.depth :]
      for q, pids in zip(self.query_ids, self.passage_ids)
      if self.depth is not None and len(pids) > self.depth
    }


def read_candidates(
  run_path: str,
  queries: Mapping[str, str],
  passages: Mapping[str, str],
  *,
  depth: int | None = None,
  on_unknown: formats.OnUnknown = "skip",
) -> Candidates:
  """Reads and checks a candidate run; returns its `Candidates`.

  Rows naming a query not in ``queries`` or a passage not in ``passages`` are
  skipped and counted in one warning (``on_unknown="error"`` raises at the
  first). A (qid, docno) pair listed twice raises
  `formats.DuplicateIdError` naming the file and line.

  Raises:
    ValueError: the run holds no row to rerank (empty, or every row unknown);
      the message names the file.
    formats.FormatError: a malformed line (file:line in the message).
  """
  if depth is not None and depth < 1:
    raise ValueError(f"depth={depth}; expected an integer >= 1")
  run = formats.read_run(
    run_path, known_qids=queries, known_pids=passages, on_unknown=on_unknown
  )
  unknown = run.report.unknown_qids + run.report.unknown_pids
  if unknown:
    logging.warning(
      "%s: %d rows skipped: %d name a query not in the queries file, %d a "
      "passage not in the collection.",
      run_path,
      unknown,
      run.report.unknown_qids,
      run.report.unknown_pids,
    )
  if not run.num_rows:
    raise ValueError(
      f"{run_path}: no candidate to rerank ({run.report.summary()})"
    )
  query_ids = list(run)
  return Candidates(query_ids, [list(run[q]) for q in query_ids], depth)


def _format_score(score: float) -> str:
  return str(np.float32(score))


class PartialScores:
  """Scored pairs of an unfinished rerank, in ``path`` (``qid\\tpid\\tscore``).

  `append` writes a chunk of pairs with one write, then flushes and
  ``fsync``s, so after a crash the file holds whole chunks plus at most one
  cut line; `load` drops a last line without its newline from the file, so
  that later chunks start on a line of their own. Scores are
  written as the shortest text that reads back to the same float32.

  >>> import tempfile
  >>> path = os.path.join(tempfile.mkdtemp(), "run.trec.partial")
  >>> partial = PartialScores(path)
  >>> partial.append([("q", "a"), ("q", "b")], [0.1, -2.0])
  >>> PartialScores(path).load()
  {('q', 'a'): 0.1, ('q', 'b'): -2.0}
  """

  def __init__(self, path: str):
    self.path = path

  def load(self, expected: set[Pair] | None = None) -> dict[Pair, float]:
    """The pairs scored so far; with ``expected``, checks each is one of them.

    Raises:
      ValueError: a pair scored twice with different scores, or (with
        ``expected``) a pair that is not a candidate of this rerank (another
        run's partial file): the message names the file and line.
    """
    scores: dict[Pair, float] = {}
    if not os.path.exists(self.path):
      return scores
    with open(self.path, encoding="utf-8", newline="\n") as f:
      text = f.read()
    lines = text.split("\n")
    if lines and lines[-1]:
      logging.info("%s: dropping a cut last line (a stopped write).", self.path)
      os.truncate(
        self.path, len(text.encode("utf-8")) - len(lines[-1].encode("utf-8"))
      )
    for number, line in enumerate(lines[:-1], 1):
      fields = line.split("\t")
      try:
        qid, pid, value = fields
        score = float(value)
      except ValueError:
        raise ValueError(
          f"{self.path}:{number}: expected 'qid<TAB>pid<TAB>"
          f"score', found {line[:60]!r}"
        ) from None
      pair = (qid, pid)
      if expected is not None and pair not in expected:
        raise ValueError(
          f"{self.path}:{number}: qid {qid!r} pid {pid!r} is not a "
          "candidate of this rerank; the file belongs to another run: "
          "delete it to start again"
        )
      if scores.get(pair, score) != score:
        raise ValueError(
          f"{self.path}:{number}: qid {qid!r} pid {pid!r} "
          "scored twice with different scores"
        )
      scores[pair] = score
    return scores

  def append(self, pairs: Sequence[Pair], scores: Sequence[float]) -> None:
    """Appends scored pairs as one chunk; durable when it returns."""
    if len(pairs) != len(scores):
      raise ValueError(f"{len(pairs)} pairs but {len(scores)} scores")
    text = "".join(
      f"{q}\t{p}\t{_format_score(s)}\n" for (q, p), s in zip(pairs, scores)
    )
    directory = os.path.dirname(self.path)
    if directory:
      os.makedirs(directory, exist_ok=True)
    with open(self.path, "a", encoding="utf-8", newline="\n") as f:
      f.write(text)
      f.flush()
      os.fsync(f.fileno())

  def remove(self) -> None:
    if os.path.exists(self.path):
      os.remove(self.path)


def reranked_run(
  candidates: Candidates, scores: Mapping[Pair, float]
) -> dict[str, dict[str, float]]:
  """``{qid: {pid: score}}``: scored pairs, then the rest below them.

  Scores are rounded to the 6 decimals a TREC run holds, so the order written
  is the order trec_eval reads back. The candidates below ``depth`` get
  ``min(score) - 1, min(score) - 2, ...`` in run order, so they stay below
  the reranked ones in their original order.

  Raises:
    KeyError: a pair to rerank has no score.
  """
  run = {}
  rest = candidates.rest
  for qid, pids in zip(candidates.query_ids, candidates.passage_ids):
    query_run = {}
    for pid in pids[: candidates.depth]:
      if (qid, pid) not in scores:
        raise KeyError(f"qid {qid!r} pid {pid!r} was not scored")
      query_run[pid] = round(float(scores[(qid, pid)]), 6)
    floor = min(query_run.values())
    for i, pid in enumerate(rest.get(qid, ()), 1):
      query_run[pid] = round(floor - i, 6)
    run[qid] = query_run
  return run


def write_reranked_run(
  path: str, run: Mapping[str, Mapping[str, float]], *, tag: str = "t5rank"
) -> int:
  """Writes ``run`` as a TREC run (`formats.write_run`) via a temporary file.

  The file appears complete or not at all. Returns the rows written.
  """
  directory = os.path.dirname(path)
  if directory:
    os.makedirs(directory, exist_ok=True)
  tmp = path + ".tmp"
  rows = formats.write_run(tmp, run, format="trec", tag=tag)
  os.replace(tmp, path)
  return rows


def input_run_scores(candidates: Candidates) -> dict[str, dict[str, float]]:
  """The input run as ``{qid: {pid: -rank}}`` (its own order, for metrics)."""
  return {
    q: {p: -float(r) for r, p in enumerate(pids, 1)}
    for q, pids in zip(candidates.query_ids, candidates.passage_ids)
  }


def compare_runs(
  runs: Mapping[str, Mapping[str, Mapping[str, float]]],
  qrels: Mapping[str, Mapping[str, int]],
  **evaluate_kwargs,
) -> str:
  """A table of `metric_fns.evaluate` for each run, side by side.

  >>> qrels = {"1": {"a": 1}, "2": {"b": 1}}
  >>> print(compare_runs({"input": {"1": {"a": 0., "x": 1.}},
  ...                     "reranked": {"1": {"a": 1., "x": 0.}}},
  ...                    qrels, ndcg_topns=(), map_topns=(), recall_topns=()))
  metric                            input  reranked
  mrr@10                           0.2500    0.5000
  num_queries                           2         2
  num_judged_queries                    2         2
  num_judged_without_candidates         1         1
  num_unjudged_queries                  0         0
  num_queries_without_relevant          0         0
  num_duplicate_items                   0         0
  """
  return format_metrics(evaluate_runs(runs, qrels, **evaluate_kwargs))


def evaluate_runs(
  runs: Mapping[str, Mapping[str, Mapping[str, float]]],
  qrels: Mapping[str, Mapping[str, int]],
  **evaluate_kwargs,
) -> dict[str, dict[str, float]]:
  """`metric_fns.evaluate` of each named run ``{qid: {pid: score}}``."""
  return {
    name: metric_fns.evaluate(
      metric_fns.query_lists_from_run(run), qrels, **evaluate_kwargs
    )
    for name, run in runs.items()
  }


def format_metrics(results: Mapping[str, Mapping[str, float]]) -> str:
  """``{run name: metrics}`` as a table, one column per run."""
  names = list(next(iter(results.values())))
  width = max(len(n) for n in names + ["metric"])
  lines = [f"{'metric':<{width}}" + "".join(f"{n:>10}" for n in results)]
  for metric in names:
    cells = []
    for result in results.values():
      value = result[metric]
      cells.append(
        f"{value:>10d}" if metric.startswith("num_") else f"{value:>10.4f}"
      )
    lines.append(f"{metric:<{width}}" + "".join(cells))
  return "\n".join(lines)
