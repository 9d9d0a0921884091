"""Tests for t5rank/data/collection.py: the on-disk passage index."""

import doctest
import gzip
import os
import pickle

import numpy as np
import pytest

from t5rank.data import collection
from t5rank.data import formats


def _write(tmp_path, content: str | bytes, name="collection.tsv"):
  path = tmp_path / name
  path.write_bytes(
    content if isinstance(content, bytes) else content.encode("utf-8")
  )
  return str(path)


def test_module_doctests_pass():
  assert doctest.testmod(collection).failed == 0


def test_index_returns_the_same_passages_as_the_in_memory_reader(tmp_path):
  rng = np.random.default_rng(0)
  pids = rng.permutation(500)[:300]
  lines = [f"{pid}\tpassage {pid} ünï {'x' * int(pid % 7)}" for pid in pids]
  path = _write(tmp_path, "\r\n".join(lines) + "\r\n\n")
  expected = formats.read_collection(path)
  index = collection.PassageIndex(path)
  assert len(index) == len(expected)
  assert list(index) == list(expected)
  for pid, text in expected.items():
    assert index[pid] == text
  some = [str(p) for p in pids[::-7]]
  assert index.get_many(some) == [expected[p] for p in some]


def test_dense_integer_pids_and_string_pids_both_work(tmp_path):
  dense = collection.PassageIndex(
    _write(tmp_path, "0\ta\n1\tb\n2\tc\n", "dense.tsv")
  )
  assert (
    dense["2"] == "c"
    and "3" not in dense
    and "02" not in dense
    and "x" not in dense
  )
  named = collection.PassageIndex(
    _write(tmp_path, "D1\ta\nD02\tb\n7\tc\n", "named.tsv")
  )
  assert named["D02"] == "b" and named["7"] == "c" and "D2" not in named
  assert named.get("nope") is None


def test_unknown_pid_raises_key_error(tmp_path):
  index = collection.PassageIndex(_write(tmp_path, "5\ta\n9\tb\n"))
  with pytest.raises(KeyError):
    index["6"]  # pylint: disable=pointless-statement
  with pytest.raises(KeyError, match="'7'"):
    index.get_many(["5", "7"])


def test_index_is_cached_and_rebuilt_when_the_file_changes(tmp_path):
  path = _write(tmp_path, "1\told\n")
  index = collection.PassageIndex(path)
  assert os.path.isdir(path + ".t5rank-index")
  assert collection.PassageIndex(path)["1"] == "old"  # Loaded from the cache.
  with open(path, "w") as f:
    f.write("1\tnew text\n2\tmore\n")
  os.utime(path, ns=(1, 1))
  reopened = collection.PassageIndex(path)
  assert reopened["1"] == "new text" and len(reopened) == 2
  del index


def test_cache_dir_keeps_the_index_away_from_the_file(tmp_path):
  path = _write(tmp_path, "1\ta\n")
  cache = tmp_path / "cache"
  index = collection.PassageIndex(path, cache_dir=str(cache))
  assert index.index_dir.startswith(str(cache)) and os.listdir(cache)
  assert not os.path.exists(path + ".t5rank-index")


@pytest.mark.parametrize(
  "line,message",
  [
    ("no tab", "found no tab"),
    ("\ttext", "is empty"),
    ("8\t  ", "empty passage"),
  ],
)
def test_malformed_line_names_file_and_line(tmp_path, line, message):
  path = _write(tmp_path, f"1\ta\n\n{line}\n")
  with pytest.raises(formats.FormatError, match=message) as excinfo:
    collection.PassageIndex(path)
  assert str(excinfo.value).startswith(f"{os.path.abspath(path)}:3: ")


@pytest.mark.parametrize("pids", [("5", "6", "5"), ("a", "b", "a")])
def test_duplicate_pid_is_an_error_or_keeps_the_first(tmp_path, pids):
  path = _write(
    tmp_path, "".join(f"{p}\ttext {i}\n" for i, p in enumerate(pids))
  )
  with pytest.raises(
    formats.DuplicateIdError, match="first on line 1"
  ) as excinfo:
    collection.PassageIndex(path)
  assert excinfo.value.line == 3
  index = collection.PassageIndex(path, on_duplicate="keep_first")
  assert len(index) == 2 and index[pids[0]] == "text 0"


def test_invalid_utf8_deep_in_the_collection_stops_the_index_build(tmp_path):
  lines = [f"{i}\tpassage {i}".encode() for i in range(1000)]
  lines[876] = b"876\tbad \xfe byte"
  path = _write(tmp_path, b"\n".join(lines) + b"\n")
  with pytest.raises(formats.FormatError, match="invalid UTF-8") as excinfo:
    collection.PassageIndex(path)
  assert str(excinfo.value).startswith(f"{path}:877: ")
  assert not os.path.exists(
    path + ".t5rank-index"
  )  # Nothing half-validated kept.
  replaced = collection.PassageIndex(path, encoding_errors="replace")
  assert replaced["876"] == "bad \ufffd byte" and replaced["1"] == "passage 1"


def test_index_built_with_replace_is_validated_again_when_opened_strict(
  tmp_path,
):
  path = _write(tmp_path, b"1\tgood\n2\tbad \xfe\n")
  assert (
    collection.PassageIndex(path, encoding_errors="replace")["2"]
    == "bad \ufffd"
  )
  with pytest.raises(formats.FormatError, match="invalid UTF-8") as excinfo:
    collection.PassageIndex(path)
  assert excinfo.value.line == 2


def test_gzip_collection_is_indexed_from_a_decompressed_copy(tmp_path):
  text = "".join(f"{i}\tpassage {i} ünï\n" for i in range(300))
  path = str(tmp_path / "collection.tsv.gz")
  with gzip.open(path, "wt", encoding="utf-8") as f:
    f.write(text)
  index = collection.PassageIndex(path)
  assert len(index) == 300 and index["299"] == "passage 299 ünï"
  assert os.path.exists(os.path.join(index.index_dir, "passages.tsv"))
  again = collection.PassageIndex(path)  # Reopened from the index folder.
  assert again.get_many(["7", "0"]) == ["passage 7 ünï", "passage 0 ünï"]


def test_gzip_collection_errors_name_the_gz_file_and_line(tmp_path):
  path = str(tmp_path / "collection.tsv.gz")
  with gzip.open(path, "wb") as f:
    f.write(b"1\tok\n2 no tab\n")
  with pytest.raises(formats.FormatError, match="no tab") as excinfo:
    collection.PassageIndex(path)
  assert str(excinfo.value).startswith(f"{path}:2: ")
  assert not any(name != "collection.tsv.gz" for name in os.listdir(tmp_path))


def test_empty_collection_has_no_passages(tmp_path):
  index = collection.PassageIndex(_write(tmp_path, "\n"))
  assert len(index) == 0 and "0" not in index and list(index) == []


def test_sample_ids_draws_existing_pids_reproducibly(tmp_path):
  index = collection.PassageIndex(
    _write(tmp_path, "".join(f"{i * 3}\tt\n" for i in range(50)))
  )
  first = index.sample_ids(np.random.default_rng(1), 20)
  assert first == index.sample_ids(np.random.default_rng(1), 20)
  assert all(pid in index for pid in first)


def test_index_survives_pickling(tmp_path):
  index = collection.PassageIndex(_write(tmp_path, "1\ta\n2\tb\n"))
  assert index["1"] == "a"
  assert pickle.loads(pickle.dumps(index))["2"] == "b"


def test_rebuild_after_a_partial_index_directory(tmp_path):
  path = _write(tmp_path, "1\ta\n")
  os.makedirs(path + ".t5rank-index")  # A crash left an empty folder behind.
  assert collection.PassageIndex(path)["1"] == "a"
