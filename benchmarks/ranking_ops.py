"""Times t5rank.ranking ops against Rax in one process, jit-compiled.

Each case is a named pair of functions with the Rax call convention; 'metric'
cases time the forward pass, 'loss' cases time value and gradient w.r.t. the
scores. Inputs: 10% of items masked, 10% positive (binary labels), boolean
masks, float32 normal scores. Next to the run times it prints each
function's compile time (tracing, lowering and XLA compilation of fresh
``jax.jit``s, the fastest of three) for both libraries, in the same process,
the two libraries taking turns.

  python benchmarks/ranking_ops.py --rax_path=/work/ext/rax

``--rax_path`` puts a Rax source tree first on ``sys.path`` (the Rax 0.4.0
wheel's transformations fail on jax 0.10 because they use ``jax.util``).
Without it, Rax's approx transformation is reproduced by passing Rax's own
``approx_ranks``/``approx_cutoff`` to its metric (what ``approx_t12n`` does)
and its Gumbel transformation by the same five steps as its source.
Add cases to ``CASES`` (e.g. losses) as ``Case(name, kind, ours, theirs)``.
"""

import argparse
from collections.abc import Callable
import dataclasses
import functools
import statistics
import sys
import time


@dataclasses.dataclass(frozen=True)
class Case:
  name: str
  kind: str  # 'metric' (forward) or 'loss' (value and grad).
  ours: Callable[..., object]
  theirs: Callable[..., object] | None
  needs_key: bool = False


def _rax_gumbel(fn, samples=8, beta=1.0):
  """Rax 0.4.0's gumbel_t12n without its jax.util-based wrapper."""
  import jax  # pylint: disable=g-import-not-at-top
  import jax.numpy as jnp  # pylint: disable=g-import-not-at-top

  def wrapped(scores, labels, *, key, **kwargs):
    rep = lambda a: jnp.repeat(jnp.expand_dims(a, 0), samples, 0)
    scores, labels = rep(scores), rep(labels)
    kwargs = {
      k: rep(v) if isinstance(v, jax.Array) else v for k, v in kwargs.items()
    }
    key, kwargs["key"] = jax.random.split(key)
    noisy = jax.random.gumbel(key, scores.shape) * beta + scores
    return fn(noisy, labels, **kwargs)

  return wrapped


def build_cases(rax_has_t12n: bool) -> list[Case]:
  """The benchmark table (import-time free of Rax so --rax_path can act)."""
  import rax  # pylint: disable=g-import-not-at-top
  from rax._src import utils as rax_utils  # pylint: disable=g-import-not-at-top

  from t5rank.ranking import metrics  # pylint: disable=g-import-not-at-top
  from t5rank.ranking import t12n  # pylint: disable=g-import-not-at-top

  cases = []
  for name in (
    "mrr_metric",
    "dcg_metric",
    "ndcg_metric",
    "precision_metric",
    "recall_metric",
    "ap_metric",
  ):
    for topn in (None, 10):
      label = name if topn is None else f"{name}@{topn}"
      cases.append(
        Case(
          label,
          "metric",
          functools.partial(getattr(metrics, name), topn=topn),
          functools.partial(getattr(rax, name), topn=topn),
        )
      )
  cases.append(Case("opa_metric", "metric", metrics.opa_metric, rax.opa_metric))
  cases.append(
    Case(
      "err_metric@10",
      "metric",
      functools.partial(metrics.err_metric, topn=10),
      None,
    )
  )

  if rax_has_t12n:
    rax_approx = rax.approx_t12n(rax.ndcg_metric)
    rax_gumbel_approx = rax.gumbel_t12n(rax.approx_t12n(rax.ndcg_metric))
  else:

    def rax_approx(scores, labels, **kwargs):
      return -rax.ndcg_metric(
        scores,
        labels,
        rank_fn=rax_utils.approx_ranks,
        cutoff_fn=rax_utils.approx_cutoff,
        **kwargs,
      )

    rax_gumbel_approx = _rax_gumbel(rax_approx)
  cases += [
    Case(
      "approx_ndcg (loss+grad)",
      "loss",
      t12n.approx_t12n(metrics.ndcg_metric),
      rax_approx,
    ),
    Case(
      "gumbel_approx_ndcg (loss+grad)",
      "loss",
      t12n.gumbel_t12n(t12n.approx_t12n(metrics.ndcg_metric)),
      rax_gumbel_approx,
      needs_key=True,
    ),
    Case(
      "neuralsort_ndcg (loss+grad)",
      "loss",
      t12n.neuralsort_t12n(metrics.ndcg_metric),
      None,
    ),
  ]
  cases += _loss_cases(rax)
  return cases


def _loss_cases(rax) -> list[Case]:
  """Every loss with its gradient; Rax's where it has the loss."""
  from t5rank.ranking import losses  # pylint: disable=g-import-not-at-top

  cases = []
  for name in (
    "pairwise_logistic_loss",
    "pairwise_hinge_loss",
    "pairwise_soft_zero_one_loss",
    "pairwise_qr_loss",
    "pairwise_mse_loss",
    "softmax_loss",
    "poly1_softmax_loss",
    "unique_softmax_loss",
    "listmle_loss",
    "pointwise_sigmoid_loss",
    "pointwise_mse_loss",
  ):
    cases.append(
      Case(
        f"{name} (loss+grad)", "loss", getattr(losses, name), getattr(rax, name)
      )
    )

  def rax_ndcgloss2pp(scores, labels, **kwargs):
    kwargs = dict(kwargs, normalize=True)
    return rax.dcg_lambdaweight(
      scores, labels, **kwargs
    ) + 10.0 * rax.dcg2_lambdaweight(scores, labels, **kwargs)

  cases.append(
    Case(
      "lambdaloss_loss (loss+grad)",
      "loss",
      losses.lambdaloss_loss,
      functools.partial(
        rax.pairwise_logistic_loss, lambdaweight_fn=rax_ndcgloss2pp
      ),
    )
  )
  for name in ("listnet_loss", "distillation_kl_loss", "margin_mse_loss"):
    cases.append(
      Case(f"{name} (loss+grad)", "loss", getattr(losses, name), None)
    )
  return cases


def _inputs(batch, size, seed=0):
  import jax.numpy as jnp  # pylint: disable=g-import-not-at-top
  import numpy as np  # pylint: disable=g-import-not-at-top

  rng = np.random.default_rng(seed)
  scores = rng.normal(size=(batch, size)).astype(np.float32)
  labels = (rng.random((batch, size)) < 0.1).astype(np.float32)
  where = rng.random((batch, size)) >= 0.1
  return jnp.asarray(scores), jnp.asarray(labels), jnp.asarray(where)


def _jit(case_fn, kind, needs_key):
  """A fresh ``jax.jit`` of the case (no compilation cache hit)."""
  import jax  # pylint: disable=g-import-not-at-top

  if kind == "loss":
    if needs_key:
      return jax.jit(
        jax.value_and_grad(lambda s, y, w, k: case_fn(s, y, where=w, key=k))
      )
    return jax.jit(jax.value_and_grad(lambda s, y, w: case_fn(s, y, where=w)))
  if needs_key:
    return jax.jit(lambda s, y, w, k: case_fn(s, y, where=w, key=k))
  return jax.jit(lambda s, y, w: case_fn(s, y, where=w))


def _timer(
  case_fns, kind, needs_key, scores, labels, where, repeats, compile_repeats
):
  """Per function: (compile s, median ms, min ms) of a jit-compiled call.

  Compile time is the fastest of ``compile_repeats`` times
  ``jit(...).lower(...).compile()`` of a fresh function, tracing included.
  The functions (t5rank's and Rax's) take turns compiling, so that a change
  in machine load between them falls on both: the first compile in a
  process also pays one-time costs (JAX's tracing caches, XLA's first use of
  an op), and a shared 2-core machine drifts by 10-30% within a minute. Run
  times are taken per function after a warm-up (taking turns there would
  time each call with the other's data in the caches).
  """
  import jax  # pylint: disable=g-import-not-at-top

  args = (scores, labels, where)
  if needs_key:
    args += (jax.random.PRNGKey(0),)
  compile_times = [[] for _ in case_fns]
  compiled = [None for _ in case_fns]
  for _ in range(max(1, compile_repeats)):
    for i, case_fn in enumerate(case_fns):
      start = time.perf_counter()
      compiled[i] = _jit(case_fn, kind, needs_key).lower(*args).compile()
      compile_times[i].append(time.perf_counter() - start)
  times = [[] for _ in case_fns]
  for fn, fn_times in zip(compiled, times):
    jax.block_until_ready(fn(*args))
    jax.block_until_ready(fn(*args))
    for _ in range(repeats):
      start = time.perf_counter()
      jax.block_until_ready(fn(*args))
      fn_times.append(time.perf_counter() - start)
  return [
    (min(c), 1e3 * statistics.median(t), 1e3 * min(t))
    for c, t in zip(compile_times, times)
  ]


def main(argv=None):
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument(
    "--rax_path", default="", help="Rax source tree to put first on sys.path."
  )
  parser.add_argument("--shapes", default="512x200,64x1000")
  parser.add_argument("--repeats", type=int, default=15)
  parser.add_argument(
    "--loss_repeats",
    type=int,
    default=3,
    help="Repeats for the (much slower) loss cases.",
  )
  parser.add_argument(
    "--only", default="", help="Comma-separated substrings of case names."
  )
  parser.add_argument(
    "--compile_repeats",
    type=int,
    default=3,
    help="Fresh compiles per case; the fastest is reported.",
  )
  args = parser.parse_args(argv)
  if args.rax_path:
    sys.path.insert(0, args.rax_path)
  import jax  # pylint: disable=g-import-not-at-top
  import rax  # pylint: disable=g-import-not-at-top

  rax_has_t12n = True
  try:
    import jax.numpy as jnp  # pylint: disable=g-import-not-at-top

    rax.approx_t12n(rax.ndcg_metric)(jnp.zeros(2), jnp.ones(2))
  except Exception:  # pylint: disable=broad-except
    rax_has_t12n = False
  print(
    f"jax {jax.__version__}, rax from {rax.__file__} "
    f"(approx/gumbel t12n {'native' if rax_has_t12n else 'reproduced'})"
  )
  cases = build_cases(rax_has_t12n)
  if args.only:
    wanted = args.only.split(",")
    cases = [c for c in cases if any(w in c.name for w in wanted)]

  for shape in args.shapes.split(","):
    batch, size = (int(x) for x in shape.split("x"))
    scores, labels, where = _inputs(batch, size)
    print(
      f"\n[{batch}, {size}]  (median ms over {args.repeats} runs, "
      f"{args.loss_repeats} for losses; min in brackets)"
    )
    print(
      "| case | t5rank ms | rax ms | rax / t5rank | t5rank compile s | "
      "rax compile s | compile t5rank / rax |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|")
    for case in cases:
      repeats = args.loss_repeats if case.kind == "loss" else args.repeats
      timing = (scores, labels, where, repeats, args.compile_repeats)
      fns = [case.ours] + ([] if case.theirs is None else [case.theirs])
      try:
        timings = _timer(fns, case.kind, case.needs_key, *timing)
      except jax.errors.JaxRuntimeError as error:
        # neuralsort's [batch, n, n] soft permutations and their gradient
        # outgrow host memory at [64, 1000]; the table goes on without it.
        reason = str(error).split(":", 1)[0]
        print(f"| {case.name} | {reason} | – | – | – | – | – |", flush=True)
        continue
      ours_c, ours, ours_min = timings[0]
      if case.theirs is None:
        print(
          f"| {case.name} | {ours:.2f} ({ours_min:.2f}) | – | – | "
          f"{ours_c:.2f} | – | – |",
          flush=True,
        )
        continue
      theirs_c, theirs, theirs_min = timings[1]
      print(
        f"| {case.name} | {ours:.2f} ({ours_min:.2f}) | {theirs:.2f} "
        f"({theirs_min:.2f}) | {theirs / ours:.1f}x | {ours_c:.2f} | "
        f"{theirs_c:.2f} | {ours_c / theirs_c:.2f}x |",
        flush=True,
      )


if __name__ == "__main__":
  main()
