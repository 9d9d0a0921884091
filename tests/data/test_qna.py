"""Tests for t5rank/data/qna.py: MS-MARCO QnA v2.1 records -> list examples."""

import doctest
import gzip
import json

import numpy as np
import pytest

from t5rank.data import formats
from t5rank.data import lists
from t5rank.data import qna


def _record(query_id=1, selected=(0, 1, 0), query="what is x"):
  n = len(selected)
  return {
    "query": query,
    "query_id": query_id,
    "query_type": "DESCRIPTION",
    "answers": ["x"],
    "wellFormedAnswers": [],
    "passages": {
      "is_selected": list(selected),
      "passage_text": [f"passage {query_id}.{i}" for i in range(n)],
      "url": [f"http://u/{i}" for i in range(n)],
    },
  }


def _write(tmp_path, lines):
  path = tmp_path / "qna.jsonl"
  path.write_bytes("".join(l + "\n" for l in lines).encode("utf-8"))
  return str(path)


def test_module_doctests_pass():
  assert doctest.testmod(qna).failed == 0


def test_jsonl_records_become_list_examples_labelled_by_is_selected(tmp_path):
  path = _write(
    tmp_path, [json.dumps(_record(1)), "", json.dumps(_record(2, (1, 0)))]
  )
  report = formats.ReadReport(path, "qna")
  examples = list(qna.read_qna_jsonl(path, report=report))
  assert [e["query_id"] for e in examples] == ["1", "2"]
  assert examples[0]["passage_ids"] == ["1-0", "1-1", "1-2"]
  assert examples[0]["passages"] == [
    "passage 1.0",
    "passage 1.1",
    "passage 1.2",
  ]
  np.testing.assert_array_equal(
    examples[0]["label"], np.array([0, 1, 0], np.float32)
  )
  assert examples[1]["label"].dtype == np.float32
  assert (report.rows, report.blank_lines) == (2, 1)


def test_tfds_style_record_with_bytes_and_arrays_is_decoded():
  record = {
    "query": np.bytes_(b"caf\xc3\xa9?"),
    "query_id": np.int32(42),
    "passages": {
      "is_selected": np.array([1, 0], np.int32),
      "passage_text": np.array([b"one", b"two"], dtype=object),
      "url": np.array([b"a", b"b"], dtype=object),
    },
  }
  example = qna.qna_list_example(record)
  assert example["query"] == "café?" and example["query_id"] == "42"
  assert example["passages"] == ["one", "two"]
  assert example["label"].tolist() == [1.0, 0.0]


@pytest.mark.parametrize(
  "mutate,message",
  [
    (lambda r: r.pop("query"), "missing field 'query'"),
    (
      lambda r: r["passages"].pop("is_selected"),
      "missing field 'passages.is_selected'",
    ),
    (lambda r: r["passages"]["is_selected"].append(0), "has 4 entries but"),
    (
      lambda r: r["passages"]["url"].pop(),
      "url and passages.passage_text differ",
    ),
    (
      lambda r: r["passages"]["is_selected"].__setitem__(0, 2),
      r"is_selected\[0\]=2",
    ),
    (
      lambda r: r.__setitem__("passages", [{"passage_text": "x"}]),
      "parallel lists",
    ),
    (lambda r: r.__setitem__("query", " "), "empty query"),
    (
      lambda r: r["passages"].__setitem__("passage_text", [1, 2, 3]),
      r"passage_text\[0\]",
    ),
  ],
)
def test_bad_record_names_file_line_and_field(tmp_path, mutate, message):
  bad = _record(2)
  mutate(bad)
  path = _write(tmp_path, [json.dumps(_record(1)), json.dumps(bad)])
  with pytest.raises(formats.FormatError, match=message) as excinfo:
    list(qna.read_qna_jsonl(path))
  assert str(excinfo.value).startswith(f"{path}:2: ")


def test_invalid_json_names_file_and_line(tmp_path):
  path = _write(tmp_path, [json.dumps(_record(1)), '{"query": '])
  with pytest.raises(formats.FormatError, match="invalid JSON") as excinfo:
    list(qna.read_qna_jsonl(path))
  assert excinfo.value.line == 2


def test_invalid_utf8_line_raises_or_is_replaced(tmp_path):
  path = tmp_path / "qna.jsonl"
  path.write_bytes(
    json.dumps(_record(1))
    .replace("what", "wh\udcff", 1)
    .encode("utf-8", "surrogateescape")
    + b"\r\n"
  )
  with pytest.raises(formats.FormatError, match="invalid UTF-8") as excinfo:
    list(qna.read_qna_jsonl(str(path)))
  assert excinfo.value.line == 1
  (example,) = qna.read_qna_jsonl(str(path), encoding_errors="replace")
  assert example["query"].startswith("wh\ufffd")


def test_empty_file_yields_nothing(tmp_path):
  assert list(qna.read_qna_jsonl(_write(tmp_path, []))) == []


def test_training_lists_drop_queries_without_selected_passage_and_keep_positives():
  examples = [
    qna.qna_list_example(_record(i, selected))
    for i, selected in enumerate([(0, 0, 1, 0, 0), (0, 0, 0), (1, 0, 0, 0, 1)])
  ]
  built = qna.qna_lists(examples, list_size=2, seed=3)
  out = list(built)
  assert [e["query_id"] for e in out] == ["0", "2"]
  assert all(len(e["label"]) == 2 and e["label"].max() == 1.0 for e in out)
  assert built.report.dropped_without_positive == 1


def test_eval_lists_keep_every_query_in_record_order():
  examples = [
    qna.qna_list_example(_record(i, selected))
    for i, selected in enumerate([(0, 1), (0, 0, 0)])
  ]
  out = list(qna.qna_lists(examples, training=False))
  assert [e["passage_ids"] for e in out] == [
    ["0-0", "0-1"],
    ["1-0", "1-1", "1-2"],
  ]
  assert out[1]["label"].tolist() == [0.0, 0.0, 0.0]


def test_qna_lists_are_seed_deterministic():
  examples = [
    qna.qna_list_example(_record(i, (0, 1, 0, 0, 0, 1))) for i in range(5)
  ]

  def ids(seed):
    return [
      e["passage_ids"] for e in qna.qna_lists(examples, list_size=4, seed=seed)
    ]

  assert ids(1) == ids(1)
  assert any(ids(1) != ids(s) for s in (2, 3, 4))


def test_training_records_without_an_unselected_passage_raise_with_counts():
  examples = [qna.qna_list_example(_record(i, (1, 1))) for i in range(3)]
  with pytest.raises(
    lists.NoTrainingListsError, match="has a negative"
  ) as excinfo:
    list(qna.qna_lists(examples))
  assert "3 lists from 3 queries" in str(excinfo.value)
  assert len(list(qna.qna_lists(examples, training=False))) == 3


def test_gzip_jsonl_file_is_read(tmp_path):
  path = tmp_path / "qna.jsonl.gz"
  with gzip.open(path, "wt", encoding="utf-8") as f:
    f.write(json.dumps(_record(7)) + "\n")
  (example,) = qna.read_qna_jsonl(str(path))
  assert example["query_id"] == "7"
