"""Tests for t5rank/types.py: Rax's `rax.types` protocol names."""

import doctest
import typing

import pytest

from t5rank import types

rax_types = pytest.importorskip("rax.types")


def test_every_rax_type_is_exported_as_a_protocol():
  assert set(rax_types.__all__) <= set(types.__all__)
  for name in rax_types.__all__:
    protocol = getattr(types, name)
    assert issubclass(protocol, typing.Protocol), name
    assert callable(protocol.__call__), name


def test_doctests_pass():
  result = doctest.testmod(types, optionflags=doctest.NORMALIZE_WHITESPACE)
  assert result.attempted > 0
  assert result.failed == 0
