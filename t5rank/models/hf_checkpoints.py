"""Hugging Face T5 weights <-> the parameter tree of t5rank's T5X networks.

t5rank's networks keep T5X's T5.1.1 parameter tree (`token_embedder`,
`encoder/...`, `decoder/...`, plus `score_head` for the encoder-only ranker).
This module maps a Hugging Face `T5ForConditionalGeneration` /
`T5EncoderModel` state dict (`config.json` + `model.safetensors`) onto that
tree and back. One table (`_name_table`) lists every parameter once; import
and export both read it, so export followed by import is the identity.

The mapping, for layer `i` (HF `Linear` weights are `[out, in]`, T5X kernels
`[in, out]`, so kernels are transposed; so is the relative-position table,
HF `[buckets, heads]`, T5X `[heads, buckets]`):

* `token_embedder/embedding` = `shared.weight`;
* `{encoder,decoder}/relpos_bias/rel_embedding` =
  `{encoder,decoder}.block.0.layer.0.SelfAttention.relative_attention_bias`;
* encoder `layers_i/attention/{query,key,value,out}/kernel` =
  `encoder.block.i.layer.0.SelfAttention.{q,k,v,o}`, its
  `pre_attention_layer_norm` = `layer.0.layer_norm`, `mlp/{wi | wi_0, wi_1,
  wo}` = `layer.1.DenseReluDense.*`, `pre_mlp_layer_norm` =
  `layer.1.layer_norm`; `encoder_norm` = `encoder.final_layer_norm`;
* decoder `layers_i/self_attention` (+ `pre_self_attention_layer_norm`) =
  `decoder.block.i.layer.0`, `encoder_decoder_attention` (+
  `pre_cross_attention_layer_norm`) = `layer.1.EncDecAttention`, `mlp` (+
  `pre_mlp_layer_norm`) = `layer.2`; `decoder_norm` =
  `decoder.final_layer_norm`;
* `decoder/logits_dense/kernel` [d, V] = `lm_head.weight` [V, d] (untied).

Output layer. T5 v1.0 ties the output layer to the embedding and scales the
last decoder state by `d_model**-0.5`; T5X's `logits_via_embedding=True` does
exactly that (`attend(y) / sqrt(d_model)`). T5.1.1 / flan-T5 / mT5 have an
untied `lm_head` and no scaling: `logits_via_embedding=False` with
`logits_dense/kernel = lm_head.weight.T`. Transformers 5 always ties T5's
`lm_head` module and keeps the scaling in `scale_decoder_outputs` (derived
from `tie_word_embeddings` when absent), so a config is read as: scaled =
`scale_decoder_outputs`, else `tie_word_embeddings`, else True; an output
matrix distinct from `shared.weight` means untied. A scaled untied head (no
T5X equivalent) becomes `logits_dense` with the scale folded into the kernel.

Reading needs NumPy, JAX and safetensors, not torch (`model.safetensors`, or
shards listed in `model.safetensors.index.json`); only `pytorch_model.bin`
needs torch.

Example (a directory written by `T5ForConditionalGeneration.save_pretrained`)::

  hf_config = read_hf_config(directory)
  config, params = t5x_params_from_hf(hf_config, read_hf_weights(directory),
                                      source=directory)
  # config: t5x.examples.t5.network.T5Config; params: {'token_embedder': ...}
  hf_config, weights, _ = hf_from_t5x_params(config, params)  # and back
"""

from collections.abc import Mapping
import dataclasses
import json
import os
from typing import Any
from typing import NamedTuple

import numpy as np

PyTree = Any

HF_MODEL_TYPES = ("t5", "mt5")
# Hugging Face feed_forward_proj -> T5X mlp_activations. HF's "gated-gelu" is
# the tanh approximation (gelu_new), as T5X's 'gelu' (flax's default).
ACTIVATIONS = {"relu": ("relu",), "gated-gelu": ("gelu", "linear")}
# T5X's T5 network fixes these (network.Encoder/Decoder, layers.LayerNorm).
T5X_RELATIVE_ATTENTION = {
  "relative_attention_num_buckets": 32,
  "relative_attention_max_distance": 128,
}
T5X_LAYER_NORM_EPSILON = 1e-6
CONFIG_FILE = "config.json"
SAFETENSORS_FILE = "model.safetensors"
SAFETENSORS_INDEX_FILE = "model.safetensors.index.json"
PYTORCH_FILE = "pytorch_model.bin"
SCORE_HEAD_FILE = "score_head.safetensors"
# Extra key of an exported config.json: how t5rank scored with the model.
T5RANK_CONFIG_KEY = "t5rank"


class _Name(NamedTuple):
  t5x: tuple[str, ...]  # path in the T5X parameter tree
  hf: str  # key of the Hugging Face state dict
  # HF [out, in] / [buckets, heads] <-> T5X [in, out] / [heads, buckets].
  transpose: bool


def _attention(t5x, hf) -> list[_Name]:
  return [
    _Name(t5x + (name, "kernel"), f"{hf}.{short}.weight", True)
    for name, short in (
      ("query", "q"),
      ("key", "k"),
      ("value", "v"),
      ("out", "o"),
    )
  ]


def _mlp(t5x, hf, activations) -> list[_Name]:
  names = (
    ["wi"]
    if len(activations) == 1
    else [f"wi_{i}" for i in range(len(activations))]
  )
  return [
    _Name(t5x + (name, "kernel"), f"{hf}.{name}.weight", True)
    for name in names + ["wo"]
  ]


def _norm(t5x, hf) -> _Name:
  return _Name(t5x + ("scale",), f"{hf}.weight", False)


def _name_table(config, *, encoder_only: bool = False) -> list[_Name]:
  """Every parameter of the T5X tree (no output layer) with its HF key."""
  acts = tuple(config.mlp_activations)
  table = [
    _Name(("token_embedder", "embedding"), "shared.weight", False),
    _Name(
      ("encoder", "relpos_bias", "rel_embedding"),
      "encoder.block.0.layer.0.SelfAttention.relative_attention_bias.weight",
      True,
    ),
    _norm(("encoder", "encoder_norm"), "encoder.final_layer_norm"),
  ]
  for i in range(config.num_encoder_layers):
    t5x, hf = ("encoder", f"layers_{i}"), f"encoder.block.{i}.layer"
    table += _attention(t5x + ("attention",), f"{hf}.0.SelfAttention")
    table.append(
      _norm(t5x + ("pre_attention_layer_norm",), f"{hf}.0.layer_norm")
    )
    table += _mlp(t5x + ("mlp",), f"{hf}.1.DenseReluDense", acts)
    table.append(_norm(t5x + ("pre_mlp_layer_norm",), f"{hf}.1.layer_norm"))
  if encoder_only:
    return table
  table += [
    _Name(
      ("decoder", "relpos_bias", "rel_embedding"),
      "decoder.block.0.layer.0.SelfAttention.relative_attention_bias.weight",
      True,
    ),
    _norm(("decoder", "decoder_norm"), "decoder.final_layer_norm"),
  ]
  for i in range(config.num_decoder_layers):
    t5x, hf = ("decoder", f"layers_{i}"), f"decoder.block.{i}.layer"
    table += _attention(t5x + ("self_attention",), f"{hf}.0.SelfAttention")
    table.append(
      _norm(t5x + ("pre_self_attention_layer_norm",), f"{hf}.0.layer_norm")
    )
    table += _attention(
      t5x + ("encoder_decoder_attention",), f"{hf}.1.EncDecAttention"
    )
    table.append(
      _norm(t5x + ("pre_cross_attention_layer_norm",), f"{hf}.1.layer_norm")
    )
    table += _mlp(t5x + ("mlp",), f"{hf}.2.DenseReluDense", acts)
    table.append(_norm(t5x + ("pre_mlp_layer_norm",), f"{hf}.2.layer_norm"))
  return table


def _set(tree: dict[str, Any], path: tuple[str, ...], value) -> None:
  for key in path[:-1]:
    tree = tree.setdefault(key, {})
  tree[path[-1]] = value


def _get(tree: Mapping[str, Any], path: tuple[str, ...], where: str):
  node = tree
  for depth, key in enumerate(path):
    if not isinstance(node, Mapping) or key not in node:
      raise KeyError(
        f"{where} has no parameter {'/'.join(path)} (missing "
        f"{'/'.join(path[: depth + 1])}); is it a t5rank/T5X T5 tree?"
      )
    node = node[key]
  return np.asarray(node)


def read_hf_config(directory: str) -> dict[str, Any]:
  """Reads and checks `<directory>/config.json` of a Hugging Face T5 model.

  Raises:
    FileNotFoundError: no config.json.
    ValueError: naming the file and the field when the model is not a T5
      (`model_type` not in `HF_MODEL_TYPES`) or uses something T5X's T5
      network has not (another `feed_forward_proj`, relative attention
      buckets/distance other than 32/128, another layer norm epsilon).
  """
  path = os.path.join(directory, CONFIG_FILE)
  if not os.path.isfile(path):
    raise FileNotFoundError(
      f"{path} not found: expected a Hugging Face T5 model directory "
      f"({CONFIG_FILE} + {SAFETENSORS_FILE} or {PYTORCH_FILE})"
    )
  with open(path, encoding="utf-8") as f:
    try:
      config = json.load(f)
    except json.JSONDecodeError as e:
      raise ValueError(f"{path}:{e.lineno}: not valid JSON ({e.msg})") from e
  model_type = config.get("model_type")
  if model_type not in HF_MODEL_TYPES:
    raise ValueError(
      f"{path}: model_type={model_type!r} is not a T5 model; expected one "
      f"of {HF_MODEL_TYPES}"
    )
  proj = config.get("feed_forward_proj", "relu")
  if proj not in ACTIVATIONS:
    raise ValueError(
      f"{path}: feed_forward_proj={proj!r} is not supported; T5X's T5 "
      f"network has {sorted(ACTIVATIONS)}"
    )
  for name, expected in T5X_RELATIVE_ATTENTION.items():
    if config.get(name, expected) != expected:
      raise ValueError(
        f"{path}: {name}={config[name]}, but T5X's T5 network fixes "
        f"{name}={expected}"
      )
  eps = config.get("layer_norm_epsilon", T5X_LAYER_NORM_EPSILON)
  if not np.isclose(eps, T5X_LAYER_NORM_EPSILON, rtol=1e-3, atol=0):
    raise ValueError(
      f"{path}: layer_norm_epsilon={eps}, but T5X's T5 layer norm uses "
      f"{T5X_LAYER_NORM_EPSILON}"
    )
  for name in (
    "vocab_size",
    "d_model",
    "d_kv",
    "d_ff",
    "num_layers",
    "num_heads",
  ):
    if not isinstance(config.get(name), int) or config[name] <= 0:
      raise ValueError(
        f"{path}: {name}={config.get(name)!r}; expected a positive integer"
      )
  return config


def _read_safetensors(paths: list[str]) -> dict[str, np.ndarray]:
  """float32 NumPy tensors of safetensors files (bfloat16 and float16 too).

  NumPy has no bfloat16, so tensors are read through safetensors' JAX
  ("flax") reader and cast.
  """
  from safetensors import safe_open  # pylint: disable=g-import-not-at-top

  weights = {}
  for path in paths:
    with safe_open(path, framework="flax") as f:
      for key in f.keys():
        weights[key] = np.asarray(f.get_tensor(key), np.float32)
  return weights


def read_hf_weights(directory: str) -> dict[str, np.ndarray]:
  """Reads the state dict of a Hugging Face model directory as NumPy arrays.

  Looks for `model.safetensors`, then `model.safetensors.index.json` (shards),
  then `pytorch_model.bin` (needs torch). bfloat16 tensors come back float32.

  Raises:
    FileNotFoundError: naming the directory and the files looked for.
    ImportError: a `pytorch_model.bin` without torch installed.
  """
  single = os.path.join(directory, SAFETENSORS_FILE)
  index = os.path.join(directory, SAFETENSORS_INDEX_FILE)
  torch_file = os.path.join(directory, PYTORCH_FILE)
  if os.path.isfile(single):
    weights = _read_safetensors([single])
  elif os.path.isfile(index):
    with open(index, encoding="utf-8") as f:
      shards = sorted(set(json.load(f)["weight_map"].values()))
    paths = [os.path.join(directory, s) for s in shards]
    for path in paths:
      if not os.path.isfile(path):
        raise FileNotFoundError(f"{path} (listed in {index}) not found")
    weights = _read_safetensors(paths)
  elif os.path.isfile(torch_file):
    try:
      import torch  # pylint: disable=g-import-not-at-top
    except ImportError as e:
      raise ImportError(
        f"{torch_file} is a PyTorch pickle and reading it needs torch, which "
        "is not installed: `pip install torch`, or save the model as "
        "safetensors (save_pretrained's default) and convert that"
      ) from e
    state = torch.load(torch_file, map_location="cpu", weights_only=True)
    weights = {
      k: v.float().numpy() if v.is_floating_point() else v.numpy()
      for k, v in state.items()
    }
  else:
    raise FileNotFoundError(
      f"no weights in {directory}: expected {SAFETENSORS_FILE}, "
      f"{SAFETENSORS_INDEX_FILE} or {PYTORCH_FILE}"
    )
  return {
    k: np.asarray(v, np.float32) if v.dtype != np.float32 else v
    for k, v in weights.items()
  }


def t5_config_from_hf(
  hf_config: Mapping[str, Any],
  *,
  logits_via_embedding: bool,
  dtype: str = "bfloat16",
):
  """The T5X `network.T5Config` of a checked Hugging Face T5 config."""
  from t5x.examples.t5 import network  # pylint: disable=g-import-not-at-top

  num_layers = hf_config["num_layers"]
  return network.T5Config(
    vocab_size=hf_config["vocab_size"],
    dtype=dtype,
    emb_dim=hf_config["d_model"],
    num_heads=hf_config["num_heads"],
    num_encoder_layers=num_layers,
    num_decoder_layers=hf_config.get("num_decoder_layers") or num_layers,
    head_dim=hf_config["d_kv"],
    mlp_dim=hf_config["d_ff"],
    mlp_activations=ACTIVATIONS[hf_config.get("feed_forward_proj", "relu")],
    dropout_rate=float(hf_config.get("dropout_rate", 0.1)),
    logits_via_embedding=logits_via_embedding,
  )


def scales_decoder_output(hf_config: Mapping[str, Any]) -> bool:
  """Whether HF T5 multiplies the last decoder state by d_model**-0.5."""
  if "scale_decoder_outputs" in hf_config:
    return bool(hf_config["scale_decoder_outputs"])
  return bool(hf_config.get("tie_word_embeddings", True))


def t5x_params_from_hf(
  hf_config: Mapping[str, Any],
  weights: Mapping[str, np.ndarray],
  *,
  source: str = "the Hugging Face model",
  dtype: str = "bfloat16",
):
  """Maps a Hugging Face T5 state dict onto T5X's T5.1.1 parameter tree.

  Args:
    hf_config: `read_hf_config`'s result.
    weights: `read_hf_weights`'s result.
    source: where they came from, for error messages.
    dtype: activation dtype of the returned `T5Config` (T5X's default).

  Returns:
    (T5Config, params): float32 NumPy parameters of an encoder-decoder tree;
    its `token_embedder` and `encoder` are also the encoder-only ranker's.

  Raises:
    KeyError: a parameter the config implies is missing (names the key).
    ValueError: a tensor's shape disagrees with config.json (names both).
  """
  vocab = hf_config["vocab_size"]
  shared = weights.get("shared.weight")
  if shared is None:
    raise KeyError(
      f"{source}: no 'shared.weight' among {len(weights)} "
      "tensors; not a T5 state dict"
    )
  if shared.shape[0] != vocab:
    raise ValueError(
      f"{source}: shared.weight has {shared.shape[0]} rows but config.json "
      f"says vocab_size={vocab}"
    )
  scaled = scales_decoder_output(hf_config)
  lm_head = weights.get("lm_head.weight")
  tied = lm_head is None or np.array_equal(lm_head, shared)
  config = t5_config_from_hf(
    hf_config, logits_via_embedding=scaled and tied, dtype=dtype
  )
  params: dict[str, Any] = {}
  for name in _name_table(config):
    if name.hf not in weights:
      raise KeyError(
        f"{source}: tensor {name.hf!r} is missing (needed for "
        f"{'/'.join(name.t5x)})"
      )
    value = weights[name.hf]
    _set(
      params,
      name.t5x,
      np.ascontiguousarray(value.T if name.transpose else value),
    )
  if not config.logits_via_embedding:
    output = shared if lm_head is None else lm_head
    if output.shape[0] != vocab:
      raise ValueError(
        f"{source}: lm_head.weight has {output.shape[0]} rows but "
        f"config.json says vocab_size={vocab}"
      )
    kernel = output.T * (config.emb_dim**-0.5 if scaled else 1.0)
    _set(
      params,
      ("decoder", "logits_dense", "kernel"),
      np.ascontiguousarray(kernel, np.float32),
    )
  _check_shapes(config, params, source)
  return config, params


def _check_shapes(config, params, source: str) -> None:
  """Checks parameter shapes against the sizes of `config`."""
  d, h, k, f = (
    config.emb_dim,
    config.num_heads,
    config.head_dim,
    config.mlp_dim,
  )
  expected = {
    "embedding": (config.vocab_size, d),
    "rel_embedding": (h, 32),
    "scale": (d,),
  }
  kernels = {
    "query": (d, h * k),
    "key": (d, h * k),
    "value": (d, h * k),
    "out": (h * k, d),
    "wo": (f, d),
    "logits_dense": (d, config.vocab_size),
  }

  def walk(tree, path):
    for key, value in tree.items():
      if isinstance(value, Mapping):
        walk(value, path + (key,))
        continue
      want = expected.get(key)
      if key == "kernel":
        want = kernels.get(path[-1], (d, f))  # wi, wi_0, wi_1: [d, d_ff]
      if want is not None and tuple(np.shape(value)) != want:
        raise ValueError(
          f"{source}: {'/'.join(path + (key,))} has shape "
          f"{tuple(np.shape(value))}, but config.json's sizes give {want}"
        )

  walk(params, ())


def hf_config_from_t5(
  config,
  *,
  encoder_only: bool = False,
  t5rank: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
  """config.json of a Hugging Face T5 model with the sizes of `config`.

  `t5rank` (how the ranker scores: scoring, score token ids, pooling) is kept
  under the key `"t5rank"`; transformers keeps unknown keys as attributes.
  """
  activations = tuple(config.mlp_activations)
  proj = {v: k for k, v in ACTIVATIONS.items()}.get(activations)
  if proj is None:
    raise ValueError(
      f"mlp_activations={activations} has no Hugging Face T5 equivalent; "
      f"expected one of {list(ACTIVATIONS.values())}"
    )
  hf = {
    "architectures": [
      "T5EncoderModel" if encoder_only else "T5ForConditionalGeneration"
    ],
    "model_type": "t5",
    "vocab_size": config.vocab_size,
    "d_model": config.emb_dim,
    "d_kv": config.head_dim,
    "d_ff": config.mlp_dim,
    "num_layers": config.num_encoder_layers,
    "num_decoder_layers": config.num_decoder_layers,
    "num_heads": config.num_heads,
    "feed_forward_proj": proj,
    "tie_word_embeddings": bool(config.logits_via_embedding),
    "layer_norm_epsilon": T5X_LAYER_NORM_EPSILON,
    "dropout_rate": float(config.dropout_rate),
    "is_encoder_decoder": not encoder_only,
    "decoder_start_token_id": 0,
    "pad_token_id": 0,
    "eos_token_id": 1,
    **T5X_RELATIVE_ATTENTION,
  }
  if t5rank is not None:
    hf[T5RANK_CONFIG_KEY] = dict(t5rank)
  return hf


def hf_from_t5x_params(
  config,
  params: PyTree,
  *,
  encoder_only: bool | None = None,
  t5rank: Mapping[str, Any] | None = None,
):
  """Maps T5X's T5.1.1 tree (a t5rank ranker's params) to HF T5 tensors.

  Args:
    config: the network's T5X `T5Config`.
    params: the parameter tree (NumPy or JAX arrays, any float dtype).
    encoder_only: True writes a `T5EncoderModel` (and the `score_head`
      tensors separately); default: True when `params` has no decoder.
    t5rank: scoring facts to keep in config.json (see `hf_config_from_t5`).

  Returns:
    (hf_config, weights, score_head): config.json as a dict, the float32 state
    dict, and for an encoder-only tree with a `score_head` its
    `{'kernel': [d_model], 'bias': []}` (else None).
  """
  if encoder_only is None:
    encoder_only = "decoder" not in params
  weights = {}
  for name in _name_table(config, encoder_only=encoder_only):
    value = np.asarray(
      _get(params, name.t5x, "the T5X parameter tree"), np.float32
    )
    weights[name.hf] = np.ascontiguousarray(
      value.T if name.transpose else value
    )
  if not encoder_only and not config.logits_via_embedding:
    kernel = _get(
      params, ("decoder", "logits_dense", "kernel"), "the T5X parameter tree"
    )
    weights["lm_head.weight"] = np.ascontiguousarray(
      np.asarray(kernel, np.float32).T
    )
  _check_shapes(
    config, _unflatten(config, weights, encoder_only), "the T5X parameter tree"
  )
  score_head = None
  if encoder_only and "score_head" in params:
    score_head = {
      k: np.ascontiguousarray(np.asarray(v, np.float32))
      for k, v in params["score_head"].items()
    }
  hf_config = hf_config_from_t5(
    config, encoder_only=encoder_only, t5rank=t5rank
  )
  return hf_config, weights, score_head


def _unflatten(config, weights, encoder_only):
  tree: dict[str, Any] = {}
  for name in _name_table(config, encoder_only=encoder_only):
    value = weights[name.hf]
    _set(tree, name.t5x, value.T if name.transpose else value)
  return tree


def write_hf_model(
  directory: str,
  hf_config: Mapping[str, Any],
  weights: Mapping[str, np.ndarray],
  score_head: Mapping[str, np.ndarray] | None = None,
) -> list[str]:
  """Writes config.json, model.safetensors (and score_head.safetensors).

  Returns the paths written. `transformers` loads the directory with
  `T5ForConditionalGeneration.from_pretrained(directory)` (or
  `T5EncoderModel` for an encoder-only ranker).
  """
  from safetensors.numpy import save_file  # pylint: disable=g-import-not-at-top

  os.makedirs(directory, exist_ok=True)
  paths = [
    os.path.join(directory, CONFIG_FILE),
    os.path.join(directory, SAFETENSORS_FILE),
  ]
  with open(paths[0], "w", encoding="utf-8") as f:
    json.dump(dict(hf_config), f, indent=2, sort_keys=True)
    f.write("\n")
  save_file(dict(weights), paths[1], metadata={"format": "pt"})
  if score_head is not None:
    paths.append(os.path.join(directory, SCORE_HEAD_FILE))
    save_file(dict(score_head), paths[2], metadata={"format": "pt"})
  return paths


def t5config_fields(config) -> dict[str, Any]:
  """The fields of a `T5Config` a model gin binds (dataclass fields)."""
  return {f.name: getattr(config, f.name) for f in dataclasses.fields(config)}


def _model_input_shapes(model) -> dict[str, tuple[int, ...]]:
  """One list of one item: enough for `get_initial_variables`' tree."""
  shapes = {"encoder_input_tokens": (1, 1, 8)}
  from t5rank.models import models  # pylint: disable=g-import-not-at-top

  if isinstance(model, models.RankingEncDecModel):
    shapes.update(
      decoder_input_tokens=(1, 1, 1), decoder_target_tokens=(1, 1, 1)
    )
  return shapes


def save_t5x_checkpoint(model, params: PyTree, directory: str) -> str:
  """Writes `params` as a step-0 T5X checkpoint for `model`; returns its path.

  The checkpoint is what T5X's `Checkpointer` writes for a fresh
  `FlaxOptimTrainState` of `model` (its optimizer, e.g. Adafactor, with a zero
  state) holding `params`, so `INITIAL_CHECKPOINT_PATH` (T5X's
  `RestoreCheckpointConfig(mode='specific')`) restores it as any stock T5X
  checkpoint. `params` must have exactly the tree and shapes `model`
  initialises (checked; the error names the first difference).
  """
  # pylint: disable=g-import-not-at-top
  import jax
  import jax.numpy as jnp
  from t5x import checkpoints
  from t5x import partitioning
  from t5x import train_state as train_state_lib

  # pylint: enable=g-import-not-at-top
  abstract = jax.eval_shape(
    lambda rng: model.get_initial_variables(rng, _model_input_shapes(model)),
    jax.random.PRNGKey(0),
  )
  want = {
    "/".join(str(getattr(k, "key", k)) for k in path): tuple(x.shape)
    for path, x in jax.tree_util.tree_flatten_with_path(abstract["params"])[0]
  }
  got = {
    "/".join(str(getattr(k, "key", k)) for k in path): tuple(np.shape(x))
    for path, x in jax.tree_util.tree_flatten_with_path(params)[0]
  }
  for name in sorted(set(want) | set(got)):
    if want.get(name) != got.get(name):
      raise ValueError(
        f"parameter {name}: the converted tree has shape {got.get(name)}, "
        f"the model of the gin file expects {want.get(name)} (None = absent)"
      )
  params = jax.tree.map(lambda x: jnp.asarray(x, jnp.float32), params)
  variables = {"params": params, "params_axes": abstract["params_axes"]}
  state = train_state_lib.FlaxOptimTrainState.create(
    model.optimizer_def, variables
  )
  partitioner = partitioning.PjitPartitioner(num_partitions=1)
  checkpointer = checkpoints.Checkpointer(state, partitioner, directory)
  checkpointer.save(state)
  return os.path.join(directory, "checkpoint_0")


def load_t5x_params(path: str) -> PyTree:
  """The float32 parameters (`target`) of a T5X checkpoint, as NumPy arrays."""
  from t5x import checkpoints  # pylint: disable=g-import-not-at-top

  if not os.path.exists(path):
    raise FileNotFoundError(f"no T5X checkpoint at {path}")
  state = checkpoints.load_t5x_checkpoint(path, restore_dtype=np.float32)
  return state["target"]
