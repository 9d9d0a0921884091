"""Console entry points: T5X's own train and eval mains, with t5rank's gin files.

`t5rank-train` and `t5rank-eval` run `python -m t5x.train` and
`python -m t5x.eval` unchanged, with one difference: the folder of t5rank's gin
files (`gin_dir()`) is appended to `--gin_search_paths`, so
`--gin_file=runs/finetune_msmarco.gin` or `--gin_file=losses/listmle.gin` is
found wherever t5rank is installed. Every other flag is T5X's
(`--gin_file`, `--gin.NAME=VALUE`, `--gin_bindings`, `--tfds_data_dir`, ...)::

  t5rank-train --gin_file=runs/finetune_msmarco.gin \
      --gin_file=losses/softmax.gin --gin.MODEL_DIR="'/tmp/msmarco'"

is the same run as::

  python -m t5x.train \
      --gin_search_paths=$(python -c \
          'import t5rank.main; print(t5rank.main.gin_dir())') \
      --gin_file=runs/finetune_msmarco.gin ...

`t5rank-demo` trains the tiny demo ranker of `gin/demo/train.gin` on the corpus
shipped with t5rank and prints its validation ranking metrics next to those of
a random ranking.

T5X is an optional dependency (`pip install "t5rank[t5x]"`); without it the
commands stop with one sentence saying how to install it.
"""

import importlib.resources
import importlib.util
import json
import os
import runpy
import sys
import tempfile
from typing import Mapping, Optional, Sequence

INSTALL_HINT = (
    "{command} needs T5X, which is not installed; install it with "
    "`pip install \"t5rank[t5x]\"` (T5X, AirIO and jestimator come from their "
    "GitHub repositories, see the README)."
)

DEMO_GIN_FILE = "demo/train.gin"
DEMO_TASK = "t5rank_demo"
_SEARCH_FLAG = "--gin_search_paths"


def gin_dir() -> str:
  """Returns the folder of t5rank's gin files (models/, losses/, runs/, ...).

  The files are package data: an installed t5rank holds them in `t5rank/gin`
  (found with `importlib.resources`, as T5X finds `t5x/configs`). In a source
  checkout (an editable install, or the checkout root on `sys.path`) they are
  the checkout's top-level `gin/` folder beside `t5rank/`. The folder holds
  .gin files only; it is not a Python package (a package named `gin` would
  take gin-config's name).

  >>> os.path.isfile(os.path.join(gin_dir(), "losses", "softmax.gin"))
  True
  """
  package = importlib.resources.files("t5rank")
  installed = package / "gin"
  if installed.is_dir():
    return str(installed)
  checkout = os.path.join(os.path.dirname(str(package)), "gin")
  if not os.path.isdir(checkout):
    raise FileNotFoundError(
        f"t5rank's gin folder is neither at {installed} (installed) nor at "
        f"{checkout} (source checkout); reinstall t5rank")
  return checkout


def with_t5rank_gin_dir(argv: Sequence[str]) -> list[str]:
  """Returns `argv` with t5rank's gin folder appended to `--gin_search_paths`.

  The user's own search paths come first (T5X uses the first path under which a
  file exists), then T5X's default `.`, then t5rank's folder. Later
  `--gin_search_paths` flags replace earlier ones in absl, so all given values
  are merged into one flag.

  >>> args = with_t5rank_gin_dir(["--gin_search_paths=a,b", "--gin_file=x.gin"])
  >>> args[0] == "--gin_file=x.gin", args[1].startswith("--gin_search_paths=a,b,")
  (True, True)
  """
  paths, rest = [], []
  argv = list(argv)
  i = 0
  while i < len(argv):
    arg = argv[i]
    if arg.startswith(_SEARCH_FLAG + "="):
      paths.extend(p for p in arg.split("=", 1)[1].split(",") if p)
    elif arg == _SEARCH_FLAG:
      if i + 1 >= len(argv):
        raise SystemExit(f"{_SEARCH_FLAG} needs a value (a comma-separated "
                         "list of folders).")
      paths.extend(p for p in argv[i + 1].split(",") if p)
      i += 1
    else:
      rest.append(arg)
    i += 1
  if not paths:
    paths = ["."]
  folder = gin_dir()
  if folder not in paths:
    paths.append(folder)
  return rest + [f"{_SEARCH_FLAG}={','.join(paths)}"]


def _require_t5x(command: str) -> None:
  if importlib.util.find_spec("t5x") is None:
    print(INSTALL_HINT.format(command=command), file=sys.stderr)
    raise SystemExit(1)


def _run_t5x_main(module: str, command: str,
                  argv: Optional[Sequence[str]]) -> None:
  """Runs `python -m <module>` in this process with t5rank's gin folder."""
  _require_t5x(command)
  args = sys.argv[1:] if argv is None else list(argv)
  sys.argv = [command] + with_t5rank_gin_dir(args)
  # run_name="__main__" runs T5X's script block, exactly as `python -m` does;
  # T5X's run gin files bind `__main__.train` / `__main__.evaluate`.
  runpy.run_module(module, run_name="__main__", alter_sys=True)


def train(argv: Optional[Sequence[str]] = None) -> None:
  """`t5rank-train`: T5X's `t5x.train` main with t5rank's gin folder."""
  _run_t5x_main("t5x.train", "t5rank-train", argv)


def evaluate(argv: Optional[Sequence[str]] = None) -> None:
  """`t5rank-eval`: T5X's `t5x.eval` main with t5rank's gin folder."""
  _run_t5x_main("t5x.eval", "t5rank-eval", argv)


def read_inference_metrics(model_dir: str,
                           task: str = DEMO_TASK) -> list[dict]:
  """Returns the seqio metrics T5X wrote for `task` under `model_dir`, by step.

  T5X's inference evaluation hands its metrics to seqio's `JSONLogger`, which
  appends one JSON object per evaluation to
  `<model_dir>/inference_eval/<task>-metrics.jsonl`.
  """
  path = os.path.join(model_dir, "inference_eval", f"{task}-metrics.jsonl")
  if not os.path.exists(path):
    raise FileNotFoundError(
        f"no inference metrics at {path}: did the run evaluate (its gin file "
        "needs infer_eval/utils.DatasetConfig and a seqio.JSONLogger)?")
  with open(path, encoding="utf-8") as f:
    return [json.loads(line) for line in f if line.strip()]


def random_ranking_metrics(task: str = DEMO_TASK, split: str = "validation",
                           num_draws: int = 100, seed: int = 0
                           ) -> Mapping[str, float]:
  """Mean of the task's metrics over `num_draws` uniformly random rankings.

  The reference a trained ranker must beat: each draw scores every item of
  every list of `split` with independent uniform noise and evaluates with the
  task's own seqio metric fns.
  """
  # pylint: disable=g-import-not-at-top
  import numpy as np
  import seqio
  import t5rank.tasks  # pylint: disable=unused-import  # registers the tasks
  # pylint: enable=g-import-not-at-top
  seqio_task = seqio.get_mixture_or_task(task)
  examples = list(seqio_task.get_dataset(
      sequence_length=None, split=split, shuffle=False).as_numpy_iterator())
  targets = [
      seqio_task.postprocess_fn(ex["targets"], example=ex, is_target=True)
      for ex in examples
  ]
  rng = np.random.default_rng(seed)
  sums = {}
  for _ in range(num_draws):
    scores = [rng.uniform(size=len(ex["label"])).astype(np.float32)
              for ex in examples]
    for metric_fn in seqio_task.score_metric_fns:
      for name, value in metric_fn(targets, scores).items():
        value = getattr(value, "value", value)
        sums[name] = sums.get(name, 0.0) + float(value)
  return {name: total / num_draws for name, total in sums.items()}


def demo(argv: Optional[Sequence[str]] = None) -> None:
  """`t5rank-demo`: trains the demo ranker, then prints validation metrics.

  Same flags as `t5rank-train`, with `--gin_file=demo/train.gin` first (later
  files and `--gin.X=...` override it) and a fresh `MODEL_DIR` under the
  temporary folder unless `--gin.MODEL_DIR=...` is given.
  """
  _require_t5x("t5rank-demo")
  args = sys.argv[1:] if argv is None else list(argv)
  if not any(a.startswith("--gin.MODEL_DIR=") for a in args):
    model_dir = tempfile.mkdtemp(prefix="t5rank_demo_")
    args.append(f"--gin.MODEL_DIR='{model_dir}'")
  model_dir = [a for a in args if a.startswith("--gin.MODEL_DIR=")][-1]
  model_dir = model_dir.split("=", 1)[1].strip().strip("'\"")
  try:
    train([f"--gin_file={DEMO_GIN_FILE}"] + args)
  except SystemExit as e:  # absl's app.run exits after the main returns.
    if e.code not in (None, 0):
      raise
  print(demo_report(model_dir))


def demo_report(model_dir: str, task: str = DEMO_TASK) -> str:
  """The last validation metrics of a demo run next to a random ranking's."""
  trained = dict(read_inference_metrics(model_dir, task)[-1])
  random = random_ranking_metrics(task)
  step = trained.pop("step")
  lines = [f"t5rank demo: `{task}` validation split after {step} training "
           f"steps (model_dir={model_dir})",
           f"  {'metric':<12}{'trained':>10}{'random':>10}"]
  counts = []
  for name in sorted(trained):
    value = trained[name]
    if name.startswith("num_"):
      counts.append(f"{name}={int(value)}")
    elif isinstance(value, (int, float)):
      rand = random.get(name)
      rand = f"{rand:10.4f}" if rand is not None else f"{'-':>10}"
      lines.append(f"  {name:<12}{value:10.4f}{rand}")
  if counts:
    lines.append("  " + ", ".join(counts))
  return "\n".join(lines)
