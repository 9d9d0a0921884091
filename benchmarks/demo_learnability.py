"""Is the demo corpus learnable from text? A tiny byte-level ranker vs BM25.

Trains a 2-layer byte-level transformer cross-encoder (d=96, 4 heads, mean pooling,
no pre-training) on the demo corpus's training lists with a listwise softmax loss and
prints dev nDCG@10 / MRR@10 of its ranking of the 30 BM25 candidates every 100 steps,
next to the BM25 order itself (the anchor), random order and the best possible order.
It uses Flax directly, not T5X, so it checks the data rather than t5rank's models.

  python benchmarks/demo_learnability.py --steps 1000     # ~13 min on a busy 2-core CPU
"""

from __future__ import annotations

import argparse
import itertools
import time

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax

from t5rank.data import demo
from t5rank.data import msmarco

SEQ_LEN, LIST_SIZE, BATCH = 112, 8, 8


def encode(query: str, passages: list[str]) -> np.ndarray:
  """Bytes of "Query: q Document: p" + 1 (0 is padding), cut to SEQ_LEN."""
  out = np.zeros((len(passages), SEQ_LEN), np.int32)
  for i, passage in enumerate(passages):
    data = f"Query: {query} Document: {passage}".encode()[:SEQ_LEN]
    out[i, : len(data)] = np.frombuffer(data, np.uint8).astype(np.int32) + 1
  return out


class Block(nn.Module):
  width: int

  @nn.compact
  def __call__(self, x, mask):
    h = nn.LayerNorm()(x)
    x = x + nn.SelfAttention(num_heads=4, qkv_features=self.width)(h, mask=mask)
    h = nn.LayerNorm()(x)
    h = nn.Dense(4 * self.width)(h)
    h = nn.Dense(self.width)(nn.gelu(h))
    return x + h


class TinyRanker(nn.Module):
  width: int = 96

  @nn.compact
  def __call__(self, tokens):  # [N, T] -> scores [N]
    valid = tokens > 0
    x = nn.Embed(258, self.width)(tokens) + self.param(
      "pos", nn.initializers.normal(0.02), (SEQ_LEN, self.width)
    )
    mask = nn.make_attention_mask(valid, valid)
    for _ in range(2):
      x = Block(self.width)(x, mask)
    x = nn.LayerNorm()(x)
    pooled = (x * valid[..., None]).sum(1) / valid.sum(1, keepdims=True)
    return nn.Dense(1)(pooled)[:, 0]


def train_batches(seed: int):
  for epoch in itertools.count():
    lists = list(
      msmarco.passage_ranking_lists(
        demo.demo_dir(),
        "train",
        list_size=LIST_SIZE,
        seed=seed + epoch,
        files=demo.DEMO_FILES,
      )
    )
    np.random.default_rng(epoch).shuffle(lists)
    for start in range(0, len(lists) - BATCH + 1, BATCH):
      tokens = np.zeros((BATCH, LIST_SIZE, SEQ_LEN), np.int32)
      labels = np.zeros((BATCH, LIST_SIZE), np.float32)
      mask = np.zeros((BATCH, LIST_SIZE), bool)
      for j, example in enumerate(lists[start : start + BATCH]):
        n = len(example["passages"])
        tokens[j, :n] = encode(example["query"], example["passages"])
        labels[j, :n], mask[j, :n] = example["label"], True
      yield tokens, labels, mask


def dev_metrics(dev, order_fn) -> tuple[float, float]:
  """Mean nDCG@10 (gain 2^y - 1, ideal within the list) and MRR@10 over dev lists."""
  discount = 1 / np.log2(np.arange(2, 12))
  ndcgs, rrs = [], []
  for example in dev:
    labels = example["label"]
    top = labels[order_fn(example)][:10]
    ideal = np.sort(labels)[::-1][:10]
    idcg = ((2**ideal - 1) * discount[: len(ideal)]).sum()
    ndcgs.append(
      ((2**top - 1) * discount[: len(top)]).sum() / idcg if idcg > 0 else 0.0
    )
    hits = np.flatnonzero(top > 0)
    rrs.append(1 / (hits[0] + 1) if len(hits) else 0.0)
  return float(np.mean(ndcgs)), float(np.mean(rrs))


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--steps", type=int, default=1000)
  parser.add_argument("--seed", type=int, default=0)
  args = parser.parse_args()

  dev = list(
    msmarco.passage_ranking_lists(
      demo.demo_dir(), "dev", list_size=30, files=demo.DEMO_FILES
    )
  )
  rng = np.random.default_rng(args.seed)
  print(
    "random order  nDCG@10 %.3f MRR@10 %.3f"
    % tuple(
      np.mean(
        [
          dev_metrics(dev, lambda e: rng.permutation(len(e["label"])))
          for _ in range(20)
        ],
        0,
      )
    )
  )
  print(
    "BM25 order    nDCG@10 %.3f MRR@10 %.3f"
    % dev_metrics(dev, lambda e: np.arange(len(e["label"])))
  )
  print(
    "best order    nDCG@10 %.3f MRR@10 %.3f"
    % dev_metrics(dev, lambda e: np.argsort(-e["label"], kind="stable"))
  )

  model = TinyRanker()
  params = model.init(
    jax.random.PRNGKey(args.seed), jnp.zeros((2, SEQ_LEN), jnp.int32)
  )
  optimizer = optax.adamw(1e-3, weight_decay=0.01)
  opt_state = optimizer.init(params)

  def loss_fn(params, tokens, labels, mask):
    scores = model.apply(params, tokens.reshape(-1, SEQ_LEN)).reshape(
      BATCH, LIST_SIZE
    )
    scores = jnp.where(mask, scores, -1e9)
    target = jnp.where(mask, 2.0**labels - 1, 0.0)
    target = target / jnp.maximum(target.sum(-1, keepdims=True), 1e-9)
    return -(target * jax.nn.log_softmax(scores, -1)).sum(-1).mean()

  @jax.jit
  def train_step(params, opt_state, tokens, labels, mask):
    loss, grads = jax.value_and_grad(loss_fn)(params, tokens, labels, mask)
    updates, opt_state = optimizer.update(grads, opt_state, params)
    return optax.apply_updates(params, updates), opt_state, loss

  score = jax.jit(model.apply)
  start = time.perf_counter()
  for step, (tokens, labels, mask) in enumerate(train_batches(args.seed), 1):
    params, opt_state, loss = train_step(
      params, opt_state, tokens, labels, mask
    )
    if step % 100 == 0:
      ndcg, mrr = dev_metrics(
        dev,
        lambda e: np.argsort(
          -np.asarray(
            score(params, jnp.asarray(encode(e["query"], e["passages"])))
          ),
          kind="stable",
        ),
      )
      print(
        f"step {step:5d} loss {float(loss):.3f}  nDCG@10 {ndcg:.3f} MRR@10 {mrr:.3f}  "
        f"({time.perf_counter() - start:.0f}s)",
        flush=True,
      )
    if step >= args.steps:
      break


if __name__ == "__main__":
  main()
