"""FUNCTIONS_WORKER_PROCESS_COUNT above 1: the app runs in worker processes beside the host, as in Azure, and a
worker process that dies loses no account: its episode runs again, its activity fails and is retried, and every
account still ends with the outcome Azure shows."""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

import pytest
import requests

from sandbox.azure import builders as b
from sandbox.azure.testing import IDENTITY_ENV, SYSTEM, TENANT
from sandbox.stack import LocalAzureStack

SUBSCRIPTIONS = [f"{index:08d}-cccc-4ddd-8eee-ffffffffffff" for index in range(1, 4)]
KEY = "https://kv-workers.vault.azure.net/keys/cosmos-cmk"
ACCOUNTS = 6


def _world() -> tuple[dict[str, Any], list[str]]:
    vault = b.key_vault(SUBSCRIPTIONS[0], "rg-keys", "kv-workers", tenant_id=TENANT)
    accounts = [b.cosmos_account(SUBSCRIPTIONS[i % 3], "rg-workers", f"workers-{i}") for i in range(ACCOUNTS)]
    grants = [b.sql_role_assignment(account, SYSTEM) for account in accounts]
    resources = [vault, b.vault_key(vault, "cosmos-cmk"), *accounts, *grants]
    return b.world(resources, tenant_id=TENANT), [str(account["id"]) for account in accounts]


def _stack(world: dict[str, Any]) -> LocalAzureStack:
    settings = {"CMK_KEY_VAULT_SUBSCRIPTIONS": f'["{SUBSCRIPTIONS[0]}"]', "FUNCTIONS_WORKER_PROCESS_COUNT": "2"}
    return LocalAzureStack(world, settings=settings, discrete=True)


def _start(stack: LocalAzureStack) -> str:
    body: dict[str, Any] = {"scope": {"subscriptions": SUBSCRIPTIONS}, "keyUri": KEY, "maxConcurrency": 3}
    response = requests.post(f"{stack.host_url}/api/cmk/rollouts", json=body, timeout=60)
    assert response.status_code == 202, response.text
    return str(response.json()["id"])


def _finished(stack: LocalAzureStack, instance_id: str) -> dict[str, Any]:
    deadline = time.monotonic() + 150
    while (status := requests.get(f"{stack.host_url}/api/cmk/rollouts/{instance_id}", timeout=60).json())[
        "runtimeStatus"
    ] not in ("Completed", "Failed", "Terminated"):
        assert time.monotonic() < deadline, status.get("customStatus")
        time.sleep(0.2)
    finished: dict[str, Any] = status
    return finished


def _encrypted_in_azure(stack: LocalAzureStack, account_ids: list[str]) -> list[str]:
    return [
        account_id
        for account_id in account_ids
        if ((stack.simulator.resource(account_id) or {}).get("properties") or {}).get("keyVaultKeyUri") == KEY
    ]


@pytest.fixture(autouse=True)
def _no_identity_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in IDENTITY_ENV:
        monkeypatch.delenv(name, raising=False)


@pytest.mark.timeout(240)
def test_a_rollout_runs_in_the_worker_processes_and_every_account_is_enabled() -> None:
    world, account_ids = _world()
    with _stack(world) as stack:
        assert stack.host is not None
        workers = stack.host.worker_processes
        assert workers is not None and len(workers.pids) == 2 and os.getpid() not in workers.pids
        # Each starts with the stack's malloc settings (sandbox.host.allocator) where the environment sets none.
        expected = os.environ.get("MALLOC_ARENA_MAX", "2")
        for pid in workers.pids:
            assert f"MALLOC_ARENA_MAX={expected}".encode() in Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
        status = _finished(stack, _start(stack))
        assert status["output"]["totals"] == {"Enabled": ACCOUNTS}
        assert _encrypted_in_azure(stack, account_ids) == account_ids
        # Both processes ran the app's work (orchestrator episodes and activities), spread by the host.
        assert all(replies > 10 for replies in workers.replies), workers.replies


@pytest.mark.timeout(240)
@pytest.mark.parametrize("killed", [[0], [0, 1]], ids=["one", "both"])
def test_worker_processes_that_die_mid_rollout_lose_no_account(killed: list[int]) -> None:
    world, account_ids = _world()
    with _stack(world) as stack:
        assert stack.host is not None
        workers = stack.host.worker_processes
        assert workers is not None
        first_pids = workers.pids
        instance_id = _start(stack)
        deadline = time.monotonic() + 60
        while workers.replies[0] < 20 or not workers.in_flight[0]:
            assert time.monotonic() < deadline, workers.replies
            time.sleep(0.001)
        for index in killed:  # with calls under way: they are lost with it; with both, calls wait for a restart
            workers.kill(index)
        status = _finished(stack, instance_id)
        report = requests.get(f"{stack.host_url}/api/cmk/rollouts/{instance_id}/report", timeout=60).text
        assert status["output"]["totals"] == {"Enabled": ACCOUNTS}, report
        assert _encrypted_in_azure(stack, account_ids) == account_ids
        for index in killed:  # started again, and working
            assert workers.pids[index] != first_pids[index] and workers.replies[index] > 0
