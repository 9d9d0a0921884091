"""Read, validate and write MS-MARCO passage-ranking files.

The files of the MS-MARCO passage-ranking task are plain text, one record a line:

=================  ==========================================  ==================
file               line                                        reader
=================  ==========================================  ==================
collection.tsv     ``pid \\t passage``                          `read_collection`
queries.*.tsv      ``qid \\t query``                            `read_queries`
qrels (TREC)       ``qid 0 pid rel`` (whitespace-separated)     `read_qrels`
run (TREC)         ``qid Q0 pid rank score tag``                `read_run`
run (MS-MARCO)     ``qid \\t pid \\t rank``                      `read_run`
run (top1000)      ``qid \\t pid \\t query \\t passage``           `read_run`
triples            ``query \\t positive \\t negative``           `read_triples`
=================  ==========================================  ==================

Ids are strings everywhere (``"7"``, not ``7``). How each reader treats the rough edges
of real files, on purpose:

* A malformed line raises `FormatError` (a `ValueError`) whose message starts with
  ``path:line:`` (1-based) and says what was expected and what was found.
* Blank lines (empty or only whitespace) are skipped and counted. CRLF line endings
  and a UTF-8 byte-order mark on the first line are accepted.
* Invalid UTF-8 raises `FormatError` at its line; ``encoding_errors="replace"``
  replaces the bad bytes with U+FFFD instead and counts the lines.
* An empty file (or one with only blank lines) reads as zero records with a warning.
* A gzip-compressed file (MS-MARCO ships ``collection.tar.gz``'s members and its
  qrels/runs as ``.gz``) is read through `gzip`, whatever its name: it is recognised
  by its first two bytes (``1f 8b``), so it is never mistaken for invalid UTF-8. A
  tar archive is not unpacked: extract it first.
* Duplicate ids (a pid twice in the collection, a qid twice in queries, a (qid, pid)
  pair twice in qrels or a run) raise `DuplicateIdError` by default;
  ``on_duplicate="keep_first"`` keeps the first occurrence and counts the others.
* Unknown ids (a qrel or run row whose qid is not in ``known_qids`` or whose pid is not
  in ``known_pids``) are skipped and counted by default (``on_unknown="skip"``);
  ``on_unknown="error"`` raises `UnknownIdError` at the first one.

Each reader returns its records with a `ReadReport` of these counts attached as
``.report``, and logs a one-line summary:

>>> import os, tempfile
>>> path = os.path.join(tempfile.mkdtemp(), "qrels.tsv")
>>> with open(path, "w") as f:
...   _ = f.write("1 0 10 1\\r\\n\\n1 0 11 0\\n2 0 99 2\\n")
>>> qrels = read_qrels(path, known_pids={"10", "11"})
>>> dict(qrels)
{'1': {'10': 1, '11': 0}}
>>> qrels.report.rows, qrels.report.blank_lines, qrels.report.unknown_pids
(2, 1, 1)
"""

from __future__ import annotations

import array
import collections
from collections.abc import Collection
from collections.abc import Iterable
from collections.abc import Iterator
from collections.abc import Mapping
from collections.abc import Sequence
import dataclasses
import gzip
import logging
import os
from typing import Any
from typing import Literal

import numpy as np

logger = logging.getLogger(__name__)

OnUnknown = Literal["skip", "error"]
OnDuplicate = Literal["error", "keep_first"]
EncodingErrors = Literal["strict", "replace"]
RunFormat = Literal["auto", "trec", "msmarco", "top1000"]


class FormatError(ValueError):
  """A malformed input line; ``str(err)`` is ``"path:line: what was wrong"``."""

  def __init__(
    self, path: str | os.PathLike[str], line: int | None, message: str
  ):
    self.path = os.fspath(path)
    self.line = line
    self.message = message
    where = self.path if line is None else f"{self.path}:{line}"
    super().__init__(f"{where}: {message}")


class DuplicateIdError(FormatError):
  """An id (or a (qid, pid) pair) occurs twice and ``on_duplicate="error"``."""


class UnknownIdError(FormatError):
  """A row names a qid/pid that is not known and ``on_unknown="error"``."""


@dataclasses.dataclass
class ReadReport:
  """What a reader did with one file; every skipped line is counted here.

  Attributes:
    path: the file read.
    kind: what was read ("collection", "queries", "qrels", "run", "triples").
    rows: records kept.
    blank_lines: empty or whitespace-only lines skipped.
    replaced_utf8: lines whose invalid UTF-8 was replaced (``encoding_errors="replace"``).
    duplicates: rows dropped because their id (pair) was seen before ("keep_first").
    unknown_qids: rows skipped because their qid is not in ``known_qids``.
    unknown_pids: rows skipped because their pid is not in ``known_pids``.
    beyond_depth: run rows skipped because their rank is deeper than ``depth``.
  """

  path: str
  kind: str
  rows: int = 0
  blank_lines: int = 0
  replaced_utf8: int = 0
  duplicates: int = 0
  unknown_qids: int = 0
  unknown_pids: int = 0
  beyond_depth: int = 0

  @property
  def skipped(self) -> int:
    """Rows read but not kept (duplicates + unknown ids + beyond depth)."""
    return (
      self.duplicates
      + self.unknown_qids
      + self.unknown_pids
      + self.beyond_depth
    )

  def summary(self) -> str:
    counts = [f"{self.rows} rows"]
    for name in (
      "blank_lines",
      "replaced_utf8",
      "duplicates",
      "unknown_qids",
      "unknown_pids",
      "beyond_depth",
    ):
      value = getattr(self, name)
      if value:
        counts.append(f"{value} {name}")
    return f"{self.kind} {self.path}: " + ", ".join(counts)

  def log(self) -> None:
    if self.rows == 0:
      hint = "" if self.skipped else " (no records: empty file?)"
      logger.warning("%s%s", self.summary(), hint)
    elif self.skipped - self.beyond_depth or self.replaced_utf8:
      logger.warning("%s", self.summary())
    else:
      logger.info("%s", self.summary())


class Records(dict):
  """A dict of records read from a file, with the `ReadReport` as ``.report``."""

  report: ReadReport

  def __init__(self, data: Any = (), *, report: ReadReport):
    super().__init__(data)
    self.report = report


def _check_choice(name: str, value: str, choices: Sequence[str]) -> None:
  if value not in choices:
    raise ValueError(
      f"{name}={value!r}; expected one of {', '.join(map(repr, choices))}"
    )


_GZIP_MAGIC = b"\x1f\x8b"


def is_gzip(path: str | os.PathLike[str]) -> bool:
  """Whether the file starts with gzip's magic bytes (``1f 8b``)."""
  with open(path, "rb") as f:
    return f.read(2) == _GZIP_MAGIC


def open_binary(path: str | os.PathLike[str]):
  """Opens a file for reading bytes, decompressing it when it is gzip.

  >>> import os, tempfile
  >>> path = os.path.join(tempfile.mkdtemp(), "queries.tsv.gz")
  >>> with gzip.open(path, "wt") as f:
  ...   _ = f.write("1\\tcapital of avel\\n")
  >>> with open_binary(path) as f:
  ...   f.read()
  b'1\\tcapital of avel\\n'
  """
  if is_gzip(path):
    return gzip.open(path, "rb")
  return open(path, "rb")


def iter_lines(
  path: str | os.PathLike[str],
  *,
  encoding_errors: EncodingErrors = "strict",
  report: ReadReport | None = None,
) -> Iterator[tuple[int, str]]:
  """Yields ``(line_number, text)`` for the non-blank lines of a UTF-8 file.

  Line numbers start at 1. Line endings (``\\n`` or ``\\r\\n``) and a leading byte-order
  mark are removed; blank lines are skipped and counted in ``report.blank_lines``.

  Args:
    path: the file.
    encoding_errors: "strict" raises `FormatError` naming the line on invalid UTF-8;
      "replace" substitutes U+FFFD and counts the line in ``report.replaced_utf8``.
    report: counts to update (optional).

  Yields:
    (line number, line without its line ending).
  """
  _check_choice("encoding_errors", encoding_errors, ("strict", "replace"))
  with open_binary(path) as f:
    for number, raw in enumerate(_gzip_checked(path, f), 1):
      if raw.endswith(b"\n"):
        raw = raw[:-1]
        if raw.endswith(b"\r"):
          raw = raw[:-1]
      if number == 1 and raw.startswith(b"\xef\xbb\xbf"):
        raw = raw[3:]
      try:
        line = raw.decode("utf-8")
      except UnicodeDecodeError as e:
        if encoding_errors == "strict":
          raise FormatError(
            path,
            number,
            f"invalid UTF-8 at byte {e.start} of the line ({raw[e.start : e.start + 4]!r});"
            " pass encoding_errors='replace' to replace bad bytes",
          ) from None
        line = raw.decode("utf-8", "replace")
        if report is not None:
          report.replaced_utf8 += 1
      if not line.strip():
        if report is not None:
          report.blank_lines += 1
        continue
      yield number, line


def _gzip_checked(path, lines: Iterable[bytes]) -> Iterator[bytes]:
  """``lines``, with a truncated or corrupt gzip stream reported as `FormatError`."""
  try:
    yield from lines
  except (EOFError, gzip.BadGzipFile, OSError) as e:
    raise FormatError(
      path, None, f"cannot decompress this gzip file ({e})"
    ) from None


def _split_id_text(
  path, number: int, line: str, id_name: str, text_name: str
) -> tuple[str, str]:
  key, tab, text = line.partition("\t")
  if not tab:
    raise FormatError(
      path,
      number,
      f"expected '{id_name}<TAB>{text_name}', found no tab in {line[:60]!r}",
    )
  key = key.strip()
  if not key or any(c.isspace() for c in key):
    raise FormatError(
      path, number, f"{id_name} {key!r} is empty or contains whitespace"
    )
  if not text.strip():
    raise FormatError(path, number, f"empty {text_name} for {id_name} {key!r}")
  return key, text


def _read_id_text(
  path,
  kind: str,
  id_name: str,
  text_name: str,
  *,
  encoding_errors: EncodingErrors,
  on_duplicate: OnDuplicate,
) -> Records:
  _check_choice("on_duplicate", on_duplicate, ("error", "keep_first"))
  report = ReadReport(os.fspath(path), kind)
  data: dict[str, str] = {}
  first_line: dict[str, int] = {}
  for number, line in iter_lines(
    path, encoding_errors=encoding_errors, report=report
  ):
    key, text = _split_id_text(path, number, line, id_name, text_name)
    if key in data:
      if on_duplicate == "error":
        raise DuplicateIdError(
          path,
          number,
          f"duplicate {id_name} {key!r} (first on line {first_line[key]});"
          " pass on_duplicate='keep_first' to keep the first",
        )
      report.duplicates += 1
      continue
    data[key] = text
    if on_duplicate == "error":
      first_line[key] = number
  report.rows = len(data)
  report.log()
  return Records(data, report=report)


def read_collection(
  path: str | os.PathLike[str],
  *,
  encoding_errors: EncodingErrors = "strict",
  on_duplicate: OnDuplicate = "error",
) -> Records:
  """Reads ``pid \\t passage`` lines into ``{pid: passage}`` (all in memory).

  For the 8.8M-passage MS-MARCO collection use `t5rank.data.collection.PassageIndex`,
  which keeps passages on disk. Text after the first tab is the passage (kept as is).

  Raises:
    FormatError: a line without a tab, an empty pid or passage, invalid UTF-8.
    DuplicateIdError: a pid occurs twice (``on_duplicate="error"``).
  """
  return _read_id_text(
    path,
    "collection",
    "pid",
    "passage",
    encoding_errors=encoding_errors,
    on_duplicate=on_duplicate,
  )


def read_queries(
  path: str | os.PathLike[str],
  *,
  encoding_errors: EncodingErrors = "strict",
  on_duplicate: OnDuplicate = "error",
) -> Records:
  """Reads ``qid \\t query`` lines into ``{qid: query}`` in file order.

  Raises:
    FormatError: a line without a tab, an empty qid or query, invalid UTF-8.
    DuplicateIdError: a qid occurs twice (``on_duplicate="error"``).
  """
  return _read_id_text(
    path,
    "queries",
    "qid",
    "query",
    encoding_errors=encoding_errors,
    on_duplicate=on_duplicate,
  )


class _UnknownCheck:
  """Counts (or raises on) rows naming ids outside the known sets."""

  def __init__(
    self,
    path,
    report: ReadReport,
    known_qids,
    known_pids,
    on_unknown: OnUnknown,
  ):
    _check_choice("on_unknown", on_unknown, ("skip", "error"))
    self.path, self.report = path, report
    self.known_qids, self.known_pids = known_qids, known_pids
    self.on_unknown = on_unknown

  def ok(self, number: int, qid: str, pid: str) -> bool:
    if self.known_qids is not None and qid not in self.known_qids:
      if self.on_unknown == "error":
        raise UnknownIdError(
          self.path, number, f"qid {qid!r} is not a known query"
        )
      self.report.unknown_qids += 1
      return False
    if self.known_pids is not None and pid not in self.known_pids:
      if self.on_unknown == "error":
        raise UnknownIdError(
          self.path, number, f"pid {pid!r} is not in the collection"
        )
      self.report.unknown_pids += 1
      return False
    return True


def read_qrels(
  path: str | os.PathLike[str],
  *,
  known_qids: Collection[str] | None = None,
  known_pids: Collection[str] | None = None,
  on_unknown: OnUnknown = "skip",
  on_duplicate: OnDuplicate = "error",
  encoding_errors: EncodingErrors = "strict",
) -> Records:
  """Reads TREC qrels ``qid iter pid rel`` into ``{qid: {pid: rel}}`` (pytrec_eval form).

  Fields are whitespace-separated (MS-MARCO's qrels use tabs); ``iter`` is ignored and
  ``rel`` is an integer grade (MS-MARCO: 1; graded collections: 0..3). Grades <= 0 are
  kept: they mark judged non-relevant passages.

  Raises:
    FormatError: not 4 fields, or a grade that is not an integer.
    DuplicateIdError: a (qid, pid) pair twice (``on_duplicate="error"``).
    UnknownIdError: an unknown qid or pid (``on_unknown="error"``).
  """
  _check_choice("on_duplicate", on_duplicate, ("error", "keep_first"))
  report = ReadReport(os.fspath(path), "qrels")
  check = _UnknownCheck(path, report, known_qids, known_pids, on_unknown)
  qrels: dict[str, dict[str, int]] = {}
  for number, line in iter_lines(
    path, encoding_errors=encoding_errors, report=report
  ):
    fields = line.split()
    if len(fields) != 4:
      raise FormatError(
        path,
        number,
        "expected 4 whitespace-separated fields "
        f"'qid iter pid rel', found {len(fields)} in {line[:60]!r}",
      )
    qid, _, pid, rel = fields
    try:
      grade = int(rel)
    except ValueError:
      raise FormatError(
        path, number, f"relevance {rel!r} is not an integer"
      ) from None
    if not check.ok(number, qid, pid):
      continue
    judged = qrels.setdefault(qid, {})
    if pid in judged:
      if on_duplicate == "error":
        raise DuplicateIdError(
          path,
          number,
          f"duplicate qrel for qid {qid!r} pid {pid!r};"
          " pass on_duplicate='keep_first' to keep the first",
        )
      report.duplicates += 1
      continue
    judged[pid] = grade
    report.rows += 1
  report.log()
  return Records(qrels, report=report)


class _IdColumn:
  """Appends string ids compactly: int64 while every id is a canonical integer."""

  def __init__(self):
    self._ints: array.array | None = array.array("q")
    self._strs: list[str] | None = None

  def append(self, key: str) -> None:
    if self._ints is not None:
      if (
        key.isdigit()
        and key.isascii()
        and (key[0] != "0" or len(key) == 1)
        and len(key) < 19
      ):
        self._ints.append(int(key))
        return
      self._strs = [str(v) for v in self._ints]
      self._ints = None
    self._strs.append(key)

  def to_numpy(self) -> np.ndarray:
    """int64 array when all ids are integers, else an object array of str."""
    if self._ints is not None:
      return np.frombuffer(self._ints, dtype=np.int64).copy()
    out = np.empty(len(self._strs), dtype=object)
    out[:] = self._strs
    return out


def ids_to_strings(values: np.ndarray) -> list[str]:
  """Turns an id column (int64 or object array) back into a list of str ids."""
  if values.dtype == object:
    return values.tolist()
  return [str(v) for v in values.tolist()]


class Run(collections.abc.Mapping):
  """Candidate lists of a run: ``run[qid]`` is the list of pids best first.

  Behaves like ``{qid: [pid, ...]}`` (qids in first-appearance order) but stores the
  pids of all queries in one array (int64 when every pid is an integer), so a run of
  500k queries x 1000 candidates costs 8 bytes per row, not a Python string per row.
  ``.report`` is the `ReadReport` of the file.
  """

  def __init__(
    self,
    qids: Sequence[str],
    offsets: np.ndarray,
    pids: np.ndarray,
    report: ReadReport,
  ):
    self._qids = list(qids)
    self._index = {q: i for i, q in enumerate(self._qids)}
    self._offsets = offsets
    self._pids = pids
    self.report = report

  def __getitem__(self, qid: str) -> list[str]:
    i = self._index[qid]
    return ids_to_strings(self._pids[self._offsets[i] : self._offsets[i + 1]])

  def __iter__(self) -> Iterator[str]:
    return iter(self._qids)

  def __len__(self) -> int:
    return len(self._qids)

  def __contains__(self, qid: object) -> bool:
    return qid in self._index

  @property
  def num_rows(self) -> int:
    return int(self._offsets[-1])


def _detect_run_format(path, number: int, line: str) -> str:
  tab_fields = line.split("\t")
  if len(tab_fields) == 3:
    return "msmarco"
  if len(tab_fields) == 4:
    return "top1000"
  if len(line.split()) == 6:
    return "trec"
  raise FormatError(
    path,
    number,
    "cannot tell the run format: expected 'qid Q0 pid rank "
    "score tag' (TREC), 'qid<TAB>pid<TAB>rank' (MS-MARCO) or "
    f"'qid<TAB>pid<TAB>query<TAB>passage' (top1000), found {line[:60]!r}",
  )


def _parse_rank(path, number: int, value: str) -> int:
  try:
    rank = int(value)
  except ValueError:
    raise FormatError(
      path, number, f"rank {value!r} is not an integer"
    ) from None
  if rank < 1:
    raise FormatError(
      path, number, f"rank {rank} is below 1 (ranks start at 1)"
    )
  return rank


class _NotSimple(Exception):
  """The fast run reader met something only the line-by-line reader reports."""


_CHUNK_BYTES = 1 << 20  # Parsing needs ~30 bytes of temporaries per byte.
_MAX_DIGITS = 15  # Sums of digit * 10^k stay exact in int64 far beyond this.
_POWERS_OF_TEN = 10 ** np.arange(_MAX_DIGITS, dtype=np.int64)


def _byte_chunks(path) -> Iterator[np.ndarray]:
  """The file as uint8 arrays of whole lines, ~1 MB each (no byte-order mark)."""
  with open_binary(path) as f:
    rest, first = b"", True
    while True:
      try:
        block = f.read(_CHUNK_BYTES)
      except (EOFError, gzip.BadGzipFile) as e:
        raise FormatError(
          path, None, f"cannot decompress this gzip file ({e})"
        ) from None
      data = rest + block
      if not data:
        return
      if block:
        cut = data.rfind(b"\n") + 1
        if cut == 0:
          rest = data
          continue
        data, rest = data[:cut], data[cut:]
      else:
        rest = b""
      if first and data.startswith(b"\xef\xbb\xbf"):
        data = data[3:]
      first = False
      if data:
        yield np.frombuffer(data, dtype=np.uint8)


def _parse_int_fields(
  chunk: np.ndarray, fields: int
) -> tuple[np.ndarray, np.ndarray]:
  """Parses lines of ``fields`` tab-separated decimal integers.

  Returns int64 values [lines, fields] and whether each field has a leading zero.

  Raises `_NotSimple` unless every line is exactly that (digits only, no empty field,
  no blank line, at most 15 digits; ``\\r\\n`` endings are fine).
  """
  if chunk[-1] != 10:
    chunk = np.append(chunk, np.uint8(10))
  if (chunk == 13).any():
    cr = np.flatnonzero(chunk == 13)
    if (chunk[cr + 1] != 10).any():
      raise _NotSimple()
    chunk = np.delete(chunk, cr)
  is_delim = (
    chunk < 48
  )  # Digits are 48..57; anything lower must be a tab or newline.
  delims = np.flatnonzero(is_delim)
  # Delimiters must run tab, tab, ..., newline on every line.
  expected = np.full(fields, 9, dtype=np.uint8)
  expected[-1] = 10
  if (
    len(delims) % fields
    or not (chunk[delims].reshape(-1, fields) == expected).all()
  ):
    raise _NotSimple()
  digits = chunk[~is_delim]
  if len(digits) and digits.max() > 57:
    raise _NotSimple()
  lengths = np.diff(delims, prepend=-1) - 1
  if lengths.min() < 1 or lengths.max() > _MAX_DIGITS:
    raise _NotSimple()
  # Each digit times 10^(its distance to the end of its field), summed per field.
  field_of_digit = np.repeat(np.arange(len(delims), dtype=np.int32), lengths)
  power = delims[field_of_digit] - np.flatnonzero(~is_delim) - 1
  del field_of_digit
  values = (digits - 48).astype(np.int64) * _POWERS_OF_TEN[power]
  starts = np.concatenate(([0], np.cumsum(lengths)[:-1]))
  sums = np.add.reduceat(values, starts)
  first_digit = digits[starts]
  return sums.reshape(-1, fields), (first_digit == 48).reshape(-1, fields) & (
    lengths.reshape(-1, fields) > 1
  )


def _read_run_fast(
  path, depth: int | None, known_qids, known_pids, on_unknown: str
) -> Run:
  """`read_run` for clean MS-MARCO runs with integer ids, vectorised by chunk.

  Gives exactly what the line-by-line reader gives, or raises `_NotSimple` (blank
  lines, bad fields, non-canonical or string ids, duplicates, unknown ids under
  "error", invalid UTF-8) so that reader reports or repairs them.
  """
  report = ReadReport(os.fspath(path), "run")
  qid_parts, pid_parts, rank_parts = [], [], []
  for chunk in _byte_chunks(path):
    values, leading_zero = _parse_int_fields(chunk, 3)
    if leading_zero[:, :2].any():  # "007" is a string id, not 7.
      raise _NotSimple()
    if values[:, 2].min() < 1 or values[:, 2].max() >= 2**31:
      raise _NotSimple()
    if (
      depth is not None
    ):  # Drop deep rows now: a top-1000 run is 30x what lists use.
      deep = values[:, 2] > depth
      report.beyond_depth += int(deep.sum())
      values = values[~deep]
    qid_parts.append(values[:, 0].copy())
    pid_parts.append(values[:, 1].copy())
    rank_parts.append(values[:, 2].astype(np.int32))
    del values, leading_zero
  if not qid_parts:
    raise _NotSimple()  # Empty file: the line reader logs it.
  # Arrays are freed as soon as they are used up: this keeps the peak memory at
  # about 40 bytes per row.
  qids = np.concatenate(qid_parts)
  del qid_parts
  unique_qids, inverse = np.unique(qids, return_inverse=True)
  del qids
  qid_of_row = inverse.astype(np.int32)
  del inverse
  pids = np.concatenate(pid_parts)
  del pid_parts
  ranks = np.concatenate(rank_parts)
  del rank_parts
  keep = np.ones(len(pids), dtype=bool)
  qid_names = [str(v) for v in unique_qids.tolist()]
  if known_qids is not None:
    known = np.array([q in known_qids for q in qid_names], dtype=bool)[
      qid_of_row
    ]
    report.unknown_qids = int((keep & ~known).sum())
    keep &= known
  if known_pids is not None:
    contains_ids = getattr(known_pids, "contains_ids", None)
    if contains_ids is not None:
      known = contains_ids(pids)
    else:
      known = np.fromiter(
        (str(p) in known_pids for p in pids.tolist()),
        dtype=bool,
        count=len(pids),
      )
    report.unknown_pids = int((keep & ~known).sum())
    keep &= known
  if on_unknown == "error" and (report.unknown_qids or report.unknown_pids):
    raise _NotSimple()
  if not keep.all():
    qid_of_row, pids, ranks = qid_of_row[keep], pids[keep], ranks[keep]
  del keep
  if len(pids) > 1:
    # One int64 key per (qid, pid) pair (ids have at most 15 digits).
    pairs = qid_of_row.astype(np.int64)
    pairs *= int(pids.max()) + 1
    pairs += pids
    pairs.sort()
    if (pairs[1:] == pairs[:-1]).any():
      raise _NotSimple()  # Duplicates are reported (or dropped) row by row.
    del pairs
  # Number the qids that kept a row in order of first appearance, as the line reader.
  first_kept = np.full(len(unique_qids), len(qid_of_row), dtype=np.int64)
  np.minimum.at(
    first_kept, qid_of_row, np.arange(len(qid_of_row), dtype=np.int64)
  )
  present = np.flatnonzero(first_kept < len(qid_of_row))
  appearance = present[np.argsort(first_kept[present], kind="stable")]
  del first_kept, present
  new_index = np.empty(len(unique_qids), dtype=np.int32)
  new_index[appearance] = np.arange(len(appearance), dtype=np.int32)
  qidx = new_index[qid_of_row]
  del qid_of_row, new_index
  max_rank = int(ranks.max()) + 1 if len(ranks) else 1
  key = qidx.astype(np.int64)
  key *= max_rank
  key += ranks
  del ranks
  order = np.argsort(key, kind="stable")
  del key
  offsets = np.zeros(len(appearance) + 1, dtype=np.int64)
  np.cumsum(np.bincount(qidx, minlength=len(appearance)), out=offsets[1:])
  del qidx
  pids = pids[order]
  report.rows = len(pids)
  report.log()
  return Run([qid_names[i] for i in appearance.tolist()], offsets, pids, report)


def read_run(
  path: str | os.PathLike[str],
  *,
  format: RunFormat = "auto",  # pylint: disable=redefined-builtin
  depth: int | None = None,
  known_qids: Collection[str] | None = None,
  known_pids: Collection[str] | None = None,
  on_unknown: OnUnknown = "skip",
  on_duplicate: OnDuplicate = "error",
  encoding_errors: EncodingErrors = "strict",
) -> Run:
  """Reads a candidate run into a `Run` (``{qid: [pid, ...]}``, best first).

  Formats: "trec" (``qid Q0 pid rank score tag``, whitespace-separated), "msmarco"
  (``qid \\t pid \\t rank``) and "top1000" (MS-MARCO's ``qid \\t pid \\t query \\t
  passage``; the rank is the order of the rows of each qid). "auto" decides from the
  first non-blank line; every line must then have that form.

  Candidates are ordered by the rank column (file order breaks ties), not by score.
  Rows deeper than ``depth`` are skipped (counted as ``beyond_depth``); the rank column
  decides the depth, so a file need not be sorted.

  Raises:
    FormatError: a line of the wrong form, a rank that is not an integer >= 1, a TREC
      score that is not a number.
    DuplicateIdError: a (qid, pid) pair twice (``on_duplicate="error"``; with
      "keep_first" the first row in file order is kept).
    UnknownIdError: an unknown qid or pid (``on_unknown="error"``).
  """
  _check_choice("format", format, ("auto", "trec", "msmarco", "top1000"))
  _check_choice("on_duplicate", on_duplicate, ("error", "keep_first"))
  if depth is not None and depth < 1:
    raise ValueError(f"depth={depth}; expected None or an integer >= 1")
  _check_choice("on_unknown", on_unknown, ("skip", "error"))
  run_format = format
  if run_format == "auto":
    for number, line in iter_lines(path, encoding_errors=encoding_errors):
      run_format = _detect_run_format(path, number, line)
      break
  if run_format == "msmarco":
    try:
      return _read_run_fast(path, depth, known_qids, known_pids, on_unknown)
    except _NotSimple:
      pass  # Something to report or repair: the line-by-line reader below says what.
  report = ReadReport(os.fspath(path), "run")
  check = _UnknownCheck(path, report, known_qids, known_pids, on_unknown)
  qid_index: dict[str, int] = {}
  row_qidx = array.array("q")
  row_rank = array.array("q")
  pids = _IdColumn()
  current_qid, current_pids, current_rank = None, {}, 0
  regrouped = False
  for number, line in iter_lines(
    path, encoding_errors=encoding_errors, report=report
  ):
    if run_format == "auto":
      run_format = _detect_run_format(path, number, line)
    if run_format == "trec":
      fields = line.split()
      if len(fields) != 6:
        raise FormatError(
          path,
          number,
          "expected 6 whitespace-separated fields 'qid Q0 pid "
          f"rank score tag', found {len(fields)} in {line[:60]!r}",
        )
      qid, _, pid, rank_text, score, _ = fields
      rank = _parse_rank(path, number, rank_text)
      try:
        float(score)
      except ValueError:
        raise FormatError(
          path, number, f"score {score!r} is not a number"
        ) from None
    else:
      fields = line.split("\t")
      expected = 3 if run_format == "msmarco" else 4
      if len(fields) != expected:
        form = (
          "qid<TAB>pid<TAB>rank"
          if expected == 3
          else "qid<TAB>pid<TAB>query<TAB>passage"
        )
        raise FormatError(
          path,
          number,
          f"expected {expected} tab-separated fields '{form}',"
          f" found {len(fields)} in {line[:60]!r}",
        )
      qid, pid = fields[0].strip(), fields[1].strip()
      if not qid or not pid:
        raise FormatError(path, number, "empty qid or pid")
      if run_format == "msmarco":
        rank = _parse_rank(path, number, fields[2].strip())
      else:
        rank = current_rank + 1 if qid == current_qid else 1
    if qid != current_qid:
      if qid in qid_index:
        regrouped = True
      current_qid, current_pids, current_rank = qid, {}, 0
    current_rank = rank if run_format == "top1000" else current_rank
    if depth is not None and rank > depth:
      report.beyond_depth += 1
      continue
    if not check.ok(number, qid, pid):
      continue
    if pid in current_pids:
      if on_duplicate == "error":
        raise DuplicateIdError(
          path,
          number,
          f"qid {qid!r} lists pid {pid!r} twice (first on "
          f"line {current_pids[pid]}); pass on_duplicate='keep_first'",
        )
      report.duplicates += 1
      continue
    current_pids[pid] = number
    row_qidx.append(qid_index.setdefault(qid, len(qid_index)))
    row_rank.append(rank)
    pids.append(pid)
  qidx = np.frombuffer(row_qidx, dtype=np.int64)
  ranks = np.frombuffer(row_rank, dtype=np.int64)
  pid_values = pids.to_numpy()
  order = np.lexsort((np.arange(len(qidx)), ranks, qidx))
  pid_values = pid_values[order]
  offsets = np.zeros(len(qid_index) + 1, dtype=np.int64)
  np.cumsum(np.bincount(qidx, minlength=len(qid_index)), out=offsets[1:])
  if (
    regrouped
  ):  # A qid in several blocks: the per-block duplicate check was not enough.
    keep = np.ones(len(pid_values), dtype=bool)
    for i, qid in enumerate(qid_index):
      seen = set()
      for j in range(offsets[i], offsets[i + 1]):
        value = pid_values[j]
        if value in seen:
          if on_duplicate == "error":
            raise DuplicateIdError(
              path, None, f"qid {qid!r} lists pid {value} twice"
            )
          keep[j] = False
        seen.add(value)
    if not keep.all():
      report.duplicates += int((~keep).sum())
      kept_qidx = np.repeat(np.arange(len(qid_index)), np.diff(offsets))[keep]
      pid_values = pid_values[keep]
      np.cumsum(
        np.bincount(kept_qidx, minlength=len(qid_index)), out=offsets[1:]
      )
  report.rows = len(pid_values)
  report.log()
  return Run(list(qid_index), offsets, pid_values, report)


def read_triples(
  path: str | os.PathLike[str],
  *,
  encoding_errors: EncodingErrors = "strict",
  report: ReadReport | None = None,
) -> Iterator[tuple[str, str, str]]:
  """Streams ``(query, positive, negative)`` from a ``query \\t pos \\t neg`` file.

  Triples files are large (MS-MARCO's train triples: 40M lines), so this is a
  generator; pass a `ReadReport` to see the counts.

  Raises:
    FormatError: not 3 tab-separated fields or an empty field.
  """
  report = (
    report if report is not None else ReadReport(os.fspath(path), "triples")
  )
  for number, line in iter_lines(
    path, encoding_errors=encoding_errors, report=report
  ):
    fields = line.split("\t")
    if len(fields) != 3:
      raise FormatError(
        path,
        number,
        "expected 3 tab-separated fields 'query<TAB>positive"
        f"<TAB>negative', found {len(fields)} in {line[:60]!r}",
      )
    if not all(field.strip() for field in fields):
      raise FormatError(path, number, "empty query, positive or negative")
    report.rows += 1
    yield fields[0], fields[1], fields[2]
  report.log()


def _check_field(kind: str, value: str, *, allow_spaces: bool) -> str:
  value = str(value)
  bad = ("\t", "\n", "\r") if allow_spaces else None
  if (bad and any(c in value for c in bad)) or (
    not bad and any(c.isspace() for c in value)
  ):
    raise ValueError(
      f"{kind}={value!r} cannot be written: it contains "
      f"{'a tab or newline' if allow_spaces else 'whitespace'}"
    )
  if not value.strip():
    raise ValueError(f"{kind}={value!r} cannot be written: it is empty")
  return value


def _write_id_text(
  path, items: Iterable[tuple[str, str]], id_name: str, text_name: str
) -> int:
  count = 0
  with open_for_writing(path) as f:
    for key, text in items:
      f.write(
        f"{_check_field(id_name, key, allow_spaces=False)}\t"
        f"{_check_field(text_name, text, allow_spaces=True)}\n"
      )
      count += 1
  return count


def write_collection(
  path: str | os.PathLike[str],
  passages: Mapping[str, str] | Iterable[tuple[str, str]],
) -> int:
  """Writes ``pid \\t passage`` lines; returns the number written.

  Raises:
    ValueError: an id with whitespace, a passage with a tab or newline, an empty field.
  """
  items = passages.items() if isinstance(passages, Mapping) else passages
  return _write_id_text(path, items, "pid", "passage")


def write_queries(
  path: str | os.PathLike[str],
  queries: Mapping[str, str] | Iterable[tuple[str, str]],
) -> int:
  """Writes ``qid \\t query`` lines; returns the number written."""
  items = queries.items() if isinstance(queries, Mapping) else queries
  return _write_id_text(path, items, "qid", "query")


def write_qrels(
  path: str | os.PathLike[str], qrels: Mapping[str, Mapping[str, int]]
) -> int:
  """Writes TREC qrels ``qid 0 pid rel`` (tab-separated, as MS-MARCO's); returns rows."""
  count = 0
  with open_for_writing(path) as f:
    for qid, judged in qrels.items():
      qid = _check_field("qid", qid, allow_spaces=False)
      for pid, rel in judged.items():
        f.write(
          f"{qid}\t0\t{_check_field('pid', pid, allow_spaces=False)}\t{int(rel)}\n"
        )
        count += 1
  return count


def rank_candidates(scores: Mapping[str, float]) -> list[tuple[str, float]]:
  """Orders ``{pid: score}`` best first as trec_eval does: score desc, then pid desc.

  trec_eval ignores the rank column and sorts a run by score, breaking ties by docno
  in descending string order, so writing ranks in that order keeps them consistent.

  >>> rank_candidates({"a": 1.0, "b": 2.0, "c": 1.0})
  [('b', 2.0), ('c', 1.0), ('a', 1.0)]
  """
  return sorted(scores.items(), key=lambda kv: (-float(kv[1]), _Desc(kv[0])))


class _Desc:
  """Sort key that orders strings in descending order."""

  __slots__ = ("value",)

  def __init__(self, value: str):
    self.value = value

  def __lt__(self, other: _Desc) -> bool:
    return self.value > other.value

  def __eq__(self, other: object) -> bool:
    return isinstance(other, _Desc) and self.value == other.value


def open_for_writing(path: str | os.PathLike[str]):
  """Opens a text file for writing; remote paths (``gs://...``) as T5X does.

  A path with a URL scheme goes through ``tf.io.gfile`` (TensorFlow is
  imported only then), whose folders need not be made first; a local path
  is a plain UTF-8 file with ``\\n`` line ends.

  >>> import tempfile
  >>> path = os.path.join(tempfile.mkdtemp(), "run.trec")
  >>> with open_for_writing(path) as f:
  ...   _ = f.write("q1 Q0 d1 1 1.0 t5rank\\n")
  >>> open(path).read()
  'q1 Q0 d1 1 1.0 t5rank\\n'
  """
  path = os.fspath(path)
  if "://" in path:
    import tensorflow as tf  # pylint: disable=g-import-not-at-top

    return tf.io.gfile.GFile(path, "w")
  return open(path, "w", encoding="utf-8", newline="\n")


def write_run(
  path: str | os.PathLike[str],
  run: Mapping[str, Mapping[str, float]] | Mapping[str, Sequence[str]],
  *,
  format: Literal["trec", "msmarco"] = "trec",  # pylint: disable=redefined-builtin
  tag: str = "t5rank",
  depth: int | None = None,
) -> int:
  """Writes a run file; returns the number of rows written.

  ``run[qid]`` is either ``{pid: score}`` (ranked with `rank_candidates`: score
  descending, ties by pid descending, as trec_eval orders them) or a sequence of pids
  already best first (scores written as ``-rank`` in TREC form). "trec" writes
  ``qid Q0 pid rank score tag``; "msmarco" writes ``qid \\t pid \\t rank``. ``depth``
  keeps the top ``depth`` of each query.
  """
  _check_choice("format", format, ("trec", "msmarco"))
  tag = _check_field("tag", tag, allow_spaces=False)
  count = 0
  with open_for_writing(path) as f:
    for qid, candidates in run.items():
      qid = _check_field("qid", qid, allow_spaces=False)
      if isinstance(candidates, Mapping):
        ranked = rank_candidates(candidates)
      else:
        ranked = [(pid, -float(i)) for i, pid in enumerate(candidates, 1)]
      for rank, (pid, score) in enumerate(ranked[:depth], 1):
        pid = _check_field("pid", pid, allow_spaces=False)
        if format == "trec":
          f.write(f"{qid} Q0 {pid} {rank} {float(score):.6f} {tag}\n")
        else:
          f.write(f"{qid}\t{pid}\t{rank}\n")
        count += 1
  return count


def write_triples(
  path: str | os.PathLike[str], triples: Iterable[tuple[str, str, str]]
) -> int:
  """Writes ``query \\t positive \\t negative`` lines; returns the number written."""
  count = 0
  with open_for_writing(path) as f:
    for query, positive, negative in triples:
      f.write(
        "\t".join(
          _check_field(name, value, allow_spaces=True)
          for name, value in (
            ("query", query),
            ("positive", positive),
            ("negative", negative),
          )
        )
      )
      f.write("\n")
      count += 1
  return count
