"""Tests for t5rank/models/network.py against T5X's own T5.1.1 Transformer."""

import doctest

import pytest

pytest.importorskip("t5x", reason="T5X is not installed; see README")

import jax  # pylint: disable=g-import-not-at-top
import jax.numpy as jnp
import numpy as np
from t5x.examples.t5 import network as t5x_network
import tiny_t5  # pylint: disable=g-bad-import-order

from t5rank.models import network

VOCAB = 512


def _config(**overrides):
  return tiny_t5.config(**dict(dict(vocab_size=VOCAB), **overrides))


def _items(num=6, length=12, seed=0):
  """Random non-pad tokens with ragged lengths; decoder step 0 only."""
  rng = np.random.default_rng(seed)
  tokens = rng.integers(1, VOCAB, size=(num, length))
  lengths = rng.integers(3, length + 1, size=num)
  tokens[np.arange(length)[None, :] >= lengths[:, None]] = 0
  decoder_inputs = jnp.zeros((num, 1), jnp.int32)
  decoder_targets = jnp.full((num, 1), 7, jnp.int32)
  return jnp.asarray(tokens, jnp.int32), decoder_inputs, decoder_targets


def _t5x_variables(config, enc, dec_in, dec_t, seed=0):
  return t5x_network.Transformer(config).init(
    jax.random.PRNGKey(seed), enc, dec_in, dec_t, enable_dropout=False
  )


@pytest.mark.parametrize("one_hot", [True, False])
@pytest.mark.parametrize("via_embedding", [False, True])
def test_parameter_tree_is_t5x_transformer_tree(one_hot, via_embedding):
  config = _config(logits_via_embedding=via_embedding)
  enc, dec_in, dec_t = _items()
  expected = _t5x_variables(config, enc, dec_in, dec_t)
  got = network.RankingTransformer(config, one_hot_embedding=one_hot).init(
    jax.random.PRNGKey(1), enc, dec_in, dec_t, enable_dropout=False
  )
  assert jax.tree.structure(got) == jax.tree.structure(expected)
  assert jax.tree.map(jnp.shape, got) == jax.tree.map(jnp.shape, expected)
  assert got["params_axes"] == expected["params_axes"]


@pytest.mark.parametrize("via_embedding", [False, True])
def test_call_with_t5x_params_gives_t5x_logits(via_embedding):
  config = _config(logits_via_embedding=via_embedding)
  enc, dec_in, dec_t = _items()
  variables = _t5x_variables(config, enc, dec_in, dec_t)
  expected = t5x_network.Transformer(config).apply(
    variables, enc, dec_in, dec_t, enable_dropout=False
  )
  got = network.RankingTransformer(config).apply(
    variables, enc, dec_in, dec_t, enable_dropout=False
  )
  np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("one_hot", [True, False])
@pytest.mark.parametrize("via_embedding", [False, True])
def test_token_logits_equal_full_vocabulary_logits_at_those_tokens(
  one_hot, via_embedding
):
  config = _config(logits_via_embedding=via_embedding)
  enc, dec_in, dec_t = _items()
  variables = _t5x_variables(config, enc, dec_in, dec_t)
  full = t5x_network.Transformer(config).apply(
    variables, enc, dec_in, dec_t, enable_dropout=False
  )
  token_ids = jnp.array([VOCAB - 11, 3, 100])
  module = network.RankingTransformer(config, one_hot_embedding=one_hot)
  got = module.apply(
    variables,
    enc,
    dec_in,
    dec_t,
    token_ids,
    enable_dropout=False,
    method=module.token_logits,
  )
  assert got.shape == (enc.shape[0], 1, 3)
  assert got.dtype == jnp.float32
  np.testing.assert_allclose(got, full[..., token_ids], rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("via_embedding", [False, True])
def test_per_position_token_ids_read_each_items_own_column(via_embedding):
  config = _config(logits_via_embedding=via_embedding)
  enc, dec_in, dec_t = _items()
  variables = _t5x_variables(config, enc, dec_in, dec_t)
  full = t5x_network.Transformer(config).apply(
    variables, enc, dec_in, dec_t, enable_dropout=False
  )
  per_item = jnp.arange(enc.shape[0] * 2).reshape(-1, 1, 2) * 37 + 1
  module = network.RankingTransformer(config)
  got = module.apply(
    variables,
    enc,
    dec_in,
    dec_t,
    per_item,
    enable_dropout=False,
    method=module.token_logits,
  )
  expected = jnp.take_along_axis(full, per_item, axis=-1)
  np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-5)


def test_gather_embedding_equals_one_hot_in_values_and_gradients():
  config = _config()
  enc, dec_in, dec_t = _items()
  variables = _t5x_variables(config, enc, dec_in, dec_t)

  def total(params, one_hot):
    module = network.RankingTransformer(config, one_hot_embedding=one_hot)
    scores = module.apply(
      {"params": params},
      enc,
      dec_in,
      dec_t,
      jnp.array([5, 9]),
      enable_dropout=False,
      method=module.token_logits,
    )
    return jnp.sum(jnp.sin(scores)), scores

  (_, gathered), grads_gather = jax.value_and_grad(total, has_aux=True)(
    variables["params"], False
  )
  (_, one_hot), grads_one_hot = jax.value_and_grad(total, has_aux=True)(
    variables["params"], True
  )
  np.testing.assert_allclose(gathered, one_hot, rtol=1e-5, atol=1e-5)
  jax.tree.map(
    lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5),
    grads_gather,
    grads_one_hot,
  )
  embedding_grad = grads_gather["token_embedder"]["embedding"]
  assert float(jnp.abs(embedding_grad).sum()) > 0


def _pack_two(enc):
  """Packs items 0 and 1 of `enc` into one row with T5X's packing features."""
  a = enc[0][enc[0] > 0]
  b = enc[1][enc[1] > 0]
  length = enc.shape[1] * 2
  row = jnp.zeros((1, length), jnp.int32)
  row = row.at[0, : a.size].set(a).at[0, a.size : a.size + b.size].set(b)
  segments = jnp.zeros((1, length), jnp.int32)
  segments = segments.at[0, : a.size].set(1)
  segments = segments.at[0, a.size : a.size + b.size].set(2)
  positions = jnp.zeros((1, length), jnp.int32)
  positions = positions.at[0, : a.size].set(jnp.arange(a.size))
  positions = positions.at[0, a.size : a.size + b.size].set(jnp.arange(b.size))
  return row, segments, positions


def test_packed_row_scores_equal_unpacked_scores():
  config = _config()
  enc, dec_in, dec_t = _items()
  variables = _t5x_variables(config, enc, dec_in, dec_t)
  module = network.RankingTransformer(config, one_hot_embedding=False)
  token_ids = jnp.array([3, 100])
  unpacked = module.apply(
    variables,
    enc,
    dec_in,
    dec_t,
    token_ids,
    enable_dropout=False,
    method=module.token_logits,
  )
  row, segments, positions = _pack_two(enc)
  packed = module.apply(
    variables,
    row,
    jnp.zeros((1, 2), jnp.int32),
    jnp.full((1, 2), 7, jnp.int32),
    token_ids,
    encoder_segment_ids=segments,
    decoder_segment_ids=jnp.array([[1, 2]]),
    encoder_positions=positions,
    decoder_positions=jnp.zeros((1, 2), jnp.int32),
    enable_dropout=False,
    method=module.token_logits,
  )
  np.testing.assert_allclose(packed[0], unpacked[:2, 0], rtol=1e-4, atol=1e-5)


def test_encoder_tree_is_t5x_encoder_part_plus_score_head():
  config = _config()
  enc, dec_in, dec_t = _items()
  full = _t5x_variables(config, enc, dec_in, dec_t)
  variables = network.RankingEncoder(config).init(
    jax.random.PRNGKey(0), enc, enable_dropout=False
  )
  params = variables["params"]
  assert sorted(params) == ["encoder", "score_head", "token_embedder"]
  for name in ("encoder", "token_embedder"):
    assert jax.tree.structure(params[name]) == jax.tree.structure(
      full["params"][name]
    )
    assert jax.tree.map(jnp.shape, params[name]) == jax.tree.map(
      jnp.shape, full["params"][name]
    )
  assert jax.tree.map(jnp.shape, params["score_head"]) == {
    "bias": (),
    "kernel": (config.emb_dim,),
  }


def _encoder_params_from_t5x(config, enc):
  full = _t5x_variables(config, enc, *_items()[1:])
  head = {
    "kernel": jnp.linspace(-1.0, 1.0, config.emb_dim),
    "bias": jnp.array(0.5),
  }
  params = {
    "token_embedder": full["params"]["token_embedder"],
    "encoder": full["params"]["encoder"],
    "score_head": head,
  }
  encoded = t5x_network.Transformer(config).apply(
    full, enc, enable_dropout=False, method=t5x_network.Transformer.encode
  )
  return params, head, encoded


@pytest.mark.parametrize("one_hot", [True, False])
def test_encoder_scores_pool_t5x_encoder_states(one_hot):
  config = _config()
  enc, _, _ = _items()
  params, head, encoded = _encoder_params_from_t5x(config, enc)
  valid = np.asarray(enc > 0, np.float32)[..., None]
  expected = {
    "first": encoded[:, 0, :],
    "mean": (encoded * valid).sum(1) / valid.sum(1),
  }
  for pooling, pooled in expected.items():
    module = network.RankingEncoder(
      config, pooling=pooling, one_hot_embedding=one_hot
    )
    got = module.apply({"params": params}, enc, enable_dropout=False)
    want = pooled @ head["kernel"] + head["bias"]
    assert got.shape == (enc.shape[0], 1)
    np.testing.assert_allclose(got[:, 0], want, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("pooling", ["first", "mean"])
def test_encoder_pools_each_segment_of_a_packed_row(pooling):
  config = _config()
  enc, _, _ = _items()
  params, _, _ = _encoder_params_from_t5x(config, enc)
  module = network.RankingEncoder(config, pooling=pooling)
  unpacked = module.apply({"params": params}, enc, enable_dropout=False)
  row, segments, positions = _pack_two(enc)
  packed = module.apply(
    {"params": params},
    row,
    segments,
    positions,
    num_segments=3,
    enable_dropout=False,
  )
  assert packed.shape == (1, 3)
  np.testing.assert_allclose(
    packed[0, :2], unpacked[:2, 0], rtol=1e-4, atol=1e-5
  )
  # The empty third slot pools to zeros: the score is the bias.
  np.testing.assert_allclose(packed[0, 2], params["score_head"]["bias"])


def test_all_padding_item_gets_a_finite_score():
  config = _config()
  enc, dec_in, dec_t = _items()
  enc = enc.at[0].set(0)
  dec_t = dec_t.at[0].set(0)
  variables = _t5x_variables(config, enc, dec_in, dec_t)
  module = network.RankingTransformer(config)
  scores = module.apply(
    variables,
    enc,
    dec_in,
    dec_t,
    jnp.array([3]),
    enable_dropout=False,
    method=module.token_logits,
  )
  assert np.all(np.isfinite(scores))
  for pooling in network.POOLINGS:
    encoder = network.RankingEncoder(config, pooling=pooling)
    out = encoder.apply(
      encoder.init(jax.random.PRNGKey(0), enc, enable_dropout=False),
      enc,
      enable_dropout=False,
    )
    assert np.all(np.isfinite(out))


def test_unknown_pooling_is_an_error_naming_it():
  enc, _, _ = _items()
  with pytest.raises(ValueError, match="pooling='max'"):
    network.RankingEncoder(_config(), pooling="max").init(
      jax.random.PRNGKey(0), enc
    )


def test_docstring_examples():
  assert doctest.testmod(network).failed == 0
  pooled = network.pool_segments(
    jnp.array([[[1.0], [3.0], [5.0], [0.0]]]),
    jnp.array([[1, 1, 2, 0]]),
    jnp.array([[0, 1, 0, 0]]),
    2,
    "mean",
  )
  np.testing.assert_allclose(pooled, [[[2.0], [5.0]]])
  first = network.pool_segments(
    jnp.array([[[1.0], [3.0], [5.0], [0.0]]]),
    jnp.array([[1, 1, 2, 0]]),
    jnp.array([[0, 1, 0, 0]]),
    2,
    "first",
  )
  np.testing.assert_allclose(first, [[[1.0], [5.0]]])
