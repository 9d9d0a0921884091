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

T5X is an optional dependency (`pip install -e ".[t5x]" && pip install
--no-deps -r requirements-t5x.txt`); without it the commands stop with one
sentence saying how to install it.
"""

import ast
from collections.abc import Mapping
from collections.abc import Sequence
import importlib.resources
import importlib.util
import json
import os
import re
import runpy
import sys
import tempfile

INSTALL_HINT = (
  "{command} needs T5X, which is not installed; install it from a t5rank "
  'checkout with `pip install -e ".[t5x]" && pip install --no-deps -r '
  "requirements-t5x.txt` (T5X, AirIO and jestimator come from pinned commits "
  "of their GitHub repositories, see the README)."
)

DEMO_GIN_FILE = "demo/train.gin"
DEMO_TASK = "t5rank_demo"
_SEARCH_FLAG = "--gin_search_paths"
_HELP_FLAGS = ("-h", "-?", "--help", "--helpshort", "--helpfull", "--helpxml")
# gin's message when a macro is used but never set (e.g. MODEL without a model
# file); it is followed by the whole configuration.
_UNSET_MACRO = re.compile(r"No bindings specified for '([\w.]+)/gin\.macro'")

DEMO_USAGE = f"""\
usage: t5rank-demo [T5X train flags...]
       t5rank-demo --compare=LOSS,LOSS,... [--seeds=0,1,2] [--eval_period=50]
                   [--out=DIR] [T5X train flags...]

Trains the tiny demo ranker of t5rank's gin file {DEMO_GIN_FILE} (a 2+2-layer
T5 over the demo's own SentencePiece vocabulary) on the corpus shipped with
t5rank through T5X's train, then prints its validation ranking metrics next to
those of BM25's order of the same candidates and of a random order.

--compare trains the demo once per loss file (gin/losses/LOSS.gin) and seed,
evaluating every --eval_period steps, and writes DIR/curves.png (dev nDCG@10
and MRR@10 against the step) and DIR/results.md (final metrics, mean and sd
over seeds, and a paired t-test over queries against pointwise sigmoid);
see t5rank.compare.

Every flag is passed to T5X's train after --gin_file={DEMO_GIN_FILE}, so later
gin files and bindings override the demo's, e.g.
  t5rank-demo --gin.TRAIN_STEPS=100 --gin.MODEL_DIR="'/tmp/t5rank_demo'"
Without --gin.MODEL_DIR the run goes to a new folder under the temporary
folder. `t5rank-train --help` lists T5X's own flags.
"""


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
      f"{checkout} (source checkout); reinstall t5rank"
    )
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
        raise SystemExit(
          f"{_SEARCH_FLAG} needs a value (a comma-separated list of folders)."
        )
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


def _run_t5x_main(
  module: str, command: str, argv: Sequence[str] | None
) -> None:
  """Runs `python -m <module>` in this process with t5rank's gin folder."""
  _require_t5x(command)
  args = sys.argv[1:] if argv is None else list(argv)
  sys.argv = [command] + with_t5rank_gin_dir(args)
  # run_name="__main__" runs T5X's script block, exactly as `python -m` does;
  # T5X's run gin files bind `__main__.train` / `__main__.evaluate`.
  try:
    runpy.run_module(module, run_name="__main__", alter_sys=True)
  except ValueError as e:
    unset = _UNSET_MACRO.search(str(e))
    if unset is None:
      raise
    raise SystemExit(unset_macro_message(command, unset.group(1))) from None


def unset_macro_message(command: str, macro: str) -> str:
  """One sentence for a gin macro that a gin file uses but nothing sets.

  >>> print(unset_macro_message("t5rank-train", "MODEL_DIR"))
  t5rank-train: the gin macro MODEL_DIR has no value; set it with --gin.MODEL_DIR=... or a gin file that does.
  """
  if macro == "MODEL":
    return (
      f"{command}: no model: the gin macro MODEL has no value. Give a "
      "model file first, e.g. --gin_file=models/encdec/base.gin "
      "(RankT5-EncDec; sizes small, base, large, xl, xxl) or "
      "--gin_file=models/encoder/base.gin (RankT5-Enc), then the run and "
      "loss files."
    )
  return (
    f"{command}: the gin macro {macro} has no value; set it with "
    f"--gin.{macro}=... or a gin file that does."
  )


def train(argv: Sequence[str] | None = None) -> None:
  """`t5rank-train`: T5X's `t5x.train` main with t5rank's gin folder."""
  _run_t5x_main("t5x.train", "t5rank-train", argv)


def evaluate(argv: Sequence[str] | None = None) -> None:
  """`t5rank-eval`: T5X's `t5x.eval` main with t5rank's gin folder.

  A `CHECKPOINT_PATH` given as a flag is checked before T5X starts; one set in
  a gin file that holds no T5X checkpoint is named when T5X fails to restore.
  """
  _require_t5x("t5rank-eval")
  args = sys.argv[1:] if argv is None else list(argv)
  path = gin_flag_value(args, "CHECKPOINT_PATH")
  if path and not _exists(os.path.join(path, "state")):
    raise SystemExit(_no_checkpoint_message(path))
  try:
    _run_t5x_main("t5x.eval", "t5rank-eval", args)
  except AssertionError as e:
    # T5X asserts that <checkpoint>/state is a folder, naming only that.
    lines = str(e).splitlines()
    if not lines or not lines[0].rstrip("/").endswith("/state"):
      raise
    raise SystemExit(
      _no_checkpoint_message(os.path.dirname(lines[0].rstrip("/")))
    ) from None


def _exists(path: str) -> bool:
  if "://" in path:  # gs://... : T5X's file system layer is TensorFlow's.
    import tensorflow as tf  # pylint: disable=g-import-not-at-top

    return tf.io.gfile.exists(path)
  return os.path.exists(path)


def _no_checkpoint_message(path: str) -> str:
  found = (
    "it does not exist" if not _exists(path) else "it has no 'state' folder"
  )
  return (
    f"t5rank-eval: CHECKPOINT_PATH={path!r} is not a T5X checkpoint: "
    f"{found}. Give a checkpoint folder of a training run, such as "
    "MODEL_DIR/checkpoint_<step>."
  )


def gin_flag_value(argv: Sequence[str], macro: str) -> str | None:
  """The string a gin macro is set to on the command line, or None.

  Reads ``--gin.MACRO=value`` and ``--gin_bindings=MACRO=value`` (the last one
  wins); quoted values are unquoted.

  >>> gin_flag_value(["--gin.CHECKPOINT_PATH='/ckpt/checkpoint_5'"],
  ...                "CHECKPOINT_PATH")
  '/ckpt/checkpoint_5'
  """
  value = None
  argv = list(argv)
  for i, arg in enumerate(argv):
    if arg.startswith(f"--gin.{macro}="):
      value = arg.split("=", 1)[1]
    elif arg.startswith("--gin_bindings") or (
      i > 0 and argv[i - 1] == "--gin_bindings"
    ):
      binding = (
        arg.split("=", 1)[1] if arg.startswith("--gin_bindings=") else arg
      )
      name, equals, rest = binding.partition("=")
      if equals and name.strip() == macro:
        value = rest
  if value is None:
    return None
  value = value.strip()
  try:
    value = ast.literal_eval(value)
  except (ValueError, SyntaxError):
    pass
  return value if isinstance(value, str) else None


def read_inference_metrics(model_dir: str, task: str = DEMO_TASK) -> list[dict]:
  """Returns the seqio metrics T5X wrote for `task` under `model_dir`, by step.

  T5X's inference evaluation hands its metrics to seqio's `JSONLogger`, which
  appends one JSON object per evaluation to
  `<model_dir>/inference_eval/<task>-metrics.jsonl`.
  """
  path = os.path.join(model_dir, "inference_eval", f"{task}-metrics.jsonl")
  if not os.path.exists(path):
    raise FileNotFoundError(
      f"no inference metrics at {path}: did the run evaluate (its gin file "
      "needs infer_eval/utils.DatasetConfig and a seqio.JSONLogger)?"
    )
  with open(path, encoding="utf-8") as f:
    return [json.loads(line) for line in f if line.strip()]


def random_ranking_metrics(
  task: str = DEMO_TASK,
  split: str = "validation",
  num_draws: int = 100,
  seed: int = 0,
) -> Mapping[str, float]:
  """Mean of the task's metrics over `num_draws` uniformly random rankings.

  The reference a trained ranker must beat: each draw scores every item of
  every list of `split` with independent uniform noise and evaluates with the
  task's own seqio metric fns.
  """
  # pylint: disable=g-import-not-at-top
  from absl import logging as absl_logging
  import numpy as np
  import seqio

  # pylint: enable=g-import-not-at-top
  seqio_task = seqio.get_mixture_or_task(task)
  examples = list(
    seqio_task.get_dataset(
      sequence_length=None, split=split, shuffle=False
    ).as_numpy_iterator()
  )
  targets = [
    seqio_task.postprocess_fn(ex["targets"], example=ex, is_target=True)
    for ex in examples
  ]
  rng = np.random.default_rng(seed)
  sums = {}
  verbosity = absl_logging.get_verbosity()
  try:
    for draw in range(num_draws):
      if draw == 1:  # The draws log (e.g. skipped cutoffs) as one evaluation.
        absl_logging.set_verbosity(absl_logging.WARNING)
      _add_random_draw(seqio_task, examples, targets, rng, sums)
  finally:
    absl_logging.set_verbosity(verbosity)
  return {name: total / num_draws for name, total in sums.items()}


def _add_random_draw(seqio_task, examples, targets, rng, sums) -> None:
  """Adds one uniformly random ranking's metrics to ``sums``."""
  import numpy as np  # pylint: disable=g-import-not-at-top

  scores = [
    rng.uniform(size=len(ex["label"])).astype(np.float32) for ex in examples
  ]
  for metric_fn in seqio_task.score_metric_fns:
    for name, value in metric_fn(targets, scores).items():
      value = getattr(value, "value", value)
      sums[name] = sums.get(name, 0.0) + float(value)


def demo(argv: Sequence[str] | None = None) -> None:
  """`t5rank-demo`: trains the demo ranker, then prints validation metrics.

  Same flags as `t5rank-train`, with `--gin_file=demo/train.gin` first (later
  files and `--gin.X=...` override it) and a fresh `MODEL_DIR` under the
  temporary folder unless `--gin.MODEL_DIR=...` is given.
  """
  args = sys.argv[1:] if argv is None else list(argv)
  if any(a.split("=", 1)[0] in _HELP_FLAGS for a in args):
    print(DEMO_USAGE, end="")
    return
  _require_t5x("t5rank-demo")
  if any(a == "--compare" or a.startswith("--compare=") for a in args):
    from t5rank import compare  # pylint: disable=g-import-not-at-top

    compare.main(args)
    return
  created = None
  if not any(a.startswith("--gin.MODEL_DIR=") for a in args):
    created = tempfile.mkdtemp(prefix="t5rank_demo_")
    args.append(f"--gin.MODEL_DIR='{created}'")
  model_dir = [a for a in args if a.startswith("--gin.MODEL_DIR=")][-1]
  model_dir = model_dir.split("=", 1)[1].strip().strip("'\"")
  try:
    train([f"--gin_file={DEMO_GIN_FILE}"] + args)
  except SystemExit as e:  # absl's app.run exits after the main returns.
    if e.code not in (None, 0):
      _remove_if_empty(created)
      raise
  except BaseException:
    _remove_if_empty(created)
    raise
  print(demo_report(model_dir))


def _remove_if_empty(folder: str | None) -> None:
  """Removes a model folder the demo made when a failed run left it empty."""
  if folder and os.path.isdir(folder) and not os.listdir(folder):
    os.rmdir(folder)


def first_stage_metrics(
  task: str = DEMO_TASK, split: str = "dev"
) -> Mapping[str, float]:
  """The demo's metrics of the first stage's own order (BM25's ranks).

  The run file of the demo corpus's ``split`` ("dev" or "tune"), its ranks
  as scores, evaluated as the task's seqio metrics do
  (`t5rank.data.metric_fns.evaluate` over the judged queries).
  """
  # pylint: disable=g-import-not-at-top
  from t5rank.data import demo as demo_data
  from t5rank.data import formats
  from t5rank.data import metric_fns

  # pylint: enable=g-import-not-at-top
  if task != DEMO_TASK:
    raise ValueError(f"first_stage_metrics: only {DEMO_TASK!r}, not {task!r}")
  files = demo_data.DEMO_FILES.split(split)
  ranked = formats.read_run(os.path.join(demo_data.demo_dir(), files.run))
  lists = metric_fns.query_lists_from_run(
    {
      q: {p: -float(r) for r, p in enumerate(pids)}
      for q, pids in ranked.items()
    }
  )
  qrels = formats.read_qrels(os.path.join(demo_data.demo_dir(), files.qrels))
  return metric_fns.evaluate(lists, qrels)


def demo_report(model_dir: str, task: str = DEMO_TASK) -> str:
  """The last validation metrics of a demo run beside BM25's and random's.

  Ends with one line saying whether the trained ranker beats BM25's order of
  the same candidates on nDCG@10 and MRR@10.
  """
  trained = dict(read_inference_metrics(model_dir, task)[-1])
  references = {
    "BM25": first_stage_metrics(task),
    "random": random_ranking_metrics(task),
  }
  step = trained.pop("step")
  header = f"  {'metric':<12}{'trained':>10}" + "".join(
    f"{name:>10}" for name in references
  )
  lines = [
    f"t5rank demo: `{task}` validation split after {step} training "
    f"steps (model_dir={model_dir})",
    header,
  ]
  counts = []
  for name in sorted(trained):
    value = trained[name]
    if name.startswith("num_"):
      counts.append(f"{name}={int(value)}")
    elif isinstance(value, (int, float)):
      cells = [
        f"{ref[name]:10.4f}" if name in ref else f"{'-':>10}"
        for ref in references.values()
      ]
      lines.append(f"  {name:<12}{value:10.4f}" + "".join(cells))
  if counts:
    lines.append("  " + ", ".join(counts))
  bm25 = references["BM25"]
  verdicts = [
    f"{name} {'+' if trained[name] >= bm25[name] else ''}"
    f"{trained[name] - bm25[name]:.4f}"
    for name in ("ndcg@10", "mrr@10")
    if name in trained and name in bm25
  ]
  if len(verdicts) == 2:
    beats = all(trained[n] > bm25[n] for n in ("ndcg@10", "mrr@10"))
    lines.append(
      (
        "  The trained ranker beats"
        if beats
        else "  The trained ranker does not beat"
      )
      + " BM25's order of the same candidates ("
      + ", ".join(verdicts)
      + ")."
    )
  return "\n".join(lines)
