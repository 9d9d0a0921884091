"""seqio preprocessors that turn list examples into ranking features.

A *list example* holds one query and the passages ranked for it::

  {"query_id": "q1", "query": "...", "passage_ids": ["p1", "p2"],
   "passages": ["...", "..."], "label": [1., 0.]}

The preprocessors here are plain ``tf.data.Dataset -> tf.data.Dataset``
functions, in the order a task applies them:

1. `qna_to_list_examples` (only for TFDS ``huggingface:ms_marco/v2.1``
   records) and `shuffle_lists` (seeded, per query),
2. `truncate_lists` cuts every list feature to the list size ``L`` of the
   ``sequence_length`` that seqio passes in (``inputs: (L, T)``),
3. `format_inputs` writes one string per item from a template, by default
   ``"Query: {query} Document: {passage}"``,
4. `tokenize_inputs` tokenises the ``[L]`` strings into ragged ``[L, None]``
   ids with ``seqio.ByteVocabulary`` or ``seqio.SentencePieceVocabulary``,
   cuts each item to ``T`` tokens and keeps seqio's EOS rule
   (``append_eos_after_trim``: trim to ``T - 1``, then append EOS),
5. `add_score_targets` adds ``targets`` ``[L, 1]`` (the id of the token whose
   logit is the item's score) and `add_item_mask` adds ``mask`` ``[L]``.

Output of the chain (what a task declares as output features)::

  inputs   int32   [L, None] ragged     targets  int32  [L, 1]
  label    float32 [L]                  mask     bool   [L]
  query_id string  []                   passage_ids string [L]
  targets_pretokenized string []   (the score token, so seqio's evaluator
                                    never decodes the [L, 1] targets)

Example (ByteVocabulary: ids are UTF-8 bytes + 3, EOS is 1):

>>> import seqio, tensorflow as tf
>>> vocab = seqio.ByteVocabulary()
>>> ds = tf.data.Dataset.from_tensors({
...     "query": "q", "passages": ["ab", "c"],
...     "passage_ids": ["p1", "p2"], "label": [1., 0.]})
>>> ds = format_inputs(ds, template="{query}{passage}")
>>> features = {"inputs": seqio.Feature(vocab, add_eos=True, rank=2)}
>>> ds = tokenize_inputs(ds, output_features=features,
...                      sequence_length={"inputs": (2, 3)})
>>> next(iter(ds))["inputs"].to_list()
[[116, 100, 1], [116, 102, 1]]
"""

from collections.abc import Mapping
from collections.abc import Sequence

import seqio
import tensorflow as tf

DEFAULT_TEMPLATE = "Query: {query} Document: {passage}"

# The score token of the encoder-decoder head. `<extra_id_10>` is the token
# the RankT5 paper and Rax's T5X example use with T5's SentencePiece vocabulary
# (id 32089 in the 32100-id vocabulary). ByteVocabulary has no sentinels:
# id 258 is the byte 0xFF, which never occurs in UTF-8 text, so like a
# sentinel it carries no meaning from pre-training and needs no extra rows.
DEFAULT_SCORE_TOKEN = "<extra_id_10>"
BYTE_SCORE_TOKEN_ID = 258

_LIST_FEATURES = (
  "passage_ids",
  "passages",
  "label",
  "mask",
  "inputs",
  "targets",
)

LengthType = int | Sequence[int] | None


def _list_and_token_lengths(
  sequence_length: Mapping[str, LengthType] | None,
) -> tuple[int | None, int | None]:
  """Returns (list size L, token budget T) from seqio's `sequence_length`.

  ``inputs`` is ``(L, T)`` in ranking tasks; an int means ``T`` alone (a plain
  seqio length); ``label`` may give ``L`` when ``inputs`` does not.
  """
  if not sequence_length:
    return None, None
  list_size, tokens = None, None
  inputs = sequence_length.get("inputs")
  if isinstance(inputs, int):
    tokens = inputs
  elif inputs is not None:
    inputs = tuple(inputs)
    if len(inputs) != 2:
      raise ValueError(
        f"sequence_length['inputs']={inputs!r}: expected (list_size, "
        "tokens) or tokens"
      )
    list_size, tokens = inputs
  label = sequence_length.get("label")
  if list_size is None and label is not None:
    list_size = label if isinstance(label, int) else tuple(label)[0]
  return list_size, tokens


def truncate_lists(
  dataset: tf.data.Dataset,
  sequence_length: Mapping[str, LengthType] | None = None,
) -> tf.data.Dataset:
  """Keeps the first ``L`` items of every list feature.

  ``L`` comes from ``sequence_length["inputs"][0]`` (or ``["label"]``); without
  it the lists are kept whole. Cutting before tokenising saves the work on
  items the model would never see, and keeps ``passage_ids`` aligned with
  ``label`` (seqio's own trimming only touches output features).
  Lists are built (and shuffled) before this step, so which items survive is
  decided there: `t5rank.data.lists` keeps a positive in training lists.

  >>> ds = tf.data.Dataset.from_tensors({"query_id": "q", "label": [1., 0., 0.],
  ...                                    "passage_ids": ["a", "b", "c"]})
  >>> ex = next(iter(truncate_lists(ds, {"label": (2,)})))
  >>> ex["label"].numpy().tolist(), ex["passage_ids"].numpy().tolist()
  ([1.0, 0.0], [b'a', b'b'])
  """
  list_size, _ = _list_and_token_lengths(sequence_length)
  if list_size is None:
    return dataset

  @seqio.map_over_dataset
  def truncate(features):
    return {
      k: v[:list_size] if k in _LIST_FEATURES else v
      for k, v in features.items()
    }

  return truncate(dataset)


@seqio.map_over_dataset
def format_inputs(
  features: Mapping[str, tf.Tensor],
  template: str = DEFAULT_TEMPLATE,
  keep_texts: bool = False,
) -> dict[str, tf.Tensor]:
  """Writes ``inputs[i] = template.format(query=query, passage=passages[i])``.

  The template may use ``{query}`` and ``{passage}`` (each at most once, in any
  order). ``query`` and ``passages`` are dropped unless ``keep_texts``.

  >>> ds = tf.data.Dataset.from_tensors({"query": "cat", "passages": ["a", "b"]})
  >>> next(iter(format_inputs(ds)))["inputs"].numpy().tolist()
  [b'Query: cat Document: a', b'Query: cat Document: b']
  """
  pieces = _split_template(template)
  parts = []
  for kind, text in pieces:
    if kind == "text":
      parts.append(text)
    elif kind == "query":
      parts.append(features["query"])  # a scalar; string_join broadcasts it
    else:
      parts.append(features["passages"])
  out = dict(features)
  out["inputs"] = tf.strings.join(parts)
  if not keep_texts:
    out.pop("query")
    out.pop("passages")
  return out


def _split_template(template: str) -> list[tuple[str, str]]:
  """Splits a template into literal text, {query} and {passage} pieces."""
  pieces = []
  rest = template
  while rest:
    starts = {f: rest.find("{" + f + "}") for f in ("query", "passage")}
    starts = {f: i for f, i in starts.items() if i >= 0}
    if not starts:
      pieces.append(("text", rest))
      break
    field = min(starts, key=starts.get)
    if starts[field] > 0:
      pieces.append(("text", rest[: starts[field]]))
    pieces.append((field, ""))
    rest = rest[starts[field] + len(field) + 2 :]
  if sum(kind == "passage" for kind, _ in pieces) != 1:
    raise ValueError(
      f"template={template!r}: expected exactly one '{{passage}}' field"
    )
  if sum(kind == "query" for kind, _ in pieces) > 1:
    raise ValueError(f"template={template!r}: '{{query}}' appears twice")
  leftover = "".join(t for kind, t in pieces if kind == "text")
  if "{" in leftover or "}" in leftover:
    raise ValueError(
      f"template={template!r}: only '{{query}}' and '{{passage}}' fields "
      "are supported"
    )
  return pieces


def encode_strings(
  vocabulary: seqio.Vocabulary,
  strings: tf.Tensor,
  max_tokens: int | None = None,
) -> tf.RaggedTensor:
  """Tokenises a 1-D string tensor into ragged int32 ids ``[n, None]``.

  ``vocabulary.encode_tf`` of seqio works on one string; on ``[n]`` strings
  SentencePiece returns ragged ids, but ByteVocabulary's ``decode_raw`` needs
  strings of equal length. ByteVocabulary is therefore decoded here with
  zero-padding to the longest string (or to ``max_tokens`` bytes, which also
  truncates before any work is done) and made ragged again by byte length.
  Other vocabularies are mapped string by string.

  >>> encode_strings(seqio.ByteVocabulary(), tf.constant(["ab", "", "c"])
  ...                ).to_list()
  [[100, 101], [], [102]]
  """
  strings = tf.convert_to_tensor(strings, tf.string)
  if isinstance(vocabulary, seqio.ByteVocabulary):
    lengths = tf.strings.length(strings, unit="BYTE")
    if max_tokens is not None:
      lengths = tf.minimum(lengths, max_tokens)
    width = tf.maximum(tf.reduce_max(tf.concat([lengths, [0]], 0)), 1)
    dense = tf.io.decode_raw(strings, tf.uint8, fixed_length=width)
    ids = tf.RaggedTensor.from_tensor(tf.cast(dense, tf.int32), lengths=lengths)
    return ids + _byte_offset(vocabulary)
  if isinstance(vocabulary, seqio.SentencePieceVocabulary):
    ids = vocabulary.encode_tf(strings)
  else:
    ids = tf.map_fn(
      vocabulary.encode_tf,
      strings,
      fn_output_signature=tf.RaggedTensorSpec([None], tf.int32),
    )
  if not isinstance(ids, tf.RaggedTensor):
    ids = tf.RaggedTensor.from_tensor(ids)
  ids = tf.cast(ids, tf.int32)
  if max_tokens is not None:
    ids = ids[:, :max_tokens]
  return ids


def _byte_offset(vocabulary: seqio.ByteVocabulary) -> int:
  # The id of byte 0: ByteVocabulary reserves the ids below it for PAD/EOS/UNK.
  return vocabulary.encode("\x00")[0]


def tokenize_inputs(
  dataset: tf.data.Dataset,
  output_features: Mapping[str, seqio.Feature],
  sequence_length: Mapping[str, LengthType] | None = None,
  feature: str = "inputs",
) -> tf.data.Dataset:
  """Tokenises the ``[L]`` strings of ``feature`` into ragged ids ``[L, None]``.

  With a token budget ``T`` (``sequence_length["inputs"] == (L, T)``) every
  item keeps at most ``T`` ids. When the output feature has ``add_eos`` the
  item is cut to ``T - 1`` ids and EOS is appended, exactly as seqio's
  ``append_eos_after_trim`` does for one sequence, so a truncated passage
  still ends in EOS as in T5's pre-training. Without a budget nothing is cut.

  >>> ds = tf.data.Dataset.from_tensors({"inputs": ["abcd", "e"]})
  >>> features = {"inputs": seqio.Feature(seqio.ByteVocabulary(), rank=2)}
  >>> ex = next(iter(tokenize_inputs(ds, features, {"inputs": (2, 3)})))
  >>> ex["inputs"].to_list()
  [[100, 101, 1], [104, 1]]
  """
  spec = output_features[feature]
  vocab = spec.vocabulary
  _, tokens = _list_and_token_lengths(
    {"inputs": sequence_length.get(feature)} if sequence_length else None
  )
  if tokens is not None and spec.add_eos and tokens < 1:
    raise ValueError(
      f"sequence_length[{feature!r}] token budget={tokens}: "
      "need at least 1 token for EOS"
    )
  budget = None if tokens is None else tokens - int(bool(spec.add_eos))

  @seqio.map_over_dataset
  def tokenize(features):
    out = dict(features)
    ids = encode_strings(vocab, features[feature], budget)
    if spec.add_eos:
      eos = tf.fill([ids.nrows(), 1], tf.constant(vocab.eos_id, tf.int32))
      ids = tf.concat([ids, eos], axis=1)
    out[feature] = ids
    return out

  return tokenize(dataset)


def score_token_id(
  vocabulary: seqio.Vocabulary, score_token: str | int | None = None
) -> int:
  """The id whose logit is the item's score.

  ``score_token`` may be an id, a token string that the vocabulary encodes to
  exactly one id, or None for the default: ``<extra_id_10>`` for SentencePiece
  vocabularies with sentinels, id 258 (byte 0xFF) for ByteVocabulary.

  >>> score_token_id(seqio.ByteVocabulary())
  258
  >>> score_token_id(seqio.ByteVocabulary(), "x")
  123
  """
  if score_token is None:
    if isinstance(vocabulary, seqio.ByteVocabulary):
      return BYTE_SCORE_TOKEN_ID
    score_token = DEFAULT_SCORE_TOKEN
  if isinstance(score_token, int):
    token_id = score_token
  else:
    ids = list(vocabulary.encode(score_token))
    if len(ids) != 1:
      raise ValueError(
        f"score_token={score_token!r} encodes to {len(ids)} ids {ids} with "
        f"{type(vocabulary).__name__}; give a token that is one id, or the "
        "id itself"
      )
    token_id = int(ids[0])
  if not 0 <= token_id < vocabulary.vocab_size:
    raise ValueError(
      f"score_token id={token_id} is outside the vocabulary "
      f"(size {vocabulary.vocab_size})"
    )
  return token_id


def add_score_targets(
  dataset: tf.data.Dataset,
  output_features: Mapping[str, seqio.Feature],
  score_token: str | int | None = None,
) -> tf.data.Dataset:
  """Adds ``targets`` ``[L, 1]``: the score token's id for every item.

  Also adds ``targets_pretokenized`` (the token as a string) so that seqio's
  evaluator hands it to the task's postprocess_fn instead of decoding the
  ``[L, 1]`` ids.

  >>> ds = tf.data.Dataset.from_tensors({"label": [1., 0.]})
  >>> features = {"targets": seqio.Feature(seqio.ByteVocabulary(), rank=2)}
  >>> next(iter(add_score_targets(ds, features)))["targets"].numpy().tolist()
  [[258], [258]]
  """
  vocab = output_features["targets"].vocabulary
  token = score_token_id(vocab, score_token)
  text = score_token if isinstance(score_token, str) else str(token)

  @seqio.map_over_dataset
  def add_targets(features):
    out = dict(features)
    n = tf.shape(features["label"])[0]
    out["targets"] = tf.fill([n, 1], tf.constant(token, tf.int32))
    out["targets_pretokenized"] = tf.constant(text)
    return out

  return add_targets(dataset)


@seqio.map_over_dataset
def add_item_mask(features: Mapping[str, tf.Tensor]) -> dict[str, tf.Tensor]:
  """Adds ``mask`` bool ``[L]``, True for every item present (if missing).

  Padding items, added later by the feature converter, get False.

  >>> ds = tf.data.Dataset.from_tensors({"label": [1., 0.]})
  >>> next(iter(add_item_mask(ds)))["mask"].numpy().tolist()
  [True, True]
  """
  out = dict(features)
  if "mask" not in out:
    out["mask"] = tf.ones_like(features["label"], dtype=tf.bool)
  return out


def shuffle_lists(dataset: tf.data.Dataset, seed: int = 0) -> tf.data.Dataset:
  """Shuffles the items of every list, seeded by (seed, hash of query_id).

  The permutation depends only on the seed and the query id, never on the
  order in which examples are read, so the same seed gives the same lists on
  every host and every epoch. Used before `truncate_lists` so that the items
  kept from a long list are a uniform sample (as Rax's T5X example does).

  >>> ds = tf.data.Dataset.from_tensors({"query_id": "q", "label": [1., 2., 3.],
  ...                                    "passage_ids": ["a", "b", "c"]})
  >>> ex = next(iter(shuffle_lists(ds, seed=1)))
  >>> sorted(ex["label"].numpy().tolist())
  [1.0, 2.0, 3.0]
  """

  @seqio.map_over_dataset
  def shuffle(features):
    qid_hash = tf.strings.to_hash_bucket_fast(features["query_id"], 2**31 - 1)
    op_seed = tf.stack([tf.constant(seed, tf.int64), qid_hash])
    n = tf.shape(features["label"])[0]
    order = tf.random.experimental.stateless_shuffle(tf.range(n), op_seed)
    return {
      k: tf.gather(v, order) if k in _LIST_FEATURES else v
      for k, v in features.items()
    }

  return shuffle(dataset)


@seqio.map_over_dataset
def qna_to_list_examples(
  features: Mapping[str, tf.Tensor],
) -> dict[str, tf.Tensor]:
  """Turns an MS-MARCO QnA v2.1 record (TFDS or JSON) into a list example.

  The record has ``query``, ``query_id`` (int32 in TFDS
  ``huggingface:ms_marco/v2.1``, or a string) and ``passages`` with
  ``passage_text`` and ``is_selected`` per passage. Labels are ``is_selected``
  as float32; QnA passages carry no ids, so item ``i`` of query ``q`` is named
  ``"q-i"`` (its position in the record, as `t5rank.data.qna` names them for
  the JSON-lines files), which keeps run files unambiguous.

  >>> ds = tf.data.Dataset.from_tensors({
  ...     "query": "who", "query_id": 7, "passages": {
  ...         "passage_text": ["a", "b"], "is_selected": [0, 1],
  ...         "url": ["u", "v"]}})
  >>> ex = next(iter(qna_to_list_examples(ds)))
  >>> ex["passage_ids"].numpy().tolist(), ex["label"].numpy().tolist()
  ([b'7-0', b'7-1'], [0.0, 1.0])
  """
  query_id = features["query_id"]
  if query_id.dtype != tf.string:
    query_id = tf.strings.as_string(query_id)
  passages = features["passages"]
  texts = passages["passage_text"]
  positions = tf.strings.as_string(tf.range(tf.shape(texts)[0]))
  return {
    "query_id": query_id,
    "query": features["query"],
    "passage_ids": tf.strings.join([query_id, "-", positions]),
    "passages": texts,
    "label": tf.cast(passages["is_selected"], tf.float32),
  }
