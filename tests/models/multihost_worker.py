"""One JAX process of a multi-process T5X training run of the demo ranker.

Launched by tests/models/test_multihost.py:

  python tests/models/multihost_worker.py PROCESS_ID NUM_PROCESSES PORT OUT

Each process has 4 CPU devices. With NUM_PROCESSES > 1 it joins JAX's
multi-process runtime (`jax.distributed.initialize`, coordinator on
localhost:PORT, CPU collectives over gloo); T5X's `PjitPartitioner` builds a
data x model = 4 x 2 mesh over all 8 devices, each process reads its shard of
the demo task's training lists (seqio `shard_info` from the partitioner's
data layout) and T5X's `ShardedDatasetIterator` assembles the global batch.

With NUM_PROCESSES = 1 (8 devices in one process) it is the reference: it
reads both shards itself and concatenates them into the same global batch.

Writes OUT/process_<id>.json: the losses of each step and, per step, a hash of
every list this process read (to check that the shards are disjoint).
"""

import hashlib
import json
import os
import sys

if __name__ == "__main__":
  PROCESS_ID, NUM_PROCESSES, PORT = map(int, sys.argv[1:4])
  OUT = sys.argv[4]
  DEVICES = 8 // NUM_PROCESSES
  # The device count, after any other flags the tests pass (conftest.py).
  os.environ["XLA_FLAGS"] = (
    os.environ.get("XLA_FLAGS", "")
    + f" --xla_force_host_platform_device_count={DEVICES}"
  ).strip()
  os.environ["JAX_PLATFORMS"] = "cpu"

# pylint: disable=g-import-not-at-top,wrong-import-position
import numpy as np

GLOBAL_BATCH, LIST_SIZE, INPUT_LENGTH, STEPS = 8, 4, 64, 2
SHARDS = 2  # the data shards of the multi-process run (one per process)


def _list_hashes(batch):
  tokens = np.asarray(batch["encoder_input_tokens"])
  return [hashlib.sha1(t.tobytes()).hexdigest()[:16] for t in tokens]


def main():
  import jax

  if NUM_PROCESSES > 1:
    # JAX's default for CPU; set so that the test does not depend on it.
    jax.config.update("jax_cpu_collectives_implementation", "gloo")
    jax.distributed.initialize(
      coordinator_address=f"localhost:{PORT}",
      num_processes=NUM_PROCESSES,
      process_id=PROCESS_ID,
    )
  import t5rank.tasks
  from t5x import partitioning
  from t5x import trainer as trainer_lib
  from t5x import utils

  from t5rank.data import feature_converters

  sys.path.insert(0, os.path.dirname(__file__))
  import mesh_worker  # the demo-size ranker of the mesh tests

  task = t5rank.tasks.register_t5rank_demo(list_size=LIST_SIZE)
  lengths = {
    "inputs": (LIST_SIZE, INPUT_LENGTH),
    "targets": (LIST_SIZE, 1),
    "label": (LIST_SIZE,),
    "mask": (LIST_SIZE,),
  }
  model = mesh_worker.make_model("encdec", "softmax", "adafactor")
  partitioner = partitioning.PjitPartitioner(
    model_parallel_submesh=(1, 1, 1, 2),
    logical_axis_rules=partitioning.standard_logical_axis_rules(),
  )
  layout = partitioner.get_data_layout(GLOBAL_BATCH)
  config = utils.DatasetConfig(
    mixture_or_task_name=task,
    task_feature_lengths=lengths,
    split="train",
    batch_size=GLOBAL_BATCH,
    shuffle=False,
    seed=0,
    pack=False,
    use_cached=False,
  )
  converter = feature_converters.RankingEncDecFeatureConverter

  def shard(shard_id):
    return utils.get_dataset(config, shard_id, SHARDS, converter, num_epochs=1)

  if NUM_PROCESSES > 1:
    assert layout.num_shards == SHARDS, layout
    assert layout.shard_id == jax.process_index(), layout
    local = list(shard(layout.shard_id).take(STEPS).as_numpy_iterator())
    train_iter = utils.prepare_train_iter(
      shard(layout.shard_id),
      partitioner=partitioner,
      checkpoint_cfg=None,
      data_layout=layout,
    )
    read = [_list_hashes(b) for b in local]
  else:
    parts = [
      list(shard(i).take(STEPS).as_numpy_iterator()) for i in range(SHARDS)
    ]
    batches = [
      {k: np.concatenate([p[s][k] for p in parts]) for k in parts[0][s]}
      for s in range(STEPS)
    ]
    train_iter = iter(batches)
    read = [_list_hashes(b) for b in batches]
  first = local[0] if NUM_PROCESSES > 1 else batches[0]
  shapes = {k: (GLOBAL_BATCH,) + v.shape[1:] for k, v in first.items()}
  types = {k: v.dtype for k, v in first.items()}
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
    learning_rate_fn=lambda step: mesh_worker.LEARNING_RATE,
    num_microbatches=None,
  )
  losses = []
  for _ in range(STEPS):
    metrics = trainer.train(train_iter, 1).result()
    losses.append(mesh_worker._scalar(metrics["loss"]))  # pylint: disable=protected-access
  trainer.close()
  result = dict(
    process_index=jax.process_index(),
    process_count=jax.process_count(),
    devices=jax.device_count(),
    local_devices=jax.local_device_count(),
    mesh=dict(partitioner.mesh.shape),
    losses=losses,
    lists_read=read,
  )
  os.makedirs(OUT, exist_ok=True)
  with open(os.path.join(OUT, f"process_{PROCESS_ID}.json"), "w") as f:
    json.dump(result, f, indent=1)
  print("DONE", PROCESS_ID, losses, flush=True)
  if NUM_PROCESSES > 1:
    jax.distributed.shutdown()


if __name__ == "__main__":
  main()
