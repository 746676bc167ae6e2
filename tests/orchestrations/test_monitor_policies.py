"""The monitor's policies on the local host: it waits what Azure's Retry-After says, and at its deadline it stops
with Failed, saying plainly that the encryption goes on in Azure and cannot be reverted."""

from __future__ import annotations

from datetime import datetime

import pytest
import requests

from sandbox.azure.testing import IDENTITY_ENV, single_account_world
from sandbox.stack import LocalAzureStack

SUB = "9d0e1f2a-3b4c-4d5e-8f6a-7b8c9d0e1f2a"
RG = "rg-monitor-policies"
RETRY_AFTER = 240


@pytest.mark.timeout(300)
def test_retry_after_is_honoured_and_the_deadline_ends_the_watch_not_the_encryption(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    for name in IDENTITY_ENV:
        monkeypatch.delenv(name, raising=False)
    # About 14 simulated hours of encryption.
    world, account_id = single_account_world(
        SUB, RG, "kv-policies", "slow-encryption", data_size_gib=8, spare_ru_per_second=1000
    )
    settings = {"CMK_MONITOR_DEADLINE_HOURS": "2"}
    overrides = {"asyncRetryAfterSeconds": RETRY_AFTER}
    with LocalAzureStack(world, time_scale=1500, settings=settings, simulator_overrides=overrides) as stack:
        assert stack.host is not None
        response = requests.post(
            f"{stack.host_url}/api/cmk/accounts",
            json={"accountId": account_id, "keyUri": "https://kv-policies.vault.azure.net/keys/cosmos-cmk"},
            timeout=60,
        )
        instance_id = response.json()["id"]
        final = stack.host.wait_for(instance_id, timeout=240)
        output = final["output"]
        assert output["outcome"] == "Encrypting", "Azure still encrypts: the outcome must not say Failed"
        assert "deadline" in output["reason"] and "cannot be reverted" in output["reason"]
        assert output["operation"]["status"] in ("Dequeued", "InProgress")
        # Azure still encrypts: the operation is running in the simulator, the account still Updating.
        running = [o for o in stack.simulator.operations() if o["kind"] == "enableCustomerManagedKey"]
        assert running and running[0]["endTime"] is None
        # Every wait of the encryption monitor was Azure's Retry-After, not the orchestrator's own back-off.
        events = [
            e for execution in stack.host.executions(instance_id) for e in stack.host.history(instance_id, execution)
        ]
        waits = []
        for index, event in enumerate(events):
            if event["EventType"] == 10 and index > 0:
                started = next(e for e in reversed(events[:index]) if e["EventType"] == 12)
                waits.append(_seconds(event["FireAt"]) - _seconds(started["Timestamp"]))
        monitor_waits = waits[-5:]
        assert monitor_waits and all(abs(wait - RETRY_AFTER) < 1 for wait in monitor_waits), monitor_waits


def _seconds(stamp: str) -> float:
    """History timestamps carry 7 fractional digits (.NET); keep microseconds."""
    whole, _, fraction = stamp.rstrip("Z").partition(".")
    return datetime.fromisoformat(f"{whole}.{(fraction + '000000')[:6]}+00:00").timestamp()
