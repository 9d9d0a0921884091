"""Tests of the seqio tasks in `t5rank.tasks`, end to end to converted batches.

The QnA task reads real TFDS records: the test defines a TFDS builder with the
feature layout TFDS gives ``huggingface:ms_marco/v2.1`` (strings as object
scalars, ``query_id`` int32, ``passages`` a sequence of
``{is_selected, passage_text, url}``), prepares a few records into a temporary
TFDS directory and registers the QnA task on it through the same
`register_msmarco_qna21_ranking` (hence the same `seqio.TfdsDataSource` and
preprocessors) as the real task.
"""

import importlib
import json
import os

import numpy as np
import pytest
import seqio
import t5rank.tasks
from t5rank.tasks import common
import tensorflow as tf
import tensorflow_datasets as tfds

from t5rank.data import feature_converters
from t5rank.data import preprocessors

SPM_PATH = "/work/shared/data/t5_spiece.model"
needs_spm = pytest.mark.skipif(
  not os.path.exists(SPM_PATH), reason="T5's SentencePiece model is absent"
)


def _lengths(list_size, tokens):
  return {
    "inputs": (list_size, tokens),
    "targets": (list_size, 1),
    "label": (list_size,),
    "mask": (list_size,),
  }


def _batches(task, lengths, split, converter_cls, batch_size, **kwargs):
  return seqio.get_dataset(
    task,
    task_feature_lengths=lengths,
    dataset_split=split,
    shuffle=False,
    num_epochs=1,
    feature_converter=converter_cls(pack=False),
    batch_size=batch_size,
    **kwargs,
  )


def _rows(ragged):
  """Rows of a ragged feature as lists (tf.RaggedTensor or its numpy form)."""
  if hasattr(ragged, "to_list"):
    return ragged.to_list()
  return [[int(i) for i in row] for row in ragged]


def _item_text(vocab, ids):
  ids = [int(i) for i in ids]
  assert ids[-1] == vocab.eos_id or ids[-1] == 0
  return vocab.decode(ids)


# ----------------------------------------------------------------- registry
def test_tasks_are_registered_on_import_without_reading_data():
  for name in (
    "msmarco_passage_ranking",
    "msmarco_qna21_ranking",
    "t5rank_demo",
  ):
    task = seqio.get_mixture_or_task(name)
    assert set(task.output_features) == {"inputs", "targets", "label", "mask"}
    assert task.metric_fns and task.postprocess_fn is not None
  qna = seqio.get_mixture_or_task("msmarco_qna21_ranking")
  assert isinstance(qna.source, seqio.TfdsDataSource)
  assert qna.source.tfds_dataset.name == "huggingface:ms_marco/v2.1"
  assert isinstance(
    seqio.get_mixture_or_task("t5rank_demo")
    .output_features["inputs"]
    .vocabulary,
    seqio.ByteVocabulary,
  )


def test_reimporting_tasks_replaces_them_without_error(monkeypatch):
  monkeypatch.setenv("T5RANK_SPM_PATH", "/some/where/spiece.model")
  importlib.reload(t5rank.tasks)
  vocab = (
    seqio.get_mixture_or_task("msmarco_passage_ranking")
    .output_features["inputs"]
    .vocabulary
  )
  assert vocab.sentencepiece_model_file == "/some/where/spiece.model"
  monkeypatch.delenv("T5RANK_SPM_PATH")
  importlib.reload(t5rank.tasks)
  vocab = (
    seqio.get_mixture_or_task("msmarco_passage_ranking")
    .output_features["inputs"]
    .vocabulary
  )
  assert vocab.sentencepiece_model_file == common.DEFAULT_SPM_PATH


def test_passage_task_without_a_directory_says_how_to_set_one(monkeypatch):
  monkeypatch.delenv("T5RANK_MSMARCO_DIR", raising=False)
  name = t5rank.tasks.register_msmarco_passage_ranking(
    name="t5rank_test_no_dir", vocabulary=seqio.ByteVocabulary()
  )
  try:
    task = seqio.get_mixture_or_task(name)
    with pytest.raises(Exception, match="T5RANK_MSMARCO_DIR"):
      next(
        iter(task.get_dataset(_lengths(4, 16), split="train", shuffle=False))
      )
  finally:
    seqio.TaskRegistry.remove(name)


# --------------------------------------------------------------------- demo
def test_demo_task_gives_padded_byte_batches_with_labelled_lists():
  lengths = _lengths(8, 96)
  batch = next(
    iter(
      _batches(
        "t5rank_demo",
        lengths,
        "train",
        feature_converters.RankingEncDecFeatureConverter,
        4,
      )
    )
  )
  assert batch["encoder_input_tokens"].shape == (4, 8, 96)
  assert batch["decoder_target_tokens"].numpy().tolist() == [[[258]] * 8] * 4
  assert batch["mask"].numpy().all()
  labels = batch["label"].numpy()
  assert set(np.unique(labels)) <= {0.0, 1.0, 2.0}
  assert (labels.max(axis=1) >= 1).all()  # training lists keep a positive
  vocab = seqio.ByteVocabulary()
  text = _item_text(vocab, batch["encoder_input_tokens"][0, 0].numpy())
  assert text.startswith("Query: ") and " Document: " in text


def test_demo_validation_lists_keep_ids_aligned_with_items():
  task = seqio.get_mixture_or_task("t5rank_demo")
  ex = next(
    iter(task.get_dataset(_lengths(8, 512), split="validation", shuffle=False))
  )
  from t5rank.data import demo  # pylint: disable=g-import-not-at-top
  from t5rank.data import formats  # pylint: disable=g-import-not-at-top

  collection = formats.read_collection(
    os.path.join(demo.demo_dir(), demo.DEMO_FILES.collection)
  )
  vocab = seqio.ByteVocabulary()
  for pid, ids in zip(ex["passage_ids"].numpy(), _rows(ex["inputs"])):
    assert _item_text(vocab, ids).endswith(
      " Document: " + collection[pid.decode()]
    )


def test_demo_task_declares_its_true_number_of_lists():
  task = seqio.get_mixture_or_task("t5rank_demo")
  for split in ("train", "validation"):
    count = sum(1 for _ in task.source.get_dataset(split, shuffle=False))
    assert task.num_input_examples(split) == count


def test_demo_tune_split_evaluates_held_out_training_queries_and_trains_without_them():
  from t5rank import tasks  # pylint: disable=g-import-not-at-top
  from t5rank.data import demo  # pylint: disable=g-import-not-at-top
  from t5rank.data import formats  # pylint: disable=g-import-not-at-top

  def query_ids(task_name, split):
    source = seqio.get_mixture_or_task(task_name).source
    ds = source.get_dataset(split, shuffle=False).as_numpy_iterator()
    return [ex["query_id"].decode() for ex in ds]

  name = tasks.register_t5rank_demo(
    name="t5rank_demo_tune", validation_split="tune", eval_list_size=30
  )
  try:
    tune = formats.read_queries(
      os.path.join(demo.demo_dir(), demo.DEMO_FILES.split("tune").queries)
    )
    train = formats.read_queries(
      os.path.join(demo.demo_dir(), demo.DEMO_FILES.split("train").queries)
    )
    assert len(tune) == demo.NUM_TUNE_QUERIES and set(tune) <= set(train)
    validation, training = (
      query_ids(name, "validation"),
      query_ids(name, "train"),
    )
    assert sorted(validation) == sorted(tune)
    assert not set(training) & set(tune)
    assert len(training) == len(train) - len(tune)
    task = seqio.get_mixture_or_task(name)
    assert task.num_input_examples("train") == len(training)
    assert task.num_input_examples("validation") == len(tune)
    # Its metric fn's judged queries are the tune split's.
    (metric_fn,) = task.score_metric_fns
    counts = metric_fn([], [])
    assert counts["num_judged_queries"] == len(tune)
    assert counts["num_judged_without_candidates"] == len(tune)
  finally:
    seqio.TaskRegistry.remove(name)


def test_demo_tune_split_name_is_checked():
  from t5rank import tasks  # pylint: disable=g-import-not-at-top

  with pytest.raises(ValueError, match="validation_split='test'"):
    tasks.register_t5rank_demo(name="t5rank_demo_x", validation_split="test")


def test_list_source_shards_are_disjoint_and_cover_the_split():
  source = seqio.get_mixture_or_task("t5rank_demo").source
  ids = []
  for index in range(3):
    ds = source.get_dataset(
      "validation", shuffle=False, shard_info=seqio.ShardInfo(index, 3)
    )
    ids.append([ex["query_id"] for ex in ds.as_numpy_iterator()])
  everything = [
    ex["query_id"]
    for ex in source.get_dataset(
      "validation", shuffle=False
    ).as_numpy_iterator()
  ]
  assert sorted(sum(ids, [])) == sorted(everything)
  assert len(set(sum(ids, []))) == len(everything)


def test_demo_task_evaluates_through_postprocess_and_metric_fns():
  pytest.importorskip(
    "t5rank.ranking.metrics", reason="t5rank.ranking.metrics is not there yet"
  )
  lengths = _lengths(8, 64)
  evaluator = seqio.Evaluator(
    mixture_or_task_name="t5rank_demo",
    feature_converter=feature_converters.RankingEncDecFeatureConverter(
      pack=False
    ),
    eval_split="validation",
    sequence_length=lengths,
    num_examples=24,
  )

  def score_fn(ds):
    # A perfect ranker: the label itself (padding items score -1).
    return [
      (int(i), np.where(ex["mask"], ex["label"], -1.0))
      for i, ex in tfds.as_numpy(ds)
    ]

  metrics, _ = evaluator.evaluate(compute_metrics=True, score_fn=score_fn)
  result = metrics.result()["t5rank_demo"]
  task_ds = evaluator.cached_task_datasets["t5rank_demo"]
  labels = [ex["label"] for ex in tfds.as_numpy(task_ds)]
  with_relevant = np.sum([(y >= 1).any() for y in labels])
  # The means are over the 200 judged dev queries (the demo's qrels): the
  # 176 left out of these 24 examples have no candidates and score 0.
  assert result["num_judged_queries"] == 200
  assert result["num_judged_without_candidates"] == 200 - 24
  assert result["num_queries"] == 200
  assert result["mrr@10"] == pytest.approx(with_relevant / 200)
  # NDCG's ideal ordering holds every judged passage (3 per query), not only
  # those among the 8 candidates, so the perfect ranker stays below 1.
  assert 0 < result["ndcg@10"] < result["mrr@10"]


# ---------------------------------------------------- passage ranking files
def _write_msmarco(directory, *, num_train=6, num_dev=3, depth=8):
  """A tiny MS-MARCO directory: 1 relevant passage per query, BM25-like runs."""
  os.makedirs(directory, exist_ok=True)
  rng = np.random.default_rng(0)
  passages = {
    str(100 + i): f"passage number {i} about topic {i % 7}" for i in range(40)
  }
  files = {}

  def write(name, lines):
    with open(os.path.join(directory, name), "w", encoding="utf-8") as f:
      f.write("".join(line + "\n" for line in lines))

  write("collection.tsv", [f"{p}\t{t}" for p, t in passages.items()])
  for split, count, suffix in (
    ("train", num_train, "train"),
    ("dev", num_dev, "dev.small"),
  ):
    queries, qrels, run = [], [], []
    for q in range(count):
      qid = f"{split}{q}"
      pids = rng.choice(list(passages), size=depth, replace=False)
      queries.append(f"{qid}\twhich passage is about topic {q} ({split})")
      qrels.append(f"{qid}\t0\t{pids[q % depth]}\t1")
      run += [f"{qid}\t{pid}\t{r}" for r, pid in enumerate(pids, 1)]
      files[qid] = (pids.tolist(), pids[q % depth])
    write(f"queries.{suffix}.tsv", queries)
    write(f"qrels.{suffix}.tsv", qrels)
    write(f"run.{suffix}.tsv", run)
  return passages, files


@needs_spm
def test_passage_task_reads_msmarco_files_into_sentencepiece_batches(tmp_path):
  passages, truth = _write_msmarco(str(tmp_path))
  name = t5rank.tasks.register_msmarco_passage_ranking(
    str(tmp_path),
    name="t5rank_test_passages",
    list_size=4,
    eval_list_size=8,
    spm_path=SPM_PATH,
  )
  vocab = seqio.get_mixture_or_task(name).output_features["inputs"].vocabulary
  try:
    train = list(
      _batches(
        name,
        _lengths(4, 48),
        "train",
        feature_converters.RankingEncDecFeatureConverter,
        2,
      ).as_numpy_iterator()
    )
    assert len(train) == 3
    for batch in train:
      assert batch["encoder_input_tokens"].shape == (2, 4, 48)
      assert (batch["label"].sum(axis=1) == 1).all()
      assert batch["mask"].all()
      assert (batch["decoder_target_tokens"] == 32089).all()
    dev = list(
      _batches(
        name,
        _lengths(8, 48),
        "validation",
        feature_converters.RankingEncoderFeatureConverter,
        1,
      ).as_numpy_iterator()
    )
    assert len(dev) == 3
    assert sorted(dev[0]) == ["encoder_input_tokens", "label", "mask"]
    task_ds = seqio.get_mixture_or_task(name).get_dataset(
      _lengths(8, 48), split="validation", shuffle=False
    )
    for ex in task_ds.as_numpy_iterator():
      qid = ex["query_id"].decode()
      pids, relevant = truth[qid]
      # Validation lists: the run's candidates in run order, labelled by qrels.
      assert [p.decode() for p in ex["passage_ids"]] == pids
      assert ex["label"].tolist() == [float(p == relevant) for p in pids]
      first = vocab.decode(_rows(ex["inputs"])[0])
      assert first == (
        f"Query: which passage is about topic "
        f"{int(qid[3:])} (dev) Document: {passages[pids[0]]}"
      )
  finally:
    seqio.TaskRegistry.remove(name)


def test_passage_task_reads_its_directory_from_env_and_list_size_from_args(
  tmp_path, monkeypatch
):
  _write_msmarco(str(tmp_path))
  monkeypatch.setenv("T5RANK_MSMARCO_DIR", str(tmp_path))
  monkeypatch.setenv("T5RANK_LIST_SIZE", "5")  # no longer read: gin only
  name = t5rank.tasks.register_msmarco_passage_ranking(
    name="t5rank_test_env_passages",
    list_size=3,
    vocabulary=seqio.ByteVocabulary(),
  )
  try:
    task = seqio.get_mixture_or_task(name)
    lists = list(
      task.get_dataset(None, split="train", shuffle=False).as_numpy_iterator()
    )
    assert len(lists) == 6
    assert all(len(ex["label"]) == 3 for ex in lists)
  finally:
    seqio.TaskRegistry.remove(name)


def test_long_validation_lists_are_chunked_and_metrics_join_them(tmp_path):
  pytest.importorskip(
    "t5rank.ranking.metrics", reason="t5rank.ranking.metrics is not there yet"
  )
  from t5rank.data import metric_fns  # pylint: disable=g-import-not-at-top

  _, truth = _write_msmarco(str(tmp_path))
  name = t5rank.tasks.register_msmarco_passage_ranking(
    str(tmp_path),
    name="t5rank_test_chunks",
    eval_list_size=8,
    eval_chunk_size=3,
    vocabulary=seqio.ByteVocabulary(),
  )
  try:
    task = seqio.get_mixture_or_task(name)
    examples = list(
      task.get_dataset(
        _lengths(3, 32), split="validation", shuffle=False
      ).as_numpy_iterator()
    )
    assert [len(ex["label"]) for ex in examples] == [3, 3, 2] * 3
    targets = [
      task.postprocess_fn("", example=ex, is_target=True) for ex in examples
    ]
    # Score by run order (8 - rank): the relevant passage of query q sits at
    # rank q % 8 + 1 of its 8 candidates, spread over its 3 examples.
    scores = []
    for t in targets:
      pids = truth[t["query_id"]][0]
      scores.append(
        [8.0 - pids.index(p) for p in t["passage_ids"]]
        + [0.0] * (3 - len(t["passage_ids"]))
      )
    out = metric_fns.ranking_metrics(targets, np.array(scores))
    assert out["num_queries"] == 3
    assert out["mrr@10"] == pytest.approx(
      np.mean([1 / (q % 8 + 1) for q in range(3)])
    )
    # The task's own metric fn reads the dev qrels: a judged query whose
    # examples are missing still counts, with 0.
    kept = [i for i, t in enumerate(targets) if t["query_id"] != "dev0"]
    (task_fn,) = task.score_metric_fns
    out = task_fn([targets[i] for i in kept], np.array(scores)[kept])
    assert out["num_judged_without_candidates"] == 1
    assert out["num_queries"] == 3
    assert out["mrr@10"] == pytest.approx(
      np.sum([1 / (q % 8 + 1) for q in range(1, 3)]) / 3
    )
  finally:
    seqio.TaskRegistry.remove(name)


# ------------------------------------------------------------ QnA over TFDS
QNA_RECORDS = [
  {
    "query": f"question {q}",
    "query_id": 1000 + q,
    "query_type": "DESC",
    "answers": [f"answer {q}"],
    "wellFormedAnswers": [],
    "passages": {
      "is_selected": [int(i == q % 5) for i in range(5 + q % 3)],
      "passage_text": [f"text {q}.{i}" for i in range(5 + q % 3)],
      "url": [f"http://u/{q}/{i}" for i in range(5 + q % 3)],
    },
  }
  for q in range(6)
]


class T5rankQnaRecords(tfds.core.GeneratorBasedBuilder):
  """Records with the features TFDS gives `huggingface:ms_marco/v2.1`."""

  VERSION = tfds.core.Version("1.0.0")

  def _info(self):
    text = tfds.features.Scalar(dtype=np.object_)
    return tfds.core.DatasetInfo(
      builder=self,
      features=tfds.features.FeaturesDict(
        {
          "answers": tfds.features.Sequence(text),
          "passages": tfds.features.Sequence(
            {
              "is_selected": tfds.features.Scalar(dtype=np.int32),
              "passage_text": text,
              "url": text,
            }
          ),
          "query": text,
          "query_id": tfds.features.Scalar(dtype=np.int32),
          "query_type": text,
          "wellFormedAnswers": tfds.features.Sequence(text),
        }
      ),
    )

  def _split_generators(self, dl_manager):
    del dl_manager
    return {
      "train": self._generate_examples(QNA_RECORDS[:4]),
      "validation": self._generate_examples(QNA_RECORDS[4:]),
    }

  def _generate_examples(self, records):
    for record in records:
      yield record["query_id"], record


def test_qna_task_turns_tfds_records_into_ranking_batches(tmp_path):
  builder = T5rankQnaRecords(data_dir=str(tmp_path))
  builder.download_and_prepare()
  name = t5rank.tasks.register_msmarco_qna21_ranking(
    name="t5rank_test_qna",
    tfds_name=f"{builder.name}:1.0.0",
    tfds_data_dir=str(tmp_path),
    vocabulary=seqio.ByteVocabulary(),
    seed=5,
  )
  try:
    task = seqio.get_mixture_or_task(name)
    examples = list(
      task.get_dataset(
        _lengths(6, 64), split="train", shuffle=False
      ).as_numpy_iterator()
    )
    assert len(examples) == 4
    by_qid = {str(r["query_id"]): r for r in QNA_RECORDS}
    vocab = seqio.ByteVocabulary()
    orders = []
    for ex in examples:
      record = by_qid[ex["query_id"].decode()]
      positions = [int(p.decode().split("-")[1]) for p in ex["passage_ids"]]
      n = len(record["passages"]["passage_text"])
      assert len(positions) == min(n, 6)
      assert ex["label"].tolist() == [
        float(record["passages"]["is_selected"][i]) for i in positions
      ]
      for i, ids in zip(positions, _rows(ex["inputs"])):
        assert vocab.decode(ids) == (
          f"Query: {record['query']} Document: "
          f"{record['passages']['passage_text'][i]}"
        )
      orders.append(positions)
    assert any(o != sorted(o) for o in orders)  # shuffled per query
    again = [
      [p for p in ex["passage_ids"]]
      for ex in task.get_dataset(
        _lengths(6, 64), split="train", shuffle=False
      ).as_numpy_iterator()
    ]
    assert again == [[p for p in ex["passage_ids"]] for ex in examples]
    batch = next(
      iter(
        _batches(
          name,
          _lengths(6, 64),
          "validation",
          feature_converters.RankingEncDecFeatureConverter,
          2,
        )
      )
    )
    assert batch["encoder_input_tokens"].shape == (2, 6, 64)
    assert sorted(batch["mask"].numpy().sum(axis=1).tolist()) == sorted(
      min(len(r["passages"]["passage_text"]), 6) for r in QNA_RECORDS[4:]
    )
  finally:
    seqio.TaskRegistry.remove(name)


def test_qna_jsonl_task_reads_json_lines(tmp_path):
  path = tmp_path / "dev.jsonl"
  path.write_text("".join(json.dumps(r) + "\n" for r in QNA_RECORDS))
  name = t5rank.tasks.register_msmarco_qna21_jsonl(
    {"validation": str(path)},
    name="t5rank_test_qna_jsonl",
    vocabulary=seqio.ByteVocabulary(),
  )
  try:
    batch = next(
      iter(
        _batches(
          name,
          _lengths(8, 32),
          "validation",
          feature_converters.RankingEncDecFeatureConverter,
          6,
        )
      )
    )
    assert batch["mask"].numpy().sum(axis=1).tolist() == [
      len(r["passages"]["passage_text"]) for r in QNA_RECORDS
    ]
    assert batch["label"].numpy().sum(axis=1).tolist() == [1.0] * 6
  finally:
    seqio.TaskRegistry.remove(name)


def test_score_token_id_of_each_vocabulary_fills_the_targets():
  assert preprocessors.BYTE_SCORE_TOKEN_ID == 258
  task = seqio.get_mixture_or_task("t5rank_demo")
  ex = next(
    iter(task.get_dataset(_lengths(8, 16), split="validation", shuffle=False))
  )
  assert ex["targets"].numpy().tolist() == [[258]] * 8
  assert ex["targets_pretokenized"].numpy() == b"258"
  assert isinstance(ex["inputs"], tf.RaggedTensor)


# ------------------------------------------------ inputs that cannot train
def test_list_longer_than_task_feature_length_is_an_error_not_a_cut():
  # The demo builds training lists of 8 items; L=4 would cut half of them.
  task = seqio.get_mixture_or_task("t5rank_demo")
  dataset = task.get_dataset(_lengths(4, 32), split="train", shuffle=False)
  with pytest.raises(tf.errors.InvalidArgumentError) as excinfo:
    next(iter(dataset))
  message = str(excinfo.value)
  assert "L=4" in message and "LIST_SIZE" in message
  assert "TASK_FEATURE_LENGTHS" in message and "[8]" in message


def _register_on(data_dir, name, **kwargs):
  return t5rank.tasks.register_msmarco_passage_ranking(
    str(data_dir),
    name=name,
    list_size=4,
    vocabulary=seqio.ByteVocabulary(),
    **kwargs,
  )


@pytest.mark.parametrize(
  "broken,message",
  [
    ({"collection.tsv": ""}, "collection.tsv: no passages"),
    ({"qrels.train.tsv": "train0 0 nope 1\n"}, "1 unknown_pids"),
    ({"run.train.tsv": "other\t1\t1\n"}, "1 unknown_qids"),
  ],
)
def test_untrainable_training_files_fail_when_the_dataset_is_made(
  tmp_path, broken, message
):
  from t5rank.data import lists  # pylint: disable=g-import-not-at-top

  _write_msmarco(str(tmp_path))
  for file_name, content in broken.items():
    (tmp_path / file_name).write_text(content)
  name = _register_on(tmp_path, "t5rank_test_untrainable")
  try:
    task = seqio.get_mixture_or_task(name)
    # Raised by get_dataset itself, in Python: before T5X iterates anything.
    with pytest.raises(lists.NoTrainingListsError, match=message) as excinfo:
      task.get_dataset(_lengths(4, 32), split="train", shuffle=False)
    assert str(tmp_path) in str(excinfo.value)
  finally:
    seqio.TaskRegistry.remove(name)


def test_empty_validation_split_fails_when_the_dataset_is_made(tmp_path):
  _write_msmarco(str(tmp_path))
  (tmp_path / "run.dev.small.tsv").write_text("")
  name = _register_on(tmp_path, "t5rank_test_empty_dev")
  try:
    with pytest.raises(ValueError, match="split='validation' has no list") as e:
      seqio.get_mixture_or_task(name).get_dataset(
        _lengths(4, 32), split="validation", shuffle=False
      )
    assert "run.dev.small.tsv: 0 rows" in str(e.value)
  finally:
    seqio.TaskRegistry.remove(name)


def test_on_duplicate_keep_first_is_accepted_by_the_task_from_gin(tmp_path):
  import gin  # pylint: disable=g-import-not-at-top

  _write_msmarco(str(tmp_path))
  with open(tmp_path / "collection.tsv", "a") as f:
    f.write("100\tthe same pid again\n")
  gin.clear_config()
  try:
    gin.parse_config(f"""
from __gin__ import dynamic_registration
import seqio
import t5rank.tasks
t5rank.tasks.register_msmarco_passage_ranking:
  data_dir = '{tmp_path}'
  name = 't5rank_test_duplicates'
  list_size = 4
  vocabulary = @seqio.ByteVocabulary()
  on_duplicate = 'keep_first'
""")
    name = gin.get_configurable(t5rank.tasks.register_msmarco_passage_ranking)()
    lists = list(
      seqio.get_mixture_or_task(name)
      .get_dataset(_lengths(4, 32), split="train", shuffle=False)
      .as_numpy_iterator()
    )
    assert len(lists) == 6
  finally:
    gin.clear_config()
    seqio.TaskRegistry.remove("t5rank_test_duplicates")
