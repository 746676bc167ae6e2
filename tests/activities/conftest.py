"""A simulated cloud with one account per preflight finding, and this process's Azure SDKs pointed at it."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest

from sandbox.azure import AzureSimulator
from sandbox.azure import builders as b
from sandbox.azure.testing import IDENTITY_ENV, SYSTEM, TENANT

SUB = "3c9e1f7a-52d4-4b8e-9a16-0e2d4c6f8b31"
RG = "rg-cmk-tests"
OTHER_SUB = "8a4b2c6d-1e3f-4a5b-9c7d-2e4f6a8b0c1d"
UNKNOWN_SUB = "0f0f0f0f-1e3f-4a5b-9c7d-2e4f6a8b0c1d"
# A subscription of a partner's tenant delegated to the app (Azure Lighthouse): its vault answers to that tenant.
FOREIGN_SUB = "5e6f7a8b-9c0d-4e1f-8a2b-3c4d5e6f7a8b"
FOREIGN_TENANT = "9a8b7c6d-5e4f-4a3b-8c2d-1e0f9a8b7c6d"


@dataclass
class Cloud:
    simulator: AzureSimulator
    key_uri: str
    rbac_key_uri: str
    uami_id: str
    uami_principal: str

    def account(self, name: str) -> str:
        return f"/subscriptions/{SUB}/resourceGroups/{RG}/providers/Microsoft.DocumentDB/databaseAccounts/{name}"

    def key(self, vault: str, name: str = "cosmos-cmk") -> str:
        return f"https://{vault}.vault.azure.net/keys/{name}"

    def writes_since(self, sequence: int) -> list[dict[str, Any]]:
        return [r for r in self.simulator.requests(since=sequence) if r["method"] in ("PUT", "PATCH", "DELETE")]

    def last_sequence(self) -> int:
        return len(self.simulator.requests())


def build_world() -> dict[str, Any]:
    uami = b.user_assigned_identity(SUB, RG, "id-cosmos-cmk", tenant_id=TENANT)
    vault = b.key_vault(SUB, RG, "kv-cmk-ready", tenant_id=TENANT)
    rbac_vault = b.key_vault(SUB, RG, "kv-cmk-rbac", tenant_id=TENANT, rbac=True)
    no_soft_delete = b.key_vault(SUB, RG, "kv-no-softdel", tenant_id=TENANT, soft_delete=False, purge_protection=False)
    no_purge = b.key_vault(SUB, RG, "kv-no-purge", tenant_id=TENANT, purge_protection=False)
    private = b.key_vault(SUB, RG, "kv-private", tenant_id=TENANT, public_network_access="Disabled")
    firewalled = b.key_vault(
        SUB, RG, "kv-firewalled", tenant_id=TENANT, network_acls={"defaultAction": "Deny", "bypass": "None"}
    )
    elsewhere = b.key_vault(OTHER_SUB, "rg-keys", "kv-elsewhere", tenant_id=TENANT)
    trusted = b.key_vault(
        SUB, RG, "kv-trusted", tenant_id=TENANT, network_acls={"defaultAction": "Deny", "bypass": "AzureServices"}
    )
    partner = b.key_vault(FOREIGN_SUB, "rg-partner-keys", "kv-partner", tenant_id=FOREIGN_TENANT)
    # In our subscription, but still answering to the tenant the subscription came from (moved without an update).
    moved = b.key_vault(SUB, RG, "kv-moved", tenant_id=FOREIGN_TENANT)
    keys = [
        b.vault_key(vault, "cosmos-cmk"),
        b.vault_key(vault, "disabled", enabled=False),
        b.vault_key(vault, "expired", expires=1_000_000_000),
        b.vault_key(vault, "future", not_before=4_000_000_000),
        b.vault_key(vault, "elliptic", kty="EC", key_size=256),
        b.vault_key(vault, "small", key_size=1024),
        b.vault_key(rbac_vault, "cosmos-cmk"),
        *(
            b.vault_key(v, "cosmos-cmk")
            for v in (no_soft_delete, no_purge, private, firewalled, trusted, elsewhere, partner, moved)
        ),
    ]
    restricted = b.vault_key(vault, "sign-only")
    restricted["properties"]["keyOps"] = ["sign", "verify"]
    keys.append(restricted)
    key_uri = "https://kv-cmk-ready.vault.azure.net/keys/cosmos-cmk"
    account = b.cosmos_account
    accounts = [
        account(SUB, RG, "acct-ready"),
        account(SUB, RG, "acct-ready-2"),
        account(SUB, RG, "acct-ready-3"),
        account(SUB, RG, "acct-rbac"),
        account(SUB, RG, "acct-mongo", kind="MongoDB", capabilities=["EnableMongo"]),
        account(SUB, RG, "acct-cassandra", capabilities=["EnableCassandra"]),
        account(SUB, RG, "acct-vector", capabilities=["EnableNoSQLVectorSearch"]),
        account(SUB, RG, "acct-views", extra_properties={"enableMaterializedViews": True}),
        account(SUB, RG, "acct-views-service"),
        account(
            SUB, RG, "acct-avad", backup="Continuous", extra_properties={"enableAllVersionsAndDeletesChangeFeed": True}
        ),
        account(SUB, RG, "acct-long-ids"),
        account(SUB, RG, "acct-continuous", backup="Continuous"),
        account(
            SUB,
            RG,
            "acct-continuous-uami",
            backup="Continuous",
            identity=b.account_identity(user_assigned=[uami]),
            default_identity=f"UserAssignedIdentity={uami['id']}",
        ),
        account(SUB, RG, "acct-enabled", key_vault_key_uri="https://kv-cmk-ready.vault.azure.net:443/keys/cosmos-cmk/"),
        account(SUB, RG, "acct-other-key", key_vault_key_uri="https://kv-cmk-rbac.vault.azure.net/keys/cosmos-cmk"),
        account(
            SUB,
            RG,
            "acct-migrating",
            extra_properties={
                "backupPolicy": {
                    "type": "Periodic",
                    "periodicModeProperties": {"backupIntervalInMinutes": 240, "backupRetentionIntervalInHours": 8},
                    "migrationState": {
                        "status": "InProgress",
                        "targetType": "Continuous",
                        "startTime": "2026-11-01T00:00:00Z",
                    },
                }
            },
        ),
        # Lost replies to the key PATCH (tests/activities/test_changes.py).
        account(SUB, RG, "acct-lost-reply-reset"),
        account(SUB, RG, "acct-lost-reply-504"),
    ]
    services = [
        b.account_service(next(a for a in accounts if a["name"] == "acct-views-service"), "MaterializedViewsBuilder")
    ]
    resources = [
        uami,
        vault,
        rbac_vault,
        no_soft_delete,
        no_purge,
        private,
        firewalled,
        trusted,
        elsewhere,
        partner,
        moved,
        *keys,
        *accounts,
        *services,
    ]
    resources += [b.sql_role_assignment(a, SYSTEM) for a in accounts]
    account_data = {
        accounts[10]["id"]: {"largestDocumentIdBytes": 1000},  # acct-long-ids
        accounts[0]["id"]: {"dataSizeGiB": 2, "spareRuPerSecond": 1000},
    }
    assert key_uri
    return b.world(resources, tenant_id=TENANT, account_data=account_data)


@pytest.fixture(scope="module")
def cloud() -> Iterator[Cloud]:
    world = build_world()
    uami = next(r for r in world["resources"] if r["type"] == "Microsoft.ManagedIdentity/userAssignedIdentities")
    with pytest.MonkeyPatch.context() as patch, AzureSimulator(world, time_scale=1.0) as simulator:
        for name in IDENTITY_ENV:
            patch.delenv(name, raising=False)
        for name, value in simulator.app_settings().items():
            patch.setenv(name, value)
        yield Cloud(
            simulator=simulator,
            key_uri="https://kv-cmk-ready.vault.azure.net/keys/cosmos-cmk",
            rbac_key_uri="https://kv-cmk-rbac.vault.azure.net/keys/cosmos-cmk",
            uami_id=str(uami["id"]),
            uami_principal=str(uami["properties"]["principalId"]),
        )
