"""`t5rank-rerank`: rerank a candidate run with a T5X checkpoint into a TREC run.

::

  t5rank-rerank --gin_file=demo/model.gin \\
      --gin.CHECKPOINT_PATH="'/tmp/t5rank_demo/checkpoint_400'" \\
      --collection=collection.tsv --queries=queries.dev.tsv \\
      --run=run.dev.tsv --output=reranked.trec [--depth=1000] \\
      [--qrels=qrels.dev.tsv] [--batch_size=8]

The model comes from its gin file (``MODEL``), the rest of the setup from
``runs/rerank.gin`` (added after the given files; ``--gin.X=...`` overrides
it). The scoring is T5X's: the checkpoint is restored by
`t5x.utils.TrainStateInitializer.from_checkpoint`, the model's `score_batch`
runs partitioned by T5X's partitioner (`PjitPartitioner`) through
`t5x.utils.get_infer_fn`, which also shards the input between hosts; the same
command scores on one CPU, a GPU or a TPU slice.

Packed (default, ``PACK = True``): the pairs of a chunk, of any queries,
sorted by length, share encoder rows (`t5rank.data.packing.pack_lists`; one
pack holds ``ROWS_PER_PACK`` rows of ``ROW_LENGTH`` tokens), so neither padded
tokens nor padded items are scored. Unpacked: lists of ``LIST_SIZE`` pairs
padded to ``INPUT_LENGTH`` tokens, the layout of T5X's eval.

Each query's top ``depth`` candidates are reranked; the rest stay below them
in their original order. Scored pairs are appended to ``<output>.partial`` in
``fsync``'d chunks of ``CHUNK_PAIRS``; a stopped rerank started again with the
same arguments skips the chunks already scored, and the pairs of a chunk are
always packed the same way, so the output is byte-identical to an
uninterrupted run. The output is written at the end (`t5rank.data.
rerank_files`): sorted by score, ties by docno descending as trec_eval sorts.
With ``--qrels`` the metrics of the input and the reranked run are printed
side by side (means over the judged queries, `t5rank.data.metric_fns`).

On several hosts (one JAX process each, `jax.distributed.initialize`), every
process runs the same command: T5X's infer function scores each host's shard
of a batch and hands every process all the scores; only process 0 writes
``<output>.partial`` and ``<output>``, so ``output`` should be on a file
system all hosts share (as T5X's model_dir) for a stopped run to resume.
"""

from collections.abc import Sequence
import dataclasses
import os
import sys
import time
from typing import Any

from absl import flags
from absl import logging
import numpy as np

from t5rank.data import formats
from t5rank.data import msmarco
from t5rank.data import packing
from t5rank.data import preprocessors
from t5rank.data import rerank_files

RERANK_GIN_FILE = "runs/rerank.gin"


@dataclasses.dataclass(frozen=True)
class PackingConfig:
  """How pairs are laid out for the model.

  Attributes:
    pack: pack pairs into shared rows (True) or pad lists (False).
    input_length: most tokens of a pair (longer ones are cut, EOS kept).
    row_length: tokens per encoder row when packing (None: input_length).
    max_segments_per_row: most pairs per row when packing; each is one
      decoder position of an enc-dec model, paid for even when empty
      (8: ~3 MS-MARCO pairs fill a 256-token row).
    rows_per_pack: rows of one packed element.
    list_size: pairs per unpacked element.
  """

  pack: bool = True
  input_length: int = 256
  row_length: int | None = None
  max_segments_per_row: int = 8
  rows_per_pack: int = 8
  list_size: int = 32

  @property
  def row_tokens(self) -> int:
    return self.row_length or self.input_length


def tokenize_pairs(
  vocabulary,
  pairs: Sequence[tuple[str, str]],
  queries,
  passages,
  *,
  input_length: int,
  template: str = preprocessors.DEFAULT_TEMPLATE,
) -> list[np.ndarray]:
  """Token ids of each pair's text (``template``), cut to fit, EOS last."""
  out = []
  for qid, pid in pairs:
    ids = list(
      vocabulary.encode(
        template.format(query=queries[qid], passage=passages[pid])
      )
    )
    out.append(
      np.asarray(ids[: input_length - 1] + [vocabulary.eos_id], np.int32)
    )
  return out


def group_into_packs(
  lengths: Sequence[int],
  *,
  rows: int,
  row_length: int,
  max_segments_per_row: int,
) -> list[list[int]]:
  """Indices of items per pack; every pack fits its rows without cutting.

  Items are taken longest first (index breaks ties) and placed first-fit into
  the rows of the open pack; an item that fits in none of them, with every row
  open, closes the pack and opens the next. This is the first-fit decreasing
  placement that `packing.pack_lists` makes of each pack, so nothing is cut.

  >>> group_into_packs([5, 3, 4, 2, 6], rows=2, row_length=8,
  ...                  max_segments_per_row=4)
  [[4, 0], [2, 1, 3]]
  """
  order = sorted(range(len(lengths)), key=lambda i: (-lengths[i], i))
  packs, current, tokens, segments = [], [], [], []
  for i in order:
    n = int(lengths[i])
    if n > row_length:
      raise ValueError(f"item {i} has {n} tokens > row_length={row_length}")
    row = next(
      (
        r
        for r in range(len(tokens))
        if tokens[r] + n <= row_length and segments[r] < max_segments_per_row
      ),
      None,
    )
    if row is None:
      if len(tokens) == rows:
        packs.append(current)
        current, tokens, segments = [], [], []
      tokens.append(0)
      segments.append(0)
      row = len(tokens) - 1
    tokens[row] += n
    segments[row] += 1
    current.append(i)
  if current:
    packs.append(current)
  return packs


def _packed_element(
  tokens: Sequence[np.ndarray], cfg: PackingConfig, score_token: int | None
) -> dict[str, np.ndarray]:
  slots = cfg.rows_per_pack * cfg.max_segments_per_row
  width = max([len(t) for t in tokens] + [1])
  padded = np.zeros((1, slots, width), np.int32)
  mask = np.zeros((1, slots), bool)
  for j, ids in enumerate(tokens):
    padded[0, j, : len(ids)] = ids
    mask[0, j] = True
  targets = (
    None if score_token is None else np.full((1, slots), score_token, np.int32)
  )
  out = packing.pack_lists(
    padded,
    mask,
    targets,
    num_rows=cfg.rows_per_pack,
    row_length=cfg.row_tokens,
    max_segments_per_row=cfg.max_segments_per_row,
  )
  if int(out["packing_truncated_items"]):
    raise RuntimeError(
      "a rerank pack was cut; this is a bug in group_into_packs"
    )
  features = {k: v for k, v in out.items() if not k.startswith("packing_")}
  features["label"] = np.zeros((1, slots), np.float32)
  features["mask"] = mask
  return features


def _unpacked_element(
  tokens: Sequence[np.ndarray], cfg: PackingConfig, score_token: int | None
) -> dict[str, np.ndarray]:
  size = cfg.list_size
  padded = np.zeros((size, cfg.input_length), np.int32)
  mask = np.zeros((size,), bool)
  for j, ids in enumerate(tokens):
    padded[j, : len(ids)] = ids
    mask[j] = True
  features = {
    "encoder_input_tokens": padded,
    "label": np.zeros((size,), np.float32),
    "mask": mask,
  }
  if score_token is not None:
    features["decoder_input_tokens"] = np.zeros((size, 1), np.int32)
    features["decoder_target_tokens"] = np.full(
      (size, 1), score_token, np.int32
    )
  return features


def model_elements(
  tokens: Sequence[np.ndarray], cfg: PackingConfig, score_token: int | None
) -> tuple[list[dict[str, np.ndarray]], list[list[int]]]:
  """Model inputs of a chunk of tokenised pairs; and which pair is where.

  Returns ``(elements, slots)``: ``elements[e]`` is one model example (a
  pack, or a padded list); ``slots[e][j]`` is the index (into ``tokens``) of
  the pair whose score is column ``j`` of the model's ``[1, K]`` or ``[L]``
  output for that example. ``score_token`` is the decoder target of enc-dec
  models; None builds encoder-only inputs.
  """
  if cfg.pack:
    groups = group_into_packs(
      [len(t) for t in tokens],
      rows=cfg.rows_per_pack,
      row_length=cfg.row_tokens,
      max_segments_per_row=cfg.max_segments_per_row,
    )
    make = _packed_element
  else:
    groups = [
      list(range(i, min(i + cfg.list_size, len(tokens))))
      for i in range(0, len(tokens), cfg.list_size)
    ]
    make = _unpacked_element
  elements = [make([tokens[i] for i in g], cfg, score_token) for g in groups]
  return elements, groups


def _score_token(model) -> int | None:
  """The decoder target token of an enc-dec model; None for encoder-only."""
  from t5rank.models import models  # pylint: disable=g-import-not-at-top

  if isinstance(model, models.RankingEncoderModel):
    return None
  ids = getattr(model, "score_token_ids", None)
  if ids:
    return int(ids[0])
  return preprocessors.score_token_id(model.output_vocabulary)


class _Scorer:
  """The model's `score_batch` over T5X's restored, partitioned state."""

  def __init__(
    self,
    model,
    checkpoint_path: str,
    partitioner,
    batch_size: int,
    example: dict[str, np.ndarray],
  ):
    # pylint: disable=g-import-not-at-top
    from t5x import partitioning
    from t5x import utils as t5x_utils

    # pylint: enable=g-import-not-at-top
    if partitioner is None:
      partitioner = partitioning.PjitPartitioner(
        num_partitions=1,
        logical_axis_rules=partitioning.standard_logical_axis_rules(),
      )
    input_shapes = {k: (batch_size,) + v.shape for k, v in example.items()}
    input_types = {k: v.dtype for k, v in example.items()}
    initializer = t5x_utils.TrainStateInitializer(
      optimizer_def=None,
      init_fn=model.get_initial_variables,
      input_shapes=input_shapes,
      input_types=input_types,
      partitioner=partitioner,
    )
    # As T5X's eval: Orbax checkpoints, or the legacy format (a `checkpoint`
    # file in the folder).
    legacy = os.path.exists(os.path.join(checkpoint_path, "checkpoint"))
    self.train_state, _ = t5x_utils.create_checkpoint_manager_and_restore(
      initializer,
      partitioner,
      t5x_utils.RestoreCheckpointConfig(
        path=checkpoint_path, mode="specific", dtype="float32"
      ),
      checkpoint_path,
      fallback_init_rng=None,
      use_orbax=not legacy,
    )
    if self.train_state is None:
      raise FileNotFoundError(
        f"checkpoint_path={checkpoint_path!r}: no checkpoint restored"
      )
    self.infer_fn = t5x_utils.get_infer_fn(
      infer_step=model.score_batch,
      batch_size=batch_size,
      train_state_axes=initializer.train_state_axes,
      partitioner=partitioner,
    )

  def __call__(
    self, elements: Sequence[dict[str, np.ndarray]]
  ) -> list[np.ndarray]:
    import tensorflow as tf  # pylint: disable=g-import-not-at-top

    stacked = {k: np.stack([e[k] for e in elements]) for k in elements[0]}
    ds = tf.data.Dataset.from_tensor_slices(stacked).enumerate()
    results = self.infer_fn(ds, self.train_state)
    out = [None] * len(elements)
    for index, scores in results:
      out[int(index)] = np.asarray(scores, np.float32).reshape(-1)
    return out


def _check_checkpoint(checkpoint_path: str | None) -> None:
  import tensorflow as tf  # pylint: disable=g-import-not-at-top

  if not checkpoint_path:
    raise ValueError(
      "checkpoint_path is not set; pass "
      "--gin.CHECKPOINT_PATH=\"'/path/to/checkpoint_N'\""
    )
  if not tf.io.gfile.exists(checkpoint_path):
    raise FileNotFoundError(
      f"checkpoint_path={checkpoint_path!r} does not exist (expected a T5X "
      "checkpoint folder such as <model_dir>/checkpoint_1000)"
    )


def rerank(
  *,
  model: Any,
  checkpoint_path: str,
  collection: str,
  queries: str,
  run: str,
  output: str,
  depth: int | None = 1000,
  qrels: str | None = None,
  batch_size: int = 8,
  packing_config: PackingConfig = PackingConfig(),
  chunk_pairs: int = 4096,
  partitioner: Any = None,
  template: str = preprocessors.DEFAULT_TEMPLATE,
  tag: str = "t5rank",
  max_chunks: int | None = None,
) -> dict[str, Any] | None:
  """Reranks ``run`` with ``model`` at ``checkpoint_path`` into ``output``.

  Args:
    model: a t5rank T5X model (`RankingEncDecModel`, `RankingEncoderModel`).
    checkpoint_path: a T5X checkpoint folder (``.../checkpoint_N``).
    collection: ``pid \\t passage`` file.
    queries: ``qid \\t query`` file.
    run: candidate run (TREC, MS-MARCO 3-column or top1000).
    output: the TREC run to write (``<output>.partial`` holds the progress).
    depth: candidates of each query to rerank (None: all).
    qrels: when set, the input and reranked runs' metrics are logged,
      printed and returned.
    batch_size: examples (packs or lists) per T5X batch (global).
    packing_config: the layout of pairs (`PackingConfig`).
    chunk_pairs: pairs per durable chunk of ``<output>.partial``.
    partitioner: a T5X partitioner (None: `PjitPartitioner`, 1 partition).
    template: a pair's text, with ``{query}`` and ``{passage}``.
    tag: the run tag (last column).
    max_chunks: stop after scoring this many chunks (``output`` is then not
      written; run again to continue); None: run to the end.

  Returns:
    ``{"rows": rows written, "metrics": {"input": ..., "reranked": ...}}``
    (metrics only with ``qrels``), or None when stopped by ``max_chunks`` and
    in every process but process 0, which alone writes files.
  """
  import jax  # pylint: disable=g-import-not-at-top

  writes = jax.process_index() == 0
  _check_checkpoint(checkpoint_path)
  if chunk_pairs < 1:
    raise ValueError(f"chunk_pairs={chunk_pairs}; expected >= 1")
  query_texts = formats.read_queries(queries)
  passages = msmarco.open_collection(collection)
  candidates = rerank_files.read_candidates(
    run, query_texts, passages, depth=depth
  )
  pairs = candidates.pairs
  partial = rerank_files.PartialScores(output + ".partial")
  scores = partial.load(expected=set(pairs))
  chunks = [
    pairs[i : i + chunk_pairs] for i in range(0, len(pairs), chunk_pairs)
  ]
  todo = [c for c in chunks if any(p not in scores for p in c)]
  logging.info(
    "rerank: %d queries, %d pairs to score (%d already in %s).",
    len(candidates.query_ids),
    len(pairs),
    len(scores),
    partial.path,
  )
  if todo:
    cfg = packing_config
    score_token = _score_token(model)
    vocabulary = model.input_vocabulary
    scorer = None
    start, done_now = time.time(), 0
    for number, chunk in enumerate(todo):
      if max_chunks is not None and number >= max_chunks:
        logging.info(
          "rerank: stopped after %d chunks (max_chunks).", max_chunks
        )
        return None
      tokens = tokenize_pairs(
        vocabulary,
        chunk,
        query_texts,
        passages,
        input_length=cfg.input_length,
        template=template,
      )
      elements, slots = model_elements(tokens, cfg, score_token)
      if scorer is None:
        scorer = _Scorer(
          model, checkpoint_path, partitioner, batch_size, elements[0]
        )
      outputs = scorer(elements)
      chunk_scores = [0.0] * len(chunk)
      for out, slot in zip(outputs, slots):
        for j, i in enumerate(slot):
          chunk_scores[i] = float(out[j])
      new = [(p, s) for p, s in zip(chunk, chunk_scores) if p not in scores]
      if writes:
        partial.append([p for p, _ in new], [s for _, s in new])
      scores.update(new)
      done_now += len(chunk)
      elapsed = time.time() - start
      rate = done_now / max(elapsed, 1e-9)
      remaining = len(pairs) - len(scores)
      logging.info(
        "rerank: %d/%d pairs, %.1f pairs/s, ETA %.0f s",
        len(scores),
        len(pairs),
        rate,
        remaining / rate,
      )
  if not writes:
    return None
  # The output is built from the partial file's text in both an uninterrupted
  # and a resumed run, so the two are byte-identical.
  reranked = rerank_files.reranked_run(
    candidates, partial.load(expected=set(pairs))
  )
  rows = rerank_files.write_reranked_run(output, reranked, tag=tag)
  partial.remove()
  logging.info("rerank: wrote %d rows to %s", rows, output)
  result: dict[str, Any] = {"rows": rows}
  if qrels:
    judged = formats.read_qrels(qrels)
    runs = {
      "input": rerank_files.input_run_scores(candidates),
      "reranked": reranked,
    }
    result["metrics"] = rerank_files.evaluate_runs(runs, judged)
    table = rerank_files.format_metrics(result["metrics"])
    print(table)
    logging.info("rerank metrics:\n%s", table)
  return result


def _define_flags(values: flags.FlagValues) -> None:
  flags.DEFINE_multi_string(
    "gin_file", [], "Gin files (model first).", flag_values=values
  )
  flags.DEFINE_multi_string(
    "gin_bindings", [], "Gin bindings.", flag_values=values
  )
  flags.DEFINE_list(
    "gin_search_paths", ["."], "Gin search paths.", flag_values=values
  )
  for name, text in (
    ("collection", "pid<TAB>passage file"),
    ("queries", "qid<TAB>query file"),
    ("run", "candidate run (TREC, MS-MARCO or top1000)"),
    ("output", "TREC run to write"),
  ):
    flags.DEFINE_string(name, None, text, flag_values=values, required=True)
  flags.DEFINE_integer(
    "depth", 1000, "candidates per query to rerank", flag_values=values
  )
  flags.DEFINE_string(
    "qrels", None, "qrels: print metrics of both runs", flag_values=values
  )
  flags.DEFINE_integer(
    "batch_size",
    None,
    "examples per batch (gin BATCH_SIZE when unset)",
    flag_values=values,
  )


def main(argv: Sequence[str] | None = None) -> None:
  """`t5rank-rerank`: parses flags and gin files, then runs `rerank`."""
  run_from_flags(argv)


def run_from_flags(
  argv: Sequence[str] | None = None,
) -> dict[str, Any] | None:
  """`main`'s work; returns what `rerank` returns."""
  from t5rank import main as main_lib  # pylint: disable=g-import-not-at-top

  main_lib._require_t5x("t5rank-rerank")  # pylint: disable=protected-access
  # pylint: disable=g-import-not-at-top
  from t5x import gin_utils

  import gin

  # pylint: enable=g-import-not-at-top
  args = sys.argv[1:] if argv is None else list(argv)
  args = main_lib.with_t5rank_gin_dir(gin_utils.rewrite_gin_args(args))
  values = flags.FlagValues()
  _define_flags(values)
  values(["t5rank-rerank"] + list(args))
  gin_files = list(values.gin_file)
  if RERANK_GIN_FILE not in gin_files:
    gin_files.append(RERANK_GIN_FILE)
  gin_utils.parse_gin_flags(
    values.gin_search_paths, gin_files, values.gin_bindings
  )
  kwargs = dict(
    collection=values.collection,
    queries=values.queries,
    run=values.run,
    output=values.output,
    depth=values.depth,
    qrels=values.qrels,
  )
  if values.batch_size is not None:
    kwargs["batch_size"] = values.batch_size
  logging.set_verbosity(logging.INFO)
  return gin.get_configurable(rerank)(**kwargs)
