"""One JAX process of a `t5rank-rerank` run on several processes.

Launched by tests/test_rerank.py, twice at once as two hosts would run it
(4 CPU devices each, joined by `jax.distributed.initialize` with a local
coordinator and gloo CPU collectives into one mesh of 8 devices), or once
with 8 devices as the reference:

  python tests/rerank_worker.py PROCESS_ID NUM_PROCESSES PORT -- RERANK_FLAGS

Every process runs the same `t5rank-rerank` flags; T5X's infer function
scores each process's shard of every batch.
"""

import os
import sys

if __name__ == "__main__":
  PROCESS_ID, NUM_PROCESSES, PORT = map(int, sys.argv[1:4])
  FLAGS = sys.argv[sys.argv.index("--") + 1 :]
  os.environ["XLA_FLAGS"] = (
    os.environ.get("XLA_FLAGS", "")
    + f" --xla_force_host_platform_device_count={8 // NUM_PROCESSES}"
  ).strip()
  os.environ["JAX_PLATFORMS"] = "cpu"

  # pylint: disable=g-import-not-at-top
  import jax

  if NUM_PROCESSES > 1:
    jax.config.update("jax_cpu_collectives_implementation", "gloo")
    jax.distributed.initialize(
      coordinator_address=f"localhost:{PORT}",
      num_processes=NUM_PROCESSES,
      process_id=PROCESS_ID,
    )
  assert jax.device_count() == 8, jax.devices()
  from t5rank import rerank

  result = rerank.run_from_flags(FLAGS)
  # Only process 0 writes (and returns what it wrote).
  assert (result is None) == (jax.process_index() != 0), result
  if NUM_PROCESSES > 1:
    jax.distributed.shutdown()
