"""The cap bounds encryptions, preparation runs ahead: on the local stack (discrete-event time), a rollout with
maxConcurrency 2 over eight accounts behind an RBAC vault (each preparation waits 10 minutes for its role
assignment to propagate) prepares its next accounts while the current ones encrypt. Azure's own operation log
shows preparation overlapping running encryptions, slots refilled as soon as an encryption ends, and never more
than two key operations at once. Every time the API returns is in one format (RFC 3339, UTC, `Z`)."""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import datetime
from typing import Any

import pytest

from sandbox.azure import builders as b
from sandbox.azure.testing import SYSTEM, TENANT, key_patches, peak_concurrent_key_operations
from sandbox.stack import LocalAzureStack
from tests.orchestrations.test_rollout_overlaps import RG, SUB, _id, _post, _report, _running, _status

NAMES = [f"prep-{i:02d}" for i in range(8)]
CAP = 2
KEY = "https://kv-prep.vault.azure.net/keys/cosmos-cmk"
ENCRYPTION_SECONDS = 600  # the simulator's minimum: 0.05 GiB at 1,000 spare RU/s
RBAC_WAIT_SECONDS = 600  # CMK_RBAC_PROPAGATION_WAIT_SECONDS
# From an encryption's end to the next key PATCH of the lane: the monitor notices the end (cmk.polling: within 2
# minutes for an encryption under an hour), verifies, and the lane gives the slot on.
REFILL_SECONDS = 180
API_TIME = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z$")


def _world() -> dict[str, Any]:
    vault = b.key_vault(SUB, RG, "kv-prep", tenant_id=TENANT, rbac=True)
    accounts = [b.cosmos_account(SUB, RG, name) for name in NAMES]
    data = {_id(name): {"dataSizeGiB": 0.05, "spareRuPerSecond": 1000} for name in NAMES}
    resources = [vault, b.vault_key(vault, "cosmos-cmk"), *accounts]
    resources += [b.sql_role_assignment(account, SYSTEM) for account in accounts]
    return b.world(resources, tenant_id=TENANT, account_data=data)


@pytest.fixture(scope="module")
def stack() -> Iterator[LocalAzureStack]:
    yield from _running(_world(), discrete=True)


def _seconds(moment: str) -> float:
    return datetime.fromisoformat(moment.replace("Z", "+00:00")).timestamp()


def _times(value: Any) -> list[str]:
    """Every createdTime / lastUpdatedTime in a response body, however deep."""
    found: list[str] = []
    if isinstance(value, dict):
        for key, item in value.items():
            if key in ("createdTime", "lastUpdatedTime") and isinstance(item, str):
                found.append(item)
            else:
                found += _times(item)
    elif isinstance(value, list):
        for item in value:
            found += _times(item)
    return found


def test_preparation_runs_ahead_of_the_slots_while_the_cap_holds_in_azure(stack: LocalAzureStack) -> None:
    rollout_id = _post(
        stack,
        "cmk/rollouts",
        # One account ahead per lane (the default is two): then each lane's accounts from its third on can only
        # prepare while another encrypts, which the overlap count below checks.
        {"accounts": [_id(n) for n in NAMES], "keyUri": KEY, "maxConcurrency": CAP, "maxPreparing": CAP},
    )["id"]
    report = _report(stack, rollout_id, timeout=300)
    assert {row["outcome"] for row in report["accounts"]} == {"Enabled"}, [
        (row["outcome"], row["reason"]) for row in report["accounts"]
    ]
    assert all(len(key_patches(stack.simulator, _id(name))) == 1 for name in NAMES)
    assert peak_concurrent_key_operations(stack.simulator) <= CAP

    operations = stack.simulator.operations()
    keys = sorted(
        (_seconds(op["startTime"]), _seconds(op["endTime"]), op["accountId"].lower())
        for op in operations
        if "keyVaultKeyUri" in ((op["changes"] or {}).get("properties") or {})
    )
    assert len(keys) == len(NAMES)
    # Preparation overlaps the encryptions: from its start to its key access ready (its identity PATCHes, the role
    # assignment and its propagation wait), an account prepares while other accounts encrypt.
    outputs = {
        row["accountId"].lower(): _status(stack, f"cmk/instances/{row['instanceId']}")["output"]
        for row in report["accounts"]
    }
    preparing = {
        account: (_seconds(output["timings"]["startedAt"]), _seconds(output["timings"]["keyAccessReadyAt"]))
        for account, output in outputs.items()
    }
    during = [
        account
        for account, (began, ready) in preparing.items()
        if any(start < ready and began < end and other != account for start, end, other in keys)
    ]
    # Every account but each lane's first two (the first prepares in its slot, the second beside it, before any
    # encryption has begun).
    assert len(during) >= len(NAMES) - 2 * CAP, (during, keys, preparing)
    # And the slots are refilled as an encryption ends, not a whole preparation (over RBAC_WAIT_SECONDS) later.
    for start, _, account in keys[CAP:]:
        freed = max(end for _, end, other in keys if end <= start and other != account)
        assert start - freed <= REFILL_SECONDS, (account, start, keys)
    rollout = _status(stack, f"cmk/rollouts/{rollout_id}")
    makespan = _seconds(rollout["output"]["timings"]["finishedAt"]) - _seconds(
        rollout["output"]["timings"]["startedAt"]
    )
    sequential_lanes = len(NAMES) // CAP * (RBAC_WAIT_SECONDS + ENCRYPTION_SECONDS)
    assert makespan < sequential_lanes, (makespan, sequential_lanes)

    held = [output for output in outputs.values() if "slotGrantedAt" in output["timings"]]
    assert len(held) >= len(NAMES) - CAP, "every account after a lane's first was prepared ahead and held"
    instance_id = report["accounts"][-1]["instanceId"]

    # Every time the API returns, in one format.
    bodies = [
        _status(stack, f"cmk/rollouts/{rollout_id}"),
        _status(stack, f"cmk/instances/{instance_id}"),
        _status(stack, "cmk/instances?prefix=cmk-prep-"),
        _status(stack, "cmk/rollouts"),
        _status(stack, f"cmk/rollouts/{rollout_id}/accounts"),
        _status(stack, f"cmk/instances/{instance_id}/details"),
    ]
    times = [moment for body in bodies for moment in _times(body)]
    assert len(times) > 10 and all(API_TIME.match(moment) for moment in times), times
