"""Data pipeline throughput: ranking lists/s from files to padded model features.

Measures, in one process, with T5's SentencePiece vocabulary and with
``seqio.ByteVocabulary``:

* ``t5rank files``: the registered seqio task end to end: MS-MARCO-format files
  -> `t5rank.data.msmarco.passage_ranking_lists` -> `ListExamplesSource` ->
  the task's preprocessors -> `RankingEncDecFeatureConverter` -> batches of 32
  lists (``seqio.get_dataset``, as T5X calls it);
* ``t5rank memory``: the same lists already built, from a tf.data cache in
  memory, through the same preprocessors and converter (the seqio part alone);
* ``rax example``: the anchor. Rax's T5X example (``examples/t5x/tasks.py``
  and ``models.py`` of the installed rax wheel) on the same in-memory lists in
  its QnA record form (also cached in memory): its ``_msmarco_preprocessor`` (``seqio.preprocessors.
  tokenize`` of the ``[L]`` strings) and its ``RankingEncDecFeatureConverter``.
  Its tasks module imports the ``t5`` package (not installed; it needs only
  ``t5.data.Feature``, ``TaskRegistry`` and the default vocabulary), so a stub
  ``t5`` module maps those to seqio before the import. ByteVocabulary cannot run
  there: seqio's ``ByteVocabulary.encode_tf`` on ``[L]`` strings of different
  lengths fails (``DecodeRaw requires input strings to all be the same size``);
  the table says so;
* ``naive``: per-item Python tokenisation (``vocab.encode`` of each formatted
  string) and NumPy padding, list by list.

Data: the demo corpus (train split, ``L=8``, ``T=128`` as ``gin/demo``) and a
synthetic MS-MARCO-like directory (default 20k passages of ~56 words drawn from
the SentencePiece vocabulary's whole-word pieces, ~330 bytes as MS-MARCO, 2000
training queries with a 30-candidate run; ``L=10``, ``T=256`` as
``gin/runs/_ranking.gin``). Each cell is the best of ``--repeats`` passes over
``--num_lists`` lists (after a warm-up batch): wall-clock lists/s, and in
brackets lists per CPU-second of the whole process (all threads). The machine's cores are shared by everything
running on it; run it on an idle machine.

  python benchmarks/data_pipeline.py
  python benchmarks/data_pipeline.py --num_lists 500 --spm /path/to/spiece.model
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
import types

import numpy as np

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import seqio  # pylint: disable=g-import-not-at-top
import t5rank.tasks  # pylint: disable=g-import-not-at-top
from t5rank.tasks import common  # pylint: disable=g-import-not-at-top
import tensorflow as tf  # pylint: disable=g-import-not-at-top

from t5rank.data import feature_converters  # pylint: disable=g-import-not-at-top
from t5rank.data import preprocessors  # pylint: disable=g-import-not-at-top

BATCH_SIZE = 32


def _lengths(list_size: int, tokens: int) -> dict:
  return {
    "inputs": (list_size, tokens),
    "targets": (list_size, 1),
    "label": (list_size,),
    "mask": (list_size,),
  }


def write_synthetic_msmarco(
  folder: str,
  vocab: seqio.Vocabulary | None,
  *,
  num_passages: int,
  num_queries: int,
  candidates: int = 30,
  seed: int = 0,
) -> None:
  """MS-MARCO-named train files with English-like words (T5 pieces if given)."""
  rng = np.random.default_rng(seed)
  if isinstance(vocab, seqio.SentencePieceVocabulary):
    pieces = [vocab.tokenizer.id_to_piece(i) for i in range(1000, 20000)]
    words = [
      p[1:]
      for p in pieces
      if p.startswith("\u2581") and p[1:].isalpha() and len(p) > 3
    ]
  else:
    words = [
      "".join(chr(97 + c) for c in rng.integers(0, 26, rng.integers(3, 9)))
      for _ in range(8000)
    ]
  words = np.array(words)
  zipf = 1.0 / np.arange(1, len(words) + 1)
  zipf /= zipf.sum()

  def text(n):
    return " ".join(words[rng.choice(len(words), n, p=zipf)].tolist())

  with open(os.path.join(folder, "collection.tsv"), "w") as f:
    for pid in range(num_passages):
      f.write(f"{pid}\t{text(int(rng.integers(30, 80)))}.\n")
  qids = list(range(num_queries))
  positives = rng.integers(0, num_passages, num_queries)
  with open(os.path.join(folder, "queries.train.tsv"), "w") as f:
    f.writelines(f"q{q}\t{text(int(rng.integers(4, 9)))}?\n" for q in qids)
  with open(os.path.join(folder, "qrels.train.tsv"), "w") as f:
    f.writelines(f"q{q}\t0\t{p}\t1\n" for q, p in zip(qids, positives))
  with open(os.path.join(folder, "run.train.tsv"), "w") as f:
    for q, pos in zip(qids, positives):
      cands = rng.choice(num_passages, candidates, replace=False).tolist()
      cands[int(rng.integers(0, candidates))] = int(pos)
      cands = list(dict.fromkeys(cands))
      f.writelines(f"q{q}\t{p}\t{r}\n" for r, p in enumerate(cands, 1))


def _time_batches(ds: tf.data.Dataset, num_lists: int) -> tuple[float, float]:
  """(lists/s, lists per CPU-second) over ``num_lists`` lists, after a batch.

  CPU time is that of all the process's threads; on a machine shared with
  other jobs it is the steadier measure of cost.
  """
  it = iter(ds)
  next(it)
  count, start, cpu = 0, time.perf_counter(), time.process_time()
  for batch in it:
    count += int(batch["encoder_input_tokens"].shape[0])
    if count >= num_lists:
      break
  return (
    count / (time.perf_counter() - start),
    count / (time.process_time() - cpu),
  )


def _best(fn, repeats: int) -> tuple[float, float]:
  """Best wall rate and best CPU rate of ``repeats`` runs."""
  runs = [fn() for _ in range(repeats)]
  return max(r[0] for r in runs), max(r[1] for r in runs)


def _memory_dataset(lists: list[dict]) -> tf.data.Dataset:
  """The lists as a tf.data dataset cached in memory (filled before timing)."""
  ds = (
    common.ListExamplesSource(lambda split: lists, ["train"])
    .get_dataset("train", shuffle=False)
    .cache()
  )
  for _ in ds:
    pass
  return ds


def t5rank_files(
  task_name: str, lengths: dict, num_lists: int
) -> tuple[float, float]:
  ds = seqio.get_dataset(
    task_name,
    task_feature_lengths=lengths,
    dataset_split="train",
    shuffle=False,
    num_epochs=1,
    feature_converter=feature_converters.RankingEncDecFeatureConverter(
      pack=False
    ),
    batch_size=BATCH_SIZE,
  )
  return _time_batches(ds, num_lists)


def t5rank_memory(
  lists: list[dict], vocab, lengths: dict, num_lists: int
) -> tuple[float, float]:
  ds = _memory_dataset(lists)
  features = common.output_features(vocab)
  for prep in common.list_preprocessors():
    ds = seqio.utils.add_kwargs_to_transform(
      prep, sequence_length=lengths, output_features=features
    )(ds)
  ds = feature_converters.RankingEncDecFeatureConverter(pack=False)(ds, lengths)
  return _time_batches(ds.batch(BATCH_SIZE), num_lists)


def _import_rax_example(vocab):
  """Imports Rax's T5X example tasks with a stub of the `t5` package."""
  registered = []
  data = types.SimpleNamespace(
    Feature=seqio.Feature,
    get_default_vocabulary=lambda: vocab,
    TaskRegistry=types.SimpleNamespace(
      add=lambda *args, **kwargs: registered.append(args)
    ),
  )
  sys.modules.setdefault("t5", types.SimpleNamespace(data=data))
  from examples.t5x import models as rax_models  # pylint: disable=g-import-not-at-top
  from examples.t5x import tasks as rax_tasks  # pylint: disable=g-import-not-at-top

  return rax_tasks, rax_models


def rax_example(
  lists: list[dict], vocab, lengths: dict, num_lists: int
) -> tuple[float, float]:
  rax_tasks, rax_models = _import_rax_example(vocab)
  ds = (
    _memory_dataset(lists)
    .map(
      lambda ex: {
        "query": ex["query"],
        "passages": {
          "passage_text": ex["passages"],
          "is_selected": tf.cast(ex["label"], tf.int32),
        },
      }
    )
    .cache()
  )
  for _ in ds:
    pass
  features = common.output_features(vocab)
  features["inputs"] = seqio.Feature(vocab, add_eos=False, rank=2)
  ds = rax_tasks._msmarco_preprocessor(ds, features)  # pylint: disable=protected-access
  converter = rax_models.RankingEncDecFeatureConverter(
    pack=False, apply_length_check=False
  )
  ds = converter(ds, lengths)
  return _time_batches(ds.batch(BATCH_SIZE), num_lists)


def naive(
  lists: list[dict], vocab, lengths: dict, num_lists: int
) -> tuple[float, float]:
  list_size, tokens = lengths["inputs"]
  token = preprocessors.score_token_id(vocab)
  start, cpu, count = time.perf_counter(), time.process_time(), 0
  for ex in lists[:num_lists]:
    ids = np.zeros((list_size, tokens), np.int32)
    n = min(len(ex["passages"]), list_size)
    for i in range(n):
      text = f"Query: {ex['query']} Document: {ex['passages'][i]}"
      item = list(vocab.encode(text))[: tokens - 1] + [vocab.eos_id]
      ids[i, : len(item)] = item
    label = np.zeros(list_size, np.float32)
    label[:n] = ex["label"][:n]
    mask = np.arange(list_size) < n
    targets = np.where(mask, token, 0)[:, None]
    del targets
    count += 1
  return (
    count / (time.perf_counter() - start),
    count / (time.process_time() - cpu),
  )


def _collect(lists_iter, n: int) -> list[dict]:
  out = []
  for ex in lists_iter:
    out.append(
      {
        "query_id": ex["query_id"],
        "query": ex["query"],
        "passage_ids": list(ex["passage_ids"]),
        "passages": list(ex["passages"]),
        "label": np.asarray(ex["label"], np.float32),
      }
    )
    if len(out) >= n:
      break
  return out


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--num_lists", type=int, default=1000)
  parser.add_argument("--spm", default="/work/shared/data/t5_spiece.model")
  parser.add_argument("--num_passages", type=int, default=20000)
  parser.add_argument("--num_queries", type=int, default=2000)
  parser.add_argument("--repeats", type=int, default=3)
  args = parser.parse_args()

  from t5rank.data import demo  # pylint: disable=g-import-not-at-top
  from t5rank.data import msmarco  # pylint: disable=g-import-not-at-top

  vocabs = {"bytes": seqio.ByteVocabulary()}
  if os.path.exists(args.spm):
    vocabs = {"t5 spm": common.t5_vocabulary(args.spm), **vocabs}
  else:
    print(f"no SentencePiece model at {args.spm}; ByteVocabulary only")
  tmp = tempfile.mkdtemp(prefix="t5rank_bench_")
  write_synthetic_msmarco(
    tmp,
    vocabs.get("t5 spm"),
    num_passages=args.num_passages,
    num_queries=args.num_queries,
  )
  corpora = {
    "demo": dict(
      data_dir=demo.demo_dir(), files=demo.DEMO_FILES, lengths=_lengths(8, 128)
    ),
    "synthetic msmarco": dict(
      data_dir=tmp, files=msmarco.MSMARCO_FILES, lengths=_lengths(10, 256)
    ),
  }
  print(
    f"tf {tf.__version__}, seqio {seqio.__version__ if hasattr(seqio, '__version__') else '?'}, "
    f"{os.cpu_count()} cores, batch {BATCH_SIZE}, {args.num_lists} lists"
  )
  header = (
    "| corpus | vocab | t5rank files | t5rank memory | rax example | "
    "naive per item | memory / rax | memory / naive |"
  )
  rows = [header, "|" + "---|" * 8]

  def cell(rate):
    return f"{rate[0]:.0f} ({rate[1]:.0f})"

  def ratio(a, b):
    return f"{a[0] / b[0]:.2f}x ({a[1] / b[1]:.2f}x)"

  for corpus, spec in corpora.items():
    list_size = spec["lengths"]["inputs"][0]
    lists = _collect(
      msmarco.passage_ranking_lists(
        spec["data_dir"],
        "train",
        list_size=list_size,
        seed=0,
        files=spec["files"],
      ),
      args.num_lists + 2 * BATCH_SIZE,
    )
    lists = lists * (1 + (args.num_lists + 2 * BATCH_SIZE) // len(lists))
    for vocab_name, vocab in vocabs.items():
      name = t5rank.tasks.register_msmarco_passage_ranking(
        spec["data_dir"],
        name="t5rank_bench_" + corpus.replace(" ", "_"),
        list_size=list_size,
        vocabulary=vocab,
        files=spec["files"],
      )
      n, lengths = args.num_lists, spec["lengths"]
      files_rate = _best(lambda: t5rank_files(name, lengths, n), args.repeats)
      memory_rate = _best(
        lambda: t5rank_memory(lists, vocab, lengths, n), args.repeats
      )
      try:
        rax_rate = _best(
          lambda: rax_example(lists, vocab, lengths, n), args.repeats
        )
        rax_cell, rax_ratio = cell(rax_rate), ratio(memory_rate, rax_rate)
      except tf.errors.InvalidArgumentError as e:
        rax_cell = (
          "fails (" + e.message.split(",")[0].split(":")[-1].strip() + ")"
        )
        rax_ratio = "-"
      naive_rate = _best(lambda: naive(lists, vocab, lengths, n), args.repeats)
      rows.append(
        f"| {corpus} | {vocab_name} | {cell(files_rate)} | "
        f"{cell(memory_rate)} | {rax_cell} | {cell(naive_rate)} | "
        f"{rax_ratio} | {ratio(memory_rate, naive_rate)} |"
      )
      print(rows[-1], flush=True)
  print(
    "\nlists/s, best of %d (in brackets: lists per CPU-second of the "
    "process); higher is better\n" % args.repeats + "\n".join(rows)
  )


if __name__ == "__main__":
  main()
