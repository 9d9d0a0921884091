"""Each loss file in gin/losses/ trains the demo ranker a few steps without NaN.

The model is gin/demo/model.gin shrunk to one encoder and one decoder layer,
with the loss file applied after it as a user would (`--gin_file=losses/...`).
The batch has what makes losses fail: a list without a relevant item, padded
items, graded labels and a list with one valid item. Steps are plain gradient
steps on `model.loss_fn`, the function T5X's trainer differentiates.
"""

import os

import pytest

pytest.importorskip("t5x", reason="T5X is not installed; see README")

# pylint: disable=g-import-not-at-top,wrong-import-position
import jax
import jax.numpy as jnp
import numpy as np
from t5x import gin_utils
from t5x import train as t5x_train

import gin
from t5rank import main

# pylint: enable=g-import-not-at-top,wrong-import-position

GIN_DIR = main.gin_dir()
T5X_SEARCH_PATH = os.path.dirname(
  os.path.dirname(os.path.abspath(t5x_train.__file__))
)
LOSS_FILES = sorted(
  os.path.join("losses", name)
  for name in os.listdir(os.path.join(GIN_DIR, "losses"))
  if name.endswith(".gin") and not name.startswith("_")
)
_SMALLER = [
  "network.T5Config.emb_dim = 32",
  "network.T5Config.num_heads = 2",
  "network.T5Config.head_dim = 16",
  "network.T5Config.mlp_dim = 64",
  "network.T5Config.num_encoder_layers = 1",
  "network.T5Config.num_decoder_layers = 1",
]


@gin.configurable("model", module="t5rank_loss_files_test")
def _model(model=gin.REQUIRED):
  return model


def _build_model(loss_file):
  gin.clear_config(clear_constants=True)
  try:
    gin_utils.parse_gin_flags(
      [GIN_DIR, T5X_SEARCH_PATH],
      ["demo/model.gin", loss_file],
      _SMALLER + ["t5rank_loss_files_test.model.model = %MODEL"],
      finalize_config=False,
    )
    return gin.get_configurable(_model)()
  finally:
    gin.clear_config(clear_constants=True)


def _batch():
  rng = np.random.default_rng(0)
  b, l, t = 4, 5, 12
  tokens = rng.integers(3, 259, size=(b, l, t), dtype=np.int32)
  tokens[:, :, -3:] = 0  # padded tokens
  label = np.array(
    [
      [2, 0, 1, 0, 0],  # graded
      [0, 0, 0, 0, 0],  # no relevant item
      [1, 0, 0, 0, 0],  # two padded items
      [1, 0, 0, 0, 0],
    ],  # one valid item
    np.float32,
  )
  mask = np.array(
    [[1, 1, 1, 1, 1], [1, 1, 1, 1, 1], [1, 1, 1, 0, 0], [1, 0, 0, 0, 0]], bool
  )
  tokens[~mask] = 0
  return {
    "encoder_input_tokens": tokens,
    "decoder_input_tokens": np.zeros((b, l, 1), np.int32),
    "decoder_target_tokens": np.full((b, l, 1), 258, np.int32),
    "label": label,
    "mask": mask,
  }


@pytest.mark.parametrize("loss_file", LOSS_FILES)
def test_loss_file_trains_demo_model_without_nan(loss_file):
  model = _build_model(loss_file)
  batch = _batch()
  shapes = {k: v.shape for k, v in batch.items()}
  dtypes = {k: v.dtype for k, v in batch.items()}
  params = jax.jit(  # as T5X's trainer initialises: compiled, not op by op
    lambda key: model.get_initial_variables(key, shapes, dtypes)["params"]
  )(jax.random.PRNGKey(0))

  @jax.jit
  def step(params, rng):
    (loss, _), grads = jax.value_and_grad(model.loss_fn, has_aux=True)(
      params, batch, rng
    )
    params = jax.tree.map(lambda p, g: p - 0.05 * g, params, grads)
    grad_norm = jnp.sqrt(sum(jnp.sum(g**2) for g in jax.tree.leaves(grads)))
    return params, loss, grad_norm

  grad_norms = []
  for i in range(4):
    params, loss, grad_norm = step(params, jax.random.PRNGKey(i + 1))
    assert np.isfinite(loss), (loss_file, i, loss)
    assert np.isfinite(grad_norm), (loss_file, i, grad_norm)
    grad_norms.append(float(grad_norm))
  # From random initial scores every loss has something to learn (later
  # steps may separate this one batch perfectly, e.g. the hinge loss).
  assert grad_norms[0] > 0.0, f"{loss_file}: no gradient reaches the model"
  scores = model.score_batch(params, batch)
  assert scores.shape == batch["label"].shape
  assert np.all(np.isfinite(np.asarray(scores)[batch["mask"]]))
