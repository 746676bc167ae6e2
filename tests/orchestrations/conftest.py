"""The product running whole on the local host against the simulator, with real SDK replay in scaled time."""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
import requests

from sandbox.azure import builders as b
from sandbox.azure.testing import IDENTITY_ENV, SYSTEM, TENANT
from sandbox.stack import LocalAzureStack

SUB = "5e2d8c1a-7b3f-4c9d-8e6a-1f0b2c3d4e5f"
RG = "rg-orchestration-tests"
KEY_URI = "https://kv-orch-tests.vault.azure.net/keys/cosmos-cmk"
RBAC_KEY_URI = "https://kv-orch-rbac.vault.azure.net/keys/cosmos-cmk"
READY_ACCOUNTS = 24
FINAL = {"Completed", "Failed", "Terminated"}
# Settings the app runs with here: activity retries 5 s apart instead of 30.
APP_SETTINGS = {"CMK_APPROVAL_TIMEOUT_HOURS": "24", "CMK_ACTIVITY_RETRY_SECONDS": "5"}


def account_id(name: str) -> str:
    return f"/subscriptions/{SUB}/resourceGroups/{RG}/providers/Microsoft.DocumentDB/databaseAccounts/{name}"


def build_world() -> dict[str, Any]:
    vault = b.key_vault(SUB, RG, "kv-orch-tests", tenant_id=TENANT)
    rbac_vault = b.key_vault(SUB, RG, "kv-orch-rbac", tenant_id=TENANT, rbac=True)
    accounts = [b.cosmos_account(SUB, RG, f"ready-{index:02d}") for index in range(READY_ACCOUNTS)]
    accounts += [
        b.cosmos_account(SUB, RG, "cassandra", capabilities=["EnableCassandra"]),
        b.cosmos_account(SUB, RG, "rbac"),
        # Its firewall blocks the preflight scan; only Azure's own scan finds the long id, and the operation fails.
        b.cosmos_account(SUB, RG, "hidden-long-id", public_network_access="Disabled"),
        b.cosmos_account(SUB, RG, "large"),
    ]
    resources = [vault, rbac_vault, b.vault_key(vault, "cosmos-cmk"), b.vault_key(rbac_vault, "cosmos-cmk"), *accounts]
    resources += [b.sql_role_assignment(account, SYSTEM) for account in accounts]
    account_data = {
        account_id("hidden-long-id"): {"largestDocumentIdBytes": 1000},
        account_id("large"): {"dataSizeGiB": 4, "spareRuPerSecond": 2000},
    }
    return b.world(resources, tenant_id=TENANT, account_data=account_data)


@dataclass
class App:
    stack: LocalAzureStack
    session: requests.Session

    @property
    def url(self) -> str:
        return self.stack.host_url

    def post(self, path: str, body: Any = None) -> requests.Response:
        return self.session.post(f"{self.url}/api/{path}", json=body, timeout=60)

    def get(self, path: str, **params: str) -> requests.Response:
        return self.session.get(f"{self.url}/api/{path}", params=params, timeout=60)

    def start(self, name: str, **request: Any) -> str:
        response = self.post("cmk/accounts", {"accountId": account_id(name), "keyUri": KEY_URI, **request})
        assert response.status_code == 202, response.text
        instance_id: str = response.json()["id"]
        return instance_id

    def status(self, instance_id: str) -> dict[str, Any]:
        response = self.get(f"cmk/instances/{instance_id}")
        assert response.status_code == 200, response.text
        status: dict[str, Any] = response.json()
        return status

    def wait(self, instance_id: str, timeout: float = 120.0, phase: str | None = None) -> dict[str, Any]:
        """Until the instance ends (or reaches `phase`), polling the public status route."""
        deadline = time.monotonic() + timeout
        while True:
            status = self.status(instance_id)
            if status["runtimeStatus"] in FINAL or (phase and (status.get("customStatus") or {}).get("phase") == phase):
                return status
            if time.monotonic() > deadline:
                raise AssertionError(f"{instance_id} still {status['runtimeStatus']}: {status.get('customStatus')}")
            time.sleep(0.1)

    def writes_for(self, name: str) -> list[dict[str, Any]]:
        path = account_id(name).lower()
        return [
            r
            for r in self.stack.simulator.requests()
            if r["method"] in ("PUT", "PATCH", "DELETE") and r["path"].lower().split("?")[0] == path
        ]


@pytest.fixture(scope="module")
def app() -> Iterator[App]:
    with pytest.MonkeyPatch.context() as patch:
        for name in IDENTITY_ENV:
            patch.delenv(name, raising=False)
        with LocalAzureStack(build_world(), time_scale=1500, settings=APP_SETTINGS) as stack:
            yield App(stack, requests.Session())
