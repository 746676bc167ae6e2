"""The README documents every app setting and every finding code the code defines."""

from __future__ import annotations

from pathlib import Path

from cmk.findings import Code
from cmk.settings import SETTINGS

README = (Path(__file__).resolve().parents[1] / "README.md").read_text(encoding="utf-8")


def test_every_app_setting_is_documented() -> None:
    assert [name for name in SETTINGS if f"`{name}`" not in README] == []


def test_every_finding_code_is_documented() -> None:
    assert [code.value for code in Code if f"`{code.value}`" not in README] == []
