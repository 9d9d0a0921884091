"""Full jit-compiled train steps of t5rank's T5X rankers against Rax's example.

One T5.1.1-style config (32128-token vocabulary, 4+4 layers, d_model 256,
4 heads x 64, d_ff 1024, gated GELU, dropout 0.1) and one batch of 8 lists x
10 items with MS-MARCO-like lengths (log-normal, mean 75 tokens, tail cut at
the 256-token budget) of which 12 (15%) are padding items. Every variant runs
the same step: `jax.value_and_grad(model.loss_fn)` with the softmax loss, then
an optax Adafactor update, jit-compiled with donated parameters.

Variants (`VARIANTS`; a packed layout adds rows there with its own batch):

* `rax-example`: Rax's T5X example (`examples.t5x.models.RankingEncDecModel`
  on T5X's stock `network.Transformer`): one-hot embedding, full-vocabulary
  logits, then one column. The anchor.
* `encdec-onehot` / `encdec-gather`: `t5rank.models.RankingEncDecModel`
  (T5X's network, full-vocabulary logits, then the score token's column),
  one-hot or table-lookup embedding.
* `encoder-onehot` / `encoder-gather`: `t5rank.models.RankingEncoderModel`.

Timing interleaves the variants round by round (rotating the order) so that
load from other processes hits all of them alike; reported is the median
step time, real items (68 here) per second and the ratio to the anchor, and
the median CPU time of the process per step (all threads), which moves less
than wall time when other processes share the cores.
Memory: XLA's compiled footprint (arguments + temporaries, from
`memory_analysis`) in this process and, unless `--no-rss`, the peak RSS
(VmHWM) of a fresh subprocess per variant (imports, compile and one step) and
its RSS after the imports, before building the model.

Run: python benchmarks/train_step.py [--rounds 5] [--variants a,b] [--no-rss]
"""

import argparse
from collections.abc import Callable
from collections.abc import Mapping
import dataclasses
import json
import os
import statistics
import subprocess
import sys
import time
from typing import Any

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("JAX_PLATFORMS", "cpu")

import jax  # pylint: disable=g-import-not-at-top
import jax.numpy as jnp
import numpy as np
import optax

LISTS, LIST_SIZE, TOKENS = 8, 10, 256
PADDED_ITEMS = 12  # of 80: 15%
SCORE_TOKEN = 32089  # <extra_id_10> in T5's vocabulary


def t5_config():
  from t5x.examples.t5 import network  # pylint: disable=g-import-not-at-top

  return network.T5Config(
    vocab_size=32128,
    dtype=jnp.float32,
    emb_dim=256,
    num_heads=4,
    num_encoder_layers=4,
    num_decoder_layers=4,
    head_dim=64,
    mlp_dim=1024,
    mlp_activations=("gelu", "linear"),
    dropout_rate=0.1,
    logits_via_embedding=False,
  )


@dataclasses.dataclass(frozen=True)
class Lists:
  """The benchmark's lists as dense arrays (numpy)."""

  tokens: np.ndarray  # int32 [B, L, T], 0 = padding
  label: np.ndarray  # float32 [B, L]
  mask: np.ndarray  # bool [B, L]

  @property
  def real_items(self) -> int:
    return int(self.mask.sum())


def make_lists(seed: int = 0) -> Lists:
  """8 x 10 items, log-normal lengths (mean ~75), 12 padded items."""
  rng = np.random.default_rng(seed)
  lengths = rng.lognormal(
    mean=np.log(61.0), sigma=0.55, size=(LISTS, LIST_SIZE)
  )
  lengths = np.clip(np.round(lengths), 8, TOKENS).astype(np.int32)
  mask = np.ones((LISTS, LIST_SIZE), bool)
  slots = rng.choice(LISTS * (LIST_SIZE - 1), PADDED_ITEMS, replace=False)
  kept = np.ones(LISTS * (LIST_SIZE - 1), bool)
  kept[slots] = False
  mask[:, 1:] = kept.reshape(
    LISTS, LIST_SIZE - 1
  )  # item 0, the positive, stays
  tokens = np.zeros((LISTS, LIST_SIZE, TOKENS), np.int32)
  for b in range(LISTS):
    for l in range(LIST_SIZE):
      if mask[b, l]:
        tokens[b, l, : lengths[b, l]] = rng.integers(3, 32000, lengths[b, l])
  label = np.zeros((LISTS, LIST_SIZE), np.float32)
  label[:, 0] = 1.0
  return Lists(tokens=tokens, label=label, mask=mask)


def padded_encdec_batch(lists: Lists) -> dict[str, jnp.ndarray]:
  """The unpacked enc-dec features (as RankingEncDecFeatureConverter)."""
  targets = np.where(lists.mask, SCORE_TOKEN, 0)[..., None].astype(np.int32)
  return {
    "encoder_input_tokens": jnp.asarray(lists.tokens),
    "decoder_input_tokens": jnp.zeros_like(jnp.asarray(targets)),
    "decoder_target_tokens": jnp.asarray(targets),
    "label": jnp.asarray(lists.label),
    "mask": jnp.asarray(lists.mask),
  }


def padded_encoder_batch(lists: Lists) -> dict[str, jnp.ndarray]:
  """The unpacked encoder-only features (as RankingEncoderFeatureConverter)."""
  return {
    "encoder_input_tokens": jnp.asarray(lists.tokens),
    "label": jnp.asarray(lists.label),
    "mask": jnp.asarray(lists.mask),
  }


def _vocabulary():
  import seqio  # pylint: disable=g-import-not-at-top

  # Scores read the targets' token id, so no vocabulary file is needed.
  return seqio.PassThroughVocabulary(size=32128)


def _rax_example(lists: Lists):
  from examples.t5x import models as rax_models  # pylint: disable=g-import-not-at-top
  import rax  # pylint: disable=g-import-not-at-top
  from t5x.examples.t5 import network  # pylint: disable=g-import-not-at-top

  vocab = _vocabulary()
  model = rax_models.RankingEncDecModel(
    network.Transformer(t5_config()),
    vocab,
    vocab,
    None,
    rax_loss_fn=rax.softmax_loss,
  )
  return model, padded_encdec_batch(lists)


def _t5rank_encdec(one_hot: bool):
  def build(lists: Lists):
    from t5rank.models import RankingEncDecModel  # pylint: disable=g-import-not-at-top
    from t5rank.models import network  # pylint: disable=g-import-not-at-top

    vocab = _vocabulary()
    model = RankingEncDecModel(
      network.RankingTransformer(t5_config(), one_hot_embedding=one_hot),
      vocab,
      vocab,
      None,
      _softmax_loss(),
      metric_fns=_metric_fns(),
    )
    return model, padded_encdec_batch(lists)

  return build


def _t5rank_encoder(one_hot: bool):
  def build(lists: Lists):
    from t5rank.models import RankingEncoderModel  # pylint: disable=g-import-not-at-top
    from t5rank.models import network  # pylint: disable=g-import-not-at-top

    vocab = _vocabulary()
    model = RankingEncoderModel(
      network.RankingEncoder(t5_config(), one_hot_embedding=one_hot),
      vocab,
      vocab,
      None,
      _softmax_loss(),
      metric_fns=_metric_fns(),
    )
    return model, padded_encoder_batch(lists)

  return build


def _softmax_loss():
  """t5rank's softmax loss when it exists, else Rax's (same values)."""
  try:
    from t5rank.ranking import losses  # pylint: disable=g-import-not-at-top

    return losses.softmax_loss
  except ImportError:
    import rax  # pylint: disable=g-import-not-at-top

    return rax.softmax_loss


def _metric_fns():
  """NDCG@10 and MRR@10 as the models compute them in training."""
  import functools  # pylint: disable=g-import-not-at-top

  try:
    from t5rank.ranking import metrics  # pylint: disable=g-import-not-at-top
  except ImportError:
    import rax as metrics  # pylint: disable=g-import-not-at-top
  return {
    "ndcg@10": functools.partial(metrics.ndcg_metric, topn=10),
    "mrr@10": functools.partial(metrics.mrr_metric, topn=10),
  }


@dataclasses.dataclass(frozen=True)
class Variant:
  name: str
  description: str
  build: Callable[[Lists], tuple[Any, Mapping[str, jnp.ndarray]]]


VARIANTS = (
  Variant(
    "rax-example", "Rax T5X example: one-hot, full-vocab logits", _rax_example
  ),
  Variant("encdec-onehot", "t5rank enc-dec, one-hot", _t5rank_encdec(True)),
  Variant("encdec-gather", "t5rank enc-dec, gather", _t5rank_encdec(False)),
  Variant(
    "encoder-onehot", "t5rank encoder-only, one-hot", _t5rank_encoder(True)
  ),
  Variant(
    "encoder-gather", "t5rank encoder-only, gather", _t5rank_encoder(False)
  ),
)
ANCHOR = "rax-example"


@dataclasses.dataclass
class Prepared:
  variant: Variant
  step: Callable[..., Any]
  params: Any
  opt_state: Any
  batch: Mapping[str, jnp.ndarray]
  compiled_bytes: int
  compile_seconds: float
  times: list = dataclasses.field(default_factory=list)
  cpu_times: list = dataclasses.field(default_factory=list)

  def run(self, seed: int) -> float:
    """One step; records and returns its wall time (and records CPU time)."""
    start, cpu_start = time.perf_counter(), time.process_time()
    self.params, self.opt_state, loss = self.step(
      self.params, self.opt_state, self.batch, jax.random.PRNGKey(seed)
    )
    loss.block_until_ready()
    seconds = time.perf_counter() - start
    self.cpu_times.append(time.process_time() - cpu_start)
    self.times.append(seconds)
    if not np.isfinite(float(loss)):
      raise FloatingPointError(f"{self.variant.name}: loss {float(loss)}")
    return seconds


def prepare(variant: Variant, lists: Lists) -> Prepared:
  """Builds the model, initialises it and compiles its full train step."""
  model, batch = variant.build(lists)
  shapes = {k: v.shape for k, v in batch.items()}
  types = {k: v.dtype for k, v in batch.items()}
  params = model.get_initial_variables(jax.random.PRNGKey(0), shapes, types)[
    "params"
  ]
  params = jax.tree.map(jnp.asarray, dict(params))
  optimizer = optax.adafactor(learning_rate=1e-3)
  opt_state = optimizer.init(params)

  def step(params, opt_state, batch, rng):
    (loss, _), grads = jax.value_and_grad(model.loss_fn, has_aux=True)(
      params, batch, rng
    )
    updates, opt_state = optimizer.update(grads, opt_state, params)
    return optax.apply_updates(params, updates), opt_state, loss

  start = time.perf_counter()
  compiled = (
    jax.jit(step, donate_argnums=(0, 1))
    .lower(params, opt_state, batch, jax.random.PRNGKey(0))
    .compile()
  )
  compile_seconds = time.perf_counter() - start
  analysis = compiled.memory_analysis()
  compiled_bytes = 0
  if analysis is not None:
    compiled_bytes = int(
      analysis.argument_size_in_bytes + analysis.temp_size_in_bytes
    )
  return Prepared(
    variant, compiled, params, opt_state, batch, compiled_bytes, compile_seconds
  )


def _status_mib(field: str) -> float:
  """A `VmRSS`/`VmHWM` line of /proc/self/status, in MiB.

  VmHWM is this process's own peak RSS; `getrusage`'s ru_maxrss is not, as
  Linux carries it over from the parent across fork and exec.
  """
  with open("/proc/self/status") as f:
    for line in f:
      if line.startswith(field + ":"):
        return int(line.split()[1]) / 1024.0
  raise RuntimeError(f"no {field} in /proc/self/status")


def measure_rss(name: str) -> dict[str, float]:
  """In this (fresh) process: RSS after imports, peak after one step."""
  variant = {v.name: v for v in VARIANTS}[name]
  lists = make_lists()
  # Libraries first, so that "before" is the baseline every variant shares.

  before = _status_mib("VmRSS")
  prepare(variant, lists).run(0)
  return {"rss_before_mib": before, "peak_rss_mib": _status_mib("VmHWM")}


def _rss_in_subprocess(name: str) -> dict[str, float]:
  out = subprocess.run(
    [sys.executable, os.path.abspath(__file__), "--rss-only", name],
    check=True,
    capture_output=True,
    text=True,
  )
  return json.loads(out.stdout.strip().splitlines()[-1])


def main():
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--rounds", type=int, default=5)
  parser.add_argument("--variants", default=",".join(v.name for v in VARIANTS))
  parser.add_argument("--no-rss", action="store_true")
  parser.add_argument("--rss-only", help=argparse.SUPPRESS)
  args = parser.parse_args()
  if args.rss_only:
    print(json.dumps(measure_rss(args.rss_only)))
    return

  names = args.variants.split(",")
  unknown = set(names) - {v.name for v in VARIANTS}
  if unknown:
    raise SystemExit(f"--variants: unknown {sorted(unknown)}")
  variants = [v for v in VARIANTS if v.name in names]
  lists = make_lists()
  print(
    f"jax {jax.__version__} on {jax.devices()[0].platform}, "
    f"{os.cpu_count()} CPUs; {LISTS} lists x {LIST_SIZE} items, "
    f"{lists.real_items} real, mean length "
    f"{lists.tokens[lists.mask].astype(bool).sum(-1).mean():.1f} tokens "
    f"(budget {TOKENS})",
    flush=True,
  )

  prepared = []
  for variant in variants:
    p = prepare(variant, lists)
    p.run(0)  # warm-up, not counted
    p.times.clear()
    p.cpu_times.clear()
    print(f"  compiled {variant.name} in {p.compile_seconds:.1f}s", flush=True)
    prepared.append(p)
  for r in range(args.rounds):
    order = prepared[r % len(prepared) :] + prepared[: r % len(prepared)]
    for p in order:
      p.run(r + 1)
    print(
      f"  round {r + 1}/{args.rounds}: "
      + ", ".join(f"{p.variant.name} {p.times[-1]:.2f}s" for p in prepared),
      flush=True,
    )

  rss = {}
  if not args.no_rss:
    for p in prepared:
      rss[p.variant.name] = _rss_in_subprocess(p.variant.name)

  anchor = {p.variant.name: p for p in prepared}.get(ANCHOR)
  anchor_rate = None
  if anchor is not None:
    anchor_rate = lists.real_items / statistics.median(anchor.times)
  anchor_cpu = None
  if anchor is not None:
    anchor_cpu = statistics.median(anchor.cpu_times)
  header = (
    "| variant | s/step (median) | items/s | vs example | "
    "CPU s/step (vs example) | XLA args+temp MiB | "
    "peak RSS MiB (after imports) |"
  )
  print()
  print(header)
  print("|" + "---|" * 7)
  for p in prepared:
    seconds = statistics.median(p.times)
    rate = lists.real_items / seconds
    ratio = f"{rate / anchor_rate:.2f}x" if anchor_rate else "-"
    mem = rss.get(p.variant.name)
    rss_text = (
      f"{mem['peak_rss_mib']:.0f} ({mem['rss_before_mib']:.0f})" if mem else "-"
    )
    cpu = statistics.median(p.cpu_times)
    cpu_ratio = f" ({anchor_cpu / cpu:.2f}x)" if anchor_cpu else ""
    print(
      f"| {p.variant.name}: {p.variant.description} | {seconds:.2f} "
      f"(min {min(p.times):.2f}, max {max(p.times):.2f}) | {rate:.1f} | "
      f"{ratio} | {cpu:.1f}{cpu_ratio} | "
      f"{p.compiled_bytes / 2**20:.0f} | {rss_text} |"
    )


if __name__ == "__main__":
  main()
