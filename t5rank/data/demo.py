"""The demo corpus: a small synthetic MS-MARCO that ships with t5rank.

It lets the whole pipeline (lists -> seqio task -> T5X training -> eval) run on a
laptop CPU with no download. The files in ``t5rank/data/demo_corpus/`` (`demo_dir`)
have the MS-MARCO passage-ranking formats and are listed by `DEMO_FILES`:

=====================  ====================================================
collection.tsv         4,500 passages (``pid \\t passage``), 29-104 bytes (mean 58)
queries.train.tsv      2,000 training queries (``qid \\t query``, mean 28 bytes)
queries.dev.tsv        200 dev queries
qrels.train.tsv        TREC qrels, graded: 2 = answers the question,
qrels.dev.tsv          1 = on topic without the answer (3 of each per query)
run.train.tsv          BM25 top 25 per training query (``qid \\t pid \\t rank``)
run.dev.tsv            BM25 top 30 per dev query
queries.tune.tsv       306 of the training queries, for choosing settings
qrels.tune.tsv,        (see "The tune split"); their qrels, and their BM25
run.tune.tsv           top 30 as for dev
spm.model              SentencePiece BPE vocabulary fitted to the collection
                       and the training queries (1,000 pieces, T5's special
                       ids: pad 0, eos 1, unk 2); `vocabulary()`
=====================  ====================================================

**The world.** 250 made-up places (``Valmor``, ``Kesh``...), each with six facts: its
capital, river, language, currency, founder and highest mountain, all made-up names.
For each (place, fact) the collection states the fact twice with different wordings
(grade 2: "The capital of Valmor is Orin.", "Government offices of Valmor sit in
Orin.") and has one on-topic passage without the answer (grade 1: "Valmor has moved its
capital twice in its history."). About a third of the passages add a sentence naming
another place, mostly with a fact word ("Its capital is a day from Kesh."): a lexical
distractor for the queries about Kesh. Some place names contain others (Brai, Braith).

**Queries** ask for one fact of one place in one of three wordings ("what is the
capital of Valmor", "capital city of Valmor", "where is the government of Valmor").
The 1,500 (place, fact) pairs are split: 200 held-out pairs make the dev queries, the
other 1,300 make 2,000 training queries (some pairs asked in two wordings), so dev
asks about facts no training query asked about.

**The tune split.** Settings (model size, steps, learning rate...) are chosen
on the tune split, never on dev. It holds every training query about 200
training pairs drawn at random, 306 queries; a tuning run
(``register_t5rank_demo(validation_split="tune")``, or
``--gin.EVAL_SPLIT="'tune'"`` with ``gin/demo/train.gin``) evaluates on them
and leaves them out of its training lists, so it trains on the other 1,694
queries. The chosen settings then train on all 2,000 training queries and
are evaluated on dev once. (The vocabulary was fitted to all training queries:
the tune queries' words, all of them templates and place names found in the
collection, are in it.)

**Candidates** come from BM25 (k1=0.9, b=0.4, as Anserini) over lowercased word
tokens. Its top candidates are hard negatives: the same place's other facts, the same
fact of other places, and passages that name the place in passing.

**Why it is learnable but not trivial.** Relevance needs two matches: the place in the
query must be the subject of the passage, and the passage's wording must state the
asked-for fact, where half the wordings use other words than the query (capital ~
"government offices", river ~ "flows through", founder ~ "first settlers"). Telling
grade 2 from grade 1 needs the answer's presence, not just the topic words. BM25 gets
the place right but often not the fact. On the dev lists (the 30 BM25 candidates,
labels as in the qrels, gain 2^y - 1, ideal ranking within the list):

==================================  ========  ======
ranking of the dev candidates       nDCG@10   MRR@10
==================================  ========  ======
random order                        0.178     0.199
BM25 order                          0.650     0.746
labels (best possible)              0.935     0.935
==================================  ========  ======

(13 dev queries have no relevant passage among their 30 candidates; with trec_eval's
ideal over all judged passages and linear gain, BM25 scores nDCG@10 0.542.) As a check
that text alone carries the signal, a 2-layer byte-level transformer (d=96, trained
from scratch with a listwise softmax loss, 8 lists of 8 per step, Adam 1e-3) reaches
nDCG@10 0.544 after 300 steps and passes BM25's nDCG@10 after ~900 (0.659; MRR@10
0.675), on CPU.

**The vocabulary.** Real runs tokenize with T5's SentencePiece model; the demo
has its own, fitted the same way to the demo's text (never to the dev queries),
so the demo model reads words and word pieces rather than bytes: "Query: q
Document: d" is 31 pieces on average (at most 53) against 108 bytes. Common
words are one piece each; most place names are one piece, the rarer names
(fact values such as capitals and founders) two to four, so a name seen in
few passages shares its pieces with others. `vocabulary()` wraps it in
`seqio.SentencePieceVocabulary` with T5's 100 sentinels, so the demo scores
with RankT5's `<extra_id_10>` as real runs do:

>>> vocab = vocabulary()
>>> vocab.vocab_size, vocab.decode(vocab.encode("capital city of Kesh"))
(1100, 'capital city of Kesh')

Regenerate (byte-identical to the shipped files; a test checks it)::

  python -m t5rank.data.demo --out /tmp/demo_corpus
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
import io
import math
import os
import random
import re

import numpy as np
import sentencepiece as spm
import seqio

from t5rank.data import formats
from t5rank.data import msmarco

SEED = 20240611
NUM_PLACES = 250
NUM_DEV_PAIRS = 200
NUM_TRAIN_QUERIES = 2000
NUM_TUNE_PAIRS = 200
NUM_TUNE_QUERIES = 306
TRAIN_DEPTH = 25
DEV_DEPTH = 30
BM25_K1 = 0.9
BM25_B = 0.4
MENTION_PROBABILITY = 0.35

VOCABULARY_FILE = "spm.model"
VOCABULARY_PIECES = 1000
EXTRA_IDS = 100  # T5's sentinels <extra_id_0> ... <extra_id_99>

DEMO_FILES = msmarco.PassageRankingFiles(
  collection="collection.tsv",
  splits=(
    (
      "train",
      msmarco.SplitFiles(
        "queries.train.tsv", "qrels.train.tsv", "run.train.tsv"
      ),
    ),
    (
      "dev",
      msmarco.SplitFiles("queries.dev.tsv", "qrels.dev.tsv", "run.dev.tsv"),
    ),
    (
      "tune",
      msmarco.SplitFiles("queries.tune.tsv", "qrels.tune.tsv", "run.tune.tsv"),
    ),
  ),
)

# Per fact: query wordings; answer wordings (grade 2; the second half avoids the
# query's key word); on-topic wordings without the answer (grade 1).
_FACTS = {
  "capital": (
    [
      "what is the capital of {p}",
      "capital city of {p}",
      "where is the government of {p}",
    ],
    [
      "The capital of {p} is {v}.",
      "{v} is the capital city of {p}.",
      "Government offices of {p} sit in {v}.",
      "{p} is ruled from the city of {v}.",
    ],
    [
      "{p} has moved its capital twice in its history.",
      "Nobody agrees where the capital of {p} should be.",
    ],
  ),
  "river": (
    ["which river flows through {p}", "main river of {p}", "{p} river name"],
    [
      "The main river of {p} is the {v}.",
      "The river {v} is the longest in {p}.",
      "The {v} flows through the heart of {p}.",
      "Boats on the {v} carry goods across {p}.",
    ],
    [
      "Floods along the rivers of {p} come every spring.",
      "{p} has many small rivers but few bridges.",
    ],
  ),
  "language": (
    [
      "what language is spoken in {p}",
      "official language of {p}",
      "what do people in {p} speak",
    ],
    [
      "The official language of {p} is {v}.",
      "The language of {p} is called {v}.",
      "Most people in {p} speak {v} at home.",
      "Signs in {p} are written in {v}.",
    ],
    [
      "Several languages are heard in the markets of {p}.",
      "Schools in {p} teach a second language.",
    ],
  ),
  "currency": (
    [
      "what currency does {p} use",
      "currency of {p}",
      "what money is used in {p}",
    ],
    [
      "The currency of {p} is the {v}.",
      "The {v} is the national currency of {p}.",
      "Shops in {p} take payment in {v} coins.",
      "Prices in {p} are given in {v}.",
    ],
    [
      "{p} changed its currency after a long war.",
      "The currency of {p} is printed abroad.",
    ],
  ),
  "founder": (
    ["who founded {p}", "founder of {p}", "who started the first town in {p}"],
    [
      "{p} was founded by {v}.",
      "{v} is remembered as the founder of {p}.",
      "The first settlers of {p} followed {v}.",
      "Old songs of {p} praise {v} who built it.",
    ],
    [
      "The founding of {p} is told in many stories.",
      "Historians of {p} argue about who founded it.",
    ],
  ),
  "mountain": (
    [
      "what is the highest mountain in {p}",
      "highest peak of {p}",
      "how tall is the tallest summit in {p}",
    ],
    [
      "The highest mountain in {p} is Mount {v}.",
      "Mount {v} is the highest peak of {p}.",
      "Snow never leaves the summit of {v} above {p}.",
      "Climbers in {p} aim for {v}.",
    ],
    [
      "The mountains of {p} are popular with climbers.",
      "{p} has no mountain higher than its neighbours.",
    ],
  ),
}
# A sentence naming another place {o}; most reuse a fact's key word, so the passage is
# a lexical distractor for the queries about {o}.
_MENTIONS = [
  "It trades with {o}.",
  "It borders {o}.",
  "Its old rival is {o}.",
  "Its capital is a day from {o}.",
  "Its main river also reaches {o}.",
  "Its language is also spoken in {o}.",
  "Its currency is also used in {o}.",
  "Its founder was born in {o}.",
  "Its highest mountain faces {o}.",
]

_ONSETS = [
  "b",
  "d",
  "f",
  "g",
  "k",
  "l",
  "m",
  "n",
  "p",
  "r",
  "s",
  "t",
  "v",
  "z",
  "br",
  "dr",
  "kr",
  "st",
  "th",
  "sh",
  "gr",
  "tr",
]
_VOWELS = ["a", "e", "i", "o", "u", "ai", "ei", "ou"]
_CODAS = ["", "", "n", "r", "l", "s", "th", "m", "k"]


def demo_dir() -> str:
  """The folder of the shipped demo corpus (files named as `DEMO_FILES`)."""
  return os.path.join(os.path.dirname(os.path.abspath(__file__)), "demo_corpus")


def vocabulary(extra_ids: int = EXTRA_IDS) -> seqio.SentencePieceVocabulary:
  """The demo's SentencePiece vocabulary with T5's sentinels (as seqio loads T5's).

  Args:
    extra_ids: sentinel ids appended after the 2,000 pieces (T5 has 100;
      `<extra_id_N>` is id ``vocab_size - 1 - N``).
  """
  return seqio.SentencePieceVocabulary(
    os.path.join(demo_dir(), VOCABULARY_FILE), extra_ids=extra_ids
  )


def fit_vocabulary(texts: Sequence[str]) -> bytes:
  """Fits the demo's SentencePiece model to ``texts``; returns the model file.

  BPE with `VOCABULARY_PIECES` pieces and T5's special ids (pad 0, eos 1, unk
  2, no bos). One thread and texts given in memory make the file a function of
  ``texts`` alone (no input path or thread timing is recorded in it). The
  normalizer is the identity: the demo is ASCII, and NFKC's table would be
  nine tenths of the file.
  """
  model = io.BytesIO()
  spm.SentencePieceTrainer.train(
    sentence_iterator=iter(texts),
    model_writer=model,
    model_type="bpe",
    vocab_size=VOCABULARY_PIECES,
    pad_id=0,
    eos_id=1,
    unk_id=2,
    bos_id=-1,
    character_coverage=1.0,
    normalization_rule_name="identity",
    num_threads=1,
    minloglevel=2,
  )
  return model.getvalue()


def _names(
  rng: random.Random, count: int, taken: set[str], syllables: Sequence[int]
) -> list[str]:
  out = []
  while len(out) < count:
    name = "".join(
      rng.choice(_ONSETS) + rng.choice(_VOWELS) + rng.choice(_CODAS)
      for _ in range(rng.choice(syllables))
    ).capitalize()
    if len(name) >= 4 and name.lower() not in taken:
      taken.add(name.lower())
      out.append(name)
  return out


def _tokens(text: str) -> list[str]:
  return re.findall(r"[a-z0-9]+", text.lower())


class _BM25:
  """Okapi BM25 over a small in-memory collection (Lucene-style idf)."""

  def __init__(self, docs: Sequence[str], k1: float, b: float):
    self.num_docs = len(docs)
    tfs = []
    for doc in docs:
      tf: dict[str, int] = {}
      for token in _tokens(doc):
        tf[token] = tf.get(token, 0) + 1
      tfs.append(tf)
    lengths = np.array([sum(tf.values()) for tf in tfs], dtype=np.float64)
    norms = k1 * (1 - b + b * lengths / lengths.mean())
    postings: dict[str, list[tuple[int, int]]] = {}
    for i, tf in enumerate(tfs):
      for token, count in tf.items():
        postings.setdefault(token, []).append((i, count))
    # One dense row of per-document contributions per term.
    self.term_scores: dict[str, np.ndarray] = {}
    for token, posting in postings.items():
      docs_idx = np.array([i for i, _ in posting])
      counts = np.array([c for _, c in posting], dtype=np.float64)
      idf = math.log(
        1 + (self.num_docs - len(posting) + 0.5) / (len(posting) + 0.5)
      )
      row = np.zeros(self.num_docs)
      row[docs_idx] = idf * counts * (k1 + 1) / (counts + norms[docs_idx])
      self.term_scores[token] = row

  def top(self, query: str, k: int) -> list[int]:
    """Indices of the ``k`` best documents (ties: lower index first)."""
    scores = np.zeros(self.num_docs)
    matched = np.zeros(self.num_docs, dtype=bool)
    for token in dict.fromkeys(_tokens(query)):
      if token in self.term_scores:
        scores += self.term_scores[token]
        matched |= self.term_scores[token] > 0
    candidates = np.flatnonzero(matched)
    order = np.lexsort((candidates, -np.round(scores[candidates], 9)))
    return candidates[order[:k]].tolist()


def generate(seed: int = SEED) -> dict[str, dict]:
  """Builds the corpus in memory.

  Returns:
    ``{"collection": {pid: text}, "queries.train": {qid: text}, "queries.dev": ...,
    "qrels.train": {qid: {pid: grade}}, "qrels.dev": ..., "run.train": {qid: [pid]},
    "run.dev": ...}``, all ids str, everything a function of ``seed``.
  """
  rng = random.Random(seed)
  taken = {
    w
    for facts in _FACTS.values()
    for group in facts
    for t in group
    for w in _tokens(t)
  } | {w for t in _MENTIONS for w in _tokens(t)}
  places = _names(rng, NUM_PLACES, taken, (1, 2, 2))
  values = {fact: _names(rng, NUM_PLACES, taken, (2, 2, 3)) for fact in _FACTS}
  first_names = _names(rng, 60, taken, (2,))
  for i, name in enumerate(values["founder"]):
    values["founder"][i] = f"{first_names[i % len(first_names)]} {name}"

  texts: list[str] = []
  pair_passages: dict[tuple[int, str], list[tuple[int, int]]] = {}
  for p, place in enumerate(places):
    for fact, (_, answers, topics) in _FACTS.items():
      value = values[fact][p]
      lexical, other = answers[:2], answers[2:]
      chosen = [
        (rng.choice(lexical), 2),
        (rng.choice(other), 2),
        (rng.choice(topics), 1),
      ]
      for template, grade in chosen:
        text = template.format(p=place, v=value)
        if rng.random() < MENTION_PROBABILITY:
          other_place = places[(p + rng.randrange(1, NUM_PLACES)) % NUM_PLACES]
          text += " " + rng.choice(_MENTIONS).format(o=other_place)
        pair_passages.setdefault((p, fact), []).append((len(texts), grade))
        texts.append(text)

  # pids: a random permutation, so pid order says nothing about the place or grade.
  pid_of = list(range(len(texts)))
  rng.shuffle(pid_of)
  collection = {
    str(pid): texts[i]
    for pid, i in sorted((pid_of[i], i) for i in range(len(texts)))
  }

  pairs = [(p, fact) for p in range(NUM_PLACES) for fact in _FACTS]
  rng.shuffle(pairs)
  dev_pairs, train_pairs = pairs[:NUM_DEV_PAIRS], pairs[NUM_DEV_PAIRS:]
  extra = NUM_TRAIN_QUERIES - len(train_pairs)
  train_asks = [
    (pair, wording)
    for pair in train_pairs[:extra]
    for wording in rng.sample(range(3), 2)
  ]
  train_asks = train_asks + [
    (pair, rng.randrange(3)) for pair in train_pairs[extra:]
  ]
  dev_asks = [(pair, rng.randrange(3)) for pair in dev_pairs]
  qid_values = rng.sample(
    range(10_000, 1_000_000), NUM_TRAIN_QUERIES + NUM_DEV_PAIRS
  )

  train_split = list(zip(train_asks, qid_values[:NUM_TRAIN_QUERIES]))
  # The tune split: the training queries about NUM_TUNE_PAIRS training pairs,
  # drawn by a generator of their own (the other splits are as without it).
  tune_pairs = set(random.Random(seed + 1).sample(train_pairs, NUM_TUNE_PAIRS))
  tune_split = [(ask, q) for ask, q in train_split if ask[0] in tune_pairs]

  bm25 = _BM25(texts, BM25_K1, BM25_B)
  out: dict[str, dict] = {"collection": collection}
  for split, asks, depth in (
    ("train", train_split, TRAIN_DEPTH),
    ("dev", list(zip(dev_asks, qid_values[NUM_TRAIN_QUERIES:])), DEV_DEPTH),
    ("tune", tune_split, DEV_DEPTH),
  ):
    queries, qrels, run = {}, {}, {}
    for ((p, fact), wording), qid_value in sorted(asks, key=lambda a: a[1]):
      qid = str(qid_value)
      queries[qid] = _FACTS[fact][0][wording].format(p=places[p])
      qrels[qid] = {
        str(pid_of[t]): grade for t, grade in pair_passages[(p, fact)]
      }
      run[qid] = [str(pid_of[t]) for t in bm25.top(queries[qid], depth)]
    out[f"queries.{split}"], out[f"qrels.{split}"], out[f"run.{split}"] = (
      queries,
      qrels,
      run,
    )
  return out


def write(out_dir: str | os.PathLike[str], seed: int = SEED) -> list[str]:
  """Writes the corpus and its vocabulary into ``out_dir``; returns the paths.

  The text files are named as `DEMO_FILES`; the vocabulary is
  `VOCABULARY_FILE`.
  """
  os.makedirs(out_dir, exist_ok=True)
  corpus = generate(seed)
  paths = []
  for name, data in corpus.items():
    path = os.path.join(out_dir, f"{name}.tsv")
    if name == "collection":
      formats.write_collection(path, data)
    elif name.startswith("queries"):
      formats.write_queries(path, data)
    elif name.startswith("qrels"):
      formats.write_qrels(path, data)
    else:
      formats.write_run(path, data, format="msmarco")
    paths.append(path)
  # Fitted to the collection and the training queries only.
  texts = [*corpus["collection"].values(), *corpus["queries.train"].values()]
  path = os.path.join(out_dir, VOCABULARY_FILE)
  with open(path, "wb") as f:
    f.write(fit_vocabulary(texts))
  paths.append(path)
  return paths


def main(argv: Sequence[str] | None = None) -> None:
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument(
    "--out", required=True, help="directory to write the files into"
  )
  parser.add_argument(
    "--seed",
    type=int,
    default=SEED,
    help="a different seed makes a different corpus (not the shipped one)",
  )
  args = parser.parse_args(argv)
  for path in write(args.out, args.seed):
    print(f"{path}\t{os.path.getsize(path)} bytes")


if __name__ == "__main__":
  main()
