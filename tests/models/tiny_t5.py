"""The tiny T5.1.1 config the model tests share (T5X's `T5Config`)."""

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
