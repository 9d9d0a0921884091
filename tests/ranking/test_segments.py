"""Tests for t5rank/ranking/_segments.py: per-segment sums and softmaxes."""

import doctest

import numpy as np
import pytest
import random_lists

from t5rank.ranking import _segments

rax_segment_utils = pytest.importorskip("rax._src.segment_utils")


@pytest.mark.parametrize("seed", [0, 1])
def test_segment_helpers_match_rax(seed):
  scores, where, segments = random_lists.random_lists(seed, with_inf=False)
  for name in (
    "segment_sum",
    "segment_max",
    "segment_softmax",
    "segment_log_softmax",
  ):
    ours = getattr(_segments, name)(scores, segments, where=where)
    theirs = getattr(rax_segment_utils, name)(scores, segments, where=where)
    np.testing.assert_allclose(
      np.where(where, ours, 0),
      np.where(where, theirs, 0),
      atol=1e-5,
      err_msg=name,
    )
  np.testing.assert_array_equal(
    _segments.first_item_segment_mask(segments, where=where),
    rax_segment_utils.first_item_segment_mask(segments, where=where),
  )
  np.testing.assert_array_equal(
    _segments.in_segment_indices(segments),
    rax_segment_utils.in_segment_indices(segments),
  )


def test_doctests_pass():
  result = doctest.testmod(
    _segments, optionflags=doctest.NORMALIZE_WHITESPACE | doctest.ELLIPSIS
  )
  assert result.attempted > 0
  assert result.failed == 0
