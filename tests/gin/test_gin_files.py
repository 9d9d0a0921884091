"""Every gin file in gin/ parses and binds.

Files are parsed as T5X's mains parse them (`gin_utils.parse_gin_flags` with
t5rank's gin folder and T5X's package folder on the search path). Run files
bind `__main__.train` / `__main__.evaluate`; here `__main__` is a stand-in
whose `train` / `evaluate` have T5X's signatures and return the arguments gin
built, so every reference (model, datasets, partitioner, checkpoint configs)
is constructed without training. Files whose names start with `_` are
fragments, checked through the files that include them.
"""

import contextlib
import functools
import inspect
import os
import sys
import types

import pytest

pytest.importorskip("t5x", reason="T5X is not installed; see README")

# pylint: disable=g-import-not-at-top,wrong-import-position
import jax
import jax.numpy as jnp
import numpy as np
import seqio
from t5x import eval as t5x_eval
from t5x import gin_utils
from t5x import partitioning
from t5x import train as t5x_train
from t5x import utils as t5x_utils

import gin
from t5rank import main
from t5rank.data import demo
import t5rank.models

# pylint: enable=g-import-not-at-top,wrong-import-position

GIN_DIR = main.gin_dir()
# T5X resolves 't5x/...' includes against the folder holding its package.
T5X_SEARCH_PATH = os.path.dirname(
  os.path.dirname(os.path.abspath(t5x_train.__file__))
)
SIZES = ("small", "base", "large", "xl", "xxl")
HEADS = {
  "encdec": t5rank.models.RankingEncDecModel,
  "encoder": t5rank.models.RankingEncoderModel,
}


def _gin_files() -> set[str]:
  found = set()
  for root, _, names in os.walk(GIN_DIR):
    for name in names:
      if name.endswith(".gin") and not name.startswith("_"):
        found.add(os.path.relpath(os.path.join(root, name), GIN_DIR))
  return found


def _stand_in(fn):
  """A function with `fn`'s signature that returns the arguments it gets."""

  @functools.wraps(fn)
  def stand_in(**kwargs):
    return kwargs

  stand_in.__module__ = "__main__"
  return stand_in


@gin.configurable("values", module="t5rank_gin_test")
def _values(**values):
  return values


@contextlib.contextmanager
def _gin_scope():
  gin.clear_config(clear_constants=True)
  try:
    yield
  finally:
    gin.clear_config(clear_constants=True)


# One stand-in `__main__` for every parse: gin keeps one configurable per name.
_MAIN = types.ModuleType("__main__")
_MAIN.train = _stand_in(t5x_train.train)
_MAIN.evaluate = _stand_in(t5x_eval.evaluate)


def _parse(files, bindings=()):
  """Parses `files` and `bindings` as T5X's mains do."""
  real_main = sys.modules["__main__"]
  sys.modules["__main__"] = _MAIN
  try:
    gin_utils.parse_gin_flags(
      [GIN_DIR, T5X_SEARCH_PATH],
      list(files),
      list(bindings),
      finalize_config=False,
    )
  finally:
    sys.modules["__main__"] = real_main


def _macros(files, names, bindings=()):
  """Values of the gin macros `names` after parsing `files`."""
  macro_bindings = [f"t5rank_gin_test.values.{n} = %{n}" for n in names]
  _parse(files, list(bindings) + macro_bindings)
  return gin.get_configurable(_values)()


def _train_args(files, bindings=()):
  _parse(files, bindings)
  return gin.get_configurable(_MAIN.train)()


def _eval_args(files, bindings=()):
  _parse(files, bindings)
  return gin.get_configurable(_MAIN.evaluate)()


def _t5x_config(size):
  values = _macros(
    [f"t5x/examples/t5/t5_1_1/{size}.gin"], ["MODEL"], ["DROPOUT_RATE = 0.0"]
  )
  return values["MODEL"].module.config


def _param_shapes(model, list_size=None):
  shapes = {
    "encoder_input_tokens": (2, 8),
    "decoder_input_tokens": (2, 1),
    "decoder_target_tokens": (2, 1),
  }
  if list_size and isinstance(model, t5rank.models.RankingEncoderModel):
    shapes = {"encoder_input_tokens": shapes["encoder_input_tokens"]}
  if list_size:
    shapes = {k: (1, list_size) + v[1:] for k, v in shapes.items()}
    shapes.update(label=(1, list_size), mask=(1, list_size))
  types_ = {
    k: (
      jnp.float32 if k == "label" else jnp.bool_ if k == "mask" else jnp.int32
    )
    for k in shapes
  }
  variables = jax.eval_shape(
    lambda: model.get_initial_variables(jax.random.PRNGKey(0), shapes, types_)
  )
  return jax.tree.map(lambda x: x.shape, dict(variables["params"]))


def _check_loss(loss_fn):
  """A loss from a gin file is finite, with finite gradients, on hard lists."""
  scores = jnp.array(
    [[0.5, 1.0, -1.0, 2.0], [0.3, 0.1, 0.0, 0.0], [1.0, 2.0, 3.0, 4.0]]
  )
  labels = jnp.array(
    [[1.0, 0.0, 0.0, 2.0], [0.0, 0.0, 0.0, 0.0], [1.0, 0.0, 1.0, 0.0]]
  )
  where = jnp.array(
    [
      [True, True, True, False],
      [True, True, False, False],
      [False, False, False, False],
    ]
  )
  kwargs = {"where": where}
  if "key" in inspect.signature(loss_fn).parameters:
    kwargs["key"] = jax.random.PRNGKey(0)
  value, grad = jax.value_and_grad(lambda s: loss_fn(s, labels, **kwargs))(
    scores
  )
  assert value.shape == ()
  assert np.isfinite(value), value
  assert np.all(np.isfinite(grad)), grad
  # A loss that ignores the scores cannot train anything.
  assert np.any(grad != 0.0)


MODEL_FILES = [f"models/{head}/{size}.gin" for head in HEADS for size in SIZES]
LOSS_FILES = sorted(f for f in _gin_files() if f.startswith("losses/"))
FINETUNE_FILES = ["runs/finetune_msmarco.gin", "runs/finetune_qna21.gin"]
MESH_FILES = [
  "meshes/data_parallel.gin",
  "meshes/data_model.gin",
  "meshes/tpu_v4.gin",
  "meshes/tpu_v5e.gin",
]
CHECKED = (
  set(MODEL_FILES)
  | set(LOSS_FILES)
  | set(FINETUNE_FILES)
  | set(MESH_FILES)
  | {
    "runs/eval.gin",
    "runs/packed.gin",
    "runs/rerank.gin",
    "demo/model.gin",
    "demo/train.gin",
    "demo/eval.gin",
  }
)


def test_every_gin_file_is_checked_here():
  assert _gin_files() == CHECKED


@pytest.mark.parametrize("path", MODEL_FILES)
def test_model_file_builds_ranking_model_on_t5x_network(path):
  head, size = path.split("/")[1], path.split("/")[2][: -len(".gin")]
  with _gin_scope():
    t5x_config = _t5x_config(size)
  with _gin_scope():
    values = _macros([path], ["MODEL", "LOSS_FN"], ["DROPOUT_RATE = 0.0"])
  model = values["MODEL"]
  assert isinstance(model, HEADS[head])
  assert model.module.config == t5x_config
  assert callable(values["LOSS_FN"])


def test_model_files_have_t5x_parameter_names_and_shapes():
  """Stock T5.1.1 checkpoints load: the enc-dec tree is T5X's, the encoder
  head's is T5X's embedding and encoder plus its score head. (Other sizes
  differ only in their T5Config, compared with T5X's above.)"""
  with _gin_scope():
    stock = _macros(
      ["t5x/examples/t5/t5_1_1/small.gin"], ["MODEL"], ["DROPOUT_RATE = 0.0"]
    )["MODEL"]
  with _gin_scope():
    encdec = _macros(
      ["models/encdec/small.gin"], ["MODEL"], ["DROPOUT_RATE = 0.0"]
    )["MODEL"]
  with _gin_scope():
    encoder = _macros(
      ["models/encoder/small.gin"], ["MODEL"], ["DROPOUT_RATE = 0.0"]
    )["MODEL"]
  stock_shapes = _param_shapes(stock)
  assert _param_shapes(encdec, list_size=3) == stock_shapes
  encoder_shapes = _param_shapes(encoder, list_size=3)
  assert set(encoder_shapes) == {"token_embedder", "encoder", "score_head"}
  for name in ("token_embedder", "encoder"):
    assert encoder_shapes[name] == stock_shapes[name]


@pytest.mark.parametrize("path", LOSS_FILES)
def test_loss_file_binds_finite_loss(path):
  with _gin_scope():
    loss_fn = _macros([path], ["LOSS_FN"])["LOSS_FN"]
    _check_loss(loss_fn)


@pytest.mark.parametrize("path", LOSS_FILES)
def test_loss_file_after_model_file_replaces_its_default_loss(path):
  with _gin_scope():
    alone = _macros([path], ["LOSS_FN"])["LOSS_FN"]
  with _gin_scope():
    after_model = _macros(
      ["models/encdec/small.gin", path], ["LOSS_FN"], ["DROPOUT_RATE = 0.0"]
    )["LOSS_FN"]
  assert after_model.__name__ == alone.__name__
  assert (alone.__name__ == "softmax_loss") == (path == "losses/softmax.gin")


def _check_finetune(args, task_name):
  assert isinstance(args["model"], t5rank.models.RankingEncDecModel)
  assert isinstance(args["partitioner"], partitioning.PjitPartitioner)
  converter = args["model"].FEATURE_CONVERTER_CLS
  for cfg in (
    args["train_dataset_cfg"],
    args["train_eval_dataset_cfg"],
    args["infer_eval_dataset_cfg"],
  ):
    assert isinstance(cfg, t5x_utils.DatasetConfig)
    assert cfg.mixture_or_task_name == task_name
    assert cfg.pack is False
    assert set(cfg.task_feature_lengths) == set(converter.TASK_FEATURES)
  assert task_name in seqio.TaskRegistry.names()
  assert args["model_dir"] == "/tmp/unused"
  assert args["checkpoint_cfg"].restore.path == "/ckpt/checkpoint_1000000"


@pytest.mark.parametrize("path", FINETUNE_FILES)
def test_finetune_file_binds_t5x_train(path):
  task = {
    "runs/finetune_msmarco.gin": "msmarco_passage_ranking",
    "runs/finetune_qna21.gin": "msmarco_qna21_ranking",
  }[path]
  with _gin_scope():
    args = _train_args(
      ["models/encdec/small.gin", path, "losses/listmle.gin"],
      [
        "MODEL_DIR = '/tmp/unused'",
        "INITIAL_CHECKPOINT_PATH = '/ckpt/checkpoint_1000000'",
      ],
    )
  _check_finetune(args, task)
  assert args["total_steps"] > 1_000_000  # counts the pre-training steps


def test_finetune_loss_swaps_with_one_flag():
  with _gin_scope():
    values = _macros(
      ["models/encdec/small.gin", "runs/finetune_msmarco.gin"],
      ["LOSS_FN"],
      [
        "MODEL_DIR = '/tmp/unused'",
        "INITIAL_CHECKPOINT_PATH = None",
        "LOSS_FN = @t5rank.ranking.losses.pairwise_logistic_loss",
      ],
    )
  assert values["LOSS_FN"].__name__ == "pairwise_logistic_loss"


@pytest.mark.parametrize("head", sorted(HEADS))
def test_finetune_runs_with_either_head(head):
  with _gin_scope():
    args = _train_args(
      [f"models/{head}/base.gin", "runs/finetune_msmarco.gin"],
      ["MODEL_DIR = '/tmp/unused'", "INITIAL_CHECKPOINT_PATH = None"],
    )
  assert isinstance(args["model"], HEADS[head])


@pytest.mark.parametrize(
  "path,num_partitions,submesh",
  [
    ("meshes/data_parallel.gin", None, (1, 1, 1, 1)),
    ("meshes/data_model.gin", 2, None),
    ("meshes/tpu_v4.gin", 4, None),
    ("meshes/tpu_v5e.gin", None, (2, 2, 1, 1)),
  ],
)
def test_mesh_file_sets_model_partitions(path, num_partitions, submesh):
  with _gin_scope():
    args = _train_args(
      ["models/encdec/small.gin", "runs/finetune_msmarco.gin", path],
      ["MODEL_DIR = '/tmp/unused'", "INITIAL_CHECKPOINT_PATH = None"],
    )
  partitioner = args["partitioner"]
  assert isinstance(partitioner, partitioning.PjitPartitioner)
  assert partitioner._num_partitions == num_partitions  # pylint: disable=protected-access
  assert partitioner._model_parallel_submesh == submesh  # pylint: disable=protected-access


@pytest.mark.parametrize("head", sorted(HEADS))
def test_packed_run_file_switches_training_to_packed_converter(head):
  with _gin_scope():
    args = _train_args(
      [
        f"models/{head}/small.gin",
        "runs/finetune_msmarco.gin",
        "runs/packed.gin",
      ],
      ["MODEL_DIR = '/tmp/unused'", "INITIAL_CHECKPOINT_PATH = None"],
    )
  assert args["train_dataset_cfg"].pack is True
  assert args["infer_eval_dataset_cfg"].pack is False
  converter = args["model"].FEATURE_CONVERTER_CLS
  assert "Packed" in getattr(converter, "__name__", repr(converter))


def test_eval_file_binds_t5x_evaluate():
  with _gin_scope():
    args = _eval_args(
      ["models/encdec/small.gin", "runs/eval.gin"],
      [
        "MIXTURE_OR_TASK_NAME = 'msmarco_passage_ranking'",
        "CHECKPOINT_PATH = '/ckpt/checkpoint_1050000'",
        "EVAL_OUTPUT_DIR = '/tmp/unused'",
      ],
    )
  assert isinstance(args["model"], t5rank.models.RankingEncDecModel)
  assert args["dataset_cfg"].split == "validation"
  assert args["dataset_cfg"].pack is False
  assert args["restore_checkpoint_cfg"].path == "/ckpt/checkpoint_1050000"


@pytest.mark.parametrize("head", HEADS)
def test_rerank_file_binds_model_checkpoint_and_packing(head):
  import t5rank.rerank  # pylint: disable=g-import-not-at-top

  with _gin_scope():
    _parse(
      [f"models/{head}/small.gin", "runs/rerank.gin"],
      ["CHECKPOINT_PATH = '/ckpt/checkpoint_7'", "PACK = False"],
    )
    config = gin.get_configurable(t5rank.rerank.PackingConfig)()
    captured = {}
    rerank_fn = gin.get_configurable(t5rank.rerank.rerank)
    try:
      rerank_fn(
        collection="c", queries="q", run="r", output="o", partitioner=None
      )
    except FileNotFoundError as e:  # the checkpoint is not there
      captured["error"] = str(e)
  assert "checkpoint_path='/ckpt/checkpoint_7'" in captured["error"]
  assert config.pack is False and config.input_length == 256


def test_demo_files_bind_tiny_model_over_the_demo_vocabulary():
  with _gin_scope():
    train_args = _train_args(["demo/train.gin"], ["MODEL_DIR = '/tmp/unused'"])
  with _gin_scope():
    eval_args = _eval_args(
      ["demo/eval.gin"],
      [
        "CHECKPOINT_PATH = '/tmp/unused/checkpoint_400'",
        "EVAL_OUTPUT_DIR = '/tmp/unused/eval'",
      ],
    )
  with _gin_scope():
    model_only = _macros(["demo/model.gin"], ["MODEL"])["MODEL"]
  for model in (train_args["model"], eval_args["model"], model_only):
    assert isinstance(model, t5rank.models.RankingEncDecModel)
    assert model.input_vocabulary == demo.vocabulary()
    assert model.output_vocabulary == demo.vocabulary()
    assert model.module.config.vocab_size >= demo.vocabulary().vocab_size
    assert model.module.config.num_encoder_layers <= 2
  assert train_args["train_dataset_cfg"].mixture_or_task_name == "t5rank_demo"
  assert eval_args["dataset_cfg"].mixture_or_task_name == "t5rank_demo"
  assert train_args["checkpoint_cfg"].restore.path is None
  assert "t5rank_demo" in seqio.TaskRegistry.names()


def _public_functions(module):
  return {
    f"{module.__name__}.{name}"
    for name, fn in vars(module).items()
    if inspect.isfunction(fn)
    and not name.startswith("_")
    and fn.__module__ == module.__name__
  }


def test_every_ranking_function_can_be_named_by_a_flag():
  """losses/_names.gin lists each public loss, metric, t12n and lambda weight."""
  # pylint: disable=g-import-not-at-top
  from t5rank.ranking import lambdaweights
  from t5rank.ranking import losses
  from t5rank.ranking import metrics
  from t5rank.ranking import t12n

  # pylint: enable=g-import-not-at-top
  expected = set()
  for module in (losses, metrics, t12n, lambdaweights):
    expected |= _public_functions(module)
  expected -= {"t5rank.ranking.t12n.neuralsort_permutation"}  # not a loss part
  with open(os.path.join(GIN_DIR, "losses", "_names.gin")) as f:
    listed = {
      line.strip().strip("@,") for line in f if line.strip().startswith("@")
    }
  assert listed == expected
