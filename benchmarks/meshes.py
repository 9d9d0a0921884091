"""Per-device memory of T5.1.1 rankers by model partitions, and mesh overhead.

1. For the RankT5-EncDec ranker on T5.1.1 base and XL (T5X's configs, float32
   parameters, T5X's Adafactor as in its T5.1.1 gin files), the bytes of
   parameters and of optimizer state that one device holds with 1, 2, 4 and 8
   model partitions. Nothing is allocated: T5X's `TrainStateInitializer`
   gives the train state's shapes (`jax.eval_shape`) and its `PjitPartitioner`
   the mesh axes of every leaf (`standard_logical_axis_rules` and Adafactor's
   factored states); each sharded dimension is divided by its mesh axis size.
   Runs on 8 host CPU devices (`--xla_force_host_platform_device_count=8`),
   mesh (8 / partitions) x partitions.
2. Step time of the demo ranker (T5.1.1 layout, 2 + 2 layers, d_model 64;
   8 lists x 8 items x 160 tokens, softmax loss, Adafactor) through
   `t5x.trainer.Trainer`: one process with 1 device (mesh 1 x 1) against one
   with 8 host devices (mesh 8 x 1, pure data parallelism). On a CPU the 8
   "devices" share the same cores, so the ratio measures the cost of
   partitioning (per-device programs, collectives), not any speed-up.

Run: python benchmarks/meshes.py [--steps 10] [--no-timing]
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
import time

if __name__ == "__main__" and "--time-devices" in sys.argv:
  _DEVICES = int(sys.argv[sys.argv.index("--time-devices") + 1])
else:
  _DEVICES = 8
os.environ["XLA_FLAGS"] = f"--xla_force_host_platform_device_count={_DEVICES}"
os.environ.setdefault("JAX_PLATFORMS", "cpu")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

# pylint: disable=g-import-not-at-top,wrong-import-position
import jax
import numpy as np

SIZES = {
  # T5X's t5_1_1/{base,xl}.gin network.T5Config.
  "base": dict(
    emb_dim=768,
    num_heads=12,
    num_encoder_layers=12,
    num_decoder_layers=12,
    head_dim=64,
    mlp_dim=2048,
  ),
  "xl": dict(
    emb_dim=2048,
    num_heads=32,
    num_encoder_layers=24,
    num_decoder_layers=24,
    head_dim=64,
    mlp_dim=5120,
  ),
  "demo": dict(
    emb_dim=64,
    num_heads=4,
    num_encoder_layers=2,
    num_decoder_layers=2,
    head_dim=16,
    mlp_dim=256,
  ),
}
VOCAB_SIZE = {"base": 32128, "xl": 32128, "demo": 384}
PARTITIONS = (1, 2, 4, 8)
LISTS, LIST_SIZE, TOKENS = 8, 8, 160


def make_model(size):
  import seqio
  from t5x import adafactor
  from t5x.examples.t5 import network as t5x_network

  from t5rank.models import models
  from t5rank.models import network

  config = t5x_network.T5Config(
    vocab_size=VOCAB_SIZE[size],
    dtype="bfloat16",
    mlp_activations=("gelu", "linear"),
    dropout_rate=0.0,
    logits_via_embedding=False,
    **SIZES[size],
  )
  vocab = seqio.ByteVocabulary()
  optimizer = adafactor.Adafactor(
    decay_rate=0.8,
    step_offset=0,
    logical_factor_rules=adafactor.standard_logical_factor_rules(),
  )
  return models.RankingEncDecModel(
    network.RankingTransformer(config, one_hot_embedding=False),
    vocab,
    vocab,
    optimizer,
    score_token=258,
  )


def _batch_shapes():
  shapes = {
    "encoder_input_tokens": (LISTS, LIST_SIZE, TOKENS),
    "decoder_input_tokens": (LISTS, LIST_SIZE, 1),
    "decoder_target_tokens": (LISTS, LIST_SIZE, 1),
    "label": (LISTS, LIST_SIZE),
    "mask": (LISTS, LIST_SIZE),
  }
  types = {k: np.int32 for k in shapes}
  types.update(label=np.float32, mask=np.bool_)
  return shapes, types


def _partitioner(partitions):
  from t5x import partitioning

  return partitioning.PjitPartitioner(
    model_parallel_submesh=(1, 1, 1, partitions),
    logical_axis_rules=partitioning.standard_logical_axis_rules(),
  )


def _device_bytes(shape_tree, spec_tree, mesh_shape):
  """Bytes one device holds of a tree of ShapeDtypeStructs sharded by specs."""
  from jax.sharding import PartitionSpec

  total = 0
  shapes = jax.tree.leaves(shape_tree)
  specs = jax.tree.leaves(
    spec_tree, is_leaf=lambda x: isinstance(x, PartitionSpec) or x is None
  )
  assert len(shapes) == len(specs), (len(shapes), len(specs))
  for leaf, spec in zip(shapes, specs):
    dims = list(leaf.shape)
    for i, axes in enumerate(tuple(spec or ())):
      for axis in (axes,) if isinstance(axes, str) else (axes or ()):
        dims[i] = -(-dims[i] // mesh_shape[axis])
    total += int(np.prod(dims)) * np.dtype(leaf.dtype).itemsize
  return total


def memory_table(sizes=("base", "xl")):
  """{size: {partitions: (param bytes, optimizer bytes) per device}}."""
  from t5x import utils

  shapes, types = _batch_shapes()
  table = {}
  for size in sizes:
    model = make_model(size)
    table[size] = {}
    for partitions in PARTITIONS:
      partitioner = _partitioner(partitions)
      initializer = utils.TrainStateInitializer(
        model.optimizer_def,
        model.get_initial_variables,
        shapes,
        partitioner,
        types,
      )
      state = initializer.global_train_state_shape
      axes = initializer.train_state_axes
      mesh = dict(partitioner.mesh.shape)
      params = _device_bytes(state.params, axes.params, mesh)
      whole = _device_bytes(state.state_dict(), axes.state_dict(), mesh)
      table[size][partitions] = (params, whole - params, mesh)
  return table


def time_steps(steps):
  """Median seconds of a demo train step on this process's devices."""
  from t5x import trainer as trainer_lib
  from t5x import utils

  model = make_model("demo")
  partitioner = _partitioner(1)  # every device on `data`
  shapes, types = _batch_shapes()
  rng = np.random.default_rng(0)
  batch = {
    k: np.asarray(rng.integers(3, 259, size=s), types[k])
    for k, s in shapes.items()
  }
  batch["decoder_input_tokens"][:] = 0
  batch["decoder_target_tokens"][:] = 258
  batch["mask"] = np.ones(shapes["mask"], np.bool_)
  batch["label"] = (rng.random(shapes["label"]) < 0.2).astype(np.float32)
  batch["label"][:, 0] = 1.0
  initializer = utils.TrainStateInitializer(
    model.optimizer_def, model.get_initial_variables, shapes, partitioner, types
  )
  trainer = trainer_lib.Trainer(
    model,
    initializer.from_scratch(jax.random.PRNGKey(0)),
    partitioner,
    eval_names=[],
    summary_dir=None,
    train_state_axes=initializer.train_state_axes,
    rng=jax.random.PRNGKey(1),
    learning_rate_fn=lambda step: 1e-3,
    num_microbatches=None,
  )
  trainer.compile_train(batch)
  trainer.train(iter([batch]), 1).result()  # warm-up
  times = []
  for _ in range(steps):
    jax.block_until_ready(trainer.train_state.params)
    start = time.perf_counter()
    trainer.train(iter([batch]), 1)
    jax.block_until_ready(trainer.train_state.params)
    times.append(time.perf_counter() - start)
  trainer.close()
  return {
    "devices": jax.device_count(),
    "mesh": dict(partitioner.mesh.shape),
    "median_s": statistics.median(times),
  }


def _time_in_subprocess(devices, steps):
  out = subprocess.run(
    [
      sys.executable,
      __file__,
      "--time-devices",
      str(devices),
      "--steps",
      str(steps),
    ],
    capture_output=True,
    text=True,
    check=True,
  )
  return json.loads(out.stdout.strip().splitlines()[-1])


def main():
  parser = argparse.ArgumentParser()
  parser.add_argument("--steps", type=int, default=10)
  parser.add_argument("--no-timing", action="store_true")
  parser.add_argument("--time-devices", type=int, default=None)
  args = parser.parse_args()
  if args.time_devices is not None:
    print(json.dumps(time_steps(args.steps)))
    return
  print(
    "Per-device bytes of T5.1.1 RankT5-EncDec train state (f32 params, "
    "Adafactor), 8 devices"
  )
  print(
    "| model | partitions | mesh (data x model) | params MiB "
    "| optimizer MiB | total MiB |"
  )
  print("|---|---:|---|---:|---:|---:|")
  mib = 2.0**20
  for size, rows in memory_table().items():
    for partitions, (params, opt, mesh) in rows.items():
      print(
        f"| {size} | {partitions} | {mesh['data']} x {mesh['model']} "
        f"| {params / mib:.1f} | {opt / mib:.1f} "
        f"| {(params + opt) / mib:.1f} |"
      )
  if args.no_timing:
    return
  one = _time_in_subprocess(1, args.steps)
  eight = _time_in_subprocess(8, args.steps)
  print()
  print(
    f"Demo train step ({LISTS} lists x {LIST_SIZE} items x {TOKENS} "
    f"tokens), median of {args.steps}"
  )
  print("| mesh | devices | step ms | ratio |")
  print("|---|---:|---:|---:|")
  for run in (one, eight):
    print(
      f"| {run['mesh']['data']} x {run['mesh']['model']} "
      f"| {run['devices']} | {run['median_s'] * 1e3:.1f} "
      f"| {run['median_s'] / one['median_s']:.2f} |"
    )


if __name__ == "__main__":
  main()
