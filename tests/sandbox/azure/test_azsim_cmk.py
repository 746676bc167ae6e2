"""Enabling customer-managed keys on existing accounts: the encryption, its lock, and every way it fails."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import pytest
from azure.mgmt.authorization import AuthorizationManagementClient
from azure.mgmt.authorization.v2022_04_01.models import RoleAssignmentCreateParameters

from sandbox.azure import AzureSimulator
from sandbox.azure import builders as b
from sandbox.azure.testing import (
    CRYPTO_SERVICE_ENCRYPTION_USER,
    FIRST_PARTY,
    RG,
    SUB,
    SYSTEM,
    TENANT,
    StandardWorld,
    call,
    standard_world,
)

CONFIRMED = "Access to the configured customer managed key confirmed."
ORDERS = f"/subscriptions/{SUB}/resourceGroups/{RG}/providers/Microsoft.DocumentDB/databaseAccounts/cosmos-orders"


def enable(simulator: AzureSimulator, account_id: str, key_uri: str) -> str:
    """PATCH the key alone; returns the operation status path."""
    before = call(simulator, "GET", account_id).json()["properties"].get("keyVaultKeyUri")
    response = call(simulator, "PATCH", account_id, {"properties": {"keyVaultKeyUri": key_uri}})
    assert response.status_code == 200, response.text
    assert response.json()["properties"].get("keyVaultKeyUri") == before  # still the old body
    return str(response.headers["Azure-AsyncOperation"]).removeprefix(simulator.base_url).split("?")[0]


def finish(simulator: AzureSimulator, status_path: str, seconds: float = 10 * 24 * 3600) -> dict[str, Any]:
    simulator.advance(seconds)
    body: dict[str, Any] = call(simulator, "GET", status_path).json()
    return body


def detail_code(status: dict[str, Any]) -> str:
    return str(status["error"]["details"][0]["code"])


def test_enabling_cmk_encrypts_for_a_time_that_follows_data_size(
    start_simulator: Callable[..., AzureSimulator], std: StandardWorld
) -> None:
    world = dict(std.world, accountData={ORDERS: {"dataSizeGiB": 50, "spareRuPerSecond": 2000}})
    simulator = start_simulator(world)
    status_path = enable(simulator, ORDERS, std.key_uri)
    (operation,) = simulator.operations()
    expected_seconds = 50 * 1024 * 1024 * simulator.settings.encryption.ru_per_kib / 2000
    start = time.mktime(time.strptime(operation["startTime"][:19], "%Y-%m-%dT%H:%M:%S"))
    end = time.mktime(time.strptime(operation["scheduledEndTime"][:19], "%Y-%m-%dT%H:%M:%S"))
    assert end - start == pytest.approx(expected_seconds, abs=1.5)  # ~44 simulated hours

    simulator.advance(expected_seconds - 60)
    assert call(simulator, "GET", status_path).json() == {"status": "InProgress"}
    assert call(simulator, "GET", ORDERS).json()["properties"]["provisioningState"] == "Updating"

    simulator.advance(61)
    assert call(simulator, "GET", status_path).json() == {"status": "Succeeded"}
    properties = call(simulator, "GET", ORDERS).json()["properties"]
    assert properties["keyVaultKeyUri"] == std.key_uri
    assert properties["keyVaultKeyUriVersion"] == std.key["properties"]["keyUriWithVersion"].rsplit("/", 1)[1]
    assert properties["customerManagedKeyStatus"] == CONFIRMED
    assert properties["provisioningState"] == "Succeeded"


def test_every_other_write_is_refused_with_409_during_encryption(sim: AzureSimulator, std: StandardWorld) -> None:
    enable(sim, ORDERS, std.key_uri)
    for method, body in (
        ("PATCH", {"tags": {"team": "orders"}}),
        ("PATCH", {"properties": {"keyVaultKeyUri": std.key_uri}}),
        ("PUT", call(sim, "GET", ORDERS).json()),
    ):
        refused = call(sim, method, ORDERS, body)
        assert refused.status_code == 409, method
        assert refused.json()["error"]["code"] == "Conflict"
        assert "customer-managed key encryption" in refused.json()["error"]["message"]
    assert call(sim, "GET", ORDERS).status_code == 200  # reads and data plane stay available


def test_key_change_must_travel_alone(sim: AzureSimulator, std: StandardWorld) -> None:
    for body in (
        {"properties": {"keyVaultKeyUri": std.key_uri, "defaultIdentity": "FirstPartyIdentity"}},
        {"properties": {"keyVaultKeyUri": std.key_uri}, "tags": {"a": "b"}},
        {"properties": {"keyVaultKeyUri": std.key_uri}, "identity": {"type": "SystemAssigned"}},
        {"properties": {"keyVaultKeyUri": std.key_uri}, "location": "West US"},
    ):
        response = call(sim, "PATCH", ORDERS, body)
        assert response.status_code == 400
        assert response.json()["error"]["message"].startswith(
            "Cannot update Customer Managed Key settings and other properties at the same time."
        )
    # an empty apiProperties is not "another property" (azure-cli sends one)
    assert (
        call(sim, "PATCH", ORDERS, {"properties": {"keyVaultKeyUri": std.key_uri, "apiProperties": {}}}).status_code
        == 200
    )


def test_cmk_cannot_be_disabled_and_a_repeat_is_a_quick_no_op(sim: AzureSimulator, std: StandardWorld) -> None:
    assert finish(sim, enable(sim, ORDERS, std.key_uri)) == {"status": "Succeeded"}
    for removal in (None, ""):
        refused = call(sim, "PATCH", ORDERS, {"properties": {"keyVaultKeyUri": removal}})
        assert refused.status_code == 400 and "cannot be disabled" in refused.json()["error"]["message"]
    repeat = enable(sim, ORDERS, std.key_uri.upper().replace("HTTPS://", "https://"))
    sim.advance(sim.settings.unchanged_operation_seconds)
    assert call(sim, "GET", repeat).json() == {"status": "Succeeded"}
    assert call(sim, "GET", ORDERS).json()["properties"]["keyVaultKeyUri"] == std.key_uri


def test_rotation_to_another_key_is_a_quick_operation(start_simulator: Callable[..., AzureSimulator]) -> None:
    std = standard_world()
    second = b.vault_key(std.vault, "cosmos-cmk-2026")
    simulator = start_simulator(dict(std.world, resources=[*std.world["resources"], second]))
    finish(simulator, enable(simulator, ORDERS, std.key_uri))
    rotation = enable(simulator, ORDERS, b.versionless_key_uri(second))
    simulator.advance(simulator.settings.key_rotation_seconds)
    assert call(simulator, "GET", rotation).json() == {"status": "Succeeded"}
    assert call(simulator, "GET", ORDERS).json()["properties"]["keyVaultKeyUri"] == b.versionless_key_uri(second)


def test_failed_enablement_leaves_the_account_as_it_was(sim: AzureSimulator, std: StandardWorld) -> None:
    before = call(sim, "GET", ORDERS).json()
    status = finish(sim, enable(sim, ORDERS, std.rbac_key_uri), seconds=sim.settings.encryption.failure_after_seconds)
    assert status["status"] == "Failed"
    assert status["error"]["code"] == "BadRequest"
    assert detail_code(status) == "KeyVaultAccessDenied"
    assert "(4002)" in status["error"]["message"]
    assert call(sim, "GET", ORDERS).json() == before
    # and it can be retried once the cause is fixed
    assert call(sim, "PATCH", ORDERS, {"properties": {"keyVaultKeyUri": std.rbac_key_uri}}).status_code == 200


def test_rbac_vault_access_counts_only_after_propagation(sim: AzureSimulator, std: StandardWorld) -> None:
    authorization = AuthorizationManagementClient(sim.credential(), SUB, base_url=sim.base_url)
    role_id = f"/subscriptions/{SUB}/providers/Microsoft.Authorization/roleDefinitions/{CRYPTO_SERVICE_ENCRYPTION_USER}"
    authorization.role_assignments.create(
        std.rbac_vault["id"],
        "3f2a1b4c-5d6e-4f70-8a9b-0c1d2e3f4a5b",
        RoleAssignmentCreateParameters(
            role_definition_id=role_id, principal_id=FIRST_PARTY, principal_type="ServicePrincipal"
        ),
    )
    too_early = finish(
        sim, enable(sim, ORDERS, std.rbac_key_uri), seconds=sim.settings.encryption.failure_after_seconds
    )
    assert too_early["status"] == "Failed" and detail_code(too_early) == "KeyVaultAccessDenied"
    sim.advance(sim.settings.rbac_propagation_seconds)
    assert finish(sim, enable(sim, ORDERS, std.rbac_key_uri)) == {"status": "Succeeded"}


def test_a_role_that_contains_the_data_actions_also_works(start_simulator: Callable[..., AzureSimulator]) -> None:
    std = standard_world()
    administrator = b.role_assignment(f"/subscriptions/{SUB}", "00482a5a-887f-4fb3-b363-3b7fe8e74483", FIRST_PARTY)
    owner_only = standard_world()
    owner = b.role_assignment(std.rbac_vault["id"], "8e3af657-a8ff-443c-a75c-2fe8c4bcb635", FIRST_PARTY)
    granted = start_simulator(dict(std.world, resources=[*std.world["resources"], administrator]))
    assert finish(granted, enable(granted, ORDERS, std.rbac_key_uri)) == {"status": "Succeeded"}
    denied = start_simulator(dict(owner_only.world, resources=[*owner_only.world["resources"], owner]))
    assert finish(denied, enable(denied, ORDERS, owner_only.rbac_key_uri))["status"] == "Failed"


def _world_with(*extra: dict[str, Any], account_data: dict[str, Any] | None = None) -> dict[str, Any]:
    std = standard_world()
    return dict(std.world, resources=[*std.world["resources"], *extra], accountData=account_data or {})


def _key_in_standard_vault(name: str, **key: Any) -> dict[str, Any]:
    return b.vault_key(standard_world().vault, name, **key)


NOW = int(time.time())


@pytest.mark.parametrize(
    ("key", "reason"),
    [
        (_key_in_standard_vault("disabled", enabled=False), "is disabled"),
        (_key_in_standard_vault("expired", expires=NOW - 3600), "has expired"),
        (_key_in_standard_vault("future", not_before=NOW + 30 * 24 * 3600), "not yet valid"),
        (_key_in_standard_vault("elliptic", kty="EC"), "RSA"),
    ],
)
def test_unusable_keys_fail_asynchronously(
    start_simulator: Callable[..., AzureSimulator], key: dict[str, Any], reason: str
) -> None:
    simulator = start_simulator(_world_with(key))
    status = finish(simulator, enable(simulator, ORDERS, b.versionless_key_uri(key)))
    assert status["status"] == "Failed" and detail_code(status) == "KeyVaultKeyUnusable"
    assert reason in status["error"]["message"]


def test_missing_vault_and_missing_key_fail(sim: AzureSimulator) -> None:
    no_vault = finish(sim, enable(sim, ORDERS, "https://kv-does-not-exist.vault.azure.net/keys/cmk"))
    assert detail_code(no_vault) == "KeyVaultNotFound"
    no_key = finish(sim, enable(sim, ORDERS, "https://kv-cmk-prod.vault.azure.net/keys/not-there"))
    assert detail_code(no_key) == "KeyNotFound"


def test_malformed_key_uri_is_refused_synchronously(sim: AzureSimulator) -> None:
    response = call(sim, "PATCH", ORDERS, {"properties": {"keyVaultKeyUri": "kv-cmk-prod/cosmos-cmk"}})
    assert response.status_code == 400


@pytest.mark.parametrize(
    ("vault_options", "blocked"),
    [
        ({"public_network_access": "Disabled"}, True),
        ({"network_acls": {"defaultAction": "Deny", "bypass": "None", "ipRules": [], "virtualNetworkRules": []}}, True),
        ({"network_acls": {"defaultAction": "Deny", "bypass": "AzureServices", "ipRules": []}}, False),
    ],
)
def test_vault_network_rules(
    start_simulator: Callable[..., AzureSimulator], vault_options: dict[str, Any], blocked: bool
) -> None:
    vault = b.key_vault(
        SUB,
        RG,
        "kv-cmk-locked",
        tenant_id=TENANT,
        access_policies=[b.access_policy(TENANT, FIRST_PARTY)],
        **vault_options,
    )
    key = b.vault_key(vault, "cmk")
    simulator = start_simulator(_world_with(vault, key))
    status = finish(simulator, enable(simulator, ORDERS, b.versionless_key_uri(key)))
    if blocked:
        assert status["status"] == "Failed" and detail_code(status) == "KeyVaultNetworkBlocked"
    else:
        assert status == {"status": "Succeeded"}


def test_vault_without_purge_protection_fails(start_simulator: Callable[..., AzureSimulator]) -> None:
    vault = b.key_vault(
        SUB,
        RG,
        "kv-no-purge",
        tenant_id=TENANT,
        purge_protection=False,
        access_policies=[b.access_policy(TENANT, FIRST_PARTY)],
    )
    key = b.vault_key(vault, "cmk")
    simulator = start_simulator(_world_with(vault, key))
    status = finish(simulator, enable(simulator, ORDERS, b.versionless_key_uri(key)))
    assert detail_code(status) == "KeyVaultPurgeProtectionRequired"


@pytest.mark.parametrize(
    ("soft_delete", "outcome"), [("absent", "Succeeded"), (None, "Succeeded"), (True, "Succeeded"), (False, "Failed")]
)
def test_soft_delete_is_on_unless_the_vault_says_false(
    start_simulator: Callable[..., AzureSimulator], soft_delete: object, outcome: str
) -> None:
    """Key Vault enforces soft delete on every vault (and older api-versions omit the property): only an explicit
    `enableSoftDelete: false`, a legacy vault, fails."""
    vault = b.key_vault(
        SUB, RG, "kv-soft-delete", tenant_id=TENANT, access_policies=[b.access_policy(TENANT, FIRST_PARTY)]
    )
    if soft_delete == "absent":
        del vault["properties"]["enableSoftDelete"]
    else:
        vault["properties"]["enableSoftDelete"] = soft_delete
    key = b.vault_key(vault, "cmk")
    simulator = start_simulator(_world_with(vault, key))
    status = finish(simulator, enable(simulator, ORDERS, b.versionless_key_uri(key)))
    assert status["status"] == outcome
    if outcome == "Failed":
        assert detail_code(status) == "KeyVaultPurgeProtectionRequired"
        assert "soft delete" in status["error"]["message"]


def test_document_id_over_990_bytes_fails_the_scan(start_simulator: Callable[..., AzureSimulator]) -> None:
    std = standard_world()
    simulator = start_simulator(_world_with(account_data={ORDERS: {"largestDocumentIdBytes": 991}}))
    status = finish(simulator, enable(simulator, ORDERS, std.key_uri))
    assert status["status"] == "Failed" and detail_code(status) == "LargeDocumentIdFound"
    assert status["error"]["message"].startswith("Unexpected error on document scan for CMK Migration")
    assert "991 bytes" in status["error"]["message"]
    exactly = start_simulator(_world_with(account_data={ORDERS: {"largestDocumentIdBytes": 990}}))
    assert finish(exactly, enable(exactly, ORDERS, std.key_uri)) == {"status": "Succeeded"}


def test_scan_without_spare_throughput_fails_like_the_real_429_case(
    start_simulator: Callable[..., AzureSimulator],
) -> None:
    std = standard_world()
    simulator = start_simulator(_world_with(account_data={ORDERS: {"spareRuPerSecond": 10}}))
    status = finish(simulator, enable(simulator, ORDERS, std.key_uri))
    assert status["error"]["code"] == "InternalServerError"
    assert (
        status["error"]["message"] == "Unexpected error on document scan for CMK Migration. Please retry the operation."
    )


@pytest.mark.parametrize(
    ("options", "code"),
    [
        ({"capabilities": ["EnableCassandra"]}, "CassandraNotSupported"),
        ({"capabilities": ["EnableNoSQLVectorSearch"]}, "VectorSearchNotSupported"),
        ({"extra_properties": {"enableMaterializedViews": True}}, "MaterializedViewsNotSupported"),
        (
            {"extra_properties": {"enableAllVersionsAndDeletesChangeFeed": True}},
            "AllVersionsAndDeletesChangeFeedNotSupported",
        ),
    ],
)
def test_unsupported_account_kinds_fail(
    start_simulator: Callable[..., AzureSimulator], options: dict[str, Any], code: str
) -> None:
    std = standard_world()
    account = b.cosmos_account(SUB, RG, "cosmos-special", **options)
    simulator = start_simulator(_world_with(account))
    assert detail_code(finish(simulator, enable(simulator, account["id"], std.key_uri))) == code


def test_a_materialized_views_builder_service_is_enough_to_fail(start_simulator: Callable[..., AzureSimulator]) -> None:
    std = standard_world()
    account = b.cosmos_account(SUB, RG, "cosmos-gsi")
    simulator = start_simulator(_world_with(account, b.account_service(account, "MaterializedViewsBuilder")))
    assert (
        detail_code(finish(simulator, enable(simulator, account["id"], std.key_uri))) == "MaterializedViewsNotSupported"
    )


def test_continuous_backup_requires_a_user_assigned_default_identity(
    start_simulator: Callable[..., AzureSimulator],
) -> None:
    std = standard_world()
    first_party = b.cosmos_account(SUB, RG, "cosmos-pitr-fp", backup="Continuous")
    simulator = start_simulator(_world_with(first_party))
    status = finish(simulator, enable(simulator, first_party["id"], std.key_uri))
    assert detail_code(status) == "ContinuousBackupRequiresUserAssignedIdentity"
    # the standard world's continuous account uses its UAMI, which the vault's access policy grants
    ready = std.account_id("cosmos-continuous")
    assert finish(simulator, enable(simulator, ready, std.key_uri)) == {"status": "Succeeded"}


def test_default_identity_change_on_a_cmk_account_is_checked_against_the_vault(
    sim: AzureSimulator, std: StandardWorld
) -> None:
    finish(sim, enable(sim, ORDERS, std.key_uri))
    assert call(sim, "PATCH", ORDERS, {"identity": {"type": "SystemAssigned"}}).status_code == 200
    sim.advance(sim.settings.identity_operation_seconds)
    refused = call(sim, "PATCH", ORDERS, {"properties": {"defaultIdentity": "SystemAssignedIdentity"}})
    assert refused.status_code == 400 and "Key Vault access validation" in refused.json()["error"]["message"]
    principal = call(sim, "GET", ORDERS).json()["identity"]["principalId"]
    grant = call(
        sim,
        "PUT",
        f"{std.vault['id']}/accessPolicies/add",
        {"properties": {"accessPolicies": [b.access_policy(TENANT, principal)]}},
    )
    assert grant.status_code == 200
    accepted = call(sim, "PATCH", ORDERS, {"properties": {"defaultIdentity": "SystemAssignedIdentity"}})
    assert accepted.status_code == 200


def test_the_operation_records_who_asked_and_why_it_failed(sim: AzureSimulator) -> None:
    finish(sim, enable(sim, ORDERS, "https://kv-missing.vault.azure.net/keys/k"))
    (operation,) = sim.operations()
    assert operation["kind"] == "enableCustomerManagedKey"
    assert operation["requestedBy"] == SYSTEM
    assert operation["status"] == "Failed" and operation["error"]["details"][0]["code"] == "KeyVaultNotFound"


def test_the_sdk_poller_raises_the_failure(sim: AzureSimulator, std: StandardWorld) -> None:
    from azure.core.exceptions import HttpResponseError

    from sandbox.azure.testing import cosmos_client

    poller = cosmos_client(sim).database_accounts.begin_update(
        RG, "cosmos-orders", {"properties": {"keyVaultKeyUri": std.rbac_key_uri}}, polling_interval=0.01
    )
    sim.advance(sim.settings.encryption.failure_after_seconds)
    with pytest.raises(HttpResponseError) as failed:
        poller.result(timeout=30)
    assert "does not have get, wrapKey and unwrapKey permissions" in str(failed.value)
