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
import socket
import subprocess
import sys

import numpy as np
import pytest

pytest.importorskip("t5x", reason="T5X is not installed; see README")

pytestmark = pytest.mark.slow

WORKER = os.path.join(os.path.dirname(__file__), "multihost_worker.py")


def _free_port():
  with socket.socket() as s:
    s.bind(("localhost", 0))
    return s.getsockname()[1]


def _env():
  env = dict(os.environ, JAX_PLATFORMS="cpu")
  # Keep conftest.py's compile flags; the worker sets its device count.
  env["XLA_FLAGS"] = " ".join(
    f
    for f in env.get("XLA_FLAGS", "").split()
    if not f.startswith("--xla_force_host_platform_device_count")
  )
  return env


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
  out = tmp_path_factory.mktemp("multihost")
  port = _free_port()
  procs = [
    subprocess.Popen(
      [sys.executable, WORKER, str(i), "2", str(port), str(out / "two")],
      env=_env(),
      stdout=subprocess.PIPE,
      stderr=subprocess.PIPE,
      text=True,
    )
    for i in range(2)
  ]
  try:
    logs = [p.communicate(timeout=900) for p in procs]
  finally:
    for p in procs:
      if p.poll() is None:
        p.kill()
  for p, (_, err) in zip(procs, logs):
    assert p.returncode == 0, err[-4000:]
  single = subprocess.run(
    [sys.executable, WORKER, "0", "1", "0", str(out / "one")],
    env=_env(),
    capture_output=True,
    text=True,
    timeout=900,
  )
  assert single.returncode == 0, single.stderr[-4000:]

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
