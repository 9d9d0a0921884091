"""End to end: the README's MS-MARCO commands on an MS-MARCO-named directory.

The demo corpus is laid out under MS-MARCO's file names (`MSMARCO_FILES`) and
`runs/finetune_msmarco.gin` trains on it through `t5rank.main.train` with T5's
SentencePiece vocabulary (T5X checks that the model's and the task's
vocabularies match), a loss file and a mesh file; `runs/eval.gin` then
evaluates the checkpoint. The network is shrunk to one layer each way.
"""

import os
import re
import subprocess
import sys

import pytest

pytest.importorskip("t5x", reason="T5X is not installed; see README")

# pylint: disable=g-import-not-at-top,wrong-import-position
from t5rank import main
from t5rank.data import demo
from t5rank.data import msmarco

# pylint: enable=g-import-not-at-top,wrong-import-position

pytestmark = pytest.mark.slow

SPM_PATH = "/work/shared/data/t5_spiece.model"
TASK = "msmarco_passage_ranking"
SHRINK = [
  "--gin.INITIAL_CHECKPOINT_PATH=None",
  "--gin.INPUT_LENGTH=64",
  "--gin.EVAL_LIST_SIZE=8",
  "--gin.network.T5Config.emb_dim=32",
  "--gin.network.T5Config.num_heads=2",
  "--gin.network.T5Config.head_dim=16",
  "--gin.network.T5Config.mlp_dim=64",
  "--gin.network.T5Config.num_encoder_layers=1",
  "--gin.network.T5Config.num_decoder_layers=1",
  "--gin.network.T5Config.dtype='float32'",
]


def _msmarco_dir(root):
  """The demo corpus under MS-MARCO's file names."""
  pairs = [(demo.DEMO_FILES.collection, msmarco.MSMARCO_FILES.collection)]
  for split in ("train", "dev"):
    ours, theirs = (
      demo.DEMO_FILES.split(split),
      msmarco.MSMARCO_FILES.split(split),
    )
    pairs += [
      (ours.queries, theirs.queries),
      (ours.qrels, theirs.qrels),
      (ours.run, theirs.run),
    ]
  for source, target in pairs:
    os.symlink(
      os.path.join(demo.demo_dir(), source), os.path.join(root, target)
    )
  return root


def _run(entry, args, env):
  code = f"import sys; from t5rank import main; main.{entry}(sys.argv[1:])"
  result = subprocess.run(
    [sys.executable, "-c", code, *args],
    env=env,
    capture_output=True,
    text=True,
    timeout=900,
    check=False,
  )
  assert result.returncode == 0, result.stderr[-4000:]


def test_finetune_and_eval_msmarco_files_with_t5_vocabulary(tmp_path):
  if not os.path.exists(SPM_PATH):
    pytest.skip(f"T5's SentencePiece model is not at {SPM_PATH}")
  data_dir = tmp_path / "msmarco"
  data_dir.mkdir()
  env = dict(
    os.environ,
    T5RANK_MSMARCO_DIR=_msmarco_dir(str(data_dir)),
    T5RANK_SPM_PATH=SPM_PATH,
  )
  model_dir, eval_dir = tmp_path / "model", tmp_path / "eval"
  _run(
    "train",
    [
      "--gin_file=models/encdec/small.gin",
      "--gin_file=runs/finetune_msmarco.gin",
      "--gin_file=losses/listmle.gin",
      "--gin_file=meshes/data_parallel.gin",
      f"--gin.MODEL_DIR='{model_dir}'",
      "--gin.TRAIN_STEPS=2",
      "--gin.EVAL_PERIOD=2",
      "--gin.utils.SaveCheckpointConfig.period=2",
      "--gin.BATCH_SIZE=2",
      "--gin.LIST_SIZE=4",
      *SHRINK,
    ],
    env,
  )
  assert (model_dir / "checkpoint_2").is_dir()
  config = (model_dir / "config.gin").read_text()
  # gin writes its own alias of t5rank.ranking.losses (e.g. `t5rank4`).
  assert re.search(r"^LOSS_FN = @t5rank[\w.]*\.listmle_loss$", config, re.M)
  trained = main.read_inference_metrics(str(model_dir), TASK)[-1]

  _run(
    "evaluate",
    [
      "--gin_file=models/encdec/small.gin",
      "--gin_file=runs/eval.gin",
      f"--gin.CHECKPOINT_PATH='{model_dir}/checkpoint_2'",
      f"--gin.EVAL_OUTPUT_DIR='{eval_dir}'",
      *SHRINK,
    ],
    env,
  )
  evaluated = main.read_inference_metrics(str(eval_dir), TASK)[-1]
  assert evaluated["num_queries"] == trained["num_queries"] == 200
  for name in ("mrr@10", "ndcg@10"):
    assert evaluated[name] == pytest.approx(trained[name], abs=1e-6), name
