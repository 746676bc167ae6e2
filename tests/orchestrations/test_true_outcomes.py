"""Every outcome says what is true in Azure (issue: true outcomes), through the HTTP API on the local stack in
discrete-event time, so encryptions of days run in seconds: long encryptions followed to their end, a monitor
that stops early says Encrypting and a second request re-attaches, replies lost after Azure applied the key PATCH,
accounts busy with another operation, and a verification that lags the operation's end."""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from datetime import datetime
from typing import Any

import pytest
import requests

from sandbox.azure import builders as b
from sandbox.azure.testing import IDENTITY_ENV, SYSTEM, TENANT, key_patches
from sandbox.stack import LocalAzureStack

SUB = "7c1d2e3f-4a5b-4c6d-8e7f-9a0b1c2d3e4f"
RG = "rg-truth"
KEY_URI = "https://kv-truth.vault.azure.net/keys/cosmos-cmk"
FINAL = {"Completed", "Failed", "Terminated"}
GIB_250 = 250.0
# The simulator's model (sandbox/worlds/README.md): seconds = GiB * 1024^2 KiB * 6 RU/KiB / spare RU/s.
LONG_SPARE_RU = 4000.0  # 250 GiB at 4,000 RU/s: 393,216 s, about 4.6 days (more than the old 72 h deadline)


def _id(name: str) -> str:
    return f"/subscriptions/{SUB}/resourceGroups/{RG}/providers/Microsoft.DocumentDB/databaseAccounts/{name}"


NAMES = ["huge", "reattach", "reset", "gateway", "lagging"]


def _world(names: list[str] = NAMES, busy_hours: float = 0) -> dict[str, Any]:
    vault = b.key_vault(SUB, RG, "kv-truth", tenant_id=TENANT)
    accounts = [b.cosmos_account(SUB, RG, name) for name in names]
    resources = [
        vault,
        b.vault_key(vault, "cosmos-cmk"),
        *accounts,
        *(b.sql_role_assignment(a, SYSTEM) for a in accounts),
    ]
    data: dict[str, Any] = {
        _id("huge"): {"dataSizeGiB": GIB_250, "spareRuPerSecond": LONG_SPARE_RU},
        _id("reattach"): {"dataSizeGiB": 10, "spareRuPerSecond": 1000},  # about 17.5 h
        _id("lagging"): {"keyStatusLagSeconds": 1200},
        _id("busy"): {"busyForSeconds": busy_hours * 3600},
    }
    return b.world(resources, tenant_id=TENANT, account_data={k: v for k, v in data.items() if k in map(_id, names)})


def _stack(world: dict[str, Any], **options: Any) -> Iterator[LocalAzureStack]:
    """Discrete-event time unless `options` say otherwise (`time_scale=`); extra app settings in `settings=`."""
    settings = {"CMK_ACTIVITY_RETRY_SECONDS": "5", **options.pop("settings", {})}
    if "time_scale" not in options:
        options["discrete"] = True
    with pytest.MonkeyPatch.context() as patch:
        for name in IDENTITY_ENV:
            patch.delenv(name, raising=False)
        with LocalAzureStack(world, settings=settings, **options) as running:
            yield running


@pytest.fixture(scope="module")
def stack() -> Iterator[LocalAzureStack]:
    yield from _stack(_world())


def _start(stack: LocalAzureStack, name: str) -> str:
    response = requests.post(
        f"{stack.host_url}/api/cmk/accounts", json={"accountId": _id(name), "keyUri": KEY_URI}, timeout=60
    )
    assert response.status_code == 202, response.text
    instance_id: str = response.json()["id"]
    return instance_id


def _output(stack: LocalAzureStack, instance_id: str, timeout: float = 240) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        status = requests.get(f"{stack.host_url}/api/cmk/instances/{instance_id}", timeout=60).json()
        if status["runtimeStatus"] in FINAL:
            assert status["runtimeStatus"] == "Completed", status
            output: dict[str, Any] = status["output"]
            return output
        assert time.monotonic() < deadline, f"{instance_id} still {status['runtimeStatus']}: {status['customStatus']}"
        time.sleep(0.05)


def _key_operations(stack: LocalAzureStack, name: str) -> list[dict[str, Any]]:
    return [
        operation
        for operation in stack.simulator.operations()
        if operation["accountId"].lower() == _id(name).lower()
        and "keyVaultKeyUri" in ((operation["changes"] or {}).get("properties") or {})
    ]


def _hours(start: str, end: str) -> float:
    def parse(text: str) -> datetime:
        return datetime.fromisoformat(text.replace("Z", "+00:00"))

    return (parse(end) - parse(start)).total_seconds() / 3600


def test_a_250_gib_encryption_of_days_ends_enabled_with_default_settings(stack: LocalAzureStack) -> None:
    output = _output(stack, _start(stack, "huge"))
    assert output["outcome"] == "Enabled", output["reason"]
    [operation] = _key_operations(stack, "huge")
    assert operation["status"] == "Succeeded"
    encryption_hours = _hours(operation["startTime"], operation["endTime"])
    assert encryption_hours > 72, "the world must outlast the old 72 h deadline"
    assert len(key_patches(stack.simulator, _id("huge"))) == 1
    # Completion noticed promptly, and at about 2 status reads an hour once the encryption is old.
    noticed = _hours(operation["endTime"], output["timings"]["encryptionDoneAt"])
    assert 0 <= noticed <= 0.5
    reads_per_hour = output["operation"]["polls"] / encryption_hours
    assert reads_per_hour < 3, reads_per_hour


def test_a_monitor_that_stops_at_its_deadline_says_encrypting_and_a_new_request_reattaches(
    stack: LocalAzureStack,
) -> None:
    os.environ["CMK_MONITOR_DEADLINE_HOURS"] = "1"
    try:
        first = _output(stack, _start(stack, "reattach"))
    finally:
        os.environ["CMK_MONITOR_DEADLINE_HOURS"] = "720"
    assert first["outcome"] == "Encrypting", first
    assert "goes on in Azure" in first["reason"]
    [operation] = _key_operations(stack, "reattach")
    # Discrete time jumps to the operation's end as soon as nothing else is due: compare moments, not states.
    ended = operation["endTime"] or operation["scheduledEndTime"]
    assert _hours(first["timings"]["finishedAt"], ended) > 10, "Azure was still encrypting: Failed would be untrue"

    second = _output(stack, _start(stack, "reattach"))
    assert second["outcome"] == "Enabled", second["reason"]
    assert second["operation"]["statusUrl"] == first["operation"]["statusUrl"], "followed the same operation"
    assert len(key_patches(stack.simulator, _id("reattach"))) == 1, "re-attaching sends no second key PATCH"
    assert len(_key_operations(stack, "reattach")) == 1


@pytest.mark.parametrize(
    ("name", "fault"),
    [
        ("reset", {"kind": "resetAfterApply"}),
        ("gateway", {"kind": "statusAfterApply", "status": 504}),
    ],
)
def test_a_key_patch_whose_reply_is_lost_after_azure_applied_it_ends_enabled_with_one_patch(
    stack: LocalAzureStack, name: str, fault: dict[str, Any]
) -> None:
    stack.simulator.add_fault(
        {
            "method": "PATCH",
            "path": f"databaseAccounts/{name}\\?",
            "bodyContains": "keyVaultKeyUri",
            "count": 1,
            **fault,
        }
    )
    output = _output(stack, _start(stack, name))
    assert output["outcome"] == "Enabled", output["reason"]
    patches = key_patches(stack.simulator, _id(name))
    assert len(patches) == 1, [(p["status"], p.get("fault")) for p in patches]
    assert patches[0].get("fault"), "the fault hit the one key PATCH"


def test_verification_that_lags_the_operation_by_20_minutes_still_ends_enabled(stack: LocalAzureStack) -> None:
    output = _output(stack, _start(stack, "lagging"))
    assert output["outcome"] == "Enabled", output["reason"]
    assert _hours(output["timings"]["encryptionDoneAt"], output["timings"]["finishedAt"]) >= 1200 / 3600 - 0.01
