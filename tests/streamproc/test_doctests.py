"""The runnable examples in the docstrings of the stream processor's pure modules."""

from __future__ import annotations

import doctest
import importlib

import pytest


@pytest.mark.parametrize(
    "module",
    [
        "columns",
        "packed",
        "messages",
        "records",
        "recordblocks",
        "changes",
        "keys",
        "frames",
        "pii",
        "agreement",
    ],
)
def test_docstring_examples(module: str) -> None:
    mod = importlib.import_module(f"streamproc.{module}")
    result = doctest.testmod(mod)
    assert result.attempted > 0, f"streamproc.{module} has no examples"
    assert result.failed == 0
