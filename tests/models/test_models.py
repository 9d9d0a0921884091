"""Tests for t5rank/models/models.py: T5X ranking models on tiny T5 configs.

Oracles: T5X's own `network.Transformer` logits, T5X checkpoints written by a
stock `t5x.models.EncoderDecoderModel`, and Rax's losses and metrics.
"""

import functools

import numpy as np
import pytest

pytest.importorskip("t5x", reason="T5X is not installed; see README")
rax = pytest.importorskip("rax", reason="Rax (test extra) is not installed")

import jax  # pylint: disable=g-import-not-at-top
import jax.numpy as jnp
import seqio
from t5x import adafactor
from t5x import checkpoints
from t5x import models as t5x_models
from t5x import partitioning
from t5x import utils
from t5x.examples.t5 import network as t5x_network
import tiny_t5  # pylint: disable=g-bad-import-order

from t5rank.data import feature_converters
from t5rank.models import RankingEncDecModel
from t5rank.models import RankingEncoderModel
from t5rank.models import network

VOCAB = seqio.ByteVocabulary(extra_ids=20)  # 279 ids; <extra_id_10> = 268
TARGET = 258  # what t5rank's tasks put in `targets` for ByteVocabulary
B, L, T = 3, 4, 10
METRIC_FNS = {
  "ndcg@10": functools.partial(rax.ndcg_metric, topn=10),
  "mrr@10": functools.partial(rax.mrr_metric, topn=10),
}
CONFIG = tiny_t5.config()


def _batch(seed=0, labels=None, mask=None):
  """A [B, L, T] list batch as RankingEncDecFeatureConverter emits it."""
  rng = np.random.default_rng(seed)
  if mask is None:
    mask = np.ones((B, L), bool)
    mask[1, 3] = False
  if labels is None:
    labels = np.zeros((B, L), np.float32)
    labels[:, 1] = 1.0
    labels[2, 2] = 2.0
  tokens = rng.integers(3, 259, size=(B, L, T))
  lengths = rng.integers(2, T + 1, size=(B, L))
  tokens[np.arange(T)[None, None, :] >= lengths[..., None]] = 0
  tokens[~mask] = 0
  targets = np.where(mask, TARGET, 0)[..., None]
  return {
    "encoder_input_tokens": jnp.asarray(tokens, jnp.int32),
    "decoder_input_tokens": jnp.zeros((B, L, 1), jnp.int32),
    "decoder_target_tokens": jnp.asarray(targets, jnp.int32),
    "label": jnp.asarray(labels, jnp.float32),
    "mask": jnp.asarray(mask),
  }


def _shapes(batch):
  return {k: v.shape for k, v in batch.items()}, {
    k: v.dtype for k, v in batch.items()
  }


def _encdec(loss_fn=rax.softmax_loss, **kwargs):
  return RankingEncDecModel(
    network.RankingTransformer(CONFIG, one_hot_embedding=False),
    VOCAB,
    VOCAB,
    adafactor.Adafactor(),
    loss_fn,
    metric_fns=METRIC_FNS,
    **kwargs,
  )


def _encoder(loss_fn=rax.softmax_loss, pooling="first", **kwargs):
  return RankingEncoderModel(
    network.RankingEncoder(CONFIG, pooling=pooling, one_hot_embedding=False),
    VOCAB,
    VOCAB,
    adafactor.Adafactor(),
    loss_fn,
    metric_fns=METRIC_FNS,
    **kwargs,
  )


@functools.cache
def _params():
  batch = _batch()
  return _encdec().get_initial_variables(
    jax.random.PRNGKey(0), *_shapes(batch)
  )["params"]


@functools.cache
def _encoder_params():
  batch = _batch()
  return _encoder().get_initial_variables(
    jax.random.PRNGKey(0), *_shapes(batch)
  )["params"]


def _t5x_logits(params, batch):
  """Full-vocabulary step-0 logits [B, L, V] by T5X's own Transformer."""
  flat = {
    k: batch[k].reshape((B * L, -1))
    for k in (
      "encoder_input_tokens",
      "decoder_input_tokens",
      "decoder_target_tokens",
    )
  }
  logits = t5x_network.Transformer(CONFIG).apply(
    {"params": params},
    flat["encoder_input_tokens"],
    flat["decoder_input_tokens"],
    flat["decoder_target_tokens"],
    enable_dropout=False,
  )
  return logits[:, 0, :].reshape((B, L, -1))


def _key_requiring_loss(scores, labels, *, key, where=None, reduce_fn=None):
  """Softmax loss on scores plus Gumbel noise; `key` is required."""
  noisy = scores + jax.random.gumbel(key, scores.shape)
  return rax.softmax_loss(noisy, labels, where=where, reduce_fn=reduce_fn)


def test_initial_variables_for_list_batches_are_t5x_transformer_variables():
  batch = _batch()
  got = _encdec().get_initial_variables(jax.random.PRNGKey(0), *_shapes(batch))
  stock = t5x_models.EncoderDecoderModel(
    t5x_network.Transformer(CONFIG), VOCAB, VOCAB, adafactor.Adafactor()
  )
  flat_shapes = {
    "encoder_input_tokens": (B * L, T),
    "decoder_input_tokens": (B * L, 1),
    "decoder_target_tokens": (B * L, 1),
  }
  expected = stock.get_initial_variables(jax.random.PRNGKey(0), flat_shapes)
  assert jax.tree.structure(got) == jax.tree.structure(expected)
  jax.tree.map(np.testing.assert_array_equal, got, expected)


def test_default_score_is_each_items_target_token_logit():
  batch = _batch()
  scores = _encdec().score_batch(_params(), batch)
  expected = _t5x_logits(_params(), batch)[..., TARGET]
  assert scores.shape == (B, L)
  mask = np.asarray(batch["mask"])
  np.testing.assert_allclose(
    np.asarray(scores)[mask],
    np.asarray(expected)[mask],
    rtol=1e-5,
    atol=1e-5,
  )


@pytest.mark.parametrize("token, token_id", [("<extra_id_10>", 268), (7, 7)])
def test_fixed_score_token_reads_that_column(token, token_id):
  batch = _batch()
  scores = _encdec(score_token=token).score_batch(_params(), batch)
  expected = _t5x_logits(_params(), batch)[..., token_id]
  mask = np.asarray(batch["mask"])
  np.testing.assert_allclose(
    np.asarray(scores)[mask],
    np.asarray(expected)[mask],
    rtol=1e-5,
    atol=1e-5,
  )


def test_byte_vocabulary_without_sentinels_rejects_extra_id_token():
  model = RankingEncDecModel(
    network.RankingTransformer(CONFIG),
    seqio.ByteVocabulary(),
    seqio.ByteVocabulary(),
    adafactor.Adafactor(),
    rax.softmax_loss,
    score_token="<extra_id_10>",
    metric_fns=METRIC_FNS,
  )
  with pytest.raises(ValueError, match="extra_ids=0"):
    model.score_batch(_params(), _batch())


def test_monot5_scores_are_log_probabilities_of_true_over_two_tokens():
  batch = _batch()
  model = _encdec(scoring="monot5", monot5_tokens=(116, 102))
  scores = np.asarray(model.score_batch(_params(), batch))
  logits = np.asarray(_t5x_logits(_params(), batch))
  pair = logits[..., [116, 102]]
  expected = pair[..., 0] - np.logaddexp(pair[..., 0], pair[..., 1])
  mask = np.asarray(batch["mask"])
  np.testing.assert_allclose(scores[mask], expected[mask], rtol=1e-5, atol=1e-5)
  assert np.all(scores[mask] <= 0.0)


def test_predict_batch_returns_the_scores():
  batch = _batch()
  model = _encdec()
  scores = model.score_batch(_params(), batch)
  predictions, aux = model.predict_batch_with_aux(
    _params(), batch, rng=jax.random.PRNGKey(3)
  )
  np.testing.assert_array_equal(predictions, scores)
  np.testing.assert_array_equal(aux["scores"], scores)
  np.testing.assert_array_equal(model.predict_batch(_params(), batch), scores)


def test_default_feature_converters_are_t5rank_ranking_converters():
  assert (
    _encdec().FEATURE_CONVERTER_CLS
    is feature_converters.RankingEncDecFeatureConverter
  )
  assert (
    _encoder().FEATURE_CONVERTER_CLS
    is feature_converters.RankingEncoderFeatureConverter
  )


def test_defaults_are_t5rank_softmax_loss_and_ndcg_mrr_at_10():
  from t5rank.ranking import losses  # pylint: disable=g-import-not-at-top

  model = RankingEncDecModel(
    network.RankingTransformer(CONFIG), VOCAB, VOCAB, adafactor.Adafactor()
  )
  assert model.ranking_loss_fn is losses.softmax_loss
  batch = _batch()
  loss, metrics = model.loss_fn(_params(), batch, None)
  scores = model.score_batch(_params(), batch)
  np.testing.assert_allclose(
    loss,
    rax.softmax_loss(scores, batch["label"], where=batch["mask"]),
    rtol=1e-5,
  )
  for name, metric_fn in METRIC_FNS.items():
    np.testing.assert_allclose(
      metrics[f"metrics/{name}"].compute(),
      metric_fn(scores, batch["label"], where=batch["mask"]),
      rtol=1e-5,
    )


def test_module_without_token_scoring_is_rejected():
  with pytest.raises(TypeError, match="RankingTransformer"):
    RankingEncDecModel(
      t5x_network.Transformer(CONFIG),
      VOCAB,
      VOCAB,
      adafactor.Adafactor(),
      rax.softmax_loss,
      metric_fns=METRIC_FNS,
    )


@pytest.mark.parametrize(
  "loss_fn", [rax.softmax_loss, rax.pairwise_logistic_loss]
)
def test_loss_is_rax_sum_over_lists_with_a_positive_divided_by_their_count(
  loss_fn,
):
  labels = np.zeros((B, L), np.float32)
  labels[0, 1] = 1.0
  labels[2, 0] = 2.0  # list 1 has no positive
  batch = _batch(labels=labels)
  model = _encdec(loss_fn)
  loss, metrics = model.loss_fn(_params(), batch, None)
  scores = model.score_batch(_params(), batch)
  keep = np.array([True, False, True])
  expected = (
    loss_fn(
      scores[keep],
      batch["label"][keep],
      where=batch["mask"][keep],
      reduce_fn=jnp.sum,
    )
    / 2
  )
  np.testing.assert_allclose(loss, expected, rtol=1e-5)
  np.testing.assert_allclose(metrics["loss"].compute(), expected, rtol=1e-5)
  np.testing.assert_allclose(
    metrics["debug/lists_in_loss_fraction"].compute(), 2 / 3
  )


def test_lists_without_positive_can_be_kept():
  labels = np.zeros((B, L), np.float32)
  labels[0, 1] = 1.0
  batch = _batch(labels=labels)
  model = _encdec(
    rax.pointwise_sigmoid_loss, exclude_lists_without_positive=False
  )
  loss, _ = model.loss_fn(_params(), batch, None)
  scores = model.score_batch(_params(), batch)
  expected = (
    rax.pointwise_sigmoid_loss(
      scores, batch["label"], where=batch["mask"], reduce_fn=jnp.sum
    )
    / B
  )
  np.testing.assert_allclose(loss, expected, rtol=1e-5)


def test_batch_without_any_positive_gives_zero_loss_and_zero_gradients():
  batch = _batch(labels=np.zeros((B, L), np.float32))
  model = _encdec()
  (loss, _), grads = jax.value_and_grad(model.loss_fn, has_aux=True)(
    _params(), batch, None
  )
  assert float(loss) == 0.0
  assert all(float(jnp.abs(g).max()) == 0.0 for g in jax.tree.leaves(grads))


def test_padding_items_do_not_change_loss_or_metrics():
  batch = _batch()
  model = _encdec()
  loss, metrics = model.loss_fn(_params(), batch, None)
  # Two more padding items per list holding arbitrary tokens and labels.
  pad = 2
  rng = np.random.default_rng(5)
  padded = {
    "encoder_input_tokens": jnp.concatenate(
      [
        batch["encoder_input_tokens"],
        jnp.asarray(rng.integers(3, 259, size=(B, pad, T)), jnp.int32),
      ],
      axis=1,
    ),
    "decoder_input_tokens": jnp.zeros((B, L + pad, 1), jnp.int32),
    "decoder_target_tokens": jnp.concatenate(
      [
        batch["decoder_target_tokens"],
        jnp.full((B, pad, 1), TARGET, jnp.int32),
      ],
      axis=1,
    ),
    "label": jnp.concatenate([batch["label"], jnp.full((B, pad), 3.0)], axis=1),
    "mask": jnp.concatenate([batch["mask"], jnp.zeros((B, pad), bool)], axis=1),
  }
  padded_loss, padded_metrics = model.loss_fn(_params(), padded, None)
  np.testing.assert_allclose(padded_loss, loss, rtol=1e-5)
  for name in ("metrics/ndcg@10", "metrics/mrr@10", "debug/scores_mean"):
    np.testing.assert_allclose(
      padded_metrics[name].compute(), metrics[name].compute(), rtol=1e-5
    )


def test_in_train_metrics_are_rax_metrics_over_lists_with_items():
  batch = _batch()
  model = _encdec()
  _, metrics = model.loss_fn(_params(), batch, None)
  scores = model.score_batch(_params(), batch)
  for name, metric_fn in METRIC_FNS.items():
    np.testing.assert_allclose(
      metrics[f"metrics/{name}"].compute(),
      metric_fn(scores, batch["label"], where=batch["mask"]),
      rtol=1e-5,
    )
  np.testing.assert_allclose(
    metrics["debug/items_per_list"].compute(), (B * L - 1) / B
  )
  assert {
    "loss",
    "debug/scores_mean",
    "debug/labels_mean",
    "timing/steps_per_second",
  } <= set(metrics)


def _t5rank_gumbel_approx_ndcg():
  from t5rank.ranking import metrics  # pylint: disable=g-import-not-at-top
  from t5rank.ranking import t12n  # pylint: disable=g-import-not-at-top

  return t12n.gumbel_t12n(t12n.approx_t12n(metrics.ndcg_metric))


@pytest.mark.parametrize(
  "make_loss",
  [
    lambda: _key_requiring_loss,
    lambda: rax.listmle_loss,
    _t5rank_gumbel_approx_ndcg,
  ],
  ids=["local-gumbel", "rax-listmle", "t5rank-gumbel-approx-ndcg"],
)
def test_random_losses_get_a_fixed_key_in_eval_and_the_step_key_in_training(
  make_loss,
):
  batch = _batch()
  model = _encdec(make_loss())
  eval_a, _ = model.loss_fn(_params(), batch, None)
  eval_b, _ = model.loss_fn(_params(), batch, None)
  assert float(eval_a) == float(eval_b)
  train = [
    float(model.loss_fn(_params(), batch, jax.random.PRNGKey(s))[0])
    for s in range(4)
  ]
  assert len(set(train)) > 1
  assert all(np.isfinite(train))


def test_losses_without_key_run_with_a_training_rng():
  batch = _batch()
  model = _encdec(rax.softmax_loss)
  train_loss, _ = model.loss_fn(_params(), batch, jax.random.PRNGKey(1))
  eval_loss, _ = model.loss_fn(_params(), batch, None)
  # Dropout is 0, so training and evaluation agree.
  np.testing.assert_allclose(train_loss, eval_loss, rtol=1e-6)


def test_loss_fn_is_jittable_and_gradients_are_finite():
  batch = _batch()
  model = _encdec(_key_requiring_loss)
  grad_fn = jax.jit(jax.grad(lambda p, b, r: model.loss_fn(p, b, r)[0]))
  grads = grad_fn(_params(), batch, jax.random.PRNGKey(0))
  assert all(np.all(np.isfinite(g)) for g in jax.tree.leaves(grads))


@pytest.mark.parametrize("pooling", ["first", "mean"])
def test_encoder_model_scores_lists_and_trains(pooling):
  batch = _batch()
  model = _encoder(pooling=pooling)
  params = _encoder_params()
  scores = model.score_batch(params, batch)
  assert scores.shape == (B, L)
  direct = network.RankingEncoder(CONFIG, pooling=pooling).apply(
    {"params": params},
    batch["encoder_input_tokens"].reshape((B * L, T)),
    enable_dropout=False,
  )
  np.testing.assert_allclose(
    scores, direct.reshape((B, L)), rtol=1e-5, atol=1e-6
  )
  (loss, metrics), grads = jax.value_and_grad(model.loss_fn, has_aux=True)(
    params, batch, jax.random.PRNGKey(0)
  )
  assert np.isfinite(loss) and "metrics/ndcg@10" in metrics
  assert float(jnp.abs(grads["score_head"]["kernel"]).sum()) > 0


def _partitioner():
  return partitioning.PjitPartitioner(num_partitions=1)


def _initializer(model, batch):
  shapes, types = _shapes(batch)
  return utils.TrainStateInitializer(
    optimizer_def=model.optimizer_def,
    init_fn=model.get_initial_variables,
    input_shapes=shapes,
    input_types=types,
    partitioner=_partitioner(),
  )


@pytest.fixture(scope="module")
def stock_checkpoint(tmp_path_factory):
  """A T5X checkpoint of a stock EncoderDecoderModel + T5X Transformer."""
  stock = t5x_models.EncoderDecoderModel(
    t5x_network.Transformer(CONFIG), VOCAB, VOCAB, adafactor.Adafactor()
  )
  batch = {
    "encoder_input_tokens": jnp.ones((2, T), jnp.int32),
    "decoder_input_tokens": jnp.ones((2, 1), jnp.int32),
    "decoder_target_tokens": jnp.ones((2, 1), jnp.int32),
  }
  state = _initializer(stock, batch).from_scratch(jax.random.PRNGKey(42))
  directory = str(tmp_path_factory.mktemp("stock"))
  checkpointer = checkpoints.Checkpointer(state, _partitioner(), directory)
  checkpointer.save(state)
  return f"{directory}/checkpoint_0", state.params


def test_stock_t5x_checkpoint_loads_and_scores_full_vocabulary_logits(
  stock_checkpoint,
):
  path, stock_params = stock_checkpoint
  batch = _batch(seed=3)
  model = _encdec()
  restored = _initializer(model, batch).from_checkpoint(
    [utils.RestoreCheckpointConfig(path=path, mode="specific", dtype="float32")]
  )
  jax.tree.map(np.testing.assert_array_equal, restored.params, stock_params)
  scores = model.score_batch(restored.params, batch)
  expected = _t5x_logits(stock_params, batch)[..., TARGET]
  mask = np.asarray(batch["mask"])
  np.testing.assert_allclose(
    np.asarray(scores)[mask],
    np.asarray(expected)[mask],
    rtol=1e-5,
    atol=1e-5,
  )


def test_encoder_model_loads_the_encoder_of_a_stock_checkpoint(
  stock_checkpoint,
):
  path, stock_params = stock_checkpoint
  batch = _batch()
  model = _encoder()
  restored = _initializer(model, batch).from_checkpoint(
    [
      utils.RestoreCheckpointConfig(
        path=path,
        mode="specific",
        dtype="float32",
        # The head is new: initialise it (and its optimizer state).
        assignment_map=((r".*score_head.*", None),),
        fallback_to_scratch=True,
      )
    ],
    init_rng=jax.random.PRNGKey(0),
  )
  for name in ("token_embedder", "encoder"):
    jax.tree.map(
      np.testing.assert_array_equal, restored.params[name], stock_params[name]
    )
  assert "decoder" not in restored.params
  assert restored.params["score_head"]["kernel"].shape == (CONFIG.emb_dim,)


@pytest.mark.slow
@pytest.mark.parametrize(
  "make_model", [_encdec, _encoder], ids=["encdec", "encoder"]
)
def test_t5x_trainer_trains_and_evaluates_with_ranking_metrics(
  make_model, tmp_path
):
  from t5x import trainer as trainer_lib  # pylint: disable=g-import-not-at-top

  model = make_model(_key_requiring_loss)
  batch = _batch()
  if make_model is _encoder:
    batch = {k: batch[k] for k in ("encoder_input_tokens", "label", "mask")}
  initializer = _initializer(model, batch)
  trainer = trainer_lib.Trainer(
    model,
    train_state=initializer.from_scratch(jax.random.PRNGKey(0)),
    partitioner=_partitioner(),
    eval_names=["validation"],
    summary_dir=str(tmp_path),
    train_state_axes=initializer.train_state_axes,
    rng=jax.random.PRNGKey(1),
    learning_rate_fn=lambda step: 1e-2,
    num_microbatches=None,
  )
  summary = trainer.train(iter([batch, batch]), num_steps=2).result()
  assert int(trainer.train_state.step) == 2
  value = lambda x: float(getattr(x, "value", x))  # clu Scalar or a number
  assert np.isfinite(value(summary["loss"]))
  evaluated = trainer.eval({"validation": iter([batch])})["validation"]
  for name in (
    "loss",
    "metrics/ndcg@10",
    "metrics/mrr@10",
    "debug/lists_in_loss_fraction",
  ):
    assert np.isfinite(value(evaluated[name])), name
  assert 0.0 <= value(evaluated["metrics/ndcg@10"]) <= 1.0
