"""`t5rank-demo --compare`: the demo ranker trained once per loss and seed.

Each (loss, seed) is one run of T5X's train on the demo (`gin/demo/train.gin`
with `gin/losses/<loss>.gin`, `RANDOM_SEED=<seed>`) that evaluates on the dev
queries every ``eval_period`` steps (or on the tune split with
``--eval_split=tune``, which is how settings are chosen: `t5rank.data.demo`).
The comparison then reads what T5X wrote:

* the learning curves: the seqio metrics of every evaluation
  (``inference_eval/t5rank_demo-metrics.jsonl``);
* the final dev ranking of each run, written as a TREC run by the task's
  metric fn (``dev.trec``; ``tune.trec`` for the tune split), scored per
  query by ir_measures with the same definitions as the seqio metrics (nDCG@10 with gain ``2^y - 1`` and
  trec_eval's ideal over all judged passages; RR@10).

and writes into ``out_dir``:

* ``curves.png``: dev nDCG@10 and MRR@10 against the training step, one line
  per loss (the mean over seeds) with a band from the lowest to the highest
  seed, and BM25's and a random order's values as horizontal lines;
* ``results.md`` (also printed): the final metrics, mean ± sd over seeds, and
  a paired t-test over the dev queries of each loss against pointwise sigmoid
  (per-query values averaged over seeds first);
* ``results.json``: every number above.

Runs already finished in ``out_dir`` (a ``dev.trec`` and their last
evaluation at the final step) are not trained again, so an interrupted
comparison continues where it stopped::

  t5rank-demo --compare=softmax,sigmoid,pairwise_logistic,gumbel_approx_ndcg \\
      --seeds=0,1,2 --out=/tmp/t5rank_compare

Flags after the comparison's own go to every T5X run (e.g.
``--gin.TRAIN_STEPS=300``).
"""

from __future__ import annotations

import argparse
from collections.abc import Mapping
from collections.abc import Sequence
import dataclasses
import json
import math
import os
import subprocess
import sys
import time

import numpy as np

DEFAULT_LOSSES = (
  "softmax",
  "sigmoid",
  "pairwise_logistic",
  "gumbel_approx_ndcg",
)
BASELINE = "sigmoid"
METRICS = ("ndcg@10", "mrr@10")
TASK = "t5rank_demo"

_LABELS = {
  "softmax": "softmax (listwise)",
  "sigmoid": "sigmoid (pointwise)",
  "pairwise_logistic": "pairwise logistic",
  "gumbel_approx_ndcg": "Gumbel approx. NDCG",
}


@dataclasses.dataclass
class Run:
  """One finished training run of the comparison.

  Attributes:
    loss: the loss file's name (`gin/losses/<loss>.gin`).
    seed: its `RANDOM_SEED`.
    steps: the steps of its evaluations, in order.
    curves: metric name -> the value at each of ``steps``.
    per_query: metric name -> {query id: final value}.
    seconds: wall time of the training run (0 when it was already done).
  """

  loss: str
  seed: int
  steps: list[int]
  curves: dict[str, list[float]]
  per_query: dict[str, dict[str, float]]
  seconds: float = 0.0

  def final(self, metric: str) -> float:
    return self.curves[metric][-1]


def run_file(eval_split: str = "dev") -> str:
  """The name of the TREC run a run's evaluations write into its folder."""
  return f"{eval_split}.trec"


def train_args(
  loss: str,
  seed: int,
  model_dir: str,
  eval_period: int,
  extra: Sequence[str] = (),
  eval_split: str = "dev",
) -> list[str]:
  """T5X train flags of one run (before t5rank's gin folder is added).

  >>> train_args("softmax", 1, "/tmp/c/softmax/seed_1", 50)[:3]
  ['--gin_file=demo/train.gin', '--gin_file=losses/softmax.gin', "--gin.MODEL_DIR='/tmp/c/softmax/seed_1'"]
  """
  return [
    "--gin_file=demo/train.gin",
    f"--gin_file=losses/{loss}.gin",
    f"--gin.MODEL_DIR={model_dir!r}",
    f"--gin.RANDOM_SEED={seed}",
    f"--gin.EVAL_PERIOD={eval_period}",
    f"--gin.EVAL_SPLIT={eval_split!r}",
    f"--gin.EVAL_RUN_PATH={os.path.join(model_dir, run_file(eval_split))!r}",
    *extra,
  ]


def read_curves(model_dir: str, task: str = TASK):
  """(steps, {metric: values}) of the seqio evaluations T5X wrote."""
  from t5rank import main  # pylint: disable=g-import-not-at-top

  records = main.read_inference_metrics(model_dir, task)
  steps = [int(r["step"]) for r in records]
  return steps, {m: [float(r[m]) for r in records] for m in METRICS}


def per_query_metrics(run_path: str, qrels_path: str):
  """{metric: {qid: value}} of a TREC run, by ir_measures (trec_eval).

  nDCG@10 takes the gains ``2^y - 1`` of the seqio metrics (grade 2 -> 3);
  ir_measures' ideal DCG, like trec_eval's, is over all judged passages.
  Judged queries missing from the run score 0, as in the seqio metrics.
  """
  import ir_measures  # pylint: disable=g-import-not-at-top

  measures = {
    "ndcg@10": ir_measures.nDCG(gains={0: 0, 1: 1, 2: 3}) @ 10,
    "mrr@10": ir_measures.RR @ 10,
  }
  qrels = list(ir_measures.read_trec_qrels(qrels_path))
  judged = sorted({q.query_id for q in qrels})
  run = list(ir_measures.read_trec_run(run_path))
  out = {name: dict.fromkeys(judged, 0.0) for name in measures}
  by_measure = {m: name for name, m in measures.items()}
  for row in ir_measures.iter_calc(list(measures.values()), qrels, run):
    if row.query_id in out[by_measure[row.measure]]:
      out[by_measure[row.measure]][row.query_id] = float(row.value)
  return out


def paired_test(
  per_query: Mapping[str, float], baseline: Mapping[str, float]
) -> tuple[float, float]:
  """(mean difference, two-sided p) of a paired t-test over the same queries."""
  from scipy import stats  # pylint: disable=g-import-not-at-top

  qids = sorted(baseline)
  a = np.array([per_query[q] for q in qids])
  b = np.array([baseline[q] for q in qids])
  diff = a - b
  if not np.any(diff != diff[0]):  # constant differences: t is undefined
    return float(diff.mean()), (1.0 if diff[0] == 0 else 0.0)
  return float(diff.mean()), float(stats.ttest_rel(a, b).pvalue)


def summarize(
  runs: Sequence[Run], baseline: str = BASELINE
) -> dict[str, dict[str, dict[str, float]]]:
  """{loss: {metric: {mean, sd, seeds, diff, p}}} of the final evaluations.

  ``sd`` is over seeds (0 for one seed); ``diff`` and ``p`` compare the loss's
  per-query values (mean over its seeds) with the baseline's by a paired
  t-test over queries (absent for the baseline itself, or without it).
  """
  by_loss: dict[str, list[Run]] = {}
  for run in runs:
    by_loss.setdefault(run.loss, []).append(run)
  mean_per_query = {
    loss: {
      m: {
        q: float(np.mean([r.per_query[m][q] for r in group]))
        for q in group[0].per_query[m]
      }
      for m in METRICS
    }
    for loss, group in by_loss.items()
  }
  out = {}
  for loss, group in by_loss.items():
    out[loss] = {}
    for m in METRICS:
      finals = np.array([r.final(m) for r in group])
      row = {
        "mean": float(finals.mean()),
        "sd": float(finals.std(ddof=1)) if len(finals) > 1 else 0.0,
        "seeds": len(finals),
      }
      if loss != baseline and baseline in by_loss:
        row["diff"], row["p"] = paired_test(
          mean_per_query[loss][m], mean_per_query[baseline][m]
        )
      out[loss][m] = row
  return out


def results_table(
  summary: Mapping[str, Mapping[str, Mapping[str, float]]],
  references: Mapping[str, Mapping[str, float]] = (),
  baseline: str = BASELINE,
  eval_split: str = "dev",
) -> str:
  """The summary as a Markdown table (losses in the order given).

  >>> print(results_table({"sigmoid": {"ndcg@10": {"mean": .5, "sd": .01,
  ...   "seeds": 2}, "mrr@10": {"mean": .6, "sd": .02, "seeds": 2}}}))
  | dev, 2 seeds | nDCG@10 | MRR@10 | nDCG@10 vs sigmoid (p) | MRR@10 vs sigmoid (p) |
  |---|---|---|---|---|
  | sigmoid (pointwise) | 0.500 ± 0.010 | 0.600 ± 0.020 |  |  |
  """
  seeds = max(
    row["seeds"] for rows in summary.values() for row in rows.values()
  )
  lines = [
    f"| {eval_split}, {seeds} seed{'s' if seeds != 1 else ''} | nDCG@10 | MRR@10 | "
    f"nDCG@10 vs {baseline} (p) | MRR@10 vs {baseline} (p) |",
    "|---|---|---|---|---|",
  ]
  for loss, rows in summary.items():
    cells = [_LABELS.get(loss, loss)]
    cells += [f"{rows[m]['mean']:.3f} ± {rows[m]['sd']:.3f}" for m in METRICS]
    for m in METRICS:
      row = rows[m]
      cells.append(
        f"{row['diff']:+.3f} (p={row['p']:.2g})" if "diff" in row else ""
      )
    lines.append("| " + " | ".join(cells) + " |")
  for name, values in dict(references).items():
    cells = [name] + [f"{values[m]:.3f}" for m in METRICS] + ["", ""]
    lines.append("| " + " | ".join(cells) + " |")
  return "\n".join(lines)


def plot_curves(
  runs: Sequence[Run],
  path: str,
  references: Mapping[str, Mapping[str, float]] = (),
  eval_split: str = "dev",
) -> None:
  """Writes the learning curves (mean over seeds, min-max band) as a PNG."""
  import matplotlib  # pylint: disable=g-import-not-at-top

  matplotlib.use("Agg")
  from matplotlib import pyplot as plt  # pylint: disable=g-import-not-at-top

  losses = list(dict.fromkeys(r.loss for r in runs))
  fig, axes = plt.subplots(1, len(METRICS), figsize=(6 * len(METRICS), 4.2))
  styles = (":", "-.")
  for ax, metric in zip(np.atleast_1d(axes), METRICS):
    for loss in losses:
      group = [r for r in runs if r.loss == loss]
      steps = group[0].steps
      n = min(len(r.steps) for r in group)
      values = np.array([r.curves[metric][:n] for r in group])
      (line,) = ax.plot(
        steps[:n],
        values.mean(0),
        marker="o",
        ms=3,
        label=_LABELS.get(loss, loss),
      )
      if len(group) > 1:
        ax.fill_between(
          steps[:n],
          values.min(0),
          values.max(0),
          alpha=0.2,
          color=line.get_color(),
        )
    for (name, values), style in zip(dict(references).items(), styles):
      ax.axhline(values[metric], color="gray", ls=style, lw=1, label=name)
    ax.set_xlabel("training step")
    ax.set_ylabel(
      f"{eval_split} {metric.replace('ndcg', 'nDCG').replace('mrr', 'MRR')}"
    )
    ax.grid(alpha=0.3)
  np.atleast_1d(axes)[0].legend(loc="lower right", fontsize=8)
  seeds = len({r.seed for r in runs})
  fig.suptitle(
    f"t5rank demo: {eval_split} metrics while training (mean of {seeds} seed"
    f"{'s' if seeds != 1 else ''}, band: lowest to highest)"
  )
  fig.tight_layout()
  fig.savefig(path, dpi=110)
  plt.close(fig)


def reference_metrics(
  eval_split: str = "dev",
) -> dict[str, Mapping[str, float]]:
  """The metrics of BM25's order and of a random order (mean of draws).

  Both over the whole run of ``eval_split`` (the BM25 top 30 of each query),
  as the demo evaluates.
  """
  # pylint: disable=g-import-not-at-top
  from t5rank import main
  from t5rank import tasks
  from t5rank.data import demo

  # pylint: enable=g-import-not-at-top
  tasks.register_t5rank_demo(
    eval_list_size=demo.DEV_DEPTH, validation_split=eval_split
  )
  try:
    return {
      "BM25 (first stage)": main.first_stage_metrics(TASK, eval_split),
      "random order": main.random_ranking_metrics(TASK),
    }
  finally:
    tasks.register_t5rank_demo(eval_list_size=demo.DEV_DEPTH)


def finished(model_dir: str, total_steps: int | None, eval_split: str) -> bool:
  """Whether ``model_dir`` holds a run evaluated at ``total_steps`` (any)."""
  if not os.path.exists(os.path.join(model_dir, run_file(eval_split))):
    return False
  try:
    steps, _ = read_curves(model_dir)
  except FileNotFoundError:
    return False
  return bool(steps) and (total_steps is None or steps[-1] == total_steps)


def gin_int(extra: Sequence[str], macro: str) -> int | None:
  """The int a `--gin.MACRO=N` flag among ``extra`` sets (the last one)."""
  for arg in reversed(list(extra)):
    if arg.startswith(f"--gin.{macro}="):
      return int(arg.split("=", 1)[1])
  return None


def train_run(
  loss: str,
  seed: int,
  model_dir: str,
  eval_period: int,
  extra: Sequence[str] = (),
  log_path: str | None = None,
  eval_split: str = "dev",
) -> float:
  """Trains one run in a child process (T5X's flags are process-wide)."""
  from t5rank import main  # pylint: disable=g-import-not-at-top

  args = main.with_t5rank_gin_dir(
    train_args(loss, seed, model_dir, eval_period, extra, eval_split)
  )
  os.makedirs(model_dir, exist_ok=True)
  log_path = log_path or os.path.join(model_dir, "train.log")
  start = time.time()
  with open(log_path, "w", encoding="utf-8") as log:
    done = subprocess.run(
      [sys.executable, "-m", "t5x.train", *args],
      stdout=log,
      stderr=subprocess.STDOUT,
      check=False,
    )
  if done.returncode:
    with open(log_path, encoding="utf-8") as f:
      tail = "".join(f.readlines()[-15:])
    raise RuntimeError(
      f"training {loss} (seed {seed}) failed with exit code "
      f"{done.returncode}; its log is {log_path}; last lines:\n{tail}"
    )
  return time.time() - start


def compare(
  losses: Sequence[str],
  seeds: Sequence[int],
  out_dir: str,
  *,
  eval_period: int = 50,
  extra: Sequence[str] = (),
  log=print,
  eval_split: str = "dev",
) -> dict:
  """Trains every (loss, seed), then writes curves.png, results.md/.json."""
  from t5rank.data import demo  # pylint: disable=g-import-not-at-top

  qrels_path = os.path.join(
    demo.demo_dir(), demo.DEMO_FILES.split(eval_split).qrels
  )
  total_steps = gin_int(extra, "TRAIN_STEPS")
  runs = []
  plan = [(loss, seed) for loss in losses for seed in seeds]
  started = time.time()
  trained_seconds = []
  for i, (loss, seed) in enumerate(plan):
    model_dir = os.path.join(out_dir, loss, f"seed_{seed}")
    seconds = 0.0
    if finished(model_dir, total_steps, eval_split):
      log(f"[{i + 1}/{len(plan)}] {loss}, seed {seed}: done before, reused")
    else:
      left = ""
      if trained_seconds:
        remaining = (len(plan) - i) * float(np.mean(trained_seconds))
        left = f" (about {_minutes(remaining)} left)"
      log(f"[{i + 1}/{len(plan)}] {loss}, seed {seed}: training{left}")
      seconds = train_run(
        loss, seed, model_dir, eval_period, extra, eval_split=eval_split
      )
      trained_seconds.append(seconds)
    steps, curves = read_curves(model_dir)
    per_query = per_query_metrics(
      os.path.join(model_dir, run_file(eval_split)), qrels_path
    )
    run = Run(loss, seed, steps, curves, per_query, seconds)
    runs.append(run)
    log(
      f"    step {steps[-1]}: "
      + ", ".join(f"{m} {run.final(m):.3f}" for m in METRICS)
      + (f" ({_minutes(seconds)})" if seconds else "")
    )
  references = reference_metrics(eval_split)
  summary = summarize(runs)
  table = results_table(summary, references, eval_split=eval_split)
  plot_curves(runs, os.path.join(out_dir, "curves.png"), references, eval_split)
  with open(os.path.join(out_dir, "results.md"), "w", encoding="utf-8") as f:
    f.write(table + "\n")
  result = {
    "summary": summary,
    "references": {
      k: {m: float(v[m]) for m in METRICS} for k, v in references.items()
    },
    "runs": [dataclasses.asdict(r) for r in runs],
    "seconds": time.time() - started,
    "eval_split": eval_split,
  }
  with open(os.path.join(out_dir, "results.json"), "w", encoding="utf-8") as f:
    json.dump(result, f, indent=1)
  log(table)
  log(f"wrote {out_dir}/curves.png, results.md, results.json")
  return result


def _minutes(seconds: float) -> str:
  return f"{int(seconds // 60)}m {int(math.ceil(seconds % 60)):02d}s"


def main(argv: Sequence[str] | None = None) -> None:
  """`t5rank-demo --compare=LOSSES [--seeds=...] [--out=...] [T5X flags]`."""
  parser = argparse.ArgumentParser(
    prog="t5rank-demo --compare",
    description=__doc__.split("\n\n")[0],
  )
  parser.add_argument(
    "--compare",
    default=",".join(DEFAULT_LOSSES),
    help="comma-separated loss files of gin/losses (default: %(default)s)",
  )
  parser.add_argument("--seeds", default="0,1,2", help="RANDOM_SEEDs")
  parser.add_argument("--eval_period", type=int, default=50)
  parser.add_argument("--out", default="t5rank_compare", help="output folder")
  parser.add_argument(
    "--eval_split",
    choices=("dev", "tune"),
    default="dev",
    help="evaluate on dev (report) or on the tune split (choose settings)",
  )
  args, extra = parser.parse_known_args(argv)
  losses = [x for x in args.compare.split(",") if x]
  from t5rank import main as main_lib  # pylint: disable=g-import-not-at-top

  available = os.listdir(os.path.join(main_lib.gin_dir(), "losses"))
  unknown = [x for x in losses if f"{x}.gin" not in available]
  if unknown:
    names = sorted(f[:-4] for f in available if not f.startswith("_"))
    raise SystemExit(
      f"t5rank-demo --compare: no loss file for {unknown}; choose from {names}"
    )
  try:
    seeds = [int(s) for s in args.seeds.split(",") if s]
  except ValueError:
    raise SystemExit(
      f"t5rank-demo --compare: --seeds={args.seeds!r} is not a "
      "comma-separated list of integers"
    ) from None
  compare(
    losses,
    seeds,
    args.out,
    eval_period=args.eval_period,
    extra=extra,
    eval_split=args.eval_split,
  )
