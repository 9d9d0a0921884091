"""Tests for t5rank/data/formats.py: every format, good and bad input."""

import doctest
import gzip
import logging

import numpy as np
import pytest

from t5rank.data import formats


def _write(tmp_path, name, content: str | bytes):
  path = tmp_path / name
  path.write_bytes(
    content if isinstance(content, bytes) else content.encode("utf-8")
  )
  return str(path)


def _error(excinfo, path, line):
  assert str(excinfo.value).startswith(f"{path}:{line}: "), str(excinfo.value)
  assert excinfo.value.path == path and excinfo.value.line == line


def test_module_doctests_pass():
  assert doctest.testmod(formats).failed == 0


# Collection and queries -------------------------------------------------------


def test_collection_reads_pid_text_pairs_in_file_order(tmp_path):
  path = _write(tmp_path, "c.tsv", "0\tfirst passage\n7\tsecond\twith a tab\n")
  collection = formats.read_collection(path)
  assert list(collection.items()) == [
    ("0", "first passage"),
    ("7", "second\twith a tab"),
  ]
  assert collection.report.rows == 2


def test_crlf_line_endings_and_bom_are_stripped(tmp_path):
  path = _write(tmp_path, "c.tsv", b"\xef\xbb\xbf1\tone\r\n2\ttwo\r\n")
  assert dict(formats.read_collection(path)) == {"1": "one", "2": "two"}


def test_blank_lines_are_skipped_and_counted(tmp_path):
  path = _write(tmp_path, "q.tsv", "\n1\tq one\n   \n\r\n2\tq two\n\n")
  queries = formats.read_queries(path)
  assert dict(queries) == {"1": "q one", "2": "q two"}
  assert queries.report.blank_lines == 4


def test_empty_file_reads_as_no_records_with_a_warning(tmp_path, caplog):
  path = _write(tmp_path, "q.tsv", "")
  with caplog.at_level(logging.WARNING):
    queries = formats.read_queries(path)
  assert dict(queries) == {} and queries.report.rows == 0
  assert "empty file" in caplog.text


@pytest.mark.parametrize(
  "line,message",
  [
    ("no tab here", "found no tab"),
    ("\tpassage", "is empty"),
    ("1 2\tpassage", "contains whitespace"),
    ("5\t   ", "empty passage"),
  ],
)
def test_malformed_collection_line_names_file_and_line(tmp_path, line, message):
  path = _write(tmp_path, "c.tsv", f"0\tgood\n\n{line}\n")
  with pytest.raises(formats.FormatError, match=message) as excinfo:
    formats.read_collection(path)
  _error(excinfo, path, 3)


def test_format_error_is_a_value_error():
  assert issubclass(formats.FormatError, ValueError)
  assert issubclass(formats.DuplicateIdError, formats.FormatError)
  assert issubclass(formats.UnknownIdError, formats.FormatError)


def test_invalid_utf8_raises_at_its_line(tmp_path):
  path = _write(tmp_path, "q.tsv", b"1\tok\n2\tbad \xff byte\n")
  with pytest.raises(formats.FormatError, match="invalid UTF-8") as excinfo:
    formats.read_queries(path)
  _error(excinfo, path, 2)


def test_invalid_utf8_is_replaced_and_counted_on_request(tmp_path):
  path = _write(tmp_path, "q.tsv", b"1\tok\n2\tbad \xff byte\n")
  queries = formats.read_queries(path, encoding_errors="replace")
  assert queries["2"] == "bad \ufffd byte"
  assert queries.report.replaced_utf8 == 1


def test_duplicate_id_is_an_error_naming_both_lines(tmp_path):
  path = _write(tmp_path, "q.tsv", "1\ta\n2\tb\n1\tc\n")
  with pytest.raises(
    formats.DuplicateIdError, match="first on line 1"
  ) as excinfo:
    formats.read_queries(path)
  _error(excinfo, path, 3)


def test_duplicate_id_keep_first_keeps_first_and_counts(tmp_path):
  path = _write(tmp_path, "c.tsv", "1\ta\n2\tb\n1\tc\n1\td\n")
  collection = formats.read_collection(path, on_duplicate="keep_first")
  assert dict(collection) == {"1": "a", "2": "b"}
  assert collection.report.duplicates == 2


def test_bad_option_value_names_the_argument(tmp_path):
  path = _write(tmp_path, "q.tsv", "1\ta\n")
  with pytest.raises(ValueError, match="on_duplicate='maybe'"):
    formats.read_queries(path, on_duplicate="maybe")


# Qrels --------------------------------------------------------------------------


def test_qrels_read_trec_form_with_tabs_or_spaces_and_graded_labels(tmp_path):
  path = _write(tmp_path, "qrels", "1\t0\t10\t1\n1 0 11 3\n2  Q0  12  0\n")
  qrels = formats.read_qrels(path)
  assert qrels == {"1": {"10": 1, "11": 3}, "2": {"12": 0}}


@pytest.mark.parametrize(
  "line,message",
  [
    ("1 0 10", "expected 4 whitespace-separated fields"),
    ("1 0 10 1 extra", "found 5"),
    ("1 0 10 yes", "relevance 'yes' is not an integer"),
  ],
)
def test_malformed_qrels_line_names_file_and_line(tmp_path, line, message):
  path = _write(tmp_path, "qrels", f"1 0 9 1\n{line}\n")
  with pytest.raises(formats.FormatError, match=message) as excinfo:
    formats.read_qrels(path)
  _error(excinfo, path, 2)


def test_qrels_unknown_ids_are_skipped_and_counted(tmp_path, caplog):
  path = _write(tmp_path, "qrels", "1 0 10 1\n9 0 10 1\n1 0 99 1\n1 0 11 1\n")
  with caplog.at_level(logging.WARNING):
    qrels = formats.read_qrels(path, known_qids={"1"}, known_pids={"10", "11"})
  assert qrels == {"1": {"10": 1, "11": 1}}
  assert (qrels.report.unknown_qids, qrels.report.unknown_pids) == (1, 1)
  assert qrels.report.skipped == 2
  assert "unknown_pids" in caplog.text


def test_qrels_unknown_pid_errors_on_request(tmp_path):
  path = _write(tmp_path, "qrels", "1 0 10 1\n1 0 99 1\n")
  with pytest.raises(
    formats.UnknownIdError, match="pid '99' is not in the collection"
  ) as excinfo:
    formats.read_qrels(path, known_pids={"10"}, on_unknown="error")
  _error(excinfo, path, 2)


def test_qrels_unknown_qid_errors_on_request(tmp_path):
  path = _write(tmp_path, "qrels", "5 0 10 1\n")
  with pytest.raises(
    formats.UnknownIdError, match="qid '5' is not a known query"
  ):
    formats.read_qrels(path, known_qids={"1"}, on_unknown="error")


def test_qrels_duplicate_pair_error_or_keep_first(tmp_path):
  path = _write(tmp_path, "qrels", "1 0 10 1\n1 0 10 2\n")
  with pytest.raises(formats.DuplicateIdError) as excinfo:
    formats.read_qrels(path)
  _error(excinfo, path, 2)
  qrels = formats.read_qrels(path, on_duplicate="keep_first")
  assert qrels == {"1": {"10": 1}} and qrels.report.duplicates == 1


def test_qrels_round_trip_through_writer(tmp_path):
  qrels = {"3": {"1": 2, "5": 0}, "1": {"2": 1}}
  path = str(tmp_path / "qrels")
  assert formats.write_qrels(path, qrels) == 3
  assert formats.read_qrels(path) == qrels


# Runs ---------------------------------------------------------------------------


def test_msmarco_run_is_ordered_by_rank_column(tmp_path):
  path = _write(tmp_path, "run", "1\t30\t3\n1\t10\t1\n1\t20\t2\n2\t5\t1\n")
  run = formats.read_run(path)
  assert dict(run) == {"1": ["10", "20", "30"], "2": ["5"]}
  assert run.num_rows == 4 and len(run) == 2


def test_trec_run_is_read_and_depth_uses_the_rank_column(tmp_path):
  path = _write(
    tmp_path,
    "run",
    "1 Q0 d3 3 0.1 bm25\n1 Q0 d1 1 0.9 bm25\n1 Q0 d2 2 0.5 bm25\n",
  )
  run = formats.read_run(path, depth=2)
  assert run["1"] == ["d1", "d2"]
  assert run.report.beyond_depth == 1 and run.report.rows == 2


def test_top1000_run_ranks_rows_in_file_order(tmp_path):
  path = _write(
    tmp_path,
    "top1000.dev",
    "1\t7\tq text\tp seven\n1\t3\tq text\tp three\n2\t4\tq2\tp four\n",
  )
  run = formats.read_run(path)
  assert dict(run) == {"1": ["7", "3"], "2": ["4"]}


def test_run_with_non_integer_pids_keeps_them_as_strings(tmp_path):
  path = _write(tmp_path, "run", "q1\t10\t1\nq1\tD-7\t2\nq1\t007\t3\n")
  assert formats.read_run(path)["q1"] == ["10", "D-7", "007"]


@pytest.mark.parametrize(
  "content,line,message",
  [
    ("1\t10\t1\n1\t11\n", 2, "expected 3 tab-separated fields"),
    ("1\t10\t1\n1\t11\tfirst\n", 2, "rank 'first' is not an integer"),
    ("1\t10\t0\n", 1, "rank 0 is below 1"),
    ("1 Q0 10 1 0.5 t\n1 Q0 11 2 high t\n", 2, "score 'high' is not a number"),
    (
      "1 Q0 10 1 0.5 t\n1 Q0 11 2 0.4\n",
      2,
      "expected 6 whitespace-separated fields",
    ),
    ("1 10 1\n", 1, "cannot tell the run format"),
  ],
)
def test_malformed_run_line_names_file_and_line(
  tmp_path, content, line, message
):
  path = _write(tmp_path, "run", content)
  with pytest.raises(formats.FormatError, match=message) as excinfo:
    formats.read_run(path)
  _error(excinfo, path, line)


def test_run_format_can_be_forced(tmp_path):
  path = _write(tmp_path, "run", "1\t10\t1\n")
  with pytest.raises(
    formats.FormatError, match="expected 6 whitespace-separated"
  ):
    formats.read_run(path, format="trec")


def test_run_unknown_ids_skip_or_error(tmp_path):
  path = _write(tmp_path, "run", "1\t10\t1\n1\t99\t2\n8\t10\t1\n")
  run = formats.read_run(path, known_qids={"1"}, known_pids={"10"})
  assert dict(run) == {"1": ["10"]}
  assert (run.report.unknown_pids, run.report.unknown_qids) == (1, 1)
  with pytest.raises(formats.UnknownIdError) as excinfo:
    formats.read_run(path, known_pids={"10"}, on_unknown="error")
  _error(excinfo, path, 2)


def test_run_duplicate_pair_error_or_keep_first(tmp_path):
  path = _write(tmp_path, "run", "1\t10\t1\n1\t11\t2\n1\t10\t3\n")
  with pytest.raises(
    formats.DuplicateIdError, match="first on line 1"
  ) as excinfo:
    formats.read_run(path)
  _error(excinfo, path, 3)
  run = formats.read_run(path, on_duplicate="keep_first")
  assert run["1"] == ["10", "11"] and run.report.duplicates == 1


def test_run_duplicate_across_non_contiguous_blocks_is_found(tmp_path):
  path = _write(tmp_path, "run", "1\t10\t1\n2\t10\t1\n1\t10\t2\n1\t12\t3\n")
  with pytest.raises(formats.DuplicateIdError, match="lists pid 10 twice"):
    formats.read_run(path)
  run = formats.read_run(path, on_duplicate="keep_first")
  assert dict(run) == {"1": ["10", "12"], "2": ["10"]}
  assert run.report.duplicates == 1


def test_empty_run_file_is_an_empty_run(tmp_path):
  run = formats.read_run(_write(tmp_path, "run", "\n\n"))
  assert len(run) == 0 and run.num_rows == 0 and run.report.blank_lines == 2


def test_write_run_orders_like_trec_eval_and_reads_back(tmp_path):
  # trec_eval sorts by score descending and breaks ties by docno descending.
  path = str(tmp_path / "run")
  formats.write_run(path, {"1": {"a": 0.5, "c": 0.5, "b": 0.9}}, tag="x")
  lines = open(path).read().splitlines()
  assert lines == [
    "1 Q0 b 1 0.900000 x",
    "1 Q0 c 2 0.500000 x",
    "1 Q0 a 3 0.500000 x",
  ]
  assert formats.read_run(path)["1"] == ["b", "c", "a"]


def test_write_run_msmarco_form_from_ranked_lists_with_depth(tmp_path):
  path = str(tmp_path / "run")
  assert (
    formats.write_run(path, {"1": ["5", "3", "9"]}, format="msmarco", depth=2)
    == 2
  )
  assert open(path).read() == "1\t5\t1\n1\t3\t2\n"


def test_write_run_order_agrees_with_pytrec_eval():
  pytrec_eval = pytest.importorskip("pytrec_eval")
  scores = {"d1": 1.0, "d2": 1.0, "d3": 0.5, "d4": 1.0}
  qrels = {"q": {"d2": 1}}
  # Reciprocal rank under trec_eval's own ordering vs. the rank we write.
  rr = pytrec_eval.RelevanceEvaluator(qrels, {"recip_rank"}).evaluate(
    {"q": scores}
  )
  ranked = [pid for pid, _ in formats.rank_candidates(scores)]
  assert rr["q"]["recip_rank"] == pytest.approx(1 / (ranked.index("d2") + 1))


def test_writers_refuse_fields_that_would_break_the_format(tmp_path):
  with pytest.raises(ValueError, match="pid='a b'"):
    formats.write_collection(str(tmp_path / "c"), {"a b": "text"})
  with pytest.raises(ValueError, match="a tab or newline"):
    formats.write_queries(str(tmp_path / "q"), {"1": "two\nlines"})


def test_collection_and_queries_round_trip(tmp_path):
  data = {"3": "ünïcode text", "1": "plain"}
  path = str(tmp_path / "c")
  formats.write_collection(path, data)
  assert dict(formats.read_collection(path)) == data
  formats.write_queries(path, list(data.items()))
  assert list(formats.read_queries(path).items()) == list(data.items())


# Triples -------------------------------------------------------------------------


def test_triples_stream_and_count(tmp_path):
  path = str(tmp_path / "triples")
  formats.write_triples(path, [("q", "pos", "neg"), ("q2", "p2", "n2")])
  report = formats.ReadReport(path, "triples")
  assert list(formats.read_triples(path, report=report)) == [
    ("q", "pos", "neg"),
    ("q2", "p2", "n2"),
  ]
  assert report.rows == 2


@pytest.mark.parametrize(
  "line,message",
  [
    ("q\tpos", "expected 3 tab-separated fields"),
    ("q\t\tneg", "empty query, positive or negative"),
  ],
)
def test_malformed_triple_names_file_and_line(tmp_path, line, message):
  path = _write(tmp_path, "triples", f"q\tp\tn\r\n{line}\r\n")
  with pytest.raises(formats.FormatError, match=message) as excinfo:
    list(formats.read_triples(path))
  _error(excinfo, path, 2)


def test_run_pids_are_stored_compactly_when_integers(tmp_path):
  path = _write(
    tmp_path, "run", "".join(f"1\t{i}\t{i + 1}\n" for i in range(100))
  )
  run = formats.read_run(path)
  assert run._pids.dtype == np.int64  # pylint: disable=protected-access
  assert run["1"] == [str(i) for i in range(100)]


def _slow_read_run(monkeypatch, *args, **kwargs):
  def not_simple(*unused_args, **unused_kwargs):
    raise formats._NotSimple()  # pylint: disable=protected-access

  with monkeypatch.context() as patch:
    patch.setattr(formats, "_read_run_fast", not_simple)
    return formats.read_run(*args, **kwargs)


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize(
  "options",
  [
    {},
    {"depth": 5},
    {
      "known_qids": {str(q) for q in range(0, 40, 2)},
      "known_pids": {str(p) for p in range(0, 300, 3)},
    },
    {"depth": 3, "known_pids": {str(p) for p in range(150)}},
    {"known_pids": set()},
    {"depth": 1, "known_qids": {"5"}},
  ],
)
def test_vectorised_run_reader_agrees_with_the_line_reader(
  tmp_path, monkeypatch, seed, options
):
  rng = np.random.default_rng(seed)
  rows = []
  for qid in rng.choice(1000, 20, replace=False).tolist():
    pids = rng.choice(300, int(rng.integers(1, 12)), replace=False).tolist()
    rows += [
      f"{qid}\t{pid}\t{rank}"
      for rank, pid in zip(rng.permutation(len(pids)) + 1, pids)
    ]
  rows = [
    rows[i] for i in rng.permutation(len(rows))
  ]  # qids in non-contiguous blocks.
  ending = "\r\n" if seed % 2 else "\n"
  path = _write(
    tmp_path, "run", ending.join(rows) + ("" if seed == 2 else ending)
  )
  fast = formats.read_run(path, **options)
  slow = _slow_read_run(monkeypatch, path, **options)
  assert list(fast) == list(slow) and dict(fast) == dict(slow)
  assert fast.report == slow.report


@pytest.mark.parametrize(
  "content",
  [
    "1\t007\t1\n",  # string pid: kept as written
    "1\t10\t1\n\n1\t11\t2\n",  # blank line: counted
    "1\t10\t1\n1\t10\t2\n",  # duplicate
    "1\t1" + "0" * 16 + "\t1\n",  # too long for the vectorised parser
  ],
)
def test_run_lines_the_vectorised_reader_declines_are_read_line_by_line(
  tmp_path, monkeypatch, content
):
  path = _write(tmp_path, "run", content)
  options = {"on_duplicate": "keep_first"}
  assert dict(formats.read_run(path, **options)) == dict(
    _slow_read_run(monkeypatch, path, **options)
  )


def _gzip(tmp_path, name: str, content: bytes) -> str:
  path = str(tmp_path / name)
  with gzip.open(path, "wb") as f:
    f.write(content)
  return path


def test_gzip_files_are_read_as_their_text_whatever_their_name(tmp_path):
  # A 3-column run goes through the vectorised reader, a TREC run line by line.
  for suffix in (".tsv.gz", ".tsv"):
    sub = tmp_path / suffix.replace(".", "_")
    sub.mkdir()
    queries = formats.read_queries(
      _gzip(sub, "q" + suffix, b"1\tcapital\n2\triver\n")
    )
    collection = formats.read_collection(
      _gzip(sub, "c" + suffix, b"10\ta\n11\tb\n")
    )
    qrels = formats.read_qrels(_gzip(sub, "qr" + suffix, b"1 0 10 1\n"))
    run = formats.read_run(
      _gzip(sub, "r" + suffix, b"1\t10\t1\n1\t11\t2\n2\t11\t1\n")
    )
    trec = formats.read_run(_gzip(sub, "t" + suffix, b"1 Q0 11 1 2.0 bm25\n"))
    assert dict(queries) == {"1": "capital", "2": "river"}
    assert dict(collection) == {"10": "a", "11": "b"}
    assert dict(qrels) == {"1": {"10": 1}}
    assert dict(run) == {"1": ["10", "11"], "2": ["11"]}
    assert dict(trec) == {"1": ["11"]}


def test_gzip_file_errors_name_the_file_and_line_not_utf8(tmp_path):
  path = _gzip(tmp_path, "queries.tsv.gz", b"1\tok\n2 no tab\n")
  with pytest.raises(formats.FormatError, match="no tab") as excinfo:
    formats.read_queries(path)
  _error(excinfo, path, 2)


def test_truncated_gzip_file_is_reported_as_gzip(tmp_path):
  whole = _gzip(
    tmp_path,
    "run.tsv.gz",
    b"".join(
      f"{q}\t{p}\t{p + 1}\n".encode() for q in range(50) for p in range(200)
    ),
  )
  cut = tmp_path / "cut.tsv.gz"
  cut.write_bytes(open(whole, "rb").read()[:-30])
  for read in (formats.read_run, formats.read_queries):
    with pytest.raises(formats.FormatError, match="gzip") as excinfo:
      read(str(cut))
    assert "UTF-8" not in str(excinfo.value)
