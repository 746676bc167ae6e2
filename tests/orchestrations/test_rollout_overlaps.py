"""Rollouts whose accounts are already being handled: by an approval-gated request, by another rollout, or by an
orchestration an admin terminates mid-encryption. Nothing hangs, every account ends in the report with the outcome
the orchestration that handled it reached, each account gets one key PATCH, and the cap holds in Azure's own
operation log even when monitors stop following early."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import pytest
import requests

from sandbox.azure import builders as b
from sandbox.azure.testing import IDENTITY_ENV, SYSTEM, TENANT, key_patches
from sandbox.stack import LocalAzureStack

SUB = "3d4e5f6a-7b8c-4d9e-8f0a-1b2c3d4e5f6a"
RG = "rg-overlap"
KEY_URI = "https://kv-overlap.vault.azure.net/keys/cosmos-cmk"
FINAL = {"Completed", "Failed", "Terminated"}


def _id(name: str) -> str:
    return f"/subscriptions/{SUB}/resourceGroups/{RG}/providers/Microsoft.DocumentDB/databaseAccounts/{name}"


def _world(names: list[str], data: dict[str, Any] | None = None) -> dict[str, Any]:
    vault = b.key_vault(SUB, RG, "kv-overlap", tenant_id=TENANT)
    accounts = [b.cosmos_account(SUB, RG, name) for name in names]
    resources = [
        vault,
        b.vault_key(vault, "cosmos-cmk"),
        *accounts,
        *(b.sql_role_assignment(a, SYSTEM) for a in accounts),
    ]
    return b.world(resources, tenant_id=TENANT, account_data=data or {})


def _running(world: dict[str, Any], **options: Any) -> Iterator[LocalAzureStack]:
    with pytest.MonkeyPatch.context() as patch:
        for name in IDENTITY_ENV:
            patch.delenv(name, raising=False)
        with LocalAzureStack(world, settings={"CMK_ACTIVITY_RETRY_SECONDS": "5"}, **options) as stack:
            yield stack


def _post(stack: LocalAzureStack, path: str, body: Any) -> dict[str, Any]:
    response = requests.post(f"{stack.host_url}/api/{path}", json=body, timeout=60)
    assert response.status_code in (200, 202), response.text
    result: dict[str, Any] = response.json()
    return result


def _status(stack: LocalAzureStack, path: str) -> dict[str, Any]:
    result: dict[str, Any] = requests.get(f"{stack.host_url}/api/{path}", timeout=60).json()
    return result


def _until(stack: LocalAzureStack, path: str, done: Any, timeout: float = 240) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        status = _status(stack, path)
        if done(status):
            return status
        assert time.monotonic() < deadline, f"{path}: {status.get('runtimeStatus')} {status.get('customStatus')}"
        time.sleep(0.05)


def _rollout(stack: LocalAzureStack, names: list[str], cap: int) -> str:
    body = {"accounts": [_id(n) for n in names], "keyUri": KEY_URI, "maxConcurrency": cap}
    instance_id: str = _post(stack, "cmk/rollouts", body)["id"]
    return instance_id


def _report(stack: LocalAzureStack, rollout_id: str, timeout: float = 240) -> dict[str, Any]:
    status = _until(stack, f"cmk/rollouts/{rollout_id}", lambda s: s["runtimeStatus"] in FINAL, timeout)
    assert status["runtimeStatus"] == "Completed", status
    output: dict[str, Any] = status["output"]
    return output


@pytest.fixture(scope="module")
def scaled() -> Iterator[LocalAzureStack]:
    """Scaled time (a human approves while it runs): 1 real second is 1,500 simulated seconds."""
    names = [f"gated-{i}" for i in range(3)] + [f"shared-{i}" for i in range(6)]
    yield from _running(_world(names), time_scale=1500)


def test_a_rollout_waits_for_an_approval_gated_request_of_one_of_its_accounts_and_reports_its_outcome(
    scaled: LocalAzureStack,
) -> None:
    stack = scaled
    gated = _post(stack, "cmk/accounts", {"accountId": _id("gated-0"), "keyUri": KEY_URI, "approval": "required"})
    _until(
        stack, f"cmk/instances/{gated['id']}", lambda s: (s["customStatus"] or {}).get("phase") == "awaitingApproval"
    )
    rollout_id = _rollout(stack, ["gated-0", "gated-1", "gated-2"], cap=3)
    # The other accounts finish; the rollout keeps waiting for the human, without starting a second orchestration.
    _until(stack, f"cmk/rollouts/{rollout_id}", lambda s: (s["customStatus"] or {}).get("done") == 2)
    assert _status(stack, f"cmk/rollouts/{rollout_id}")["runtimeStatus"] == "Running"
    assert key_patches(stack.simulator, _id("gated-0")) == []
    _post(stack, f"cmk/instances/{gated['id']}/approve", {"comment": "go"})
    report = _report(stack, rollout_id)
    rows = {row["accountId"].lower(): row for row in report["accounts"]}
    assert {row["outcome"] for row in rows.values()} == {"Enabled"}
    gated_row = rows[_id("gated-0").lower()]
    assert gated_row["instanceId"] == gated["id"], "the row names the orchestration that handled the account"
    assert "already running" in gated_row["reason"]
    assert all(len(key_patches(stack.simulator, _id(f"gated-{i}"))) == 1 for i in range(3))


def test_two_overlapping_rollouts_over_the_same_accounts_both_complete_with_complete_reports(
    scaled: LocalAzureStack,
) -> None:
    stack = scaled
    names = [f"shared-{i}" for i in range(6)]
    first = _rollout(stack, names, cap=3)
    second = _rollout(stack, list(reversed(names)), cap=2)
    reports = [_report(stack, first), _report(stack, second)]
    for report in reports:
        assert sorted(row["accountId"].lower() for row in report["accounts"]) == sorted(_id(n).lower() for n in names)
        assert {row["outcome"] for row in report["accounts"]} <= {"Enabled", "AlreadyEnabled"}
    for name in names:
        assert len(key_patches(stack.simulator, _id(name))) == 1, name
        outcomes = [row["outcome"] for report in reports for row in report["accounts"] if row["accountId"] == _id(name)]
        assert "Enabled" in outcomes, (name, outcomes)
