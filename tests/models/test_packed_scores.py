"""Tests for t5rank.models.packed_scores: packed rows back to list scores."""

import doctest
import functools
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

pytest.importorskip("t5x", reason="T5X is not installed; see README")

import jax  # pylint: disable=g-import-not-at-top
import jax.numpy as jnp
from t5x.examples.t5 import network
import tensorflow as tf
import tiny_t5  # pylint: disable=g-bad-import-order

from t5rank.data import packing
from t5rank.models import packed_scores

SCORE_TOKEN = 61
CONFIG = tiny_t5.config(vocab_size=64, emb_dim=16, head_dim=8, mlp_dim=32)
LIST_SIZE, TOKENS = 4, 24
LENGTHS = {
  "inputs": (LIST_SIZE, TOKENS),
  "targets": (LIST_SIZE, 1),
  "label": (LIST_SIZE,),
  "mask": (LIST_SIZE,),
}


def test_docstring_examples():
  assert doctest.testmod(packed_scores).failed == 0


def test_gather_items_keeps_trailing_value_dims():
  values = jnp.arange(2 * 3 * 2 * 5, dtype=jnp.float32).reshape(2, 3, 2, 5)
  row = jnp.array([[[2, 0]], [[1, 1]]])
  seg = jnp.array([[[2, 1]], [[1, 2]]])
  out = packed_scores.gather_items(values, row, seg)
  assert out.shape == (2, 1, 2, 5)
  np.testing.assert_array_equal(out[0, 0, 0], values[0, 2, 1])
  np.testing.assert_array_equal(out[1, 0, 1], values[1, 1, 1])


def _lists(seed, num_lists):
  rng = np.random.default_rng(seed)
  lists = []
  for _ in range(num_lists):
    size = rng.integers(1, LIST_SIZE + 1)
    lists.append(
      [
        rng.integers(
          2, CONFIG.vocab_size, size=rng.integers(1, TOKENS + 1)
        ).tolist()
        for _ in range(size)
      ]
    )
  return lists


def _dataset(lists):
  def gen():
    for items in lists:
      yield {
        "inputs": tf.ragged.constant(items, dtype=tf.int32),
        "targets": tf.fill([len(items), 1], SCORE_TOKEN),
        "label": tf.zeros([len(items)]),
        "mask": tf.ones([len(items)], tf.bool),
      }

  return tf.data.Dataset.from_generator(
    gen,
    output_signature={
      "inputs": tf.RaggedTensorSpec([None, None], tf.int32),
      "targets": tf.TensorSpec([None, 1], tf.int32),
      "label": tf.TensorSpec([None], tf.float32),
      "mask": tf.TensorSpec([None], tf.bool),
    },
  )


def _padded(lists):
  tokens = np.zeros((len(lists), LIST_SIZE, TOKENS), np.int32)
  mask = np.zeros((len(lists), LIST_SIZE), bool)
  for b, items in enumerate(lists):
    for l, item in enumerate(items):
      tokens[b, l, : len(item)] = item
      mask[b, l] = True
  return tokens, mask


@functools.cache
def _params():
  ones = jnp.ones((1, 4), jnp.int32)
  init = functools.partial(
    network.Transformer(CONFIG).init, enable_dropout=False
  )
  return jax.jit(init)(jax.random.PRNGKey(0), ones, ones[:, :1], ones[:, :1])


@functools.partial(jax.jit, static_argnames="method")
def _jit_apply(params, *args, method=None, **kwargs):
  return network.Transformer(CONFIG).apply(
    params, *args, enable_dropout=False, method=method, **kwargs
  )


def _apply(*args, **kwargs):
  return _jit_apply(_params(), *args, **kwargs)


def _t5x_batch(converter, lists, num_packs):
  ds = converter(_dataset(lists), LENGTHS).batch(num_packs)
  return {k: jnp.asarray(v) for k, v in next(ds.as_numpy_iterator()).items()}


def test_packed_batch_scores_equal_padded_scores_per_list():
  lists = _lists(0, 7)  # 4 packs of 2 lists; the last pack has one empty list
  converter = packing.RankingPackedFeatureConverter(
    row_length=48, max_segments_per_row=4, lists_per_pack=2, rows_per_pack=5
  )
  batch = _t5x_batch(converter, lists, num_packs=4)
  rows = packed_scores.flatten_rows(batch)
  logits = _apply(
    rows["encoder_input_tokens"],
    rows["decoder_input_tokens"],
    rows["decoder_target_tokens"],
    encoder_segment_ids=rows["encoder_segment_ids"],
    decoder_segment_ids=rows["decoder_segment_ids"],
    encoder_positions=rows["encoder_positions"],
    decoder_positions=rows["decoder_positions"],
  )  # [N·R, S, V]
  segment_scores = logits[..., SCORE_TOKEN].reshape(4, 5, 4)
  scores = packed_scores.flatten_lists(
    packed_scores.gather_items(
      segment_scores, batch["item_row"], batch["item_segment"]
    )
  )
  mask = packed_scores.flatten_lists(batch["mask"])
  assert scores.shape == mask.shape == (8, LIST_SIZE)

  tokens, want_mask = _padded(lists)
  np.testing.assert_array_equal(mask[:7], want_mask)
  assert not mask[7].any()
  dec = jnp.zeros((7 * LIST_SIZE, 1), jnp.int32)
  padded = _apply(tokens.reshape(-1, TOKENS), dec, dec + SCORE_TOKEN)
  want = padded[:, 0, SCORE_TOKEN].reshape(7, LIST_SIZE)
  np.testing.assert_allclose(
    scores[:7][want_mask], want[want_mask], atol=1e-5, rtol=1e-5
  )


def test_packed_encoder_pooling_equals_padded_per_list():
  lists = _lists(1, 4)
  converter = packing.RankingPackedEncoderFeatureConverter(
    pack=False, row_length=48, max_segments_per_row=4, rows_per_list=2
  )
  batch = _t5x_batch(converter, lists, num_packs=4)
  rows = packed_scores.flatten_rows(batch)
  states = _apply(
    rows["encoder_input_tokens"],
    encoder_segment_ids=rows["encoder_segment_ids"],
    method=network.Transformer.encode,
  )
  member = jax.nn.one_hot(rows["encoder_segment_ids"] - 1, 4)  # [N·R, T, S]
  pooled = (
    jnp.einsum("rts,rtd->rsd", member, states)
    / jnp.maximum(member.sum(1), 1)[..., None]
  )
  pooled = pooled.reshape(4, 2, 4, -1)
  got = packed_scores.flatten_lists(
    packed_scores.gather_items(pooled, batch["item_row"], batch["item_segment"])
  )  # [4, L, d]

  tokens, mask = _padded(lists)
  states = _apply(tokens.reshape(-1, TOKENS), method=network.Transformer.encode)
  nonpad = (tokens.reshape(-1, TOKENS) > 0)[..., None]
  want = ((states * nonpad).sum(1) / jnp.maximum(nonpad.sum(1), 1)).reshape(
    4, LIST_SIZE, -1
  )
  np.testing.assert_allclose(got[mask], want[mask], atol=1e-5, rtol=1e-5)


_SHARDED = textwrap.dedent("""
    import os
    os.environ["XLA_FLAGS"] = "--xla_force_host_platform_device_count=4"
    import jax, jax.numpy as jnp, numpy as np
    from jax.sharding import Mesh, NamedSharding, PartitionSpec as P
    from t5rank.models import packed_scores
    mesh = Mesh(np.array(jax.devices()), ("data",))
    data = NamedSharding(mesh, P("data"))
    rng = np.random.default_rng(0)
    values = jnp.asarray(rng.normal(size=(8, 6, 4)), jnp.float32)
    row = jnp.asarray(rng.integers(0, 6, size=(8, 3, 5)), jnp.int32)
    seg = jnp.asarray(rng.integers(1, 5, size=(8, 3, 5)), jnp.int32)
    fn = jax.jit(packed_scores.gather_items, in_shardings=(data,) * 3,
                 out_shardings=data)
    hlo = fn.lower(values, row, seg).compile().as_text()
    for op in ("all-gather", "all-to-all", "collective-permute",
               "all-reduce", "reduce-scatter"):
      assert op not in hlo, op
    np.testing.assert_array_equal(
        fn(values, row, seg), packed_scores.gather_items(values, row, seg))
    print("LOCAL", len(jax.devices()))
""")


def test_gather_stays_on_each_data_parallel_device():
  env = dict(os.environ, JAX_PLATFORMS="cpu")
  result = subprocess.run(
    [sys.executable, "-c", _SHARDED],
    env=env,
    capture_output=True,
    text=True,
    timeout=300,
  )
  assert result.returncode == 0, result.stderr[-3000:]
  assert "LOCAL 4" in result.stdout


def test_t5x_get_dataset_batches_packs_of_the_demo_task():
  from t5x import utils  # pylint: disable=g-import-not-at-top

  from t5rank import tasks  # pylint: disable=g-import-not-at-top

  # As registered on import (lists of 8): another test in this process may
  # have registered it from a gin file with other list sizes.
  tasks.register_t5rank_demo()
  lengths = {"inputs": (8, 256), "targets": (8, 1), "label": (8,), "mask": (8,)}
  converter_cls = functools.partial(
    packing.RankingPackedFeatureConverter,
    row_length=512,
    max_segments_per_row=16,
    lists_per_pack=4,
    rows_per_pack=10,
    rows_per_list=4,
  )
  config = utils.DatasetConfig(
    mixture_or_task_name="t5rank_demo",
    task_feature_lengths=lengths,
    split="train",
    batch_size=2,
    shuffle=False,
    seed=0,
    pack=True,
  )
  ds = utils.get_dataset(
    config,
    shard_id=0,
    num_shards=1,
    feature_converter_cls=converter_cls,
    num_epochs=1,
  )
  batch = next(ds.as_numpy_iterator())
  assert batch["encoder_input_tokens"].shape == (2, 10, 512)
  assert batch["decoder_target_tokens"].shape == (2, 10, 16)
  assert batch["item_row"].shape == batch["mask"].shape == (2, 4, 8)
  assert batch["packing_truncated_items"].shape == (2,)
  # Every real item is in its pack's rows, under its own segment id.
  for n, g, l in zip(*np.nonzero(batch["mask"])):
    row, seg = batch["item_row"][n, g, l], batch["item_segment"][n, g, l]
    assert (batch["encoder_segment_ids"][n, row] == seg).any()
    assert batch["decoder_segment_ids"][n, row, seg - 1] == seg
  # Inference configs (pack=False): one list per element, as seqio's
  # evaluator expects (it refuses converters whose `pack` is True).
  converter = converter_cls(pack=False)
  assert not converter.pack and converter.lists_per_pack == 1
