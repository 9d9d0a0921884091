"""The tiny T5.1.1 config the model tests share (T5X's `T5Config`)."""

import jax
from t5x.examples.t5 import network


def config(**overrides) -> network.T5Config:
  """A 2+2-layer T5.1.1 (gated GELU, no dropout); `overrides` change fields.

  Small enough for CPU tests in seconds; the equality tests (T5X's logits,
  packed == unpacked, stock checkpoint restore) hold for any size.
  """
  settings = dict(
    vocab_size=384,
    emb_dim=32,
    num_heads=2,
    num_encoder_layers=2,
    num_decoder_layers=2,
    head_dim=16,
    mlp_dim=64,
    mlp_activations=("gelu", "linear"),
    dropout_rate=0.0,
    logits_via_embedding=False,
  )
  settings.update(overrides)
  return network.T5Config(**settings)


def initial_params(model, batch, seed: int = 0):
  """``model``'s initial parameters for ``batch``'s shapes and dtypes.

  Compiled, as T5X's trainer initialises: op by op, flax's init of even this
  tiny model compiles hundreds of primitives one at a time.
  """
  shapes = {k: v.shape for k, v in batch.items()}
  types = {k: v.dtype for k, v in batch.items()}
  init = jax.jit(
    lambda key: model.get_initial_variables(key, shapes, types)["params"]
  )
  return init(jax.random.PRNGKey(seed))
