"""Rerank throughput: t5rank-rerank's scoring path against a monoT5-style HF reranker.

The same (query, passage) pairs, MS-MARCO-like: queries of 100 candidates,
token counts log-normal with mean 75 (tail cut at 256), random ids. The same
T5 config on both sides, T5-small size: 6 + 6 layers, d_model 512, 8 heads x
64, d_ff 2048 (ReLU), 32128-token vocabulary, random initialisation, float32.

* `t5rank-packed` / `t5rank-unpacked`: `t5rank.rerank.model_elements` (pairs
  of many queries packed into rows of 256 tokens, or lists of 32 padded to
  256) scored by `RankingEncDecModel.score_batch` with `scoring='monot5'`
  (log-softmax over the true/false logits at decoder step 0), jit-compiled,
  8 elements a batch; the compile is done before timing.
* `hf-monot5`: Hugging Face transformers `T5ForConditionalGeneration` in
  PyTorch, done as pygaggle's monoT5: batches of 32 pairs padded to the
  batch's longest, one decoder step from the start token, log-softmax over
  the true/false logits, `torch.inference_mode()`.

Two rates per variant: over the full batches only (steady state, as in a long
run, where the one partly filled batch at the end of each 4096-pair chunk is a
few percent of the work) and over all pairs (this short run's last batch is
padded with copies, as T5X pads it). Packs are formed longest pairs first, so
t5rank's full batches hold longer pairs than the mean.

The variants alternate round by round in this one process (the machine is
shared; the ratio is what to read). Peak memory: the peak RSS (VmHWM) of a
fresh subprocess per variant doing one timed round.

Run: python benchmarks/rerank.py [--queries 4] [--rounds 3] [--no-rss]
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("JAX_PLATFORMS", "cpu")

import numpy as np  # pylint: disable=g-import-not-at-top

VOCAB = 32128
TRUE_ID, FALSE_ID = 1176, 6136  # "▁true", "▁false" in T5's vocabulary
INPUT_LENGTH = 256
CANDIDATES = 100
VARIANTS = ("t5rank-packed", "t5rank-unpacked", "hf-monot5")


def make_pairs(num_queries: int, seed: int = 0) -> list[np.ndarray]:
  """Token ids of each pair (EOS = 1 last), MS-MARCO-like lengths."""
  rng = np.random.default_rng(seed)
  n = num_queries * CANDIDATES
  lengths = np.clip(
    rng.lognormal(np.log(70), 0.35, n).astype(int), 12, INPUT_LENGTH
  )
  return [
    np.append(rng.integers(3, 32000, k - 1), 1).astype(np.int32)
    for k in lengths
  ]


def t5rank_scorer(pack: bool):
  """Returns score(pairs) -> np.ndarray through t5rank's scoring path."""
  # pylint: disable=g-import-not-at-top
  import jax
  import jax.numpy as jnp
  import seqio
  from t5x import adafactor
  from t5x.examples.t5 import network as t5_network

  from t5rank import rerank
  from t5rank.models import models
  from t5rank.models import network

  # pylint: enable=g-import-not-at-top
  config = t5_network.T5Config(
    vocab_size=VOCAB,
    dtype=jnp.float32,
    emb_dim=512,
    num_heads=8,
    num_encoder_layers=6,
    num_decoder_layers=6,
    head_dim=64,
    mlp_dim=2048,
    mlp_activations=("relu",),
    dropout_rate=0.0,
    logits_via_embedding=True,
  )
  model = models.RankingEncDecModel(
    module=network.RankingTransformer(config=config, one_hot_embedding=False),
    input_vocabulary=seqio.PassThroughVocabulary(VOCAB),
    output_vocabulary=seqio.PassThroughVocabulary(VOCAB),
    optimizer_def=adafactor.Adafactor(),
    scoring="monot5",
    monot5_tokens=(TRUE_ID, FALSE_ID),
  )
  cfg = rerank.PackingConfig(
    pack=pack,
    input_length=INPUT_LENGTH,
    max_segments_per_row=8,
    rows_per_pack=8,
    list_size=32,
  )
  batch_size = 8
  example, _ = rerank.model_elements(make_pairs(1)[:8], cfg, 3)
  shapes = {k: (batch_size,) + v.shape for k, v in example[0].items()}
  types = {k: v.dtype for k, v in example[0].items()}
  params = model.get_initial_variables(jax.random.PRNGKey(0), shapes, types)[
    "params"
  ]
  step = jax.jit(model.score_batch)

  def score(pairs):
    """Scores; and (pairs, seconds) of the full batches (no padding)."""
    elements, slots = rerank.model_elements(pairs, cfg, 3)
    out = np.zeros(len(pairs), np.float32)
    full_pairs, full_seconds = 0, 0.0
    for start in range(0, len(elements), batch_size):
      chunk = elements[start : start + batch_size]
      chunk_slots = slots[start : start + batch_size]
      full = len(chunk) == batch_size
      chunk = chunk + [chunk[0]] * (batch_size - len(chunk))
      batch = {k: np.stack([e[k] for e in chunk]) for k in chunk[0]}
      begin = time.perf_counter()
      scores = np.asarray(step(params, batch)).reshape(batch_size, -1)
      if full:
        full_seconds += time.perf_counter() - begin
        full_pairs += sum(len(slot) for slot in chunk_slots)
      for row, slot in zip(scores, chunk_slots):
        out[slot] = row[: len(slot)]
    return out, (full_pairs, full_seconds)

  score(make_pairs(1, seed=1))  # compile
  return score


def hf_scorer():
  """Returns score(pairs) -> np.ndarray, monoT5 as pygaggle does it."""
  # pylint: disable=g-import-not-at-top
  import torch
  import transformers

  # pylint: enable=g-import-not-at-top
  torch.manual_seed(0)
  config = transformers.T5Config(
    vocab_size=VOCAB,
    d_model=512,
    d_kv=64,
    d_ff=2048,
    num_layers=6,
    num_decoder_layers=6,
    num_heads=8,
    feed_forward_proj="relu",
    dropout_rate=0.0,
  )
  model = transformers.T5ForConditionalGeneration(config).eval()
  batch_size = 32

  def score(pairs):
    """Scores; and (pairs, seconds) of the full batches."""
    out = []
    full_pairs, full_seconds = 0, 0.0
    with torch.inference_mode():
      for start in range(0, len(pairs), batch_size):
        begin = time.perf_counter()
        chunk = pairs[start : start + batch_size]
        longest = max(len(p) for p in chunk)
        ids = torch.zeros((len(chunk), longest), dtype=torch.long)
        for i, p in enumerate(chunk):
          ids[i, : len(p)] = torch.from_numpy(p.astype(np.int64))
        attention = (ids != 0).long()
        decoder = torch.zeros((len(chunk), 1), dtype=torch.long)
        logits = model(
          input_ids=ids, attention_mask=attention, decoder_input_ids=decoder
        ).logits[:, 0, :]
        pair = torch.log_softmax(logits[:, [TRUE_ID, FALSE_ID]], dim=-1)
        out.append(pair[:, 0].numpy())
        if len(chunk) == batch_size:
          full_seconds += time.perf_counter() - begin
          full_pairs += len(chunk)
    return np.concatenate(out), (full_pairs, full_seconds)

  score(make_pairs(1, seed=1)[:batch_size])  # warm up
  return score


def build(variant):
  if variant == "hf-monot5":
    return hf_scorer()
  return t5rank_scorer(pack=variant == "t5rank-packed")


def peak_rss_mb() -> float:
  with open("/proc/self/status") as f:
    for line in f:
      if line.startswith("VmHWM:"):
        return int(line.split()[1]) / 1024
  return float("nan")


def main():
  parser = argparse.ArgumentParser()
  parser.add_argument("--queries", type=int, default=4)
  parser.add_argument("--rounds", type=int, default=3)
  parser.add_argument("--no-rss", action="store_true")
  parser.add_argument("--only", choices=VARIANTS)
  args = parser.parse_args()
  pairs = make_pairs(args.queries)
  if args.only:  # subprocess: one round of one variant, then its peak RSS
    score = build(args.only)
    score(pairs)
    print(json.dumps({"peak_rss_mb": peak_rss_mb()}))
    return
  scorers = {v: build(v) for v in VARIANTS}
  times = {v: [] for v in VARIANTS}
  steady = {v: [] for v in VARIANTS}
  for r in range(args.rounds):
    order = VARIANTS[r % 3 :] + VARIANTS[: r % 3]
    for v in order:
      start = time.perf_counter()
      _, (full_pairs, full_seconds) = scorers[v](pairs)
      times[v].append(time.perf_counter() - start)
      steady[v].append(full_pairs / full_seconds)
  all_rates = {v: len(pairs) / statistics.median(times[v]) for v in VARIANTS}
  steady_rates = {v: statistics.median(steady[v]) for v in VARIANTS}
  print(
    f"{len(pairs)} pairs ({args.queries} queries x {CANDIDATES}), "
    f"mean {np.mean([len(p) for p in pairs]):.0f} tokens, "
    f"{args.rounds} rounds"
  )
  print(
    f"{'variant':<18}{'full batches':>14}{'vs HF':>8}"
    f"{'all pairs':>12}{'vs HF':>8}   (pairs/s)"
  )
  for v in VARIANTS:
    print(
      f"{v:<18}{steady_rates[v]:14.1f}"
      f"{steady_rates[v] / steady_rates['hf-monot5']:8.2f}"
      f"{all_rates[v]:12.1f}{all_rates[v] / all_rates['hf-monot5']:8.2f}",
      flush=True,
    )
  if not args.no_rss:
    for v in VARIANTS:
      result = subprocess.run(
        [sys.executable, __file__, "--only", v, "--queries", str(args.queries)],
        capture_output=True,
        text=True,
        check=True,
      )
      rss = json.loads(result.stdout.strip().splitlines()[-1])["peak_rss_mb"]
      print(f"{v:<18} peak RSS {rss:.0f} MB", flush=True)


if __name__ == "__main__":
  main()
