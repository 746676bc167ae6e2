"""The ARM actions the app really performs (the simulator logs each request's action) are exactly the ones its
custom role grants (cmk.permissions, which the Bicep contract test holds the role to): nothing missing, nothing
spare. The simulator enforces ARM authorization, and the app holds exactly what infra/fleet-access grants it
(builders.world, the demo world): every decision in the log is Allowed, linked checks included."""

from __future__ import annotations

import time
from typing import Any

import pytest
import requests

from cmk.permissions import REQUIRED_ARM_ACTIONS
from sandbox.azure import builders as b
from sandbox.azure.testing import IDENTITY_ENV, SYSTEM, TENANT
from sandbox.stack import LocalAzureStack

SUB = "8c9d0e1f-2a3b-4c4d-9e5f-6a7b8c9d0e1f"
RG = "rg-permissions"
ASSIGN_IDENTITY = "Microsoft.ManagedIdentity/userAssignedIdentities/assign/action"
RAISE = {"factor": 2, "maxRuPerSecond": 50000}


def _wait(url: str, instance_id: str) -> dict[str, Any]:
    deadline = time.monotonic() + 240
    while True:
        status: dict[str, Any] = requests.get(f"{url}/api/cmk/instances/{instance_id}", timeout=60).json()
        if status["runtimeStatus"] in ("Completed", "Failed", "Terminated"):
            return status
        assert time.monotonic() < deadline
        time.sleep(0.2)


@pytest.mark.timeout(300)
def test_the_app_performs_exactly_the_actions_its_role_grants(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in IDENTITY_ENV:
        monkeypatch.delenv(name, raising=False)
    uami = b.user_assigned_identity(SUB, RG, "id-cmk", tenant_id=TENANT)
    vault = b.key_vault(SUB, RG, "kv-perm-policy", tenant_id=TENANT)
    rbac_vault = b.key_vault(SUB, RG, "kv-perm-rbac", tenant_id=TENANT, rbac=True)
    key, rbac_key = b.vault_key(vault, "cosmos-cmk"), b.vault_key(rbac_vault, "cosmos-cmk")
    plain = b.cosmos_account(SUB, RG, "perm-plain")
    continuous = b.cosmos_account(SUB, RG, "perm-continuous", backup="Continuous")
    untouched = b.cosmos_account(SUB, RG, "perm-dry-run-only")
    # A throughput raise (opt-in) on an account of each API with provisioned throughput: their reads and writes.
    mongo = b.cosmos_account(SUB, RG, "perm-mongo", kind="MongoDB", capabilities=["EnableMongo"])
    gremlin = b.cosmos_account(SUB, RG, "perm-gremlin", capabilities=["EnableGremlin"])
    table = b.cosmos_account(SUB, RG, "perm-table", capabilities=["EnableTable"])
    raised = [plain, mongo, gremlin, table]
    accounts = [plain, continuous, untouched, mongo, gremlin, table]
    world = b.world(
        [uami, vault, rbac_vault, key, rbac_key, *accounts, *(b.sql_role_assignment(a, SYSTEM) for a in accounts)]
        + _throughput_resources(plain, "sqlDatabases")
        + _throughput_resources(mongo, "mongodbDatabases")
        + _throughput_resources(gremlin, "gremlinDatabases")
        + _throughput_resources(table, "tables"),
        tenant_id=TENANT,
    )
    with LocalAzureStack(world, time_scale=1500) as stack:
        url = stack.host_url
        started = [
            requests.post(
                f"{url}/api/cmk/accounts",
                json={"accountId": account["id"], "keyUri": b.versionless_key_uri(key), "throughputRaise": RAISE},
                timeout=60,
            )
            for account in raised
        ] + [
            requests.post(
                f"{url}/api/cmk/accounts",
                json={"accountId": continuous["id"], "keyUri": b.versionless_key_uri(rbac_key), "identity": uami["id"]},
                timeout=60,
            ),
        ]
        for response in started:
            assert _wait(url, response.json()["id"])["output"]["outcome"] == "Enabled"
        # A dry-run rollout with a versioned key: discovery (Resource Graph, metrics) and a key version read.
        versioned = str(key["properties"]["keyUriWithVersion"]).replace(":443", "")
        rollout = requests.post(
            f"{url}/api/cmk/rollouts",
            json={"scope": {"subscriptions": [SUB]}, "keyUri": versioned, "dryRun": True},
            timeout=60,
        )
        assert _wait(url, rollout.json()["id"])["runtimeStatus"] == "Completed"

        ours = [
            r
            for r in stack.simulator.requests()
            if r["principal"] == SYSTEM
            and r["action"]
            and r["path"].lower().startswith(("/subscriptions/", "/providers/"))
        ]
        performed = _performed(ours)
        assert _denied([r for r in ours if r.get("authorization")]) == []
    assert ASSIGN_IDENTITY in performed  # authorised by ARM on the identity, within the account's PATCH
    assert performed == set(REQUIRED_ARM_ACTIONS)


def _throughput_resources(account: dict[str, Any], database_type: str) -> list[dict[str, Any]]:
    """A database (or table) with throughput of its own and, but for tables, a container with its own."""
    database = b.cosmos_database(account, "data", database_type)
    resources = [database, b.throughput_settings(database, throughput=400)]
    if database_type != "tables":
        container = b.cosmos_container(database, "items")
        resources += [container, b.throughput_settings(container, autoscale_max=1000)]
    return resources


def _performed(entries: list[dict[str, Any]]) -> set[str]:
    """Every action ARM checked: each request's own, and the linked ones (an identity attached by a PATCH)."""
    actions = {str(entry["action"]) for entry in entries}
    for entry in entries:
        actions |= {str(linked["action"]) for linked in (entry.get("authorization") or {}).get("linked") or []}
    return actions


def _denied(entries: list[dict[str, Any]]) -> list[tuple[str, str, Any]]:
    return [
        (entry["method"], entry["path"], entry["authorization"])
        for entry in entries
        if (entry.get("authorization") or {}).get("decision") != "Allowed"
    ]
