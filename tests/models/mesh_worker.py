"""Runs t5rank train steps through T5X's Trainer on one device mesh.

Launched by tests/models/test_meshes.py in a fresh process, so that
`--xla_force_host_platform_device_count` is set before JAX starts:

  python tests/models/mesh_worker.py SPEC.json

SPEC: {"devices": 8, "out": DIR, "cases": [CASE, ...], "cache_dir": DIR}
(cache_dir optional: JAX's compilation cache); each CASE:
  name          output file stem
  model         "encdec" | "encoder"
  loss          "softmax" | "gumbel" (Gumbel approx-NDCG, 8 samples)
  packed        bool: lists packed into shared rows (t5rank.data.packing)
  mesh          [data, model]: T5X's PjitPartitioner with a model-parallel
                submesh of `model` devices (on CPU, T5X's `num_partitions`
                is ignored: `default_mesh` returns a (1, all-devices) mesh)
  steps         train steps (default 2)
  microbatches  T5X's num_microbatches (default None)
  optimizer     "adafactor" (default, as the demo) | "sgd"
  all_positive  every training list has a positive (all lists count)
  save          write a T5X checkpoint after the first step to this dir
  restore       start from the T5X checkpoint of step 1 in this dir (waiting
                for it to appear), then run `steps`
  eval          run T5X's eval step on another batch (default True)
  sharding      record parameter shardings, the scores' sharding inside the
                step and the collectives of the compiled train step

Writes DIR/<name>.json (losses per step, eval metrics, shardings) and
DIR/<name>.npz (parameters after the steps; also <name>.init.npz, the
starting parameters, for restored and SGD cases, and <name>.saved.npz, those
checkpointed). The data are fixed random lists
(the same global batch on every mesh); the model is the demo's T5.1.1 size.
"""

import json
import os
import re
import sys

_SPEC = json.load(open(sys.argv[1])) if __name__ == "__main__" else {}
if _SPEC:
  # The device count, after any other flags the tests pass (conftest.py).
  os.environ["XLA_FLAGS"] = (
    os.environ.get("XLA_FLAGS", "")
    + f" --xla_force_host_platform_device_count={_SPEC['devices']}"
  ).strip()
  os.environ.setdefault("JAX_PLATFORMS", "cpu")

# pylint: disable=g-import-not-at-top,wrong-import-position
import numpy as np

BATCH, LIST, LENGTH = 8, 3, 20  # B·L = 24 rows: no model dimension is 24.
PACKS, LISTS_PER_PACK, PACK_LIST, PACK_LENGTH = 8, 2, 4, 24
ROWS, ROW_LENGTH, SEGMENTS = 4, 64, 6
SCORE_TOKEN = 258
LEARNING_RATE = 0.01


def make_lists(num_lists, list_size, length, seed, all_positive=False):
  """Random tokenised lists: tokens [B, L, T], mask [B, L], labels [B, L].

  List 1 has no positive label (it stays out of the loss) unless
  `all_positive`, which gives every list a positive first item.
  """
  rng = np.random.default_rng(seed)
  mask = rng.random((num_lists, list_size)) < 0.8
  mask[:, :2] = True
  tokens = np.zeros((num_lists, list_size, length), np.int32)
  for b, l in zip(*np.nonzero(mask)):
    n = rng.integers(1, length + 1)
    tokens[b, l, :n] = rng.integers(3, 259, size=n)
  labels = np.where(mask, rng.integers(0, 3, size=mask.shape), 0)
  labels = labels.astype(np.float32)
  labels[0, 0] = 1.0
  if all_positive:
    labels[:, 0] = 1.0
  else:
    labels[1] = 0.0  # a list without a positive: outside the loss
  return tokens, mask, labels


def make_batch(model, packed, seed, all_positive=False):
  """The global batch of a case (identical on every mesh)."""
  from t5rank.data import packing

  if not packed:
    tokens, mask, labels = make_lists(BATCH, LIST, LENGTH, seed, all_positive)
    batch = {"encoder_input_tokens": tokens, "label": labels, "mask": mask}
    if model == "encdec":
      batch["decoder_input_tokens"] = np.zeros((BATCH, LIST, 1), np.int32)
      batch["decoder_target_tokens"] = np.where(mask, SCORE_TOKEN, 0)[
        ..., None
      ].astype(np.int32)
    return batch
  tokens, mask, labels = make_lists(
    PACKS * LISTS_PER_PACK, PACK_LIST, PACK_LENGTH, seed
  )
  packs = []
  for n in range(PACKS):
    lists = slice(n * LISTS_PER_PACK, (n + 1) * LISTS_PER_PACK)
    targets = (
      np.where(mask[lists], SCORE_TOKEN, 0) if model == "encdec" else None
    )
    out = packing.pack_lists(
      tokens[lists],
      mask[lists],
      targets,
      num_rows=ROWS,
      row_length=ROW_LENGTH,
      max_segments_per_row=SEGMENTS,
    )
    assert int(out["packing_truncated_items"]) == 0
    out["label"] = labels[lists]
    out["mask"] = mask[lists]
    packs.append(out)
  return {k: np.stack([p[k] for p in packs]) for k in packs[0]}


def make_model(name, loss, optimizer, record=None):
  """The demo-size ranker; `record` collects the scores' sharding in a step."""
  import jax
  import seqio
  from t5x import adafactor
  from t5x import optimizers
  from t5x.examples.t5 import network as t5x_network

  from t5rank.models import models
  from t5rank.models import network
  from t5rank.ranking import losses
  from t5rank.ranking import metrics
  from t5rank.ranking import t12n

  config = t5x_network.T5Config(
    vocab_size=384,
    dtype="float32",
    emb_dim=32,
    num_heads=4,
    num_encoder_layers=1,
    num_decoder_layers=1,
    head_dim=8,
    mlp_dim=64,
    mlp_activations=("gelu", "linear"),
    dropout_rate=0.0,
    logits_via_embedding=False,
  )
  loss_fn = {
    "softmax": losses.softmax_loss,
    "gumbel": t12n.gumbel_t12n(t12n.approx_t12n(metrics.ndcg_metric)),
  }[loss]
  if optimizer == "sgd":
    optimizer_def = optimizers.sgd(1.0)  # the update is -lr * grad
  else:
    optimizer_def = adafactor.Adafactor(
      decay_rate=0.8,
      step_offset=0,
      logical_factor_rules=adafactor.standard_logical_factor_rules(),
    )
  vocab = seqio.ByteVocabulary()

  def recording(cls):
    class Recording(cls):
      def score_lists(self, params, batch, dropout_rng=None):
        scores = super().score_lists(params, batch, dropout_rng)
        if record is not None:
          jax.debug.inspect_array_sharding(
            scores, callback=lambda s: record.append(repr(s))
          )
        return scores

    return Recording

  if name == "encdec":
    return recording(models.RankingEncDecModel)(
      network.RankingTransformer(config, one_hot_embedding=False),
      vocab,
      vocab,
      optimizer_def,
      loss_fn,
    )
  return recording(models.RankingEncoderModel)(
    network.RankingEncoder(config, pooling="mean", one_hot_embedding=False),
    vocab,
    None,
    optimizer_def,
    loss_fn,
  )


def make_partitioner(mesh):
  from t5x import partitioning

  data, model = mesh
  import jax

  if data * model != jax.device_count():
    raise ValueError(
      f"mesh={mesh} needs {data * model} devices; found {jax.device_count()}"
    )
  return partitioning.PjitPartitioner(
    model_parallel_submesh=(1, 1, 1, model),
    logical_axis_rules=partitioning.standard_logical_axis_rules(),
  )


def _flat(tree):
  import flax
  from flax import traverse_util

  return traverse_util.flatten_dict(flax.core.unfreeze(tree), sep="/")


def _wait_for_checkpoint(ckpt_dir, timeout_s=1200):
  """Waits for a complete T5X checkpoint (another process may write it)."""
  import time

  start = time.time()
  done = os.path.join(ckpt_dir, "checkpoint_1", "checkpoint")
  while not os.path.exists(done):
    if time.time() - start > timeout_s:
      raise TimeoutError(f"no checkpoint at {done} after {timeout_s} s")
    time.sleep(2)


def _save_params(params, out_dir, stem):
  import jax

  params = jax.device_get(params)
  np.savez(
    os.path.join(out_dir, stem + ".npz"),
    **{k: np.asarray(v) for k, v in _flat(params).items()},
  )


def _scalar(value):
  """A float from a T5X metric summary value (clu Scalar or array)."""
  return float(getattr(value, "value", value))


def _collectives(hlo_text):
  """[op, result shape] of every collective in a compiled HLO module."""
  pattern = re.compile(
    r"^\s*(?:ROOT )?\S+ = (.*?) (all-gather|all-to-all|collective-permute|"
    r"all-reduce|reduce-scatter)(?:-start)?\("
  )
  found = []
  for line in hlo_text.splitlines():
    match = pattern.match(line)
    if match:
      found.append([match.group(2), match.group(1)])
  return found


def run_case(case, out_dir):
  import jax
  from t5x import checkpoints
  from t5x import trainer as trainer_lib
  from t5x import utils

  record = [] if case.get("sharding") else None
  model = make_model(
    case["model"], case["loss"], case.get("optimizer", "adafactor"), record
  )
  partitioner = make_partitioner(case["mesh"])
  kind = (case["model"], case.get("packed", False))
  positive = case.get("all_positive", False)
  batch = make_batch(*kind, seed=0, all_positive=positive)
  eval_batch = make_batch(*kind, seed=1)
  train_batches = [
    make_batch(*kind, seed=10 + s, all_positive=positive) for s in range(4)
  ]
  train_batches[0] = batch
  shapes = {k: v.shape for k, v in batch.items()}
  types = {k: v.dtype for k, v in batch.items()}
  initializer = utils.TrainStateInitializer(
    model.optimizer_def, model.get_initial_variables, shapes, partitioner, types
  )
  axes = initializer.train_state_axes
  first = 0
  if case.get("restore"):
    _wait_for_checkpoint(case["restore"])
    checkpointer = checkpoints.Checkpointer(
      initializer.global_train_state_shape, partitioner, case["restore"]
    )
    train_state = checkpointer.restore()
    first = int(train_state.step)
  else:
    train_state = initializer.from_scratch(jax.random.PRNGKey(0))
  if case.get("restore") or case.get("optimizer") == "sgd":
    _save_params(train_state.params, out_dir, case["name"] + ".init")
  trainer = trainer_lib.Trainer(
    model,
    train_state,
    partitioner,
    eval_names=["valid"],
    summary_dir=None,
    train_state_axes=axes,
    rng=jax.random.PRNGKey(1),
    learning_rate_fn=lambda step: LEARNING_RATE,
    num_microbatches=case.get("microbatches"),
  )
  result = {
    "name": case["name"],
    "mesh": dict(partitioner.mesh.shape),
    "losses": [],
    "train_metrics": [],
  }
  if record is not None:
    # The step the trainer runs, compiled once; its HLO shows the collectives.
    trainer.compile_train(batch)
    result["collectives"] = _collectives(trainer._compiled_train_step.as_text())  # pylint: disable=protected-access
  for step in range(first, first + case.get("steps", 2)):
    metrics = trainer.train(iter([train_batches[step]]), 1).result()
    result["losses"].append(_scalar(metrics["loss"]))
    result["train_metrics"].append(
      {
        k: _scalar(v)
        for k, v in metrics.items()
        if k.startswith(("metrics/", "debug/"))
      }
    )
    if case.get("save") and step == first:
      checkpoints.Checkpointer(
        trainer.train_state, partitioner, case["save"]
      ).save(trainer.train_state)
      _save_params(trainer.train_state.params, out_dir, case["name"] + ".saved")
  if case.get("eval", True):
    evaluated = trainer.eval({"valid": iter([eval_batch])})["valid"]
    result["eval"] = {
      k: _scalar(v)
      for k, v in evaluated.items()
      if k == "loss" or k.startswith("metrics/")
    }
  _save_params(trainer.train_state.params, out_dir, case["name"])
  if record is not None:
    result["param_specs"] = {
      k: str(v)
      for k, v in _flat(
        partitioner.get_mesh_axes(trainer.train_state).params
      ).items()
    }
    result["param_shardings"] = {
      k: [
        str(v.sharding.spec),
        list(v.addressable_shards[0].data.shape),
        list(v.shape),
      ]
      for k, v in _flat(trainer.train_state.params).items()
    }
    result["score_shardings"] = sorted(set(record))
    result["data_partition_spec"] = str(partitioner.data_partition_spec)
  trainer.close()
  return result


def main():
  import jax

  if _SPEC.get("cache_dir"):  # cases of one process share compiled steps
    jax.config.update("jax_compilation_cache_dir", _SPEC["cache_dir"])
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
  out_dir = _SPEC["out"]
  os.makedirs(out_dir, exist_ok=True)
  for case in _SPEC["cases"]:
    result = run_case(case, out_dir)
    with open(os.path.join(out_dir, case["name"] + ".json"), "w") as f:
      json.dump(result, f, indent=1)
    print("DONE", case["name"], result["losses"], flush=True)


if __name__ == "__main__":
  main()
