"""`make demo` end to end: the shipped world through the app's HTTP API on the local host, every account reaching
the outcome the world predicts, and the table a newcomer reads. The world grants the app exactly what
infra/fleet-access grants (builders.world) and the simulator enforces ARM authorization: nothing the app asks is
denied, and it performs no action outside its custom role (cmk.permissions)."""

from __future__ import annotations

import io
import json

import pytest

from cmk.permissions import REQUIRED_ARM_ACTIONS
from sandbox.azure.testing import IDENTITY_ENV
from sandbox.demo import DEFAULT_WORLD, run_demo
from sandbox.stack import LocalAzureStack
from tests.orchestrations.test_permissions import _denied, _performed


def test_the_demo_world_reaches_every_predicted_outcome(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in IDENTITY_ENV:
        monkeypatch.delenv(name, raising=False)
    world = json.loads(DEFAULT_WORLD.read_text(encoding="utf-8"))
    expectations = world["expectations"]
    out = io.StringIO()

    app = world["simulator"]["systemPrincipalId"]
    with LocalAzureStack(world, discrete=True) as stack:
        assert stack.simulator.settings.authorization.enforce
        exit_code = run_demo(stack, expectations, timeout=300, out=out)
        ours = [r for r in stack.simulator.requests() if r["principal"] == app and not r.get("plane")]

    report = out.getvalue()
    assert exit_code == 0, report
    assert f"{len(expectations)}/{len(expectations)} accounts reached the predicted outcome" in report
    table = report.split("\naccount ", 1)[1]
    for account_id, expectation in expectations.items():
        row = next(line for line in table.splitlines() if line.startswith(account_id.rsplit("/", 1)[-1] + " "))
        assert row.split()[1:3] == [expectation["outcome"], expectation["outcome"]]
        assert row.split()[3] == "ok"
    # Every request that reached authorization (all but 401s, 429s and unknown subscriptions) was allowed.
    assert ours and all(r.get("authorization") for r in ours if 200 <= r["status"] < 300)
    assert _denied([r for r in ours if r.get("authorization")]) == []
    assert _performed(ours) <= set(REQUIRED_ARM_ACTIONS)
