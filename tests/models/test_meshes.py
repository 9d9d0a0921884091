"""t5rank trains the same on every device mesh, through T5X's Trainer.

Cases run in worker processes (tests/models/mesh_worker.py) with
`--xla_force_host_platform_device_count` set before JAX starts: one process
with 1 CPU device (the reference), two with 8 (meshes 8x1, 4x2, 2x4 as
data x model: T5X's `PjitPartitioner` with a model-parallel submesh and
`standard_logical_axis_rules`). All run the same global batches through
`t5x.trainer.Trainer`; the tests compare what they wrote.

Test matrix (each dimension covered, not the full cross product, to keep the
two processes to a few minutes on a small CPU):

  case         model    loss     batch     meshes compared with 1 device
  encdec       enc-dec  softmax  unpacked  4x2, and 8x1 from a checkpoint
  gumbel_pack  enc-dec  gumbel   packed    2x4
  enc_gumbel   encoder  gumbel   unpacked  2x4

Each runs two train steps (Adafactor, as the demo) and one eval step. The
4x2 run writes a T5X checkpoint after step 1; it is restored on 1 and on 8x1
devices, which run step 2. Gradient accumulation (`num_microbatches=2`, SGD)
runs on 1 device. The worker processes run side by side (the 1-device one
waits for the checkpoint before its restore). The model is the demo's
T5.1.1 layout at 1 + 1 layers, d_model 32, 4 heads (so that 4 model
partitions divide heads, mlp and vocabulary).
"""

import json
import os
import re
import subprocess
import sys

import numpy as np
import pytest

pytest.importorskip("t5x", reason="T5X is not installed; see README")

pytestmark = pytest.mark.slow

sys.path.insert(0, os.path.dirname(__file__))
import mesh_worker  # pylint: disable=g-import-not-at-top,wrong-import-position

WORKER = os.path.join(os.path.dirname(__file__), "mesh_worker.py")
# Float32 sums in another order across devices: same values to ~1e-5.
LOSS_TOL = dict(rtol=2e-5, atol=2e-5)
PARAM_TOL = dict(rtol=1e-4, atol=1e-5)

MATRIX = {
  "encdec": dict(model="encdec", loss="softmax", packed=False, meshes=[[4, 2]]),
  "gumbel_pack": dict(
    model="encdec", loss="gumbel", packed=True, meshes=[[2, 4]]
  ),
  "enc_gumbel": dict(
    model="encoder", loss="gumbel", packed=False, meshes=[[2, 4]]
  ),
}


def _mesh_name(mesh):
  return f"{mesh[0]}x{mesh[1]}"


def _processes(ckpt_dir):
  """Worker processes: {process name: (devices, cases)}; they run at once."""
  encdec = dict(model="encdec", loss="softmax", packed=False)
  ref = [dict(MATRIX[name], name=f"{name}_1x1", mesh=[1, 1]) for name in MATRIX]
  ref += [
    dict(
      encdec,
      name=f"sgd_mb{mb}_1x1",
      mesh=[1, 1],
      optimizer="sgd",
      microbatches=mb,
      steps=1,
      all_positive=True,
      eval=False,
    )
    for mb in (None, 2)
  ]
  ref.append(
    dict(
      encdec,
      name="restored_1x1",
      mesh=[1, 1],
      restore=ckpt_dir,
      steps=1,
      eval=False,
    )
  )
  return {
    "one_device": (1, ref),
    "encdec": (
      8,
      [
        dict(
          encdec, name="encdec_4x2", mesh=[4, 2], sharding=True, save=ckpt_dir
        ),
        # The 4x2 run's second step, from its checkpoint, on 8x1.
        dict(
          encdec, name="restored_8x1", mesh=[8, 1], restore=ckpt_dir, steps=1
        ),
      ],
    ),
    "gumbel": (
      8,
      [
        dict(MATRIX["gumbel_pack"], name="gumbel_pack_2x4", mesh=[2, 4]),
        dict(
          MATRIX["enc_gumbel"],
          name="enc_gumbel_2x4",
          mesh=[2, 4],
          sharding=True,
        ),
      ],
    ),
  }


def _start_worker(name, devices, cases, out_dir):
  spec = dict(
    devices=devices,
    out=str(out_dir),
    cases=cases,
    cache_dir=os.path.join(str(out_dir), f"jax_cache_{name}"),
  )
  spec_path = os.path.join(str(out_dir), f"spec_{name}.json")
  with open(spec_path, "w") as f:
    json.dump(spec, f)
  env = dict(os.environ, JAX_PLATFORMS="cpu")
  # Keep conftest.py's compile flags; the worker sets its device count.
  env["XLA_FLAGS"] = " ".join(
    f
    for f in env.get("XLA_FLAGS", "").split()
    if not f.startswith("--xla_force_host_platform_device_count")
  )
  return subprocess.Popen(
    [sys.executable, WORKER, spec_path],
    env=env,
    stdout=subprocess.PIPE,
    stderr=subprocess.PIPE,
    text=True,
  )


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
  """Results by case name, from the worker processes run side by side."""
  out = tmp_path_factory.mktemp("meshes")
  processes = _processes(str(out / "checkpoint_4x2"))
  procs = {
    name: _start_worker(name, devices, cases, out)
    for name, (devices, cases) in processes.items()
  }
  try:
    logs = {name: p.communicate(timeout=1800) for name, p in procs.items()}
  finally:
    for p in procs.values():
      if p.poll() is None:
        p.kill()
  for name, p in procs.items():
    assert p.returncode == 0, (name, logs[name][1][-4000:])
  results = {}
  for _, cases in processes.values():
    for case in cases:
      name = case["name"]
      with open(out / f"{name}.json") as f:
        results[name] = json.load(f)
      for stem, key in (
        ("", "params"),
        (".init", "init_params"),
        (".saved", "saved_params"),
      ):
        path = out / f"{name}{stem}.npz"
        if path.exists():
          results[name][key] = dict(np.load(path))
  return results


# The encoder's score bias gets no gradient from a shift-invariant ranking
# loss (softmax, approx-NDCG): only float noise, whose sign differs between
# meshes. Adafactor turns any nonzero gradient into a step of
# lr x 1e-3 (its parameter-scale floor) = 1e-5, so the bias may differ by
# 1e-5 a step.
ZERO_GRADIENT_PARAMS = {"score_head/bias": dict(rtol=0, atol=2.1e-5)}


def _assert_same_params(got, want):
  assert sorted(got) == sorted(want)
  for key in want:
    np.testing.assert_allclose(
      got[key],
      want[key],
      err_msg=key,
      **ZERO_GRADIENT_PARAMS.get(key, PARAM_TOL),
    )


CASES = [
  (name, _mesh_name(mesh))
  for name, spec in MATRIX.items()
  for mesh in spec["meshes"]
]


@pytest.mark.parametrize("name,mesh", CASES)
def test_train_steps_on_a_mesh_equal_one_device(runs, name, mesh):
  ref, got = runs[f"{name}_1x1"], runs[f"{name}_{mesh}"]
  data, model = map(int, mesh.split("x"))
  assert got["mesh"] == {"data": data, "model": model}
  assert ref["mesh"] == {"data": 1, "model": 1}
  # Two steps: the second loss already depends on the first update.
  np.testing.assert_allclose(got["losses"], ref["losses"], **LOSS_TOL)
  for got_m, ref_m in zip(got["train_metrics"], ref["train_metrics"]):
    assert sorted(got_m) == sorted(ref_m)
    for key in ref_m:
      np.testing.assert_allclose(
        got_m[key], ref_m[key], err_msg=key, **LOSS_TOL
      )
  assert sorted(got["eval"]) == ["loss", "metrics/mrr@10", "metrics/ndcg@10"]
  for key in ref["eval"]:
    np.testing.assert_allclose(
      got["eval"][key], ref["eval"][key], err_msg=key, **LOSS_TOL
    )
  _assert_same_params(got["params"], ref["params"])
  # The steps moved the parameters and the loss (not a vacuous comparison).
  assert ref["losses"][0] != ref["losses"][1]


def _dims(shape):
  """All dimensions named in an HLO shape string, e.g. '(f32[6,20,32]{...})'."""
  return [
    int(d)
    for group in re.findall(r"\[([\d,]*)\]", shape)
    for d in group.split(",")
    if d
  ]


@pytest.mark.parametrize("name", ["encdec_4x2", "enc_gumbel_2x4"])
def test_lists_stay_split_over_data_inside_the_step(runs, name):
  got = runs[name]
  data = got["mesh"]["data"]
  assert got["data_partition_spec"] == "P('data',)"
  # The scores [lists, L] the loss sees are split over `data` by list.
  assert got["score_shardings"]
  for sharding in got["score_shardings"]:
    assert "spec=P('data',)" in sharding, sharding
  assert got["collectives"], "a model-parallel step must communicate"
  # B*L = 24 item rows, 24 / data on each device. No collective moves all
  # rows (or the [B, L] scores) onto a device: activations are only reduced
  # over `model`, with their per-device rows.
  rows = mesh_worker.BATCH * mesh_worker.LIST
  for op, shape in got["collectives"]:
    assert rows not in _dims(shape), (op, shape)
    assert f"[{mesh_worker.BATCH},{mesh_worker.LIST}]" not in shape, (op, shape)
  per_device = [s for _, s in got["collectives"] if f"[{rows // data}," in s]
  assert per_device  # activation reductions carry the local rows


@pytest.mark.parametrize("name", ["encdec_4x2", "enc_gumbel_2x4"])
def test_parameters_split_over_model_by_t5x_logical_axis_rules(runs, name):
  got = runs[name]
  model = got["mesh"]["model"]
  for key, (spec, local, global_shape) in got["param_shardings"].items():
    # The arrays are laid out as T5X's partitioner says.
    assert spec == got["param_specs"][key], key
    axes = [a.strip() for a in spec[len("P(") : -1].split(",") if a.strip()]
    for i, axis in enumerate(axes):
      want = global_shape[i] // model if axis == "'model'" else global_shape[i]
      assert local[i] == want, (key, spec, local, global_shape)
    # Every matrix is split over `model`; vectors (layer norm scales, the
    # score head) are replicated.
    assert ("'model'" in spec) == (len(global_shape) == 2), (key, spec)
  specs = got["param_specs"]
  assert specs["token_embedder/embedding"] == "P('model', None)"  # vocab
  assert specs["encoder/layers_0/mlp/wi_0/kernel"] == "P(None, 'model')"
  assert specs["encoder/layers_0/attention/query/kernel"] == (
    "P(None, 'model')"
  )  # heads
  assert specs["encoder/layers_0/mlp/wo/kernel"] == "P('model', None)"
  if name == "enc_gumbel_2x4":
    # The score head's d_model vector is replicated ('embed' -> None in
    # T5X's standard rules): no extra rule is needed.
    assert specs["score_head/kernel"] == "P(None,)"
    assert specs["score_head/bias"] == "P()"


def test_checkpoint_written_on_4x2_restores_on_1_and_8x1(runs):
  saved = runs["encdec_4x2"]
  for name in ("restored_1x1", "restored_8x1"):
    got = runs[name]
    # Identical parameters after the restore...
    restored, written = got["init_params"], saved["saved_params"]
    assert sorted(restored) == sorted(written)
    for key in written:
      np.testing.assert_array_equal(restored[key], written[key], err_msg=key)
    # ...and the next step gives the 4x2 run's second loss and update.
    np.testing.assert_allclose(got["losses"], saved["losses"][1:], **LOSS_TOL)
    _assert_same_params(got["params"], saved["params"])
  for key, value in saved["eval"].items():
    np.testing.assert_allclose(
      runs["restored_8x1"]["eval"][key], value, err_msg=key, **LOSS_TOL
    )


def _update(run):
  return {k: run["params"][k] - run["init_params"][k] for k in run["params"]}


def test_microbatches_sum_the_gradients_of_per_microbatch_means(runs):
  """T5X's gradient accumulation is not exact for a mean over lists.

  T5X adds the gradients of the `num_microbatches` microbatch losses, and
  each of them is a mean over its own counted lists. With k microbatches of
  n counted lists each, the accumulated gradient is therefore k times the
  whole-batch gradient (with unequal counts, a mix of microbatch means). With
  SGD the update is k times larger; scale-invariant optimisers (T5X's
  Adafactor, Adam) nearly hide the factor.
  """
  whole, micro = _update(runs["sgd_mbNone_1x1"]), _update(runs["sgd_mb2_1x1"])
  assert max(np.abs(u).max() for u in whole.values()) > 1e-6
  for key in whole:
    np.testing.assert_allclose(
      micro[key], 2.0 * whole[key], rtol=1e-4, atol=1e-6, err_msg=key
    )
