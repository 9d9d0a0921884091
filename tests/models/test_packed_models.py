"""Packed batches through t5rank's T5X rankers equal the unpacked path.

The same lists go through `RankingEncDecModel` / `RankingEncoderModel` once
as padded `[B, L, T]` batches and once packed by `t5rank.data.packing` (two
packs of two lists, real items sharing rows): scores, losses (softmax,
pairwise logistic, Gumbel approx-NDCG with the same key) and gradients agree
to 1e-4. The oracle is the unpacked path, itself checked against T5X's own
network in test_models.py; packing is exact for T5 (relative positions), so
any difference is a bug.
"""

import functools

import numpy as np
import pytest

pytest.importorskip("t5x", reason="T5X is not installed; see README")

# pylint: disable=g-import-not-at-top,wrong-import-position
import jax
import jax.numpy as jnp
import seqio
import tensorflow as tf
import tiny_t5  # pylint: disable=g-bad-import-order

from t5rank.data import packing
from t5rank.models import RankingEncDecModel
from t5rank.models import RankingEncoderModel
from t5rank.models import network
from t5rank.ranking import losses
from t5rank.ranking import metrics
from t5rank.ranking import t12n

# pylint: enable=g-import-not-at-top,wrong-import-position

VOCAB = seqio.ByteVocabulary()
TARGET = 258
PACKS, LISTS_PER_PACK, L, T = 2, 2, 5, 24
B = PACKS * LISTS_PER_PACK
ROWS, ROW_LENGTH, SEGMENTS = 4, 64, 6
TOL = dict(atol=1e-4, rtol=1e-4)


def _config(dtype="float32"):
  return tiny_t5.config(dtype=dtype)


def _lists(seed=0):
  """B lists of L items, random lengths (some > T/2), padded items, labels."""
  rng = np.random.default_rng(seed)
  mask = rng.random((B, L)) < 0.8
  mask[:, :2] = True
  mask[3, 1:] = False  # a list of one item
  tokens = np.zeros((B, L, T), np.int32)
  for b, l in zip(*np.nonzero(mask)):
    n = rng.integers(1, T + 1)
    tokens[b, l, :n] = rng.integers(3, 259, size=n)
  labels = np.where(mask, rng.integers(0, 3, size=(B, L)), 0).astype(np.float32)
  labels[0, 0] = 1.0
  labels[1] = 0.0  # a list without a positive
  return tokens, mask, labels


def _unpacked(tokens, mask, labels):
  targets = np.where(mask, TARGET, 0)[..., None]
  return {
    "encoder_input_tokens": jnp.asarray(tokens),
    "decoder_input_tokens": jnp.zeros((B, L, 1), jnp.int32),
    "decoder_target_tokens": jnp.asarray(targets, jnp.int32),
    "label": jnp.asarray(labels),
    "mask": jnp.asarray(mask),
  }


def _packed(tokens, mask, labels, num_rows=ROWS):
  """PACKS packs of LISTS_PER_PACK lists, batched as T5X batches elements."""
  packs = []
  for n in range(PACKS):
    lists = slice(n * LISTS_PER_PACK, (n + 1) * LISTS_PER_PACK)
    out = packing.pack_lists(
      tokens[lists],
      mask[lists],
      np.where(mask[lists], TARGET, 0),
      num_rows=num_rows,
      row_length=ROW_LENGTH,
      max_segments_per_row=SEGMENTS,
    )
    out["label"] = labels[lists]
    out["mask"] = mask[lists]
    packs.append(out)
  return {k: jnp.asarray(np.stack([p[k] for p in packs])) for k in packs[0]}


def _encdec(
  loss_fn=losses.softmax_loss, dtype="float32", one_hot=False, **kwargs
):
  return RankingEncDecModel(
    network.RankingTransformer(_config(dtype), one_hot_embedding=one_hot),
    VOCAB,
    VOCAB,
    None,
    loss_fn,
    **kwargs,
  )


def _encoder(
  loss_fn=losses.softmax_loss, pooling="mean", dtype="float32", one_hot=False
):
  return RankingEncoderModel(
    network.RankingEncoder(
      _config(dtype), pooling=pooling, one_hot_embedding=one_hot
    ),
    VOCAB,
    None,
    None,
    loss_fn,
  )


def _params(model, batch, seed=0):
  return tiny_t5.initial_params(model, batch, seed)


def _gumbel_approx_ndcg():
  return t12n.gumbel_t12n(t12n.approx_t12n(metrics.ndcg_metric))


LOSSES = {
  "softmax": lambda: losses.softmax_loss,
  "pairwise_logistic": lambda: losses.pairwise_logistic_loss,
  "gumbel_approx_ndcg": _gumbel_approx_ndcg,
}
MODELS = {
  "encdec": _encdec,
  "encoder-mean": functools.partial(_encoder, pooling="mean"),
  "encoder-first": functools.partial(_encoder, pooling="first"),
}


@pytest.fixture(scope="module")
def data():
  tokens, mask, labels = _lists()
  packed = _packed(tokens, mask, labels)
  # The check is not vacuous: rows hold several items, and fewer rows than
  # the B * L padded item rows are computed.
  assert int(packed["encoder_segment_ids"].max()) > 2
  assert int(packed["packing_truncated_items"].sum()) == 0
  return _unpacked(tokens, mask, labels), packed


def test_packed_batch_initialises_the_same_parameters(data):
  unpacked, packed = data
  for make in (_encdec, _encoder):
    model = make()
    a, b = _params(model, unpacked), _params(model, packed)
    assert jax.tree.structure(a) == jax.tree.structure(b)
    jax.tree.map(np.testing.assert_array_equal, a, b)


@pytest.mark.parametrize("model_name", sorted(MODELS))
def test_packed_scores_equal_unpacked_on_real_items(data, model_name):
  unpacked, packed = data
  model = MODELS[model_name]()
  params = _params(model, unpacked)
  expected = jax.jit(model.score_batch)(params, unpacked)
  got = jax.jit(model.score_batch)(params, packed)
  assert got.shape == (B, L)
  mask = np.asarray(unpacked["mask"])
  np.testing.assert_allclose(
    np.asarray(got)[mask], np.asarray(expected)[mask], **TOL
  )
  assert np.all(np.isfinite(got))


@pytest.mark.parametrize("model_name", ["encdec", "encoder-mean"])
@pytest.mark.parametrize("loss_name", sorted(LOSSES))
def test_packed_loss_and_gradients_equal_unpacked(data, model_name, loss_name):
  unpacked, packed = data
  model = MODELS[model_name](loss_fn=LOSSES[loss_name]())
  params = _params(model, unpacked)
  rng = jax.random.PRNGKey(3)  # the loss key is split from it in both paths

  def value_and_grad(batch):
    fn = jax.value_and_grad(model.loss_fn, has_aux=True)
    (loss, _), grads = jax.jit(fn)(params, batch, rng)
    return loss, grads

  loss_u, grads_u = value_and_grad(unpacked)
  loss_p, grads_p = value_and_grad(packed)
  assert np.isfinite(loss_u) and abs(float(loss_u)) > 0
  np.testing.assert_allclose(loss_p, loss_u, **TOL)
  jax.tree.map(
    lambda a, b: np.testing.assert_allclose(a, b, **TOL), grads_p, grads_u
  )
  # Gradients are not all zero (the comparison could not pass vacuously).
  assert any(np.abs(g).max() > 1e-6 for g in jax.tree.leaves(grads_u))


def test_monot5_and_fixed_token_scoring_equal_unpacked(data):
  unpacked, packed = data
  mask = np.asarray(unpacked["mask"])
  for kwargs in (
    {"scoring": "monot5", "monot5_tokens": (116, 102)},
    {"score_token": 200},
  ):
    model = _encdec(**kwargs)
    params = _params(model, unpacked)
    np.testing.assert_allclose(
      np.asarray(jax.jit(model.score_batch)(params, packed))[mask],
      np.asarray(jax.jit(model.score_batch)(params, unpacked))[mask],
      **TOL,
    )


@pytest.mark.parametrize("model_name", ["encdec", "encoder-first"])
def test_changing_one_item_changes_only_that_items_score(model_name):
  tokens, mask, labels = _lists(1)
  model = MODELS[model_name]()
  before_batch = _packed(tokens, mask, labels)
  params = _params(model, before_batch)
  # The changed item must share its row with other items.
  b, l = 2, 0
  n, g = divmod(b, LISTS_PER_PACK)
  row = int(before_batch["item_row"][n, g, l])
  assert int(before_batch["encoder_segment_ids"][n, row].max()) > 1
  changed = tokens.copy()
  length = int(np.count_nonzero(changed[b, l]))
  changed[b, l, :length] = (changed[b, l, :length] + 11) % 256 + 3
  after_batch = _packed(changed, mask, labels)
  np.testing.assert_array_equal(
    after_batch["item_row"], before_batch["item_row"]
  )
  score = jax.jit(model.score_batch)
  before = np.asarray(score(params, before_batch))
  after = np.asarray(score(params, after_batch))
  others = mask.copy()
  others[b, l] = False
  np.testing.assert_allclose(after[others], before[others], atol=1e-6)
  assert abs(after[b, l] - before[b, l]) > 1e-4


def _converter_dataset(tokens, mask, labels):
  def gen():
    for b in range(B):
      n = int(mask[b].sum())
      lengths = np.count_nonzero(tokens[b, :n], axis=-1)
      yield {
        "inputs": tf.ragged.constant(
          [tokens[b, i, : lengths[i]].tolist() for i in range(n)],
          dtype=tf.int32,
        ),
        "targets": tf.fill([n, 1], TARGET),
        "label": labels[b, :n],
        "mask": np.ones(n, bool),
      }

  spec = {
    "inputs": tf.RaggedTensorSpec([None, None], tf.int32, 1),
    "targets": tf.TensorSpec([None, 1], tf.int32),
    "label": tf.TensorSpec([None], tf.float32),
    "mask": tf.TensorSpec([None], tf.bool),
  }
  return tf.data.Dataset.from_generator(gen, output_signature=spec)


def test_overflowing_pack_keeps_every_item_and_reports_truncation():
  tokens, mask, labels = _lists(2)
  # Real items first, as the task emits them.
  order = np.argsort(~mask, axis=1, kind="stable")
  tokens = np.take_along_axis(tokens, order[..., None], 1)
  mask = np.take_along_axis(mask, order, 1)
  labels = np.take_along_axis(labels, order, 1)
  converter = packing.RankingPackedFeatureConverter(
    pack=True,
    row_length=32,
    max_segments_per_row=SEGMENTS,
    lists_per_pack=LISTS_PER_PACK,
    rows_per_pack=2,
  )
  lengths = {"inputs": (L, T), "targets": (L, 1), "label": (L,), "mask": (L,)}
  ds = converter(_converter_dataset(tokens, mask, labels), lengths)
  batch = next(ds.batch(PACKS).as_numpy_iterator())
  truncated = int(batch["packing_truncated_items"].sum())
  assert truncated > 0
  assert converter.truncated_items == truncated
  # Every real item is still in its list with at least one token of its own.
  np.testing.assert_array_equal(batch["mask"].reshape(B, L), mask)
  seg = batch["encoder_segment_ids"]
  for n, g, l in zip(*np.nonzero(batch["mask"])):
    row, s = batch["item_row"][n, g, l], batch["item_segment"][n, g, l]
    assert (seg[n, row] == s).sum() >= 1
  model = _encdec()
  batch = {k: jnp.asarray(v) for k, v in batch.items()}
  params = _params(model, batch)
  loss, metrics_ = jax.jit(model.loss_fn)(params, batch, None)
  assert np.isfinite(loss)
  scores = jax.jit(model.score_batch)(params, batch)
  assert np.all(np.isfinite(scores))
  reported = metrics_["packing/truncated_items"].compute()
  assert float(reported) == truncated
  tokens_cut = int(batch["packing_truncated_tokens"].sum())
  assert float(metrics_["packing/truncated_tokens"].compute()) == tokens_cut
  assert tokens_cut >= truncated


@pytest.mark.parametrize("make", [_encdec, _encoder], ids=["encdec", "encoder"])
def test_gather_embedding_model_equals_one_hot_model(data, make):
  """Same parameter tree and values; same scores and gradients."""
  unpacked, packed = data
  one_hot, gather = make(one_hot=True), make(one_hot=False)
  params = _params(one_hot, unpacked)
  params_gather = _params(gather, unpacked)
  assert jax.tree.structure(params) == jax.tree.structure(params_gather)
  jax.tree.map(np.testing.assert_array_equal, params, params_gather)
  for batch in (unpacked, packed):
    grad = lambda m, b: jax.jit(jax.grad(lambda p: m.loss_fn(p, b, None)[0]))(  # pylint: disable=cell-var-from-loop
      params
    )
    np.testing.assert_allclose(
      jax.jit(gather.score_batch)(params, batch),
      jax.jit(one_hot.score_batch)(params, batch),
      **TOL,
    )
    jax.tree.map(
      lambda a, b: np.testing.assert_allclose(a, b, **TOL),
      grad(gather, batch),
      grad(one_hot, batch),
    )


@pytest.mark.parametrize(
  "make,loss_name",
  [
    pytest.param(_encdec, "softmax", id="softmax-encdec"),
    pytest.param(
      _encoder, "gumbel_approx_ndcg", id="gumbel_approx_ndcg-encoder"
    ),
    pytest.param(
      _encdec,
      "gumbel_approx_ndcg",
      id="gumbel_approx_ndcg-encdec",
      marks=pytest.mark.slow,
    ),
    pytest.param(
      _encoder, "softmax", id="softmax-encoder", marks=pytest.mark.slow
    ),
  ],
)
def test_bfloat16_activations_give_finite_loss_and_gradients(
  data, make, loss_name
):
  unpacked, packed = data
  model = make(loss_fn=LOSSES[loss_name](), dtype="bfloat16")
  params = _params(model, unpacked)
  # Parameters stay float32 as in T5X; activations are bfloat16.
  assert all(p.dtype == jnp.float32 for p in jax.tree.leaves(params))
  losses_ = []
  for batch in (unpacked, packed):
    (loss, _), grads = jax.jit(jax.value_and_grad(model.loss_fn, has_aux=True))(
      params, batch, jax.random.PRNGKey(0)
    )
    assert np.isfinite(loss)
    assert all(np.all(np.isfinite(g)) for g in jax.tree.leaves(grads))
    losses_.append(float(loss))
  # bfloat16 keeps ~3 significant digits: both paths near each other.
  np.testing.assert_allclose(losses_[1], losses_[0], rtol=0.05, atol=0.05)
