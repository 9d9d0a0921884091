"""End to end: the demo gin trains through T5X's train, resumes and evaluates.

Runs `t5rank.main.train` / `evaluate` (T5X's own mains) in subprocesses on a
shrunken demo (1 + 1 layers, lists of 4 items of 64 pieces, 2 lists a batch):

1. train 3 steps: a checkpoint at step 3, per-step losses in TensorBoard and
   the seqio ranking metrics of the validation split at step 3;
2. train to step 4 in the same folder: T5X resumes from checkpoint 3, and the
   loss it logs for step 4 equals the loss of checkpoint 3's parameters on the
   first training batch (T5X restarts the input pipeline), computed here
   independently of T5X's trainer;
3. evaluate checkpoint 3 with T5X's eval: the same metrics as in step 1.
"""

import os
import subprocess
import sys

import numpy as np
import pytest

pytest.importorskip("t5x", reason="T5X is not installed; see README")

# pylint: disable=g-import-not-at-top,wrong-import-position
import orbax.checkpoint as ocp
from t5x import gin_utils
from t5x import train as t5x_train
from t5x import utils as t5x_utils
import tensorflow as tf

import gin
from t5rank import main

# pylint: enable=g-import-not-at-top,wrong-import-position

pytestmark = pytest.mark.slow

GIN_DIR = main.gin_dir()
T5X_SEARCH_PATH = os.path.dirname(
  os.path.dirname(os.path.abspath(t5x_train.__file__))
)
TASK = "t5rank_demo"
SHRINK = {
  "LIST_SIZE": "4",
  "EVAL_LIST_SIZE": "4",
  "INPUT_LENGTH": "64",
  "network.T5Config.emb_dim": "32",
  "network.T5Config.num_heads": "2",
  "network.T5Config.head_dim": "16",
  "network.T5Config.mlp_dim": "64",
  "network.T5Config.num_encoder_layers": "1",
  "network.T5Config.num_decoder_layers": "1",
}
TRAIN = {
  **SHRINK,
  "BATCH_SIZE": "2",
  "EVAL_PERIOD": "3",
  "utils.SaveCheckpointConfig.period": "3",
  "train.stats_period": "1",
}


def _flags(bindings):
  return [f"--gin.{k}={v}" for k, v in bindings.items()]


def _run(entry, args):
  code = f"import sys; from t5rank import main; main.{entry}(sys.argv[1:])"
  result = subprocess.run(
    [sys.executable, "-c", code, *args],
    capture_output=True,
    text=True,
    timeout=900,
    check=False,
  )
  assert result.returncode == 0, result.stderr[-4000:]
  return result


def _train(model_dir, steps, *more):
  return _run(
    "train",
    [
      "--gin_file=demo/train.gin",
      f"--gin.MODEL_DIR='{model_dir}'",
      f"--gin.TRAIN_STEPS={steps}",
      *_flags(TRAIN),
      *more,
    ],
  )


def _logged_losses(model_dir):
  losses = {}
  for path in tf.io.gfile.glob(os.path.join(model_dir, "train", "events.*")):
    for event in tf.compat.v1.train.summary_iterator(path):
      for value in event.summary.value:
        if value.tag == "loss":
          losses[event.step] = float(tf.make_ndarray(value.tensor))
  return losses


@gin.configurable("train_config", module="t5rank_e2e_test")
def _train_config(model=gin.REQUIRED, dataset_cfg=gin.REQUIRED):
  return model, dataset_cfg


def _model_and_first_batch():
  """The demo model and T5X's first training batch, built from the gin files."""
  gin.clear_config(clear_constants=True)
  bindings = [
    f"{k} = {v}"
    for k, v in TRAIN.items()
    if "." not in k or k.startswith("network.")
  ]
  bindings += [
    "MODEL_DIR = '/unused'",
    "TRAIN_STEPS = 4",
    "t5rank_e2e_test.train_config.model = %MODEL",
    "t5rank_e2e_test.train_config.dataset_cfg = @train/utils.DatasetConfig()",
  ]
  real_main = sys.modules["__main__"]
  stand_in = type(sys)("__main__")
  stand_in.train = t5x_train.train
  sys.modules["__main__"] = stand_in
  try:
    gin_utils.parse_gin_flags(
      [GIN_DIR, T5X_SEARCH_PATH],
      ["demo/train.gin"],
      bindings,
      finalize_config=False,
    )
    model, cfg = gin.get_configurable(_train_config)()
  finally:
    sys.modules["__main__"] = real_main
    gin.clear_config(clear_constants=True)
  ds = t5x_utils.get_dataset(cfg, 0, 1, model.FEATURE_CONVERTER_CLS)
  return model, next(ds.as_numpy_iterator())


@pytest.fixture(scope="module")
def trained_dir(tmp_path_factory):
  model_dir = str(tmp_path_factory.mktemp("demo"))
  _train(model_dir, 3)
  return model_dir


def test_demo_trains_checkpoints_and_reports_seqio_metrics(trained_dir):
  assert os.path.isdir(os.path.join(trained_dir, "checkpoint_3"))
  losses = _logged_losses(trained_dir)
  assert sorted(losses) == [1, 2, 3]
  assert all(np.isfinite(v) for v in losses.values())
  metrics = main.read_inference_metrics(trained_dir, TASK)[-1]
  assert metrics["step"] == 3
  for name in ("mrr@10", "ndcg@10"):
    assert 0.0 <= metrics[name] <= 1.0, metrics
  assert metrics["num_queries"] == 200  # every dev query of the demo corpus


def test_demo_resumes_from_checkpoint_to_same_next_step_loss(trained_dir):
  _train(trained_dir, 4, "--gin.train.infer_eval_dataset_cfg=None")
  resumed_loss = _logged_losses(trained_dir)[4]
  assert os.path.isdir(os.path.join(trained_dir, "checkpoint_4"))

  model, batch = _model_and_first_batch()
  # T5X writes Orbax checkpoints: {"target": params, "state": optimizer state}.
  restored = ocp.PyTreeCheckpointer().restore(
    os.path.join(trained_dir, "checkpoint_3", "state")
  )
  params = restored["target"]
  expected, _ = model.loss_fn(params, batch, dropout_rng=None)
  np.testing.assert_allclose(resumed_loss, float(expected), rtol=1e-5)


def test_t5x_eval_of_checkpoint_matches_metrics_of_training_run(
  trained_dir, tmp_path
):
  eval_dir = str(tmp_path / "eval")
  _run(
    "evaluate",
    [
      "--gin_file=demo/eval.gin",
      f"--gin.CHECKPOINT_PATH='{trained_dir}/checkpoint_3'",
      f"--gin.EVAL_OUTPUT_DIR='{eval_dir}'",
      *_flags(SHRINK),
    ],
  )
  evaluated = main.read_inference_metrics(eval_dir, TASK)[-1]
  during_training = [
    m for m in main.read_inference_metrics(trained_dir, TASK) if m["step"] == 3
  ][0]
  for name in ("mrr@10", "ndcg@10", "num_queries"):
    np.testing.assert_allclose(
      evaluated[name], during_training[name], rtol=1e-6, err_msg=name
    )
