"""gin/runs/packed.gin: the PACK_LISTS switch binds the packed converters.

Parsed as T5X's mains parse run files (t5rank's gin folder and T5X's package
folder on the search path), with a stand-in `__main__.train` that returns the
arguments gin built.
"""

import contextlib
import functools
import os
import sys
import types

import pytest

pytest.importorskip("t5x", reason="T5X is not installed; see README")

# pylint: disable=g-import-not-at-top,wrong-import-position
from t5x import gin_utils
from t5x import train as t5x_train

import gin
from t5rank import main
from t5rank.data import feature_converters
from t5rank.data import packing
import t5rank.models

# pylint: enable=g-import-not-at-top,wrong-import-position

GIN_DIR = main.gin_dir()
T5X_SEARCH_PATH = os.path.dirname(
  os.path.dirname(os.path.abspath(t5x_train.__file__))
)
TASK_LENGTHS = {
  "inputs": (8, 160),
  "targets": (8, 1),
  "label": (8,),
  "mask": (8,),
}


def _stand_in(fn):
  @functools.wraps(fn)
  def stand_in(**kwargs):
    return kwargs

  stand_in.__module__ = "__main__"
  return stand_in


_MAIN = types.ModuleType("__main__")
_MAIN.train = _stand_in(t5x_train.train)


@contextlib.contextmanager
def _train_args(files, bindings=()):
  """The arguments of T5X's train; gin's bindings hold inside the block."""
  gin.clear_config(clear_constants=True)
  real_main = sys.modules["__main__"]
  sys.modules["__main__"] = _MAIN
  try:
    gin_utils.parse_gin_flags(
      [GIN_DIR, T5X_SEARCH_PATH],
      list(files),
      list(bindings),
      finalize_config=False,
    )
    yield gin.get_configurable(_MAIN.train)()
  finally:
    sys.modules["__main__"] = real_main
    gin.clear_config(clear_constants=True)


DEMO = ["demo/train.gin", "runs/packed.gin"]
DEMO_BINDINGS = ["MODEL_DIR = '/tmp/unused'"]


def test_packed_file_selects_packed_converter_with_its_settings():
  with _train_args(
    DEMO, DEMO_BINDINGS + ["ROWS_PER_PACK = 7", "ROW_LENGTH = 320"]
  ) as args:
    model = args["model"]
    # T5X calls the class with its DatasetConfig's flags; gin adds the rest.
    train = model.FEATURE_CONVERTER_CLS(pack=True, use_custom_packing_ops=False)
    infer = model.FEATURE_CONVERTER_CLS(
      pack=False, use_custom_packing_ops=False
    )
  assert isinstance(model, t5rank.models.RankingEncDecModel)
  assert args["train_dataset_cfg"].pack is True
  assert args["infer_eval_dataset_cfg"].pack is False
  assert model.module.one_hot_embedding is False
  assert isinstance(train, packing.RankingPackedFeatureConverter)
  assert (train.lists_per_pack, train.num_rows, train.row_length) == (8, 7, 320)
  assert infer.lists_per_pack == 1 and infer.num_rows is None
  assert set(model.FEATURE_CONVERTER_CLS.TASK_FEATURES) == set(TASK_LENGTHS)


def test_pack_lists_false_restores_padded_converter_and_unpacked_data():
  with _train_args(DEMO, DEMO_BINDINGS + ["PACK_LISTS = False"]) as args:
    converter = args["model"].FEATURE_CONVERTER_CLS(pack=False)
  assert args["train_dataset_cfg"].pack is False
  assert isinstance(converter, feature_converters.RankingEncDecFeatureConverter)


def test_packed_file_selects_encoder_packed_converter_for_encoder_head():
  with _train_args(
    [
      "models/encoder/small.gin",
      "runs/finetune_msmarco.gin",
      "runs/packed.gin",
    ],
    [
      "MODEL_DIR = '/tmp/unused'",
      "INITIAL_CHECKPOINT_PATH = None",
      "ONE_HOT_EMBEDDING = True",
    ],
  ) as args:
    model = args["model"]
    converter = model.FEATURE_CONVERTER_CLS(pack=True)
  assert isinstance(model, t5rank.models.RankingEncoderModel)
  assert model.module.one_hot_embedding is True
  assert isinstance(converter, packing.RankingPackedEncoderFeatureConverter)
  assert "decoder_target_tokens" not in converter.MODEL_FEATURES
  assert args["train_dataset_cfg"].pack is True


def test_unpacked_runs_keep_padded_converter_and_one_hot_embedding():
  with _train_args(
    ["models/encdec/small.gin", "runs/finetune_msmarco.gin"],
    ["MODEL_DIR = '/tmp/unused'", "INITIAL_CHECKPOINT_PATH = None"],
  ) as args:
    model = args["model"]
  assert model.FEATURE_CONVERTER_CLS is (
    feature_converters.RankingEncDecFeatureConverter
  )
  assert model.module.one_hot_embedding is True
  assert args["train_dataset_cfg"].pack is False
