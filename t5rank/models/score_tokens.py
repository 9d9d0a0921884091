"""Which output-vocabulary id a ranking score reads.

An enc-dec ranker scores an item by the logit of one output token at decoder
step 0 (RankT5: `<extra_id_10>`; monoT5: `true` against `false`). The token is
given either as an id (int) or as a string resolved with the model's output
vocabulary:

* `"<extra_id_N>"` is seqio's sentinel N, id `vocab_size - 1 - N`, when the
  vocabulary has more than N extra ids (T5's SentencePiece vocabulary has 100:
  `<extra_id_10>` is 32089);
* any other string must encode to exactly one id (`"true"` is 1176 in T5's
  vocabulary).

`seqio.ByteVocabulary()` has no extra ids, so `"<extra_id_10>"` is an error
there: give an id (e.g. `score_token=260`), a one-byte string, or build the
vocabulary with `extra_ids=`.

>>> import seqio
>>> resolve_token_id(seqio.ByteVocabulary(extra_ids=20), "<extra_id_10>")
268
>>> resolve_token_id(seqio.ByteVocabulary(), "a")
100
>>> resolve_token_id(seqio.ByteVocabulary(), 7)
7
"""

import re

import seqio

Token = int | str

_SENTINEL = re.compile(r"<extra_id_(\d+)>")


def resolve_token_id(vocabulary: seqio.Vocabulary, token: Token) -> int:
  """Returns the output-vocabulary id of `token` (an id or a token string).

  Args:
    vocabulary: the model's output vocabulary.
    token: an id in `[1, vocabulary.vocab_size)`, a sentinel `"<extra_id_N>"`
      or a string that encodes to exactly one id.

  Raises:
    ValueError: naming the token and the vocabulary when it does not resolve
      to exactly one valid id.
  """
  size = vocabulary.vocab_size
  if isinstance(token, bool) or not isinstance(token, (int, str)):
    raise ValueError(f"score token={token!r}: expected an int id or a string")
  if isinstance(token, int):
    if not 0 < token < size:
      raise ValueError(
        f"score token id={token} is outside [1, {size}) of "
        f"{type(vocabulary).__name__} (vocab_size={size})"
      )
    return token
  sentinel = _SENTINEL.fullmatch(token)
  if sentinel is not None:
    index = int(sentinel.group(1))
    extra_ids = getattr(vocabulary, "extra_ids", 0) or 0
    if index >= extra_ids:
      raise ValueError(
        f"score token={token!r} needs extra_ids > {index}, but "
        f"{type(vocabulary).__name__} has extra_ids={extra_ids}; give the "
        "token as an int id, a string that encodes to one id, or build the "
        "vocabulary with more extra_ids"
      )
    return size - 1 - index
  ids = list(vocabulary.encode(token))
  if len(ids) != 1:
    raise ValueError(
      f"score token={token!r} encodes to {len(ids)} ids {ids} with "
      f"{type(vocabulary).__name__}; a score token must be exactly one id "
      "(give the id as an int)"
    )
  return int(ids[0])
