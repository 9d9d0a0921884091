"""`t5rank-convert`: Hugging Face T5 checkpoints in and out of t5rank.

Import a Hugging Face T5 directory (`config.json` + `model.safetensors`, its
shards, or `pytorch_model.bin` with torch installed; T5 v1.0, T5.1.1, flan-T5,
mT5) as a T5X checkpoint plus the model gin files of its sizes::

  t5rank-convert --from_hf=/models/monot5-base-msmarco --to_t5x=/ckpt/monot5

writes `/ckpt/monot5/checkpoint_0` (T5X's format: pass it as
`INITIAL_CHECKPOINT_PATH`), `/ckpt/monot5/model.gin` (RankT5-EncDec / monoT5,
`RankingEncDecModel`) and `/ckpt/monot5/encoder.gin` (RankT5-Enc,
`RankingEncoderModel`, which restores the encoder part). `--scoring=monot5`
writes monoT5 scoring (log p(true) over the `true`/`false` logits) into
model.gin.

Export a trained ranker (its checkpoint and the model gin it was trained
with) as a directory `transformers` loads::

  t5rank-convert --from_t5x=/ckpt/rankt5/checkpoint_1010000 \
      --gin_file=models/encdec/base.gin --to_hf=/models/rankt5-base

An enc-dec ranker becomes a `T5ForConditionalGeneration`: the logit of the
score token at the first decoder step (decoder input 0) is the t5rank score,
and for monoT5 scoring the log-softmax over the `true`/`false` logits is.
config.json keeps how t5rank scored under the key `t5rank`
(`scoring`, `score_token_ids`, and for the encoder `pooling`). An
encoder-only ranker becomes a `T5EncoderModel` plus `score_head.safetensors`
(`kernel` [d_model], `bias` []): score = pool(last_hidden_state) · kernel +
bias, pooling the first token's state ('first') or the mean over non-pad
tokens ('mean'). The README shows both in a few lines of PyTorch.

Gin files are found as in `t5rank-train`: under `--gin_search_paths`, then
t5rank's gin folder and T5X's package folder.
"""

import argparse
from collections.abc import Sequence
import os
import sys

from t5rank import main as t5rank_main

MODEL_GIN = "model.gin"
ENCODER_GIN = "encoder.gin"
_GIN_MODULE = "t5rank_convert"

_GIN_TEMPLATE = """\
# {title}
# Sizes from {source}/config.json, written by t5rank-convert.
# Use it as the model file (first --gin_file), with
#   --gin.INITIAL_CHECKPOINT_PATH="'{checkpoint}'"{restore_note}
# Every network.T5Config field is bound here; T5X's T5.1.1 base file only
# supplies the optimizer (Adafactor) and DROPOUT_RATE.
from __gin__ import dynamic_registration

import seqio
import t5rank.models
from t5x.examples.t5 import network

include 't5x/examples/t5/t5_1_1/base.gin'
include '{head}'
{model_bindings}
# The head file sets VOCABULARY to T5's SentencePiece vocabulary (T5, T5.1.1,
# flan-T5). Another model's (mT5's) goes here, the same as the tasks':
#   VOCABULARY = @seqio.SentencePieceVocabulary()
#   seqio.SentencePieceVocabulary:
#     sentencepiece_model_file = '/path/to/spiece.model'
#     extra_ids = 100

network.T5Config:
{config_bindings}
"""

_ENCODER_RESTORE_NOTE = """
# The score head is new: the first restore needs, on the initial-checkpoint
# utils.RestoreCheckpointConfig, assignment_map = ((r'.*score_head.*', None),)
# and fallback_to_scratch = True."""


def model_gin_text(
  config,
  *,
  source: str,
  checkpoint: str,
  encoder: bool = False,
  scoring: str = "logit",
) -> str:
  """A model gin file binding `config` (a T5X `T5Config`) and a ranking head.

  >>> from t5x.examples.t5 import network
  >>> text = model_gin_text(network.T5Config(vocab_size=300, emb_dim=32),
  ...                       source="/hf", checkpoint="/t5x/checkpoint_0")
  >>> "  emb_dim = 32" in text, "include 'models/encdec/_head.gin'" in text
  (True, True)
  """
  # pylint: disable-next=g-import-not-at-top
  from t5rank.models import hf_checkpoints

  fields = hf_checkpoints.t5config_fields(config)
  fields["dropout_rate"] = "%DROPOUT_RATE"
  lines = []
  for name, value in fields.items():
    if isinstance(value, str) and not value.startswith("%"):
      value = repr(value)
    elif isinstance(value, (list, tuple)):
      value = repr(tuple(value))
    lines.append(f"  {name} = {value}")
  if encoder:
    head = "models/encoder/_head.gin"
    title = "RankT5-Enc (RankingEncoderModel)"
    model_bindings = ""
  else:
    head = "models/encdec/_head.gin"
    title = (
      "monoT5 scoring (RankingEncDecModel, log p(true))"
      if scoring == "monot5"
      else "RankT5-EncDec (RankingEncDecModel, logit of the score token)"
    )
    model_bindings = (
      f"\nt5rank.models.RankingEncDecModel.scoring = {scoring!r}\n"
    )
  return _GIN_TEMPLATE.format(
    title=title,
    source=source,
    checkpoint=checkpoint,
    head=head,
    restore_note=_ENCODER_RESTORE_NOTE if encoder else "",
    model_bindings=model_bindings,
    config_bindings="\n".join(lines),
  )


def _search_paths(user_paths: Sequence[str]) -> list:
  import t5x  # pylint: disable=g-import-not-at-top

  t5x_root = os.path.dirname(os.path.dirname(os.path.abspath(t5x.__file__)))
  return list(user_paths) + [".", t5rank_main.gin_dir(), t5x_root]


def model_from_gin(
  gin_files: Sequence[str],
  gin_bindings: Sequence[str] = (),
  gin_search_paths: Sequence[str] = (),
):
  """Builds the `MODEL` a set of gin files defines (gin is cleared after)."""
  # pylint: disable=g-import-not-at-top
  from t5x import gin_utils

  import gin

  # pylint: enable=g-import-not-at-top
  configurable = _model_configurable()
  gin.clear_config(clear_constants=True)
  try:
    gin_utils.parse_gin_flags(
      _search_paths(gin_search_paths),
      list(gin_files),
      # Dropout plays no part in a conversion; T5X's size files require it.
      ["DROPOUT_RATE = 0.0"]
      + list(gin_bindings)
      + [f"{_GIN_MODULE}.model.model = %MODEL"],
      finalize_config=False,
    )
    return configurable()
  finally:
    gin.clear_config(clear_constants=True)


_MODEL_CONFIGURABLE = []


def _model_configurable():
  """A gin configurable returning its `model` argument (registered once)."""
  if not _MODEL_CONFIGURABLE:
    import gin  # pylint: disable=g-import-not-at-top

    def model(model=gin.REQUIRED):  # pylint: disable=redefined-outer-name
      return model

    _MODEL_CONFIGURABLE.append(
      gin.configurable("model", module=_GIN_MODULE)(model)
    )
  return _MODEL_CONFIGURABLE[0]


def import_hf(
  hf_dir: str,
  t5x_dir: str,
  *,
  scoring: str = "logit",
  dtype: str = "bfloat16",
  gin_search_paths: Sequence[str] = (),
) -> dict:
  """Hugging Face T5 directory -> T5X checkpoint + model.gin + encoder.gin.

  Returns the paths written: {'checkpoint', 'model_gin', 'encoder_gin'}.
  """
  # pylint: disable=g-import-not-at-top
  from t5rank.models import hf_checkpoints

  # pylint: enable=g-import-not-at-top
  hf_config = hf_checkpoints.read_hf_config(hf_dir)
  weights = hf_checkpoints.read_hf_weights(hf_dir)
  config, params = hf_checkpoints.t5x_params_from_hf(
    hf_config, weights, source=hf_dir, dtype=dtype
  )
  del weights
  os.makedirs(t5x_dir, exist_ok=True)
  checkpoint = os.path.join(os.path.abspath(t5x_dir), "checkpoint_0")
  paths = {
    "checkpoint": checkpoint,
    "model_gin": os.path.join(t5x_dir, MODEL_GIN),
    "encoder_gin": os.path.join(t5x_dir, ENCODER_GIN),
  }
  for key, encoder in (("model_gin", False), ("encoder_gin", True)):
    with open(paths[key], "w", encoding="utf-8") as f:
      f.write(
        model_gin_text(
          config,
          source=os.path.abspath(hf_dir),
          checkpoint=checkpoint,
          encoder=encoder,
          scoring=scoring,
        )
      )
  # The checkpoint is written for the model the new gin file builds.
  model = model_from_gin(
    [os.path.abspath(paths["model_gin"])], gin_search_paths=gin_search_paths
  )
  hf_checkpoints.save_t5x_checkpoint(model, params, t5x_dir)
  return paths


def export_hf(
  checkpoint: str,
  gin_files: Sequence[str],
  hf_dir: str,
  *,
  gin_bindings: Sequence[str] = (),
  gin_search_paths: Sequence[str] = (),
  score_token: str | None = None,
) -> list:
  """T5X checkpoint of a t5rank ranker -> Hugging Face T5 directory.

  Args:
    checkpoint: a T5X checkpoint directory (`.../checkpoint_N`).
    gin_files: the model gin file(s) the ranker was trained with.
    hf_dir: output directory.
    gin_bindings: extra gin bindings (as `--gin.X=...` of T5X's mains).
    gin_search_paths: folders searched for gin files before t5rank's.
    score_token: the score token (an id or a token string) when the model
      scores each item's own target token (`score_token=None` in gin, the
      tasks' `<extra_id_10>`); default `<extra_id_10>` of the output
      vocabulary.

  Returns:
    The paths written.
  """
  # pylint: disable=g-import-not-at-top
  from t5rank.models import hf_checkpoints
  from t5rank.models import models
  from t5rank.models import score_tokens

  # pylint: enable=g-import-not-at-top
  model = model_from_gin(gin_files, gin_bindings, gin_search_paths)
  params = hf_checkpoints.load_t5x_params(checkpoint)
  config = model.module.config
  if isinstance(model, models.RankingEncoderModel):
    t5rank = {"scoring": "encoder", "pooling": model.module.pooling}
    encoder_only = True
  elif isinstance(model, models.RankingEncDecModel):
    ids = model.score_token_ids
    if ids is None:
      token = "<extra_id_10>" if score_token is None else score_token
      if isinstance(token, str) and token.isdigit():
        token = int(token)
      ids = (score_tokens.resolve_token_id(model.output_vocabulary, token),)
    t5rank = {"scoring": model.scoring, "score_token_ids": list(ids)}
    encoder_only = False
  else:
    raise TypeError(
      f"the gin files {list(gin_files)} build MODEL = "
      f"{type(model).__name__}; expected t5rank.models.RankingEncDecModel or "
      "RankingEncoderModel"
    )
  hf_config, weights, score_head = hf_checkpoints.hf_from_t5x_params(
    config, params, encoder_only=encoder_only, t5rank=t5rank
  )
  return hf_checkpoints.write_hf_model(hf_dir, hf_config, weights, score_head)


def _parser() -> argparse.ArgumentParser:
  parser = argparse.ArgumentParser(
    prog="t5rank-convert",
    description="Convert Hugging Face T5 checkpoints to T5X for t5rank "
    "(--from_hf --to_t5x) and t5rank rankers to Hugging Face T5 "
    "(--from_t5x --gin_file --to_hf).",
  )
  parser.add_argument("--from_hf", help="Hugging Face T5 model directory")
  parser.add_argument(
    "--to_t5x", help="output folder for checkpoint_0 and the model gin files"
  )
  parser.add_argument(
    "--scoring",
    choices=("logit", "monot5"),
    default="logit",
    help="scoring written into model.gin",
  )
  parser.add_argument(
    "--dtype",
    default="bfloat16",
    help="activation dtype of the written T5Config",
  )
  parser.add_argument("--from_t5x", help="T5X checkpoint of a t5rank ranker")
  parser.add_argument(
    "--gin_file",
    action="append",
    default=[],
    help="model gin file of the ranker (repeatable)",
  )
  parser.add_argument(
    "--gin_bindings",
    action="append",
    default=[],
    help="extra gin binding (repeatable)",
  )
  parser.add_argument(
    "--gin_search_paths",
    default="",
    help="comma-separated folders searched for gin files",
  )
  parser.add_argument(
    "--score_token",
    default=None,
    help="score token id or string when the model scores "
    "each item's target (default <extra_id_10>)",
  )
  parser.add_argument("--to_hf", help="output Hugging Face model directory")
  return parser


def main(argv: Sequence[str] | None = None) -> None:
  """`t5rank-convert`: see the module docstring."""
  parser = _parser()
  args = parser.parse_args(sys.argv[1:] if argv is None else list(argv))
  search = [p for p in args.gin_search_paths.split(",") if p]
  if args.from_hf is not None:
    if args.to_t5x is None or args.from_t5x or args.to_hf:
      parser.error("--from_hf needs --to_t5x (and no --from_t5x/--to_hf)")
    paths = import_hf(
      args.from_hf,
      args.to_t5x,
      scoring=args.scoring,
      dtype=args.dtype,
      gin_search_paths=search,
    )
    print("\n".join(f"{k}: {v}" for k, v in paths.items()))
  elif args.from_t5x is not None:
    if args.to_hf is None or not args.gin_file or args.to_t5x:
      parser.error("--from_t5x needs --gin_file and --to_hf")
    paths = export_hf(
      args.from_t5x,
      args.gin_file,
      args.to_hf,
      gin_bindings=args.gin_bindings,
      gin_search_paths=search,
      score_token=args.score_token,
    )
    print("\n".join(paths))
  else:
    parser.error(
      "give --from_hf=DIR --to_t5x=DIR or --from_t5x=CHECKPOINT "
      "--gin_file=FILE --to_hf=DIR"
    )
