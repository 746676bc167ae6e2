"""A rollout's cap holds in Azure, not only in its lanes: with every monitor stopping early (a 1-hour deadline
against encryptions of hours) and an admin terminating one account orchestration mid-encryption, the simulator's
own operation log never shows more key operations at once than the cap, and every account ends Enabled with one key
PATCH."""

from __future__ import annotations

import os
import time
from collections import defaultdict
from collections.abc import Iterator

import pytest

from sandbox.azure.testing import key_patches, peak_concurrent_key_operations
from sandbox.stack import LocalAzureStack
from tests.orchestrations.test_rollout_overlaps import _id, _post, _report, _rollout, _running, _status, _world

CAPPED = [f"long-{i:02d}" for i in range(6)]


@pytest.fixture
def capped() -> Iterator[LocalAzureStack]:
    """Encryptions of 1.3 to 1.9 simulated hours against a 1-hour monitor deadline: every monitor stops early."""
    data = {_id(name): {"dataSizeGiB": 0.75 + (i % 3) * 0.1, "spareRuPerSecond": 1000} for i, name in enumerate(CAPPED)}
    previous = os.environ.get("CMK_MONITOR_DEADLINE_HOURS")
    os.environ["CMK_MONITOR_DEADLINE_HOURS"] = "1"
    try:
        yield from _running(_world(CAPPED, data), discrete=True)
    finally:
        if previous is None:
            os.environ.pop("CMK_MONITOR_DEADLINE_HOURS", None)
        else:
            os.environ["CMK_MONITOR_DEADLINE_HOURS"] = previous


def test_the_cap_holds_in_azure_when_monitors_stop_early_and_an_admin_terminates_one(capped: LocalAzureStack) -> None:
    stack = capped
    cap = 2
    rollout_id = _rollout(stack, CAPPED, cap=cap)
    # Terminate the first account orchestration seen encrypting: the lane must follow its encryption anyway.
    terminated: str | None = None
    deadline = time.monotonic() + 120
    while terminated is None and time.monotonic() < deadline:
        listing = _status(stack, "cmk/instances?prefix=cmk-long-&runtimeStatus=Running")
        for instance in listing["instances"]:
            if (instance.get("customStatus") or {}).get("phase") == "encrypting":
                terminated = instance["instanceId"]
                _post(stack, f"cmk/instances/{terminated}/terminate", {"reason": "test"})
                break
    assert terminated is not None
    report = _report(stack, rollout_id, timeout=300)
    outcomes: dict[str, int] = defaultdict(int)
    for row in report["accounts"]:
        outcomes[row["outcome"]] += 1
    assert outcomes == {"Enabled": len(CAPPED)}, [
        (r["outcome"], r["reason"], r["instanceId"]) for r in report["accounts"]
    ]
    assert peak_concurrent_key_operations(stack.simulator) <= cap
    assert all(len(key_patches(stack.simulator, _id(name))) == 1 for name in CAPPED)
