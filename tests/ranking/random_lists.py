"""Random ranking lists and a masked equality check the ranking tests share.

Imported by bare name, like `tests/models/tiny_t5.py`: pytest puts this
folder on `sys.path` for the tests in it.
"""

import jax.numpy as jnp
import numpy as np


def random_lists(seed, batch=3, n=9, ties=True, with_inf=True):
  """`(scores, where, segments)` for `batch` lists of `n` items.

  Scores are small integers (many ties) or normals; with `with_inf` about
  10% are `-inf`. About 70% of items are valid; segment ids are 0, 1 or 2.
  """
  rng = np.random.default_rng(seed)
  if ties:
    scores = rng.integers(-3, 4, (batch, n)).astype(np.float32)
  else:
    scores = rng.normal(size=(batch, n)).astype(np.float32)
  if with_inf:
    scores[rng.random((batch, n)) < 0.1] = -np.inf
  where = rng.random((batch, n)) > 0.3
  segments = rng.integers(0, 3, (batch, n))
  return jnp.asarray(scores), jnp.asarray(where), jnp.asarray(segments)


def assert_equal_on(a, b, mask):
  """`a == b` exactly where `mask` is true (elsewhere anything goes)."""
  np.testing.assert_array_equal(np.where(mask, a, 0), np.where(mask, b, 0))
