"""Chooses the demo's settings on the tune split, never on dev.

Each candidate is the shipped demo recipe (`gin/demo/train.gin`: softmax loss,
seed 0) with one change. It trains through T5X's train on the training queries
minus the tune split's and is evaluated on the tune split (306 training
queries about 200 held-out (place, fact) pairs; `t5rank.data.demo`, "The tune
split") at steps 300 and 600. The table ranks the candidates by tune nDCG@10
at the last step (MRR@10 breaks ties); BM25's and a random order's values on
the same tune lists are the reference. Dev is not read.

  python benchmarks/demo_tuning.py --out=/tmp/t5rank_tuning
  # about 7 CPU-minutes a candidate on a 2-core CPU; finished ones are reused

Flags after the script's own go to every run (e.g. ``--gin.TRAIN_STEPS=300``).
"""

import argparse
import os
import sys

from t5rank import compare

# name -> T5X flags that change the shipped recipe.
CANDIDATES = {
  "shipped recipe": [],
  "learning rate 0.005": [
    "--gin.utils.create_learning_rate_scheduler.base_learning_rate=0.005"
  ],
  "learning rate 0.02": [
    "--gin.utils.create_learning_rate_scheduler.base_learning_rate=0.02"
  ],
  "8 lists x 8 a step": ["--gin.BATCH_SIZE=8", "--gin.LIST_SIZE=8"],
  "dropout 0.1": ["--gin.DROPOUT_RATE=0.1"],
}
EVAL_SPLIT = "tune"


def _folder(name: str) -> str:
  return "".join(c if c.isalnum() else "_" for c in name)


def tune(out_dir: str, names, eval_period: int, extra) -> list[dict]:
  """Trains (or reuses) each candidate; returns one row per candidate."""
  rows = []
  for i, name in enumerate(names):
    model_dir = os.path.join(out_dir, _folder(name))
    flags = [*CANDIDATES[name], *extra]
    total = compare.gin_int(flags, "TRAIN_STEPS")
    if compare.finished(model_dir, total, EVAL_SPLIT):
      print(f"[{i + 1}/{len(names)}] {name}: done before, reused", flush=True)
      seconds = None
    else:
      print(f"[{i + 1}/{len(names)}] {name}: training", flush=True)
      seconds = compare.train_run(
        "softmax", 0, model_dir, eval_period, flags, eval_split=EVAL_SPLIT
      )
    steps, curves = compare.read_curves(model_dir)
    rows.append(
      {"name": name, "steps": steps, "curves": curves, "seconds": seconds}
    )
    print(
      f"    {name}: "
      + "; ".join(
        f"step {s}: nDCG@10 {n:.3f}, MRR@10 {m:.3f}"
        for s, n, m in zip(steps, curves["ndcg@10"], curves["mrr@10"])
      ),
      flush=True,
    )
  return rows


def table(rows, references) -> str:
  """Markdown: candidates best first, then the references."""
  ranked = sorted(
    rows,
    key=lambda r: (r["curves"]["ndcg@10"][-1], r["curves"]["mrr@10"][-1]),
    reverse=True,
  )
  steps = ranked[0]["steps"]
  head = " | ".join(f"nDCG@10 / MRR@10 at {s}" for s in steps)
  lines = [f"| tune split | {head} |", "|---" * (1 + len(steps)) + "|"]
  for row in ranked:
    cells = [
      f"{n:.3f} / {m:.3f}"
      for n, m in zip(row["curves"]["ndcg@10"], row["curves"]["mrr@10"])
    ]
    lines.append(f"| {row['name']} | " + " | ".join(cells) + " |")
  for name, values in references.items():
    cell = f"{values['ndcg@10']:.3f} / {values['mrr@10']:.3f}"
    lines.append(f"| {name} | " + " | ".join([cell] * len(steps)) + " |")
  return "\n".join(lines)


def main(argv=None) -> None:
  parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  parser.add_argument("--out", default="t5rank_tuning", help="output folder")
  parser.add_argument(
    "--only",
    default=",".join(CANDIDATES),
    help="comma-separated candidate names (default: all)",
  )
  parser.add_argument("--eval_period", type=int, default=300)
  args, extra = parser.parse_known_args(argv)
  names = [n for n in args.only.split(",") if n]
  unknown = [n for n in names if n not in CANDIDATES]
  if unknown:
    raise SystemExit(
      f"unknown candidates {unknown}; choose from {list(CANDIDATES)}"
    )
  rows = tune(args.out, names, args.eval_period, extra)
  text = table(rows, compare.reference_metrics(EVAL_SPLIT))
  with open(os.path.join(args.out, "results.md"), "w", encoding="utf-8") as f:
    f.write(text + "\n")
  print(text)
  best = max(
    rows,
    key=lambda r: (r["curves"]["ndcg@10"][-1], r["curves"]["mrr@10"][-1]),
  )
  print(f"chosen on the tune split: {best['name']}")


if __name__ == "__main__":
  main(sys.argv[1:])
