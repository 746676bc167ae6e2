"""`make demo` end to end: the shipped world through the app's HTTP API on the local host, every account reaching
the outcome the world predicts, and the table a newcomer reads."""

from __future__ import annotations

import io
import json

import pytest

from sandbox.azure.testing import IDENTITY_ENV
from sandbox.demo import DEFAULT_WORLD, run_demo
from sandbox.stack import LocalStack


def test_the_demo_world_reaches_every_predicted_outcome(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in IDENTITY_ENV:
        monkeypatch.delenv(name, raising=False)
    world = json.loads(DEFAULT_WORLD.read_text(encoding="utf-8"))
    expectations = world["expectations"]
    out = io.StringIO()

    with LocalStack(world, discrete=True) as stack:
        exit_code = run_demo(stack, expectations, timeout=300, out=out)

    report = out.getvalue()
    assert exit_code == 0, report
    assert f"{len(expectations)}/{len(expectations)} accounts reached the predicted outcome" in report
    table = report.split("\naccount ", 1)[1]
    for account_id, expectation in expectations.items():
        row = next(line for line in table.splitlines() if line.startswith(account_id.rsplit("/", 1)[-1] + " "))
        assert row.split()[1:3] == [expectation["outcome"], expectation["outcome"]]
        assert row.split()[3] == "ok"
