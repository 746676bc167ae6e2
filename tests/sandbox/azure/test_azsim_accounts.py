"""Database accounts: reads, the asynchronous PATCH as recorded from real Cosmos DB, identities, default identity."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from azure.core.exceptions import HttpResponseError
from azure.mgmt.cosmosdb.models import (
    DatabaseAccountUpdateParameters,
    ManagedServiceIdentity,
    ManagedServiceIdentityUserAssignedIdentity,
)

from sandbox.azure import AzureSimulator
from sandbox.azure import builders as b
from sandbox.azure.testing import ADMIN, RG, SUB, SYSTEM, TENANT, StandardWorld, call, cosmos_client

ORDERS = f"/subscriptions/{SUB}/resourceGroups/{RG}/providers/Microsoft.DocumentDB/databaseAccounts/cosmos-orders"


def test_get_and_lists_use_the_real_sdk(sim: AzureSimulator) -> None:
    client = cosmos_client(sim)
    account = client.database_accounts.get(RG, "cosmos-orders")
    assert account.id == ORDERS
    assert account.provisioning_state == "Succeeded"
    assert account.document_endpoint == f"{sim.base_url}/cosmos/cosmos-orders/"
    by_group = sorted(str(item.name) for item in client.database_accounts.list_by_resource_group(RG))
    by_subscription = sorted(str(item.name) for item in client.database_accounts.list())
    assert by_group == by_subscription == ["cosmos-catalog", "cosmos-continuous", "cosmos-orders"]


def test_ids_and_names_are_case_insensitive(sim: AzureSimulator) -> None:
    response = call(sim, "GET", ORDERS.upper().replace("/SUBSCRIPTIONS/", "/subscriptions/"))
    assert response.status_code == 200
    assert response.json()["id"] == ORDERS  # the stored casing comes back


def test_patch_answers_like_the_recorded_cosmos_rp(sim: AzureSimulator) -> None:
    """200 (not 201/202), both async headers, the OLD body marked Updating, then Dequeued ... Succeeded. As the
    subscription's Owner: the app's role does not read the Location URL (operationResults/read)."""
    patch = call(sim, "PATCH", ORDERS, {"identity": {"type": "SystemAssigned"}}, principal=ADMIN)
    assert patch.status_code == 200
    assert "Retry-After" not in patch.headers
    async_url = patch.headers["Azure-AsyncOperation"]
    location = patch.headers["Location"]
    operation_id = async_url.split("/operationsStatus/")[1].split("?")[0]
    assert async_url == (
        f"{sim.base_url}/subscriptions/{SUB}/providers/Microsoft.DocumentDB/locations/eastus/operationsStatus/"
        f"{operation_id}?api-version=2026-03-15"
    )
    assert location == f"{sim.base_url}{ORDERS}/operationResults/{operation_id}?api-version=2026-03-15"
    body = patch.json()
    assert body["identity"] == {"type": "None"}
    assert body["properties"]["provisioningState"] == "Updating"

    status_path = async_url.removeprefix(sim.base_url).split("?")[0]
    assert call(sim, "GET", status_path, principal=ADMIN).json() == {"status": "Dequeued"}
    during = call(sim, "GET", ORDERS, principal=ADMIN).json()
    assert during["identity"] == {"type": "None"} and during["properties"]["provisioningState"] == "Updating"
    result_path = location.removeprefix(sim.base_url).split("?")[0]
    running = call(sim, "GET", result_path, principal=ADMIN)
    assert running.status_code == 202 and running.content == b""

    sim.advance(sim.settings.identity_operation_seconds)
    assert call(sim, "GET", status_path, principal=ADMIN).json() == {"status": "Succeeded"}
    after = call(sim, "GET", ORDERS, principal=ADMIN).json()
    assert after["properties"]["provisioningState"] == "Succeeded"
    assert after["identity"]["type"] == "SystemAssigned"
    assert after["identity"]["tenantId"] == TENANT and len(after["identity"]["principalId"]) == 36
    finished = call(sim, "GET", result_path, principal=ADMIN)
    assert finished.status_code == 200 and finished.json() == after


def test_long_operations_report_in_progress_after_dequeued(sim: AzureSimulator, std: StandardWorld) -> None:
    patch = call(sim, "PATCH", ORDERS, {"properties": {"keyVaultKeyUri": std.key_uri}})
    status_path = patch.headers["Azure-AsyncOperation"].removeprefix(sim.base_url).split("?")[0]
    assert call(sim, "GET", status_path).json() == {"status": "Dequeued"}
    sim.advance(sim.settings.dequeued_seconds)
    assert call(sim, "GET", status_path).json() == {"status": "InProgress"}


def test_sdk_begin_update_poller_completes(sim: AzureSimulator) -> None:
    client = cosmos_client(sim)
    poller = client.database_accounts.begin_update(
        RG, "cosmos-orders", DatabaseAccountUpdateParameters(tags={"owner": "data-platform"}), polling_interval=0.01
    )
    sim.advance(sim.settings.update_operation_seconds)
    account = poller.result(timeout=30)
    assert account.tags == {"owner": "data-platform"}
    assert account.provisioning_state == "Succeeded"


def test_operation_is_visible_only_to_the_principal_that_started_it(sim: AzureSimulator) -> None:
    patch = call(sim, "PATCH", ORDERS, {"tags": {"a": "b"}})
    status_path = patch.headers["Azure-AsyncOperation"].removeprefix(sim.base_url).split("?")[0]
    other = call(sim, "GET", status_path, principal=ADMIN)  # may read every operation status: still 404
    assert other.status_code == 404
    assert call(sim, "GET", status_path).status_code == 200
    unknown = call(sim, "GET", status_path.rsplit("/", 1)[0] + "/3c1f1ed5-6f73-4a61-9f3b-2b0e7f9f0c11")
    assert unknown.status_code == 404 and unknown.json()["error"]["code"] == "NotFound"


def test_writes_during_another_operation_are_refused_with_412(sim: AzureSimulator) -> None:
    assert call(sim, "PATCH", ORDERS, {"identity": {"type": "SystemAssigned"}}).status_code == 200
    second = call(sim, "PATCH", ORDERS, {"tags": {"x": "y"}})
    assert second.status_code == 412
    assert second.json()["error"]["code"] == "PreconditionFailed"
    assert "exclusive lock" in second.json()["error"]["message"]
    with pytest.raises(HttpResponseError) as refused:
        cosmos_client(sim).database_accounts.begin_update(RG, "cosmos-orders", {"tags": {"x": "y"}})
    assert refused.value.status_code == 412
    sim.advance(sim.settings.identity_operation_seconds)
    assert call(sim, "PATCH", ORDERS, {"tags": {"x": "y"}}).status_code == 200


def test_user_assigned_identity_gets_its_ids_from_the_uami(sim: AzureSimulator, std: StandardWorld) -> None:
    client = cosmos_client(sim)
    poller = client.database_accounts.begin_update(
        RG,
        "cosmos-orders",
        DatabaseAccountUpdateParameters(
            identity=ManagedServiceIdentity(
                type="SystemAssigned,UserAssigned",
                user_assigned_identities={std.uami["id"]: ManagedServiceIdentityUserAssignedIdentity()},
            )
        ),
    )
    sim.advance(sim.settings.identity_operation_seconds)
    identity = poller.result(timeout=30).identity
    assert identity is not None and identity.type == "SystemAssigned,UserAssigned"
    assert identity.user_assigned_identities is not None
    entry = identity.user_assigned_identities[std.uami["id"]]
    assert entry.principal_id == std.uami["properties"]["principalId"]
    assert entry.client_id == std.uami["properties"]["clientId"]


def test_missing_user_assigned_identity_is_a_400(sim: AzureSimulator) -> None:
    missing = (
        f"/subscriptions/{SUB}/resourceGroups/{RG}/providers/Microsoft.ManagedIdentity/userAssignedIdentities/nope"
    )
    response = call(
        sim, "PATCH", ORDERS, {"identity": {"type": "UserAssigned", "userAssignedIdentities": {missing: {}}}}
    )
    assert response.status_code == 400


@pytest.mark.parametrize(
    "value",
    [
        "SystemAssignedIdentity=subscriptions/x/resourcegroups/y/providers/Microsoft.ManagedIdentity/"
        "systemAssignedIdentities/z",
        "UserAssignedIdentity",
        "firstparty",
    ],
)
def test_malformed_default_identity_is_refused_with_the_real_message(sim: AzureSimulator, value: str) -> None:
    response = call(sim, "PATCH", ORDERS, {"properties": {"defaultIdentity": value}})
    assert response.status_code == 400
    message = response.json()["error"]["message"]
    assert message.startswith(
        "The given default identity for cosmos-orders is not valid. The format for the default identity is not "
        "valid, please use 'FirstPartyIdentity'/'SystemAssignedIdentity'/'UserAssignedIdentity=<UA_resource_id>'"
    )


def test_default_identity_must_reference_an_assigned_identity(sim: AzureSimulator, std: StandardWorld) -> None:
    system = call(sim, "PATCH", ORDERS, {"properties": {"defaultIdentity": "SystemAssignedIdentity"}})
    assert system.status_code == 400
    user = call(sim, "PATCH", ORDERS, {"properties": {"defaultIdentity": f"UserAssignedIdentity={std.uami['id']}"}})
    assert user.status_code == 400
    assert "not assigned" in user.json()["error"]["message"]


def test_identity_then_default_identity_in_two_patches(sim: AzureSimulator, std: StandardWorld) -> None:
    assign = call(
        sim, "PATCH", ORDERS, {"identity": {"type": "UserAssigned", "userAssignedIdentities": {std.uami["id"]: {}}}}
    )
    assert assign.status_code == 200
    sim.advance(sim.settings.identity_operation_seconds)
    default = call(sim, "PATCH", ORDERS, {"properties": {"defaultIdentity": f"UserAssignedIdentity={std.uami['id']}"}})
    assert default.status_code == 200
    assert default.json()["properties"]["defaultIdentity"] == "FirstPartyIdentity"  # stale until done
    sim.advance(sim.settings.identity_operation_seconds)
    assert call(sim, "GET", ORDERS).json()["properties"]["defaultIdentity"] == f"UserAssignedIdentity={std.uami['id']}"
    removal = call(sim, "PATCH", ORDERS, {"identity": {"type": "None"}})
    assert removal.status_code == 400  # it would orphan the default identity


def test_preview_only_properties_are_hidden_at_stable_api_versions(
    start_simulator: Callable[..., AzureSimulator],
) -> None:
    account = b.cosmos_account(
        SUB,
        RG,
        "cosmos-mv",
        extra_properties={"enableMaterializedViews": True, "enableAllVersionsAndDeletesChangeFeed": False},
    )
    service = b.account_service(account, "MaterializedViewsBuilder")
    simulator = start_simulator(b.world([account, service], tenant_id=TENANT))
    stable = call(simulator, "GET", account["id"], api_version="2026-03-15").json()["properties"]
    preview = call(simulator, "GET", account["id"], api_version="2025-11-01-preview").json()["properties"]
    assert "enableMaterializedViews" not in stable and "enableAllVersionsAndDeletesChangeFeed" not in stable
    assert preview["enableMaterializedViews"] is True and preview["enableAllVersionsAndDeletesChangeFeed"] is False
    services = list(cosmos_client(simulator).service.list(RG, "cosmos-mv"))
    assert [service.properties.service_type for service in services if service.properties] == [
        "MaterializedViewsBuilder"
    ]


def test_missing_account_is_resource_not_found(sim: AzureSimulator) -> None:
    response = call(sim, "GET", ORDERS.replace("cosmos-orders", "cosmos-nope"))
    assert response.status_code == 404
    assert response.json()["error"] == {
        "code": "ResourceNotFound",
        "message": f"The Resource 'Microsoft.DocumentDB/databaseAccounts/cosmos-nope' under resource group '{RG}' "
        "was not found. For more details please go to https://aka.ms/ARMResourceNotFoundFix",
    }
    with pytest.raises(HttpResponseError):
        cosmos_client(sim).database_accounts.get(RG, "cosmos-nope")


def test_retry_after_is_an_option(start_simulator: Callable[..., AzureSimulator], std: StandardWorld) -> None:
    world = dict(std.world, simulator={"asyncRetryAfterSeconds": 15})
    simulator = start_simulator(world)
    patch = call(simulator, "PATCH", ORDERS, {"tags": {"a": "b"}})
    assert patch.headers["Retry-After"] == "15"
    status_path = patch.headers["Azure-AsyncOperation"].removeprefix(simulator.base_url).split("?")[0]
    assert call(simulator, "GET", status_path).headers["Retry-After"] == "15"


def test_operations_are_recorded(sim: AzureSimulator) -> None:
    call(sim, "PATCH", ORDERS, {"tags": {"team": "orders"}})
    sim.advance(60)
    (operation,) = sim.operations()
    assert operation["accountId"] == ORDERS
    assert operation["kind"] == "update" and operation["status"] == "Succeeded"
    assert operation["requestedBy"] == SYSTEM
    assert operation["changes"] == {"tags": {"team": "orders"}}
