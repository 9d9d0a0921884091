"""Ranking lists: one query with a few passages and their graded labels.

A *list example* is the unit every t5rank task is built from (CONTRACTS.md)::

  {"query_id": str, "query": str,
   "passage_ids": list[str],        # n items, 1 <= n <= list_size
   "passages": list[str],           # the passage texts, same order
   "label": np.ndarray float32 [n]} # graded relevance from the qrels, 0 = not relevant

`build_lists` makes them from queries, qrels, a passage source and (optionally) a
candidate run, in one of two ways:

* Training (``include_positives=True``): every judged-relevant passage (grade > 0) of
  the query, highest grades first, then negatives up to ``list_size``. Negatives are
  drawn without replacement from the run's top ``depth`` candidates minus the positives
  (``negatives="run"``: hard negatives; ``depth=list_size`` takes exactly the top of
  the run) or uniformly from the whole collection (``negatives="random"``). Positives
  come before negatives when truncating, so a list never loses all its positives.
  Queries without a positive are dropped and counted unless
  ``keep_queries_without_positive=True``. Training that cannot teach stops with
  `NoTrainingListsError` when the iteration ends: no list at all (an empty collection,
  no qrel naming a known passage...), or no list with a negative (a run whose qids are
  not the training qids, an empty run): lists of positives only give every ranking
  loss nothing to compare. The error gives the counts of `ListReport` and names the
  files read (``ListIterator.read_reports``).
* Reranking/eval (``include_positives=False``): the run's top ``list_size`` candidates
  in run order, labelled from the qrels (unjudged = 0); relevant passages the run
  missed are not added. Queries without a positive are usually kept (MS-MARCO MRR@10
  counts them as 0).

Randomness (negative sampling, shuffling the items) comes from a generator seeded by
``(seed, crc32(query_id))``: the same seed gives the same lists, independently of the
order or sharding of the queries. Item order is shuffled when ``shuffle=True`` so the
position of a passage says nothing about its label.

>>> queries = {"q1": "capital of avel", "q2": "river of avel"}
>>> passages = {"p1": "The capital of Avel is Orin.", "p2": "Avel's river is the Tarn.",
...             "p3": "Orin is a city in Avel.", "p4": "The capital of Dun is Kesh."}
>>> qrels = {"q1": {"p1": 2, "p3": 1}, "q2": {"p2": 1}}
>>> run = {"q1": ["p4", "p1", "p2", "p3"], "q2": ["p2", "p4"]}
>>> lists = build_lists(queries, qrels, passages, run=run, list_size=3, depth=2,
...                     shuffle=False)
>>> for example in lists:
...   print(example["query_id"], example["passage_ids"], example["label"])
q1 ['p1', 'p3', 'p4'] [2. 1. 0.]
q2 ['p2', 'p4'] [1. 0.]
>>> lists.report.lists, lists.report.dropped_without_positive
(2, 0)
"""

from __future__ import annotations

from collections.abc import Callable
from collections.abc import Iterable
from collections.abc import Iterator
from collections.abc import Mapping
from collections.abc import Sequence
import dataclasses
import logging
import random
from typing import Any
from typing import Literal
import zlib

import numpy as np

from t5rank.data import formats

logger = logging.getLogger(__name__)

ListExample = dict[str, Any]
Negatives = Literal["run", "random"]


@dataclasses.dataclass
class ListReport:
  """Counts kept while building lists (logged when the iteration ends).

  Attributes:
    queries: queries looked at.
    lists: list examples yielded.
    dropped_without_positive: queries dropped because no item had a label > 0.
    without_candidates: queries for which the run had no candidate.
    empty: queries skipped because their list would have had no item.
    unknown_queries: qids asked for (``qids=``) that are not in ``queries``.
    missing_passages: qrel/run pids skipped because the passage source lacks them
      (counted when met: a run's candidates are checked as they are picked).
    truncated_positives: positives left out because a list was full.
    short_lists: lists with fewer than ``list_size`` items (padding downstream).
    without_negative: lists in which every item is relevant (label > 0).
  """

  queries: int = 0
  lists: int = 0
  dropped_without_positive: int = 0
  without_candidates: int = 0
  empty: int = 0
  unknown_queries: int = 0
  missing_passages: int = 0
  truncated_positives: int = 0
  short_lists: int = 0
  without_negative: int = 0

  def summary(self) -> str:
    parts = [f"{self.lists} lists from {self.queries} queries"]
    for field in dataclasses.fields(self)[2:]:
      value = getattr(self, field.name)
      if value:
        parts.append(f"{value} {field.name}")
    return ", ".join(parts)


class NoTrainingListsError(ValueError):
  """Training lists ran out with nothing to learn from (none, or none with a negative)."""


class ListIterator(Iterator[ListExample]):
  """An iterator of list examples with its `ListReport` as ``.report``.

  ``read_reports`` holds the `formats.ReadReport` of each file the lists came from
  (set by the caller that read them; named in `NoTrainingListsError`). With
  ``training=True`` the end of the iteration checks that some list was built and
  that some list has a negative.
  """

  def __init__(
    self,
    examples: Iterator[ListExample],
    report: ListReport,
    *,
    training: bool = False,
  ):
    self._examples = examples
    self.report = report
    self.training = training
    self.read_reports: list[formats.ReadReport] = []

  def __iter__(self) -> ListIterator:
    return self

  def __next__(self) -> ListExample:
    try:
      return next(self._examples)
    except StopIteration:
      if self.training:
        self._check_trainable()
      raise

  def _check_trainable(self) -> None:
    report = self.report
    if report.lists and report.without_negative < report.lists:
      return
    if not report.lists:
      problem = "no training list was built"
    else:
      problem = (
        f"none of the {report.lists} training lists has a negative (an item "
        "with label 0): lists of positives only teach a ranking loss nothing; "
        "check that the run's qids are the training queries' (or use "
        "negatives='random')"
      )
    files = "; ".join(r.summary() for r in self.read_reports)
    raise NoTrainingListsError(
      f"{problem}. Lists: {report.summary()}"
      + (f". Files: {files}" if files else "")
    )


def query_rng(seed: int, query_id: str) -> random.Random:
  """The generator for one query, seeded by ``(seed, crc32(query_id))``.

  Python's `random.Random` (not NumPy's): it is ~20x cheaper to create, which matters
  at one generator per list, and its sequences are stable across Python versions.
  """
  return random.Random((int(seed) << 32) | zlib.crc32(query_id.encode("utf-8")))


def _fetch(passages: Any, pids: Sequence[str]) -> list[str]:
  get_many = getattr(passages, "get_many", None)
  if get_many is not None:
    return get_many(pids)
  return [passages[p] for p in pids]


def _random_negatives(
  rng: random.Random,
  sampler: Callable[[random.Random, int], list[str]],
  size: int,
  count: int,
  exclude: set[str],
  known,
) -> list[str]:
  """Up to ``count`` distinct pids not in ``exclude``, drawn uniformly."""
  count = min(count, size - len(exclude))
  chosen: list[str] = []
  seen = set(exclude)
  for _ in range(100):
    if len(chosen) >= count:
      break
    for pid in sampler(rng, 2 * (count - len(chosen)) + 4):
      if pid not in seen:
        seen.add(pid)
        if known(pid):
          chosen.append(pid)
          if len(chosen) == count:
            break
  return chosen


def _sample_known(
  rng: random.Random, pool: Sequence[str], need: int, known
) -> list[int]:
  """Positions of ``need`` pool items drawn without replacement among known ones.

  Only the drawn items are checked (a run's candidates are rarely unknown); an unknown
  one is replaced by another draw from the rest.
  """
  picked = rng.sample(range(len(pool)), need)
  chosen = [i for i in picked if known(pool[i])]
  while len(chosen) < need and len(picked) < len(pool):
    taken = set(picked)
    rest = [i for i in range(len(pool)) if i not in taken]
    more = rng.sample(rest, min(need - len(chosen), len(rest)))
    picked += more
    chosen += [i for i in more if known(pool[i])]
  return chosen


def _sampler(
  passages: Any,
) -> tuple[Callable[[random.Random, int], list[str]], int]:
  sample_ids = getattr(passages, "sample_ids", None)
  if sample_ids is not None:
    return sample_ids, len(passages)
  keys = list(passages)
  return (
    lambda rng, k: [keys[rng.randrange(len(keys))] for _ in range(k)]
  ), len(keys)


def build_lists(
  queries: Mapping[str, str],
  qrels: Mapping[str, Mapping[str, int]],
  passages: Any,
  *,
  list_size: int,
  run: Mapping[str, Sequence[str]] | None = None,
  negatives: Negatives = "run",
  depth: int | None = None,
  include_positives: bool = True,
  max_positives: int | None = None,
  keep_queries_without_positive: bool = False,
  shuffle: bool = True,
  seed: int = 0,
  qids: Iterable[str] | None = None,
  on_unknown: formats.OnUnknown = "skip",
  require_trainable: bool | None = None,
) -> ListIterator:
  """Yields one list example per query (see the module docstring for the dict).

  Args:
    queries: ``{qid: query text}``; lists follow its order unless ``qids`` is given.
    qrels: ``{qid: {pid: grade}}``; grade > 0 is relevant and becomes the label.
    passages: ``{pid: text}`` or a `t5rank.data.collection.PassageIndex` (anything with
      ``__getitem__`` and ``__contains__``; ``get_many``/``sample_ids`` are used when
      present).
    list_size: the most items a list holds (>= 1).
    run: ``{qid: [pid, ...]}`` best first (e.g. a `formats.Run`); needed for
      ``negatives="run"`` and for ``include_positives=False``.
    negatives: "run" (hard negatives from the run's top ``depth``) or "random"
      (uniform over the passage source).
    depth: how deep into the run negatives/candidates are taken (None: all).
    include_positives: True for training lists (positives + negatives), False for
      reranking the run's top ``list_size`` as it is.
    max_positives: at most this many positives per list (highest grades first); None
      allows up to ``list_size``.
    keep_queries_without_positive: yield lists whose labels are all 0 (eval) instead
      of dropping and counting them.
    shuffle: shuffle the items of each list (seeded).
    seed: seed of the per-query generators.
    qids: build lists only for these qids, in this order.
    on_unknown: "skip" counts qids missing from ``queries`` and pids missing from
      ``passages``; "error" raises `KeyError` at the first one.
    require_trainable: raise `NoTrainingListsError` at the end of the iteration when
      no list was built or none has a negative; None means ``include_positives``.

  Returns:
    A `ListIterator` of list examples; its ``.report`` (`ListReport`) fills as it runs.
  """
  if list_size < 1:
    raise ValueError(f"list_size={list_size}; expected an integer >= 1")
  formats._check_choice("negatives", negatives, ("run", "random"))  # pylint: disable=protected-access
  formats._check_choice("on_unknown", on_unknown, ("skip", "error"))  # pylint: disable=protected-access
  if depth is not None and depth < 1:
    raise ValueError(f"depth={depth}; expected None or an integer >= 1")
  if max_positives is not None and max_positives < 1:
    raise ValueError(
      f"max_positives={max_positives}; expected None or an integer >= 1"
    )
  if run is None and (negatives == "run" or not include_positives):
    raise ValueError(
      "run=None: negatives='run' and include_positives=False need a "
      "candidate run; pass run= or negatives='random'"
    )
  report = ListReport()
  examples = _generate(
    queries,
    qrels,
    passages,
    run,
    report,
    list_size=list_size,
    negatives=negatives,
    depth=depth,
    include_positives=include_positives,
    max_positives=max_positives,
    keep=keep_queries_without_positive,
    shuffle=shuffle,
    seed=seed,
    qids=qids,
    on_unknown=on_unknown,
  )
  return ListIterator(
    _log_when_done(examples, report),
    report,
    training=(
      include_positives if require_trainable is None else require_trainable
    ),
  )


def _log_when_done(
  examples: Iterator[ListExample], report: ListReport
) -> Iterator[ListExample]:
  yield from examples
  logger.info("build_lists: %s", report.summary())


def _generate(
  queries,
  qrels,
  passages,
  run,
  report: ListReport,
  *,
  list_size,
  negatives,
  depth,
  include_positives,
  max_positives,
  keep,
  shuffle,
  seed,
  qids,
  on_unknown,
) -> Iterator[ListExample]:
  sampler = size = None

  def known(pid: str) -> bool:
    if pid in passages:
      return True
    if on_unknown == "error":
      raise KeyError(f"pid {pid!r} is not in the passage source")
    report.missing_passages += 1
    return False

  for qid in queries if qids is None else qids:
    report.queries += 1
    if qid not in queries:
      if on_unknown == "error":
        raise KeyError(f"qid {qid!r} is not in queries")
      report.unknown_queries += 1
      continue
    rng = query_rng(seed, qid)
    judged = qrels.get(qid, {})
    candidates: Sequence[str] = ()
    if run is not None:
      candidates = run.get(qid, ())
      if not candidates:
        report.without_candidates += 1
      candidates = candidates[:depth]

    if include_positives:
      positives = [
        pid for pid, grade in judged.items() if grade > 0 and known(pid)
      ]
      if (
        shuffle
      ):  # Random order among equal grades, so truncation picks at random.
        rng.shuffle(positives)
      positives.sort(key=lambda pid: -judged[pid])
      limit = min(list_size, max_positives or list_size)
      report.truncated_positives += max(0, len(positives) - limit)
      positives = positives[:limit]
      if not positives and not keep:  # Dropped anyway: skip sampling negatives.
        report.dropped_without_positive += 1
        continue
      need = list_size - len(positives)
      exclude = {pid for pid, grade in judged.items() if grade > 0}
      if need and negatives == "run":
        pool = [pid for pid in candidates if pid not in exclude]
        if len(pool) > need:  # A uniform sample, kept in run order.
          chosen = [
            pool[i] for i in sorted(_sample_known(rng, pool, need, known))
          ]
        else:
          chosen = [pid for pid in pool if known(pid)]
      elif need:
        if sampler is None:
          sampler, size = _sampler(passages)
        chosen = _random_negatives(rng, sampler, size, need, exclude, known)
      else:
        chosen = []
      items = positives + chosen
    else:
      items = []
      for pid in candidates:
        if len(items) == list_size:
          break
        if known(pid):
          items.append(pid)

    if not items:
      report.empty += 1
      continue
    labels = np.array(
      [max(judged.get(pid, 0), 0) for pid in items], dtype=np.float32
    )
    if not keep and not (labels > 0).any():
      report.dropped_without_positive += 1
      continue
    if shuffle:
      order = list(range(len(items)))
      rng.shuffle(order)
      items = [items[i] for i in order]
      labels = labels[order]
    if len(items) < list_size:
      report.short_lists += 1
    if (labels > 0).all():
      report.without_negative += 1
    report.lists += 1
    yield {
      "query_id": qid,
      "query": queries[qid],
      "passage_ids": list(items),
      "passages": _fetch(passages, items),
      "label": labels,
    }
