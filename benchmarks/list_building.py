"""List building at MS-MARCO scale: throughput and peak memory, t5rank vs a naive anchor.

Writes a synthetic MS-MARCO-shaped directory into a temporary folder (by default 1M
passages of ~330 bytes, as MS-MARCO's average, 100k training queries with one positive
each and a 30-candidate run), then, each in a fresh subprocess so peak RSS is its own:

* t5rank: `PassageIndex` over collection.tsv (built once, then re-opened from its
  cache), `formats.read_queries/read_qrels/read_run` with id validation, and
  `lists.build_lists` (hard negatives from the run) consumed to the end;
* anchor: the same lists from a dict of every passage as a Python string and a
  ``{qid: [pid, ...]}`` dict run, read with plain ``str.split``.

Both must yield the same lists (a checksum is compared). It prints lists/s, peak RSS,
the memory each stage added, the ratios, and an extrapolation of peak RSS to full
MS-MARCO (8.8M passages, 500k training queries, 30 candidates each) from the per-
passage and per-query memory measured here.

  python benchmarks/list_building.py                      # 1M passages, 100k queries
  python benchmarks/list_building.py --num_passages 100000 --num_queries 10000
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time

import numpy as np

MSMARCO_PASSAGES = 8_841_823
MSMARCO_TRAIN_QUERIES = (
  502_939  # Training queries with a positive in qrels.train.tsv.
)


def _rss_mb() -> tuple[float, float]:
  """(current RSS, peak RSS) of this process in MB, from /proc/self/status."""
  values = {}
  with open("/proc/self/status") as f:
    for line in f:
      if line.startswith(("VmRSS:", "VmHWM:")):
        values[line.split(":")[0]] = int(line.split()[1]) / 1024
  return values["VmRSS"], values["VmHWM"]


def generate(
  folder: str,
  num_passages: int,
  num_queries: int,
  candidates: int,
  seed: int = 0,
) -> None:
  """Writes collection.tsv, queries.train.tsv, qrels.train.tsv, run.train.tsv."""
  rng = np.random.default_rng(seed)
  words = np.array(
    [
      "".join(chr(97 + c) for c in rng.integers(0, 26, rng.integers(2, 10)))
      for _ in range(20000)
    ]
  )
  text = " ".join(words[rng.integers(0, len(words), 4_000_000)].tolist())
  lengths = rng.integers(
    150, 510, num_passages
  )  # Mean ~330 bytes, as MS-MARCO.
  starts = rng.integers(0, len(text) - 600, num_passages)
  with open(os.path.join(folder, "collection.tsv"), "w") as f:
    for start in range(0, num_passages, 100_000):
      stop = min(start + 100_000, num_passages)
      f.write(
        "".join(
          f"{pid}\t{text[s : s + n].strip()}x\n"
          for pid, s, n in zip(
            range(start, stop),
            starts[start:stop].tolist(),
            lengths[start:stop].tolist(),
          )
        )
      )
  qids = rng.choice(1_200_000, num_queries, replace=False)
  positives = rng.integers(0, num_passages, num_queries)
  with open(os.path.join(folder, "queries.train.tsv"), "w") as f:
    f.write(
      "".join(
        f"{q}\t{text[s : s + 40].strip()}?\n"
        for q, s in zip(
          qids.tolist(), rng.integers(0, len(text) - 50, num_queries).tolist()
        )
      )
    )
  with open(os.path.join(folder, "qrels.train.tsv"), "w") as f:
    f.write(
      "".join(
        f"{q}\t0\t{p}\t1\n" for q, p in zip(qids.tolist(), positives.tolist())
      )
    )
  with open(os.path.join(folder, "run.train.tsv"), "w") as f:
    for start in range(0, num_queries, 10_000):
      rows = []
      for q, pos in zip(
        qids[start : start + 10_000].tolist(),
        positives[start : start + 10_000].tolist(),
      ):
        cands = rng.choice(num_passages, candidates, replace=False).tolist()
        if rng.random() < 0.8:  # The run finds the positive most of the time.
          cands[int(rng.integers(0, candidates))] = pos
        cands = list(dict.fromkeys(cands))
        rows.extend(f"{q}\t{p}\t{r}\n" for r, p in enumerate(cands, 1))
      f.write("".join(rows))


def _consume(examples) -> tuple[int, str, float]:
  digest = hashlib.sha1()
  count = 0
  start = time.perf_counter()
  for example in examples:
    count += 1
    digest.update(example["query_id"].encode())
    digest.update("|".join(example["passage_ids"]).encode())
    digest.update(example["label"].tobytes())
    digest.update(example["passages"][-1].encode())
  return count, digest.hexdigest(), time.perf_counter() - start


def phase_t5rank(folder: str, list_size: int, seed: int) -> dict:
  from t5rank.data import collection  # pylint: disable=import-outside-toplevel
  from t5rank.data import formats  # pylint: disable=import-outside-toplevel
  from t5rank.data import lists  # pylint: disable=import-outside-toplevel

  stages = {"start": _rss_mb()[0]}
  t = time.perf_counter()
  passages = collection.PassageIndex(os.path.join(folder, "collection.tsv"))
  open_s = time.perf_counter() - t
  stages["collection"] = _rss_mb()[0]
  t = time.perf_counter()
  queries = formats.read_queries(os.path.join(folder, "queries.train.tsv"))
  qrels = formats.read_qrels(
    os.path.join(folder, "qrels.train.tsv"),
    known_qids=queries,
    known_pids=passages,
  )
  run = formats.read_run(
    os.path.join(folder, "run.train.tsv"),
    known_qids=queries,
    known_pids=passages,
  )
  read_s = time.perf_counter() - t
  stages["queries_qrels_run"] = _rss_mb()[0]
  examples = lists.build_lists(
    queries, qrels, passages, run=run, list_size=list_size, seed=seed
  )
  count, digest, lists_s = _consume(examples)
  stages["lists"] = _rss_mb()[0]
  index_mb = (
    sum(
      os.path.getsize(os.path.join(passages.index_dir, n))
      for n in os.listdir(passages.index_dir)
    )
    / 2**20
  )
  return {
    "index_open_s": open_s,
    "read_s": read_s,
    "index_mb": index_mb,
    "lists": count,
    "lists_s": lists_s,
    "digest": digest,
    "stages_mb": stages,
    "peak_mb": _rss_mb()[1],
  }


def phase_naive(folder: str, list_size: int, seed: int) -> dict:
  from t5rank.data import lists  # pylint: disable=import-outside-toplevel

  stages = {"start": _rss_mb()[0]}
  t = time.perf_counter()
  with open(os.path.join(folder, "collection.tsv"), encoding="utf-8") as f:
    passages = dict(line.rstrip("\n").split("\t", 1) for line in f)
  open_s = time.perf_counter() - t
  stages["collection"] = _rss_mb()[0]
  t = time.perf_counter()
  with open(os.path.join(folder, "queries.train.tsv"), encoding="utf-8") as f:
    queries = dict(line.rstrip("\n").split("\t", 1) for line in f)
  qrels: dict[str, dict[str, int]] = {}
  with open(os.path.join(folder, "qrels.train.tsv"), encoding="utf-8") as f:
    for line in f:
      qid, _, pid, rel = line.split()
      qrels.setdefault(qid, {})[pid] = int(rel)
  run: dict[str, list[str]] = {}
  with open(os.path.join(folder, "run.train.tsv"), encoding="utf-8") as f:
    for line in f:
      qid, pid, _ = line.rstrip("\n").split("\t")
      run.setdefault(qid, []).append(pid)
  read_s = time.perf_counter() - t
  stages["queries_qrels_run"] = _rss_mb()[0]
  examples = lists.build_lists(
    queries, qrels, passages, run=run, list_size=list_size, seed=seed
  )
  count, digest, lists_s = _consume(examples)
  stages["lists"] = _rss_mb()[0]
  return {
    "index_open_s": open_s,
    "read_s": read_s,
    "lists": count,
    "lists_s": lists_s,
    "digest": digest,
    "stages_mb": stages,
    "peak_mb": _rss_mb()[1],
  }


def _extrapolate(result: dict, num_passages: int, num_queries: int) -> float:
  """Peak RSS (MB) at MS-MARCO scale: per-passage and per-query memory scaled up.

  Memory added by opening the collection scales with the passages, the rest of the
  peak with the queries. The index arrays are memory-mapped and paged in as lists
  touch them; they are counted as fully resident (an upper bound).
  """
  stages = result["stages_mb"]
  base = stages["start"]
  per_passage = (
    stages["collection"] - base + result.get("index_mb", 0.0)
  ) / num_passages
  per_query = (result["peak_mb"] - stages["collection"]) / num_queries
  return (
    base + per_passage * MSMARCO_PASSAGES + per_query * MSMARCO_TRAIN_QUERIES
  )


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--num_passages", type=int, default=1_000_000)
  parser.add_argument("--num_queries", type=int, default=100_000)
  parser.add_argument("--candidates", type=int, default=30)
  parser.add_argument("--list_size", type=int, default=16)
  parser.add_argument("--seed", type=int, default=0)
  parser.add_argument(
    "--workdir", default=None, help="reuse generated files here"
  )
  parser.add_argument(
    "--phase", choices=["t5rank", "naive"], help=argparse.SUPPRESS
  )
  args = parser.parse_args()

  if args.phase:
    fn = phase_t5rank if args.phase == "t5rank" else phase_naive
    print(json.dumps(fn(args.workdir, args.list_size, args.seed)))
    return

  folder = args.workdir or tempfile.mkdtemp(prefix="t5rank_lists_")
  try:
    if not os.path.exists(os.path.join(folder, "run.train.tsv")):
      t = time.perf_counter()
      generate(
        folder, args.num_passages, args.num_queries, args.candidates, args.seed
      )
      print(
        f"generated {args.num_passages} passages, {args.num_queries} queries x "
        f"{args.candidates} candidates in {time.perf_counter() - t:.1f}s "
        f"({os.path.getsize(os.path.join(folder, 'collection.tsv')) / 2**20:.0f} MB "
        "collection)"
      )
    from t5rank.data import collection  # pylint: disable=import-outside-toplevel

    t = time.perf_counter()
    collection.PassageIndex(
      os.path.join(folder, "collection.tsv"), rebuild=True
    )
    build_s = time.perf_counter() - t
    results = {}
    for phase in ("t5rank", "naive"):
      out = subprocess.run(
        [
          sys.executable,
          __file__,
          "--phase",
          phase,
          "--workdir",
          folder,
          "--list_size",
          str(args.list_size),
          "--seed",
          str(args.seed),
        ],
        check=True,
        capture_output=True,
        text=True,
      )
      results[phase] = json.loads(out.stdout.strip().splitlines()[-1])
  finally:
    if args.workdir is None:
      shutil.rmtree(folder, ignore_errors=True)

  ours, naive = results["t5rank"], results["naive"]
  assert ours["digest"] == naive["digest"], (
    "t5rank and the anchor built different lists"
  )
  print(
    f"\nlist_size={args.list_size}, hard negatives from the run; "
    f"{ours['lists']} lists (identical in both)"
  )
  print(
    f"t5rank: index build {build_s:.1f}s (once per collection, cached; "
    f"{ours['index_mb']:.0f} MB on disk), open {ours['index_open_s']:.2f}s; "
    f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores"
  )
  header = (
    f"{'':8} {'load coll.':>10} {'read q/qrels/run':>16} {'lists/s':>9} {'peak RSS':>10}"
    f" {'RSS coll.':>10} {'RSS q/qrels/run':>15} {'MS-MARCO est.':>14}"
  )
  print(header)
  for name, r in results.items():
    s = r["stages_mb"]
    print(
      f"{name:8} {r['index_open_s']:9.2f}s {r['read_s']:15.1f}s "
      f"{r['lists'] / r['lists_s']:9.0f} {r['peak_mb']:8.0f}MB "
      f"{s['collection'] - s['start']:8.0f}MB {s['queries_qrels_run'] - s['collection']:13.0f}MB"
      f" {_extrapolate(r, args.num_passages, args.num_queries) / 1024:12.2f}GB"
    )
  print(
    f"ratios t5rank/anchor: lists/s "
    f"{(ours['lists'] / ours['lists_s']) / (naive['lists'] / naive['lists_s']):.2f}x, "
    f"peak RSS {ours['peak_mb'] / naive['peak_mb']:.2f}x, MS-MARCO estimate "
    f"{_extrapolate(ours, args.num_passages, args.num_queries) / _extrapolate(naive, args.num_passages, args.num_queries):.2f}x"
  )


if __name__ == "__main__":
  main()
