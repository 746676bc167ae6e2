"""Test support: a standard world, raw HTTPS calls as any principal, and SDK clients bound to a simulator.

Used by tests/sandbox/azure and available to other test suites that need a small realistic cloud.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, Protocol

import requests
from azure.core.credentials import TokenCredential
from azure.identity import DefaultAzureCredential
from azure.mgmt.cosmosdb import CosmosDBManagementClient

from sandbox.azure import AzureSimulator, mint_token
from sandbox.azure import builders as b
from sandbox.azure.ids import JsonDict, id_key
from sandbox.azure.rbac import OWNER
from sandbox.azure.world import DEFAULT_FIRST_PARTY_PRINCIPAL_ID, DEFAULT_SYSTEM_PRINCIPAL_ID

TENANT = "4e8a2c1d-6b3f-4a9e-8c7d-1f2e3a4b5c6d"
SUB = "7d1c5f2a-93b4-4e61-a8d2-5c0f7e9b3a14"
RG = "rg-data-prod"
API = "2026-03-15"
SYSTEM = DEFAULT_SYSTEM_PRINCIPAL_ID
FIRST_PARTY = DEFAULT_FIRST_PARTY_PRINCIPAL_ID
CRYPTO_SERVICE_ENCRYPTION_USER = "e147488a-f6f5-4113-8e2d-b22465e65bf6"
# The standard world's administrator: Owner of its subscription, for tests that do what the app's role may not
# (assign roles anywhere, grant data-plane access, read Location URLs, delete).
ADMIN = "a0d1e2f3-0415-4a26-b738-c9dae0f1a2b3"

IDENTITY_ENV = (
    "AZURE_CLIENT_ID",
    "AZURE_CLIENT_SECRET",
    "AZURE_TENANT_ID",
    "AZURE_USERNAME",
    "AZURE_PASSWORD",
    "AZURE_FEDERATED_TOKEN_FILE",
    "AZURE_AUTHORITY_HOST",
    "MSI_ENDPOINT",
    "MSI_SECRET",
    "IDENTITY_SERVER_THUMBPRINT",
    "IMDS_ENDPOINT",
)


@dataclass
class StandardWorld:
    """Ids of the standard test world (one subscription, one resource group)."""

    world: dict[str, Any]
    uami: dict[str, Any]
    vault: dict[str, Any]
    rbac_vault: dict[str, Any]
    key: dict[str, Any]
    rbac_key: dict[str, Any]

    @property
    def key_uri(self) -> str:
        return b.versionless_key_uri(self.key)

    @property
    def rbac_key_uri(self) -> str:
        return b.versionless_key_uri(self.rbac_key)

    def account_id(self, name: str) -> str:
        return f"/subscriptions/{SUB}/resourceGroups/{RG}/providers/Microsoft.DocumentDB/databaseAccounts/{name}"


def standard_world(*, grants: bool | Iterable[str] = True, **simulator: Any) -> StandardWorld:
    """One subscription, one resource group: three accounts, an access-policy vault and an RBAC vault with a key
    each, a user-assigned identity. SYSTEM (the app) holds what infra/fleet-access grants (`grants`, as for
    `builders.world`), ADMIN is Owner of the subscription; `simulator` are simulator settings."""
    uami = b.user_assigned_identity(SUB, RG, "id-cosmos-cmk", tenant_id=TENANT)
    uami_principal = uami["properties"]["principalId"]
    vault = b.key_vault(
        SUB,
        RG,
        "kv-cmk-prod",
        tenant_id=TENANT,
        access_policies=[b.access_policy(TENANT, FIRST_PARTY), b.access_policy(TENANT, uami_principal)],
    )
    rbac_vault = b.key_vault(SUB, RG, "kv-cmk-rbac", tenant_id=TENANT, rbac=True)
    key = b.vault_key(vault, "cosmos-cmk")
    rbac_key = b.vault_key(rbac_vault, "cosmos-cmk")
    accounts = [
        b.cosmos_account(SUB, RG, "cosmos-orders"),
        b.cosmos_account(SUB, RG, "cosmos-catalog"),
        b.cosmos_account(
            SUB,
            RG,
            "cosmos-continuous",
            backup="Continuous",
            identity=b.account_identity(user_assigned=[uami]),
            default_identity=f"UserAssignedIdentity={uami['id']}",
        ),
    ]
    resources = [uami, vault, rbac_vault, key, rbac_key, *accounts]
    resources += [b.sql_role_assignment(account, SYSTEM) for account in accounts]
    resources.append(b.role_assignment(f"/subscriptions/{SUB}", OWNER, ADMIN))
    return StandardWorld(
        world=b.world(resources, tenant_id=TENANT, simulator=simulator, grants=grants),
        uami=uami,
        vault=vault,
        rbac_vault=rbac_vault,
        key=key,
        rbac_key=rbac_key,
    )


def call(
    simulator: AzureSimulator,
    method: str,
    path: str,
    body: Any = None,
    *,
    principal: str = SYSTEM,
    api_version: str | None = API,
    token: str | None = None,
    headers: dict[str, str] | None = None,
    raw_body: bytes | None = None,
) -> requests.Response:
    """One raw HTTPS request to the simulator as `principal` (or with an explicit `token`, '' for none)."""
    url = simulator.base_url + path
    if api_version is not None:
        url += ("&" if "?" in url else "?") + f"api-version={api_version}"
    all_headers = dict(headers or {})
    bearer = token if token is not None else mint_token(principal, tenant_id=simulator.tenant_id)
    if bearer:
        all_headers["Authorization"] = f"Bearer {bearer}"
    if raw_body is not None:
        all_headers["Content-Type"] = "application/json"
        return requests.request(method, url, data=raw_body, headers=all_headers, verify=simulator.ca_bundle_path)
    return requests.request(method, url, json=body, headers=all_headers, verify=simulator.ca_bundle_path, timeout=30)


def cosmos_client(simulator: AzureSimulator, credential: TokenCredential | None = None) -> CosmosDBManagementClient:
    """The real management client, authenticated through the simulator's managed-identity endpoint by default."""
    return CosmosDBManagementClient(
        credential or DefaultAzureCredential(),
        SUB,
        base_url=simulator.base_url,
        polling_interval=0.01,
        retry_total=0,
    )


def single_account_world(
    subscription_id: str,
    resource_group: str,
    vault_name: str,
    account_name: str,
    *,
    data_size_gib: float,
    spare_ru_per_second: float,
) -> tuple[JsonDict, str]:
    """One ready NoSQL account and an access-policy vault with the key `cosmos-cmk`; the account's system identity
    can read its data, so preflight's document-id scan runs. Returns the world and the account id."""
    vault = b.key_vault(subscription_id, resource_group, vault_name, tenant_id=TENANT)
    account = b.cosmos_account(subscription_id, resource_group, account_name)
    account_id = str(account["id"])
    resources = [vault, b.vault_key(vault, "cosmos-cmk"), account, b.sql_role_assignment(account, SYSTEM)]
    data = {account_id: {"dataSizeGiB": data_size_gib, "spareRuPerSecond": spare_ru_per_second}}
    return b.world(resources, tenant_id=TENANT, account_data=data), account_id


class SimulatorLogs(Protocol):
    """What the helpers below read: an `AzureSimulator` in this process, or a view of one in another process over
    `/_sandbox/requests` and `/_sandbox/operations` (bench/chaos.py)."""

    def requests(self, since: int = 0) -> list[JsonDict]: ...

    def operations(self) -> list[JsonDict]: ...


def key_patches(simulator: SimulatorLogs, account_id: str, since: int = 0) -> list[JsonDict]:
    """Request-log entries of every key PATCH (a body with `properties.keyVaultKeyUri`) that reached this account,
    whatever became of it: served (200), refused (400, 409, 412, 429), or hit by a fault rule (`fault` names the
    rule; `status` is what the client got, 0 for a reset; `appliedStatus` what the simulator did for an after-apply
    fault). Count them per account to prove how often the irreversible PATCH was sent."""
    wanted = id_key(account_id)
    found = []
    for entry in simulator.requests(since):
        if entry.get("plane") or entry["method"] != "PATCH":
            continue
        if id_key(str(entry["path"]).split("?", 1)[0]) != wanted:
            continue
        body = entry.get("body")
        properties = body.get("properties") if isinstance(body, dict) else None
        if isinstance(properties, dict) and "keyVaultKeyUri" in properties:
            found.append(entry)
    return found


def peak_concurrent_key_operations(simulator: SimulatorLogs) -> int:
    """The most key operations (encryptions started by a key PATCH) that ran at once, from the operation log: what a
    rollout's cap bounds in Azure."""
    edges: list[tuple[str, int]] = []
    for operation in simulator.operations():
        if "keyVaultKeyUri" in ((operation["changes"] or {}).get("properties") or {}):
            edges += [(operation["startTime"], 1), (operation["endTime"] or operation["scheduledEndTime"], -1)]
    running = peak = 0
    for _, step in sorted(edges, key=lambda edge: (edge[0], edge[1])):
        running += step
        peak = max(peak, running)
    return peak
