"""Two JAX processes train the demo ranker as one T5X job, as two hosts would.

tests/models/multihost_worker.py runs twice at once on this machine, each
process with 4 CPU devices, joined by `jax.distributed.initialize` (local
coordinator, gloo CPU collectives) into one 4 x 2 (data x model) mesh of 8
devices. Each reads its own seqio shard of the demo task's training lists;
the loss of each step equals that of one process with 8 devices fed the same
global batch (both shards concatenated).
"""

import json
import os

import numpy as np
import pytest

pytest.importorskip("t5x", reason="T5X is not installed; see README")

pytestmark = pytest.mark.slow

WORKER = os.path.join(os.path.dirname(__file__), "multihost_worker.py")


@pytest.fixture(scope="module")
def runs(run_jax_processes, tmp_path_factory):
  out = tmp_path_factory.mktemp("multihost")
  run_jax_processes(WORKER, 2, [out / "two"])
  run_jax_processes(WORKER, 1, [out / "one"])

  def load(path):
    with open(path) as f:
      return json.load(f)

  return (
    [load(out / "two" / f"process_{i}.json") for i in range(2)],
    load(out / "one" / "process_0.json"),
  )


def test_two_processes_form_one_mesh_over_eight_devices(runs):
  hosts, single = runs
  for i, host in enumerate(hosts):
    assert host["process_index"] == i and host["process_count"] == 2
    assert host["devices"] == 8 and host["local_devices"] == 4
    assert host["mesh"] == {"data": 4, "model": 2}
  assert single["process_count"] == 1 and single["local_devices"] == 8
  assert single["mesh"] == {"data": 4, "model": 2}


def test_each_process_reads_a_disjoint_shard_of_the_lists(runs):
  hosts, single = runs
  for step in range(len(single["lists_read"])):
    a, b = (set(h["lists_read"][step]) for h in hosts)
    assert len(a) == len(hosts[0]["lists_read"][step]) == 4  # 8 / 2 hosts
    assert not a & b
    assert a | b == set(single["lists_read"][step])


def test_two_process_loss_equals_one_process_on_the_same_global_batch(runs):
  hosts, single = runs
  assert len(single["losses"]) == 2
  for host in hosts:  # every process reports the global loss
    np.testing.assert_allclose(
      host["losses"], single["losses"], rtol=2e-5, atol=2e-5
    )
  assert single["losses"][0] != single["losses"][1]
