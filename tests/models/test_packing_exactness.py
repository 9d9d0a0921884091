"""Packing is exact for T5X's T5.1.1 network; gather embedding equals one-hot.

Checked on T5X's own `t5x.examples.t5.network.Transformer` (not t5rank's
models), with packed rows from `t5rank.data.packing.pack_lists`: each item
alone on a padded row and the same items packed with segment ids and
positions give the same decoder-step-0 logits and encoder states.
"""

import functools

import numpy as np
import pytest

pytest.importorskip("t5x", reason="T5X is not installed; see README")

import jax  # pylint: disable=g-import-not-at-top
import jax.numpy as jnp
from t5x.examples.t5 import layers
from t5x.examples.t5 import network
import tiny_t5  # pylint: disable=g-bad-import-order

from t5rank.data import packing

SCORE_TOKEN = 61
CONFIG = tiny_t5.config(vocab_size=64, emb_dim=16, head_dim=8, mlp_dim=32)
MAX_TOKENS = 40  # items long enough to reach T5's logarithmic distance buckets
ROW_LENGTH = 96
MAX_SEGMENTS = 6


def _lists(seed, num_lists=3, list_size=5):
  rng = np.random.default_rng(seed)
  tokens = np.zeros((num_lists, list_size, MAX_TOKENS), np.int32)
  mask = rng.random((num_lists, list_size)) < 0.8
  mask[:, 0] = True
  for b in range(num_lists):
    for l in range(list_size):
      n = rng.integers(1, MAX_TOKENS + 1)
      tokens[b, l, :n] = rng.integers(2, CONFIG.vocab_size, size=n)
  return tokens, mask


def _pack(tokens, mask):
  return packing.pack_lists(
    tokens,
    mask,
    np.full(mask.shape, SCORE_TOKEN),
    num_rows=8,
    row_length=ROW_LENGTH,
    max_segments_per_row=MAX_SEGMENTS,
  )


@functools.cache
def _params():
  tokens = jnp.ones((1, 8), jnp.int32)
  dec = jnp.ones((1, 1), jnp.int32)
  init = functools.partial(
    network.Transformer(CONFIG).init, enable_dropout=False
  )
  return jax.jit(init)(jax.random.PRNGKey(0), tokens, dec, dec)


@functools.partial(jax.jit, static_argnames="method")
def _apply(params, *args, method=None, **kwargs):
  return network.Transformer(CONFIG).apply(
    params, *args, enable_dropout=False, method=method, **kwargs
  )


def _unpacked_logits(params, tokens, mask):
  """[items, vocab] step-0 logits of each real item alone on its own row."""
  items = tokens[mask]
  dec_in = jnp.zeros((len(items), 1), jnp.int32)
  dec_target = jnp.full((len(items), 1), SCORE_TOKEN, jnp.int32)
  return _apply(params, items, dec_in, dec_target)[:, 0]


def _packed_logits(params, features, mask):
  """[items, vocab] logits of the real items read from the packed rows."""
  logits = _apply(
    params,
    features["encoder_input_tokens"],
    features["decoder_input_tokens"],
    features["decoder_target_tokens"],
    encoder_segment_ids=features["encoder_segment_ids"],
    decoder_segment_ids=features["decoder_segment_ids"],
    encoder_positions=features["encoder_positions"],
    decoder_positions=features["decoder_positions"],
  )
  rows = features["item_row"][mask]
  columns = features["item_segment"][mask] - 1
  return logits[rows, columns]


def test_packed_decoder_logits_equal_unpacked_for_every_item():
  tokens, mask = _lists(0)
  features = _pack(tokens, mask)
  assert features["packing_truncated_items"] == 0
  # The items really share rows, so the check is not vacuous.
  assert (features["encoder_segment_ids"].max(-1) > 1).any()
  params = _params()
  unpacked = _unpacked_logits(params, tokens, mask)
  packed = _packed_logits(params, features, mask)
  np.testing.assert_allclose(packed, unpacked, atol=1e-5, rtol=1e-5)


def test_packed_score_gradients_equal_unpacked():
  tokens, mask = _lists(1)
  features = _pack(tokens, mask)
  weights = jnp.asarray(
    np.random.default_rng(1).normal(size=int(mask.sum())), jnp.float32
  )

  def loss(params, logits_fn, *args):
    return jnp.sum(weights * logits_fn(params, *args)[:, SCORE_TOKEN])

  unpacked = jax.grad(loss)(_params(), _unpacked_logits, tokens, mask)
  packed = jax.grad(loss)(_params(), _packed_logits, features, mask)
  jax.tree.map(
    lambda a, b: np.testing.assert_allclose(a, b, atol=1e-5, rtol=1e-4),
    packed,
    unpacked,
  )


def test_changing_one_item_changes_only_that_items_logits():
  tokens, mask = _lists(2)
  params = _params()
  before = _packed_logits(params, _pack(tokens, mask), mask)
  changed = tokens.copy()
  n = int(np.count_nonzero(changed[1, 0]))
  changed[1, 0, :n] = (changed[1, 0, :n] + 7) % (CONFIG.vocab_size - 2) + 2
  after = _packed_logits(params, _pack(changed, mask), mask)
  index = [tuple(x) for x in np.argwhere(mask)].index((1, 0))
  others = np.arange(len(before)) != index
  np.testing.assert_allclose(after[others], before[others], atol=1e-6)
  assert np.abs(after[index] - before[index]).max() > 1e-3


def _encode(params, tokens, segment_ids=None):
  return _apply(
    params,
    tokens,
    encoder_segment_ids=segment_ids,
    method=network.Transformer.encode,
  )


@pytest.mark.parametrize("pooling", ["mean", "first"])
def test_packed_encoder_pooling_equals_unpacked(pooling):
  tokens, mask = _lists(3)
  features = _pack(tokens, mask)
  params = _params()
  items = tokens[mask]
  states = _encode(params, items)  # [items, T, d]
  nonpad = (items > 0)[..., None]
  if pooling == "mean":
    unpacked = (states * nonpad).sum(1) / nonpad.sum(1)
  else:
    unpacked = states[:, 0]
  packed_states = _encode(
    params, features["encoder_input_tokens"], features["encoder_segment_ids"]
  )  # [R, row, d]
  # Per-segment pooling: one-hot over segments, as a packed model pools.
  segments = jax.nn.one_hot(
    features["encoder_segment_ids"] - 1, MAX_SEGMENTS
  )  # [R, row, S]; padding -> zeros
  if pooling == "first":
    segments = segments * (features["encoder_positions"] == 0)[..., None]
  pooled = jnp.einsum("rts,rtd->rsd", segments, packed_states)
  pooled = pooled / jnp.maximum(segments.sum(1), 1)[..., None]
  packed = pooled[
    features["item_row"][mask], features["item_segment"][mask] - 1
  ]
  np.testing.assert_allclose(packed, unpacked, atol=1e-5, rtol=1e-5)


def _embedders(num_embeddings=50, features=8):
  make = functools.partial(
    layers.Embed,
    num_embeddings=num_embeddings,
    features=features,
    dtype=jnp.float32,
    attend_dtype=jnp.float32,
    embedding_init=jax.nn.initializers.normal(stddev=1.0),
    name="token_embedder",
  )
  return make(one_hot=True), make(one_hot=False)


def test_gather_embedding_matches_one_hot_params_values_and_gradients():
  one_hot, gather = _embedders()
  tokens = jnp.asarray(
    np.random.default_rng(4).integers(0, 50, size=(3, 7)), jnp.int32
  )
  key = jax.random.PRNGKey(5)
  params_one_hot = one_hot.init(key, tokens)
  params_gather = gather.init(key, tokens)
  assert jax.tree.structure(params_one_hot) == jax.tree.structure(params_gather)
  jax.tree.map(np.testing.assert_array_equal, params_one_hot, params_gather)

  cotangent = jax.random.normal(jax.random.PRNGKey(6), (3, 7, 8))

  def loss(module, params):
    return jnp.sum(module.apply(params, tokens) * cotangent)

  np.testing.assert_allclose(
    gather.apply(params_gather, tokens),
    one_hot.apply(params_one_hot, tokens),
    atol=1e-6,
    rtol=1e-6,
  )
  grads_one_hot = jax.grad(functools.partial(loss, one_hot))(params_one_hot)
  grads_gather = jax.grad(functools.partial(loss, gather))(params_gather)
  jax.tree.map(
    lambda a, b: np.testing.assert_allclose(a, b, atol=1e-5, rtol=1e-5),
    grads_gather,
    grads_one_hot,
  )
  # Rows of tokens that never occur get no gradient in either form.
  unused = np.setdiff1d(np.arange(50), np.asarray(tokens))
  table = grads_gather["params"]["embedding"]
  assert unused.size and not np.asarray(table)[unused].any()
