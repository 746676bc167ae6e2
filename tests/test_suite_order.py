"""The suite's longest-first order (tests/conftest.py) names files that exist: a renamed file would silently fall
back to its alphabetical place and unbalance the two workers again."""

from __future__ import annotations

from pathlib import Path

from tests.conftest import LONGEST_FIRST

ROOT = Path(__file__).resolve().parent.parent


def test_every_file_of_the_longest_first_order_exists_once() -> None:
    assert len(set(LONGEST_FIRST)) == len(LONGEST_FIRST)
    assert [path for path in LONGEST_FIRST if not (ROOT / path).is_file()] == []
