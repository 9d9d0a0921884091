"""Tests for t5rank/models/hf_checkpoints.py and `t5rank-convert`.

Oracle: Hugging Face's PyTorch T5 (`transformers`), an implementation of T5
independent of T5X's. Tiny random models of both families (T5 v1.0: ReLU,
tied and scaled output; T5.1.1: gated GELU, untied `lm_head`) are imported and
must score as transformers does; t5rank rankers are exported and must score
in transformers as in t5rank.
"""

import json
import os

import numpy as np
import pytest

pytest.importorskip("t5x", reason="T5X is not installed; see README")
torch = pytest.importorskip("torch", reason="torch is not installed")
transformers = pytest.importorskip(
  "transformers", reason="transformers is not installed"
)

# pylint: disable=g-import-not-at-top,wrong-import-position
import flax
import jax
import jax.numpy as jnp
from safetensors.numpy import load_file
import seqio
from t5x import partitioning
from t5x import utils

import gin
from t5rank import convert
from t5rank.models import RankingEncDecModel
from t5rank.models import RankingEncoderModel
from t5rank.models import hf_checkpoints

# pylint: enable=g-import-not-at-top,wrong-import-position

gin.external_configurable(seqio.ByteVocabulary, module="t5rank_convert_test")

VOCAB_SIZE = 320
SCORE_ID = 250  # any output id below ByteVocabulary's 259 (the demo ranker's)
TRUE_ID, FALSE_ID = 7, 9
B, L, T = 2, 3, 9
FAMILIES = {
  "t5_v1_0": dict(feed_forward_proj="relu", tie_word_embeddings=True),
  "t5_1_1": dict(feed_forward_proj="gated-gelu", tie_word_embeddings=False),
}
# Scoring resolves token ids with the output vocabulary; T5's SentencePiece
# file is not at hand in tests, and any vocabulary holding the ids will do.
FLOAT32 = [
  "network.T5Config.dtype = 'float32'",
  "VOCABULARY = @t5rank_convert_test.ByteVocabulary()",
]


def _hf_model(family, seed=0):
  """A tiny random HF T5 of `family`; every weight random, lm_head untied."""
  config = transformers.T5Config(
    vocab_size=VOCAB_SIZE,
    d_model=32,
    d_kv=8,
    d_ff=48,
    num_layers=2,
    num_decoder_layers=2,
    num_heads=4,
    dropout_rate=0.0,
    decoder_start_token_id=0,
    **FAMILIES[family],
  )
  torch.manual_seed(seed)
  model = transformers.T5ForConditionalGeneration(config)
  with torch.no_grad():
    for name, p in model.named_parameters():
      if "layer_norm" in name:
        p.uniform_(0.5, 1.5)  # HF initialises norms to 1: make them matter
    if not FAMILIES[family]["tie_word_embeddings"]:
      model.lm_head = torch.nn.Linear(32, VOCAB_SIZE, bias=False)
      torch.nn.init.normal_(model.lm_head.weight, std=0.5)
  return model.eval()


def _batch(seed=0):
  """[B, L, T] tokens ending in EOS (1), padded with 0; one padding item."""
  rng = np.random.default_rng(seed)
  tokens = rng.integers(2, VOCAB_SIZE, size=(B, L, T))
  lengths = rng.integers(3, T + 1, size=(B, L))
  pos = np.arange(T)[None, None, :]
  tokens[pos == lengths[..., None] - 1] = 1
  tokens[pos >= lengths[..., None]] = 0
  mask = np.ones((B, L), bool)
  mask[1, 2] = False
  tokens[~mask] = 0
  return {
    "encoder_input_tokens": jnp.asarray(tokens, jnp.int32),
    "decoder_input_tokens": jnp.zeros((B, L, 1), jnp.int32),
    "decoder_target_tokens": jnp.asarray(
      np.where(mask, SCORE_ID, 0)[..., None], jnp.int32
    ),
    "label": jnp.zeros((B, L), jnp.float32),
    "mask": jnp.asarray(mask),
  }


def _hf_step0_logits(hf_model, batch):
  """transformers' logits [N, V] at decoder step 0 of every real item."""
  mask = np.asarray(batch["mask"]).reshape(-1)
  tokens = np.asarray(batch["encoder_input_tokens"]).reshape(B * L, T)[mask]
  with torch.no_grad():
    out = hf_model(
      input_ids=torch.tensor(tokens, dtype=torch.long),
      attention_mask=torch.tensor(tokens > 0, dtype=torch.long),
      decoder_input_ids=torch.zeros((len(tokens), 1), dtype=torch.long),
    )
  return out.logits[:, 0, :].numpy()


def _real(scores, batch):
  return np.asarray(scores).reshape(-1)[np.asarray(batch["mask"]).reshape(-1)]


def _initializer(model, batch):
  return utils.TrainStateInitializer(
    optimizer_def=model.optimizer_def,
    init_fn=model.get_initial_variables,
    input_shapes={k: v.shape for k, v in batch.items()},
    input_types={k: v.dtype for k, v in batch.items()},
    partitioner=partitioning.PjitPartitioner(num_partitions=1),
  )


def _restore(model, batch, path, encoder=False):
  """Restores `path` as T5X's INITIAL_CHECKPOINT_PATH does (finetune.gin)."""
  config = dict(path=path, mode="specific", dtype="float32")
  if encoder:
    config.update(
      assignment_map=((r".*score_head.*", None),), fallback_to_scratch=True
    )
  return (
    _initializer(model, batch)
    .from_checkpoint(
      [utils.RestoreCheckpointConfig(**config)], init_rng=jax.random.PRNGKey(0)
    )
    .params
  )


@pytest.fixture(scope="module", params=sorted(FAMILIES))
def imported(request, tmp_path_factory):
  """(family, HF model, paths of its import by t5rank-convert)."""
  family = request.param
  hf_dir = str(tmp_path_factory.mktemp(f"hf_{family}"))
  hf_model = _hf_model(family)
  hf_model.save_pretrained(hf_dir)
  t5x_dir = str(tmp_path_factory.mktemp(f"t5x_{family}"))
  convert.main(
    [f"--from_hf={hf_dir}", f"--to_t5x={t5x_dir}", "--dtype=float32"]
  )
  hf_model = transformers.T5ForConditionalGeneration.from_pretrained(hf_dir)
  return (
    family,
    hf_model.eval(),
    {
      "hf": hf_dir,
      "checkpoint": os.path.join(t5x_dir, "checkpoint_0"),
      "model_gin": os.path.join(t5x_dir, "model.gin"),
      "encoder_gin": os.path.join(t5x_dir, "encoder.gin"),
    },
  )


def test_import_writes_t5x_sizes_and_output_layer_of_the_family(imported):
  family, _, paths = imported
  model = convert.model_from_gin([paths["model_gin"]])
  config = model.module.config
  assert isinstance(model, RankingEncDecModel)
  assert (
    config.vocab_size,
    config.emb_dim,
    config.head_dim,
    config.mlp_dim,
    config.num_heads,
    config.num_encoder_layers,
    config.num_decoder_layers,
  ) == (VOCAB_SIZE, 32, 8, 48, 4, 2, 2)
  v1_0 = family == "t5_v1_0"
  assert config.mlp_activations == (("relu",) if v1_0 else ("gelu", "linear"))
  assert config.logits_via_embedding == v1_0
  params = hf_checkpoints.load_t5x_params(paths["checkpoint"])
  assert ("logits_dense" in params["decoder"]) == (not v1_0)


def test_imported_logit_scores_equal_transformers_score_token_logits(imported):
  _, hf_model, paths = imported
  batch = _batch(seed=1)
  model = convert.model_from_gin(
    [paths["model_gin"]],
    FLOAT32 + [f"t5rank.models.RankingEncDecModel.score_token = {SCORE_ID}"],
  )
  params = _restore(model, batch, paths["checkpoint"])
  scores = model.score_batch(params, batch)
  expected = _hf_step0_logits(hf_model, batch)[:, SCORE_ID]
  np.testing.assert_allclose(
    _real(scores, batch), expected, atol=1e-4, rtol=1e-4
  )


def test_imported_monot5_scores_equal_transformers_log_p_true(imported):
  _, hf_model, paths = imported
  batch = _batch(seed=2)
  model = convert.model_from_gin(
    [paths["model_gin"]],
    FLOAT32
    + [
      "t5rank.models.RankingEncDecModel.scoring = 'monot5'",
      "t5rank.models.RankingEncDecModel.monot5_tokens = "
      f"({TRUE_ID}, {FALSE_ID})",
    ],
  )
  params = _restore(model, batch, paths["checkpoint"])
  scores = model.score_batch(params, batch)
  logits = torch.tensor(
    _hf_step0_logits(hf_model, batch)[:, [TRUE_ID, FALSE_ID]]
  )
  expected = torch.log_softmax(logits, dim=-1)[:, 0].numpy()
  np.testing.assert_allclose(
    _real(scores, batch), expected, atol=1e-4, rtol=1e-4
  )


def test_encoder_part_of_an_import_restores_into_the_encoder_ranker(imported):
  _, hf_model, paths = imported
  batch = {
    k: v
    for k, v in _batch().items()
    if k in ("encoder_input_tokens", "label", "mask")
  }
  model = convert.model_from_gin([paths["encoder_gin"]], FLOAT32)
  assert isinstance(model, RankingEncoderModel)
  params = _restore(model, batch, paths["checkpoint"], encoder=True)
  state = hf_model.state_dict()
  np.testing.assert_array_equal(
    params["token_embedder"]["embedding"], state["shared.weight"].numpy()
  )
  np.testing.assert_array_equal(
    params["encoder"]["layers_1"]["attention"]["query"]["kernel"],
    state["encoder.block.1.layer.0.SelfAttention.q.weight"].numpy().T,
  )
  assert "decoder" not in params and "score_head" in params


def _demo_bindings(family, scoring="logit"):
  v1_0 = family == "t5_v1_0"
  return [
    "network.T5Config.vocab_size = %d" % VOCAB_SIZE,
    "network.T5Config.emb_dim = 32",
    "network.T5Config.head_dim = 8",
    "network.T5Config.num_heads = 4",
    "network.T5Config.mlp_dim = 48",
    "network.T5Config.mlp_activations = %r"
    % (("relu",) if v1_0 else ("gelu", "linear"),),
    f"network.T5Config.logits_via_embedding = {v1_0}",
    f"t5rank.models.RankingEncDecModel.score_token = {SCORE_ID}",
    f"t5rank.models.RankingEncDecModel.scoring = {scoring!r}",
    f"t5rank.models.RankingEncDecModel.monot5_tokens = ({SCORE_ID}, "
    f"{FALSE_ID})",
  ]


@pytest.fixture(scope="module", params=sorted(FAMILIES))
def demo_ranker(request, tmp_path_factory):
  """(family, params, checkpoint): a random + perturbed demo-gin ranker."""
  family = request.param
  model = convert.model_from_gin(["demo/model.gin"], _demo_bindings(family))
  shapes = {k: v.shape for k, v in _batch().items()}
  params = model.get_initial_variables(jax.random.PRNGKey(3), shapes)["params"]
  leaves, tree = jax.tree.flatten(flax.core.unfreeze(params))
  keys = jax.random.split(jax.random.PRNGKey(4), len(leaves))
  params = jax.tree.unflatten(
    tree,
    [
      np.asarray(x + 0.1 * jax.random.normal(k, x.shape))
      for x, k in zip(leaves, keys)
    ],
  )
  directory = str(tmp_path_factory.mktemp(f"demo_{family}"))
  checkpoint = hf_checkpoints.save_t5x_checkpoint(model, params, directory)
  return family, params, checkpoint


@pytest.mark.parametrize("scoring", ["logit", "monot5"])
def test_exported_ranker_scores_the_same_in_transformers(
  tmp_path, demo_ranker, scoring
):
  family, params, checkpoint = demo_ranker
  bindings = _demo_bindings(family, scoring)
  hf_dir = str(tmp_path / "hf")
  convert.main(
    [
      f"--from_t5x={checkpoint}",
      "--gin_file=demo/model.gin",
      f"--to_hf={hf_dir}",
    ]
    + [f"--gin_bindings={b}" for b in bindings]
  )
  hf_model, info = transformers.T5ForConditionalGeneration.from_pretrained(
    hf_dir, output_loading_info=True
  )
  assert not info["missing_keys"] and not info["unexpected_keys"]
  t5rank_config = hf_model.config.t5rank
  assert t5rank_config["scoring"] == scoring
  batch = _batch(seed=5)
  logits = _hf_step0_logits(hf_model.eval(), batch)
  ids = t5rank_config["score_token_ids"]
  expected = logits[:, ids[0]]
  if scoring == "monot5":
    assert ids == [SCORE_ID, FALSE_ID]
    expected = torch.log_softmax(torch.tensor(logits[:, ids]), -1)[:, 0]
  model = convert.model_from_gin(["demo/model.gin"], bindings)
  scores = model.score_batch(params, batch)
  np.testing.assert_allclose(
    _real(scores, batch), np.asarray(expected), atol=1e-4, rtol=1e-4
  )


def test_export_then_import_is_the_identity_on_parameters(
  tmp_path, demo_ranker
):
  family, params, checkpoint = demo_ranker
  hf_dir = str(tmp_path / "hf")
  convert.export_hf(
    checkpoint, ["demo/model.gin"], hf_dir, gin_bindings=_demo_bindings(family)
  )
  config, back = hf_checkpoints.t5x_params_from_hf(
    hf_checkpoints.read_hf_config(hf_dir),
    hf_checkpoints.read_hf_weights(hf_dir),
    source=hf_dir,
  )
  assert config.logits_via_embedding == (family == "t5_v1_0")
  assert jax.tree.structure(back) == jax.tree.structure(params)
  jax.tree.map(np.testing.assert_array_equal, back, params)


def _score_with_transformers_encoder(hf_dir, tokens):
  """The README's recipe: T5EncoderModel + score_head.safetensors."""
  encoder = transformers.T5EncoderModel.from_pretrained(hf_dir).eval()
  # pylint: disable-next=g-import-not-at-top
  from safetensors.torch import load_file as load_torch

  head = load_torch(os.path.join(hf_dir, "score_head.safetensors"))
  pooling = encoder.config.t5rank["pooling"]
  ids = torch.tensor(tokens, dtype=torch.long)
  attention_mask = (ids > 0).long()
  with torch.no_grad():
    states = encoder(
      input_ids=ids, attention_mask=attention_mask
    ).last_hidden_state
    if pooling == "first":
      pooled = states[:, 0]
    else:
      m = attention_mask[..., None].float()
      pooled = (states * m).sum(1) / m.sum(1).clamp(min=1)
    return (pooled @ head["kernel"] + head["bias"]).numpy()


def test_exported_encoder_ranker_scores_the_same_by_the_recipe(
  imported, tmp_path
):
  family, _, paths = imported
  pooling = {"t5_v1_0": "first", "t5_1_1": "mean"}[family]
  bindings = FLOAT32 + [
    f"t5rank.models.network.RankingEncoder.pooling = {pooling!r}"
  ]
  model = convert.model_from_gin([paths["encoder_gin"]], bindings)
  batch = {
    k: v
    for k, v in _batch(seed=6).items()
    if k in ("encoder_input_tokens", "label", "mask")
  }
  imported_params = hf_checkpoints.load_t5x_params(paths["checkpoint"])
  rng = np.random.default_rng(7)
  params = {
    "token_embedder": imported_params["token_embedder"],
    "encoder": imported_params["encoder"],
    "score_head": {
      "kernel": rng.normal(size=32).astype(np.float32),
      "bias": np.float32(0.7),
    },
  }
  checkpoint = hf_checkpoints.save_t5x_checkpoint(
    model, params, str(tmp_path / "t5x")
  )
  hf_dir = str(tmp_path / "hf")
  written = convert.export_hf(
    checkpoint, [paths["encoder_gin"]], hf_dir, gin_bindings=bindings
  )
  assert sorted(os.path.basename(p) for p in written) == [
    "config.json",
    "model.safetensors",
    "score_head.safetensors",
  ]
  with open(os.path.join(hf_dir, "config.json"), encoding="utf-8") as f:
    assert json.load(f)["architectures"] == ["T5EncoderModel"]
  tokens = np.asarray(batch["encoder_input_tokens"]).reshape(B * L, T)
  mask = np.asarray(batch["mask"]).reshape(-1)
  expected = _score_with_transformers_encoder(hf_dir, tokens[mask])
  scores = model.score_batch(params, batch)
  np.testing.assert_allclose(
    _real(scores, batch), expected, atol=1e-4, rtol=1e-4
  )


def test_pytorch_bin_reads_like_safetensors(tmp_path):
  model = _hf_model("t5_1_1")
  torch.save(model.state_dict(), tmp_path / "pytorch_model.bin")
  weights = hf_checkpoints.read_hf_weights(str(tmp_path))
  for name, value in model.state_dict().items():
    np.testing.assert_array_equal(weights[name], value.numpy())


def test_sharded_bfloat16_safetensors_read_as_float32(tmp_path):
  model = _hf_model("t5_1_1").to(torch.bfloat16)
  model.save_pretrained(str(tmp_path), max_shard_size="20KB")
  assert os.path.exists(tmp_path / "model.safetensors.index.json")
  weights = hf_checkpoints.read_hf_weights(str(tmp_path))
  for name, value in model.state_dict().items():
    if name in weights:
      assert weights[name].dtype == np.float32
      np.testing.assert_array_equal(weights[name], value.float().numpy())
  assert "encoder.block.1.layer.1.DenseReluDense.wo.weight" in weights


def test_scaled_untied_output_folds_the_scale_into_logits_dense():
  model = _hf_model("t5_1_1")
  weights = {k: v.numpy() for k, v in model.state_dict().items()}
  hf_config = dict(model.config.to_dict(), scale_decoder_outputs=True)
  config, params = hf_checkpoints.t5x_params_from_hf(hf_config, weights)
  assert not config.logits_via_embedding
  np.testing.assert_allclose(
    params["decoder"]["logits_dense"]["kernel"],
    weights["lm_head.weight"].T * 32**-0.5,
  )


def _write_config(directory, **overrides):
  model = _hf_model("t5_1_1")
  model.save_pretrained(str(directory))
  path = directory / "config.json"
  config = json.loads(path.read_text())
  config.update(overrides)
  path.write_text(json.dumps(config))
  return str(directory), str(path)


def test_non_t5_config_is_an_error_naming_the_file_and_model_type(tmp_path):
  directory, path = _write_config(tmp_path, model_type="bert")
  with pytest.raises(ValueError, match=f"{path}: model_type='bert'"):
    hf_checkpoints.read_hf_config(directory)


def test_unsupported_activation_is_an_error_naming_the_value(tmp_path):
  directory, _ = _write_config(tmp_path, feed_forward_proj="gated-silu")
  with pytest.raises(ValueError, match="feed_forward_proj='gated-silu'"):
    hf_checkpoints.read_hf_config(directory)


def test_missing_weight_file_is_an_error_naming_the_directory(tmp_path):
  directory, _ = _write_config(tmp_path)
  os.remove(os.path.join(directory, "model.safetensors"))
  with pytest.raises(FileNotFoundError, match=f"no weights in {directory}"):
    convert.import_hf(directory, str(tmp_path / "out"))


def test_missing_config_is_an_error_naming_the_path(tmp_path):
  with pytest.raises(FileNotFoundError, match="config.json not found"):
    hf_checkpoints.read_hf_config(str(tmp_path))


def test_vocabulary_size_mismatch_is_an_error_naming_both_sizes(tmp_path):
  directory, _ = _write_config(tmp_path, vocab_size=VOCAB_SIZE + 8)
  with pytest.raises(
    ValueError,
    match=(
      f"shared.weight has {VOCAB_SIZE} rows but config.json says "
      f"vocab_size={VOCAB_SIZE + 8}"
    ),
  ):
    convert.import_hf(directory, str(tmp_path / "out"))


def test_missing_tensor_is_an_error_naming_the_key(tmp_path):
  directory, _ = _write_config(tmp_path)
  path = os.path.join(directory, "model.safetensors")
  weights = load_file(path)
  del weights["decoder.block.1.layer.2.DenseReluDense.wo.weight"]
  with pytest.raises(KeyError, match="decoder.block.1.layer.2.DenseReluDense"):
    hf_checkpoints.t5x_params_from_hf(
      hf_checkpoints.read_hf_config(directory), weights, source=directory
    )


def test_command_without_a_direction_is_a_usage_error(capsys):
  with pytest.raises(SystemExit) as exit_info:
    convert.main([])
  assert exit_info.value.code == 2
  assert "--from_hf=DIR --to_t5x=DIR" in capsys.readouterr().err


def test_convert_docstring_examples_run():
  import doctest  # pylint: disable=g-import-not-at-top

  result = doctest.testmod(convert, optionflags=doctest.NORMALIZE_WHITESPACE)
  assert result.attempted > 0 and result.failed == 0
