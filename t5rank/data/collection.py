"""An on-disk passage index: fetch passages by pid without loading the collection.

MS-MARCO's collection.tsv holds 8.8M passages (~3 GB of text). As Python strings in a
dict it needs well over 4 GB of memory; building ranking lists only ever needs the
passages those lists reference. `PassageIndex` scans ``pid \\t passage`` lines once and
saves, as NumPy arrays next to the file (or in a cache directory), where each passage's
bytes start and how long they are, plus the pids. Later opens memory-map those arrays
and read a passage with one ``pread`` from the text file, so memory grows with the
number of passages (about 36 bytes each: 320 MB for MS-MARCO), not their text.

Ids are strings in the API. When every pid is a canonical integer (MS-MARCO's are
0..8841822) they are stored as an int64 array and looked up by binary search (or
directly, when pid == row); otherwise a dict of pid strings is kept in memory.

>>> import os, tempfile
>>> path = os.path.join(tempfile.mkdtemp(), "collection.tsv")
>>> with open(path, "w") as f:
...   _ = f.write("0\\tThe capital of Avel is Orin.\\n7\\tAvel lies on the Tarn river.\\n")
>>> index = PassageIndex(path)
>>> len(index), "7" in index, "8" in index
(2, True, False)
>>> index["7"]
'Avel lies on the Tarn river.'
>>> index.get_many(["7", "0"])
['Avel lies on the Tarn river.', 'The capital of Avel is Orin.']

The index is rebuilt when the collection's size or modification time changes.
Validation is that of `t5rank.data.formats.read_collection` (file:line errors, blank
lines and CRLF accepted, duplicate pids an error or kept-first), all of it while the
index is built: invalid UTF-8 anywhere in the file stops the build with ``file:line``
(``encoding_errors="replace"`` accepts it and substitutes U+FFFD when read), so a bad
passage is never first met in the middle of training.

A gzip-compressed collection (``collection.tsv.gz``, recognised by its magic bytes) is
decompressed once, into the index folder (``passages.tsv`` next to the arrays), since
reading a passage by byte offset needs the uncompressed text; errors still name the
``.gz`` file and its line. That copy costs the collection's uncompressed size on disk
(2.9 GB for MS-MARCO).
"""

from __future__ import annotations

import array
from collections.abc import Iterator
from collections.abc import Sequence
import hashlib
import json
import logging
import os
import random
import tempfile

import numpy as np

from t5rank.data import formats

logger = logging.getLogger(__name__)

_VERSION = 2  # 2: UTF-8 checked at build time, gzip collections.
_SUFFIX = ".t5rank-index"
_TEXT = "passages.tsv"  # The decompressed copy of a gzip collection.


def default_cache_dir() -> str:
  """``$T5RANK_CACHE_DIR`` or ``$XDG_CACHE_HOME/t5rank`` (``~/.cache/t5rank``)."""
  if os.environ.get("T5RANK_CACHE_DIR"):
    return os.environ["T5RANK_CACHE_DIR"]
  base = os.environ.get("XDG_CACHE_HOME") or os.path.join(
    os.path.expanduser("~"), ".cache"
  )
  return os.path.join(base, "t5rank")


def _index_dir(path: str, cache_dir: str | None) -> str:
  if cache_dir is None:
    folder = os.path.dirname(path) or "."
    if os.access(folder, os.W_OK):
      return path + _SUFFIX
    cache_dir = default_cache_dir()
  digest = hashlib.sha1(path.encode("utf-8")).hexdigest()[:16]
  return os.path.join(cache_dir, f"{os.path.basename(path)}.{digest}{_SUFFIX}")


def _source_stamp(path: str) -> dict[str, int]:
  stat = os.stat(path)
  return {
    "size": stat.st_size,
    "mtime_ns": stat.st_mtime_ns,
    "version": _VERSION,
  }


def _scan(
  path: str,
  on_duplicate: formats.OnDuplicate,
  encoding_errors: formats.EncodingErrors = "strict",
  name: str | None = None,
) -> dict[str, np.ndarray]:
  """One pass over the file: text start/length, line number and pid of each passage.

  ``path`` is the uncompressed text; errors name ``name`` (the file the user gave).
  """
  starts, lengths, lines = array.array("q"), array.array("q"), array.array("q")
  pids = formats._IdColumn()  # pylint: disable=protected-access
  offset = 0
  strict = encoding_errors == "strict"
  path_given, path = path, name or path
  with open(path_given, "rb") as f:
    for number, raw in enumerate(f, 1):
      line_start, offset = offset, offset + len(raw)
      end = len(raw)
      if raw.endswith(b"\n"):
        end -= 1
        if end and raw[end - 1] == 13:  # "\r"
          end -= 1
      begin = 3 if number == 1 and raw.startswith(b"\xef\xbb\xbf") else 0
      if not raw[begin:end].strip():
        continue
      tab = raw.find(b"\t", begin, end)
      if tab < 0:
        raise formats.FormatError(
          path,
          number,
          "expected 'pid<TAB>passage', found no tab in "
          f"{raw[begin : min(end, begin + 60)]!r}",
        )
      try:
        pid = raw[begin:tab].decode("utf-8").strip()
      except UnicodeDecodeError:
        raise formats.FormatError(
          path, number, "invalid UTF-8 in the pid"
        ) from None
      if not pid or any(c.isspace() for c in pid):
        raise formats.FormatError(
          path, number, f"pid {pid!r} is empty or contains whitespace"
        )
      if not raw[tab + 1 : end].strip():
        raise formats.FormatError(
          path, number, f"empty passage for pid {pid!r}"
        )
      if strict:
        try:
          raw[tab + 1 : end].decode("utf-8")
        except UnicodeDecodeError as e:
          bad = raw[tab + 1 + e.start : tab + 5 + e.start]
          raise formats.FormatError(
            path,
            number,
            f"invalid UTF-8 in the passage of pid {pid!r} at byte "
            f"{e.start} ({bad!r}); pass encoding_errors='replace' to replace bad "
            "bytes",
          ) from None
      starts.append(line_start + tab + 1)
      lengths.append(end - tab - 1)
      lines.append(number)
      pids.append(pid)
  arrays = {
    "starts": np.frombuffer(starts, dtype=np.int64).copy(),
    "lengths": np.frombuffer(lengths, dtype=np.int64).astype(np.int32),
    "lines": np.frombuffer(lines, dtype=np.int64).copy(),
    "pids": pids.to_numpy(),
  }
  return _drop_duplicates(path, arrays, on_duplicate)


def _drop_duplicates(
  path: str, arrays: dict[str, np.ndarray], on_duplicate: formats.OnDuplicate
) -> dict[str, np.ndarray]:
  pids = arrays["pids"]
  if pids.dtype == object:
    first: dict[str, int] = {}
    dup_rows = []
    for row, pid in enumerate(pids.tolist()):
      if pid in first:
        dup_rows.append((row, first[pid]))
      else:
        first[pid] = row
  else:
    order = np.argsort(pids, kind="stable")
    same = pids[order[1:]] == pids[order[:-1]]
    # Within equal pids the stable sort keeps file order: the earlier row is first.
    firsts = order[:-1][same]
    dups = order[1:][same]
    # Map each duplicate to the first row of its pid (runs of 3+ equal pids).
    dup_rows = list(zip(dups.tolist(), firsts.tolist()))
  if not dup_rows:
    return arrays
  if on_duplicate == "error":
    row, first_row = min(dup_rows)
    raise formats.DuplicateIdError(
      path,
      int(arrays["lines"][row]),
      f"duplicate pid {formats.ids_to_strings(pids[row : row + 1])[0]!r} (first on line "
      f"{int(arrays['lines'][first_row])}); pass on_duplicate='keep_first' to keep the first",
    )
  keep = np.ones(len(pids), dtype=bool)
  keep[[row for row, _ in dup_rows]] = False
  logger.warning(
    "%s: %d duplicate pids dropped (first occurrence kept)",
    path,
    int((~keep).sum()),
  )
  return {name: values[keep] for name, values in arrays.items()}


def _decompress(path: str, folder: str) -> str:
  """Decompresses gzip ``path`` into a temporary file beside ``folder``; returns it."""
  parent = os.path.dirname(folder) or "."
  os.makedirs(parent, exist_ok=True)
  fd, text_path = tempfile.mkstemp(
    prefix=os.path.basename(folder) + ".tmp", dir=parent
  )
  try:
    with os.fdopen(fd, "wb") as out, formats.open_binary(path) as f:
      while True:
        try:
          block = f.read(1 << 24)
        except (EOFError, OSError) as e:
          raise formats.FormatError(
            path, None, f"cannot decompress this gzip file ({e})"
          ) from None
        if not block:
          break
        out.write(block)
  except BaseException:
    os.remove(text_path)
    raise
  return text_path


def _save(
  folder: str,
  arrays: dict[str, np.ndarray],
  stamp: dict[str, int],
  text_path: str | None = None,
) -> None:
  parent = os.path.dirname(folder) or "."
  os.makedirs(parent, exist_ok=True)
  tmp = tempfile.mkdtemp(prefix=os.path.basename(folder) + ".tmp", dir=parent)
  if text_path is not None:
    os.replace(text_path, os.path.join(tmp, _TEXT))
  for name, values in arrays.items():
    if name == "pids" and values.dtype == object:
      with open(os.path.join(tmp, "pids.json"), "w", encoding="utf-8") as f:
        json.dump(values.tolist(), f)
    else:
      np.save(os.path.join(tmp, f"{name}.npy"), values)
  with open(os.path.join(tmp, "meta.json"), "w", encoding="utf-8") as f:
    json.dump({**stamp, "count": int(len(arrays["starts"]))}, f)
  try:
    if os.path.isdir(folder):
      stale = folder + f".stale{os.getpid()}"
      os.replace(folder, stale)
      _remove_tree(stale)
    os.replace(tmp, folder)
  except OSError:  # Another process won the race; its index is as good as ours.
    _remove_tree(tmp)


def _remove_tree(folder: str) -> None:
  for name in os.listdir(folder):
    os.remove(os.path.join(folder, name))
  os.rmdir(folder)


def _load(folder: str, stamp: dict[str, int]) -> dict[str, np.ndarray] | None:
  try:
    with open(os.path.join(folder, "meta.json"), encoding="utf-8") as f:
      meta = json.load(f)
  except (OSError, ValueError):
    return None
  if any(meta.get(k) != v for k, v in stamp.items()):
    return None
  if meta.get("gzip") and not os.path.exists(os.path.join(folder, _TEXT)):
    return None
  arrays = {
    name: np.load(os.path.join(folder, f"{name}.npy"), mmap_mode="r")
    for name in ("starts", "lengths", "lines")
  }
  if os.path.exists(os.path.join(folder, "pids.npy")):
    arrays["pids"] = np.load(os.path.join(folder, "pids.npy"), mmap_mode="r")
  else:
    with open(os.path.join(folder, "pids.json"), encoding="utf-8") as f:
      values = json.load(f)
    arrays["pids"] = np.empty(len(values), dtype=object)
    arrays["pids"][:] = values
  return arrays


class PassageIndex:
  """Passages of a ``pid \\t passage`` file, read from disk by pid.

  Acts as a read-only mapping ``pid -> passage`` (``index[pid]``, ``pid in index``,
  ``len(index)``) plus `get_many` and `sample_ids` for list building.

  Args:
    path: the collection file.
    cache_dir: where to keep the index; None keeps it next to the file
      (``collection.tsv.t5rank-index/``) when that folder is writable, else in
      `default_cache_dir`.
    on_duplicate: "error" (default) raises `formats.DuplicateIdError` on a repeated pid;
      "keep_first" keeps the first occurrence.
    encoding_errors: "strict" checks every passage while the index is built and
      raises `formats.FormatError` (file:line) on invalid UTF-8; "replace" accepts
      it and substitutes U+FFFD when the passage is read.
    rebuild: build the index even when a valid one exists.
  """

  def __init__(
    self,
    path: str | os.PathLike[str],
    *,
    cache_dir: str | None = None,
    on_duplicate: formats.OnDuplicate = "error",
    encoding_errors: formats.EncodingErrors = "strict",
    rebuild: bool = False,
  ):
    formats._check_choice("on_duplicate", on_duplicate, ("error", "keep_first"))  # pylint: disable=protected-access
    formats._check_choice(
      "encoding_errors", encoding_errors, ("strict", "replace")
    )  # pylint: disable=protected-access
    self.path = os.path.abspath(os.fspath(path))
    self.encoding_errors = encoding_errors
    compressed = formats.is_gzip(self.path)
    stamp = {
      **_source_stamp(self.path),
      "keep_first": on_duplicate == "keep_first",
      "utf8_checked": encoding_errors == "strict",
      "gzip": compressed,
    }
    self.index_dir = _index_dir(self.path, cache_dir)
    arrays = None if rebuild else _load(self.index_dir, stamp)
    if arrays is None:
      logger.info("Indexing %s into %s", self.path, self.index_dir)
      text_path = _decompress(self.path, self.index_dir) if compressed else None
      try:
        arrays = _scan(
          text_path or self.path, on_duplicate, encoding_errors, name=self.path
        )
      except BaseException:
        if text_path is not None:
          os.remove(text_path)
        raise
      _save(self.index_dir, arrays, stamp, text_path)
      loaded = _load(self.index_dir, stamp)
      arrays = loaded if loaded is not None else arrays
    # Passages are read from the file itself, or from the decompressed copy.
    self._text_path = (
      os.path.join(self.index_dir, _TEXT) if compressed else self.path
    )
    # Plain ndarray views of the memory maps: indexing a np.memmap is ~10x slower.
    self._starts = np.asarray(arrays["starts"])
    self._lengths = np.asarray(arrays["lengths"])
    self._lines = np.asarray(arrays["lines"])
    self._pids = np.asarray(arrays["pids"])
    self._str_rows: dict[str, int] | None = None
    self._dense = False
    self._count = len(self._starts)
    if self._pids.dtype == object:
      self._str_rows = {pid: row for row, pid in enumerate(self._pids.tolist())}
    else:
      n = len(self._pids)
      self._dense = n == 0 or (
        int(self._pids[0]) == 0
        and int(self._pids[-1]) == n - 1
        and bool(np.all(np.diff(self._pids) == 1))
      )
      if not self._dense:
        self._order = np.argsort(self._pids, kind="stable")
        self._sorted = self._pids[self._order]
    self._fd: int | None = None
    if len(self) == 0:
      logger.warning("%s: no passages (empty file?)", self.path)

  # Row lookup --------------------------------------------------------------

  def _row(self, pid: str) -> int:
    """Row of ``pid`` in the index, or -1."""
    if self._str_rows is not None:
      return self._str_rows.get(pid, -1)
    # Only canonical decimal ids ("7", not "07", "+7" or "7 ") name integer pids.
    if not (
      isinstance(pid, str)
      and pid.isdigit()
      and pid.isascii()
      and len(pid) < 19
      and (pid[0] != "0" or len(pid) == 1)
    ):
      return -1
    value = int(pid)
    if self._dense:
      return value if value < self._count else -1
    i = int(np.searchsorted(self._sorted, value))
    if i < len(self._sorted) and int(self._sorted[i]) == value:
      return int(self._order[i])
    return -1

  def rows(self, pids: Sequence[str]) -> np.ndarray:
    """Rows of ``pids`` (int64 array); -1 where a pid is not in the collection."""
    return np.fromiter(
      (self._row(p) for p in pids), dtype=np.int64, count=len(pids)
    )

  def contains_ids(self, ids: np.ndarray | Sequence[str]) -> np.ndarray:
    """Boolean array: which ``ids`` are in the collection (int64 arrays are vectorised)."""
    if isinstance(ids, np.ndarray) and ids.dtype.kind in "iu":
      if self._str_rows is not None:
        return np.fromiter(
          (str(v) in self._str_rows for v in ids.tolist()),
          dtype=bool,
          count=len(ids),
        )
      if self._dense:
        return (ids >= 0) & (ids < self._count)
      if not len(self._sorted):
        return np.zeros(len(ids), dtype=bool)
      at = np.minimum(np.searchsorted(self._sorted, ids), len(self._sorted) - 1)
      return self._sorted[at] == ids
    return np.fromiter(
      (self._row(p) >= 0 for p in ids), dtype=bool, count=len(ids)
    )

  def pid_at(self, rows: Sequence[int] | np.ndarray) -> list[str]:
    """The pids (str) stored at ``rows``."""
    return formats.ids_to_strings(self._pids[np.asarray(rows, dtype=np.int64)])

  # Mapping-like API ----------------------------------------------------------

  def __len__(self) -> int:
    return len(self._starts)

  def __contains__(self, pid: object) -> bool:
    return isinstance(pid, str) and self._row(pid) >= 0

  def __iter__(self) -> Iterator[str]:
    """Iterates over pids in file order."""
    for start in range(0, len(self), 65536):
      yield from self.pid_at(np.arange(start, min(start + 65536, len(self))))

  def __getitem__(self, pid: str) -> str:
    row = self._row(pid)
    if row < 0:
      raise KeyError(pid)
    return self._read(row)

  def get(self, pid: str, default: str | None = None) -> str | None:
    row = self._row(pid)
    return default if row < 0 else self._read(row)

  def get_many(self, pids: Sequence[str]) -> list[str]:
    """Passages of ``pids`` in the given order.

    Raises:
      KeyError: a pid is not in the collection.
    """
    out = []
    for pid in pids:
      row = self._row(pid)
      if row < 0:
        raise KeyError(pid)
      out.append(self._read(row))
    return out

  def sample_ids(
    self, rng: random.Random | np.random.Generator, k: int
  ) -> list[str]:
    """``k`` pids drawn uniformly with replacement (use distinct ones from them)."""
    if isinstance(rng, np.random.Generator):
      return self.pid_at(rng.integers(0, len(self), size=k))
    return self.pid_at([rng.randrange(len(self)) for _ in range(k)])

  def _read(self, row: int) -> str:
    if self._fd is None:
      self._fd = os.open(self._text_path, os.O_RDONLY)
    data = os.pread(self._fd, int(self._lengths[row]), int(self._starts[row]))
    try:
      return data.decode("utf-8")
    except UnicodeDecodeError as e:
      if self.encoding_errors == "replace":
        return data.decode("utf-8", "replace")
      raise formats.FormatError(
        self.path,
        int(self._lines[row]),
        f"invalid UTF-8 in the passage at byte {e.start}; pass encoding_errors='replace'",
      ) from None

  def close(self) -> None:
    if self._fd is not None:
      os.close(self._fd)
      self._fd = None

  def __enter__(self) -> PassageIndex:
    return self

  def __exit__(self, *exc) -> None:
    self.close()

  def __del__(self):
    try:
      self.close()
    except Exception:  # pylint: disable=broad-except
      pass

  def __getstate__(self):
    state = self.__dict__.copy()
    state["_fd"] = None
    return state
