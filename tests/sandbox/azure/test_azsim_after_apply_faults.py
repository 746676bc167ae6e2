"""Faults that strike after Azure acted: the key PATCH takes effect, the client never hears of it.

Also `bodyContains`, which lets a rule pick the key PATCH out of the other PATCHes to the same account, and the
request log that counts how many key PATCHes reached an account whatever their answer.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest
import requests
from azure.core.exceptions import HttpResponseError, ServiceRequestError, ServiceResponseError
from azure.mgmt.cosmosdb.models import (
    DatabaseAccountUpdateParameters,
    DatabaseAccountUpdateProperties,
    ManagedServiceIdentity,
)

from sandbox.azure import AzureSimulator
from sandbox.azure.testing import RG, SUB, StandardWorld, call, cosmos_client, key_patches

ORDERS = f"/subscriptions/{SUB}/resourceGroups/{RG}/providers/Microsoft.DocumentDB/databaseAccounts/cosmos-orders"
CATALOG = f"/subscriptions/{SUB}/resourceGroups/{RG}/providers/Microsoft.DocumentDB/databaseAccounts/cosmos-catalog"
KEY_PATCH_RULE = {"method": "PATCH", "path": "databaseAccounts/", "bodyContains": "keyvaultkeyuri"}


def _key_only(key_uri: str) -> DatabaseAccountUpdateParameters:
    return DatabaseAccountUpdateParameters(properties=DatabaseAccountUpdateProperties(key_vault_key_uri=key_uri))


def _encryptions(simulator: AzureSimulator, account_id: str) -> list[dict[str, object]]:
    return [
        operation
        for operation in simulator.operations()
        if operation["kind"] == "enableCustomerManagedKey" and str(operation["accountId"]).lower() == account_id.lower()
    ]


def test_reset_after_apply_starts_the_encryption_and_the_client_sees_a_dropped_connection(
    sim: AzureSimulator, std: StandardWorld
) -> None:
    rule = sim.add_fault({**KEY_PATCH_RULE, "kind": "resetAfterApply", "count": 1})
    client = cosmos_client(sim)  # retry_total=0: exactly one attempt
    with pytest.raises((ServiceRequestError, ServiceResponseError)):
        client.database_accounts.begin_update(RG, "cosmos-orders", _key_only(std.key_uri))
    (encryption,) = _encryptions(sim, ORDERS)
    assert encryption["status"] == "InProgress"
    (logged,) = key_patches(sim, ORDERS)
    assert (logged["status"], logged["appliedStatus"], logged["fault"]) == (0, 200, rule["id"])
    # Azure did act: the account is locked by its encryption, and a blind retry of the PATCH is refused.
    assert call(sim, "GET", ORDERS).json()["properties"]["provisioningState"] == "Updating"
    retry = call(sim, "PATCH", ORDERS, {"properties": {"keyVaultKeyUri": std.key_uri}})
    assert retry.status_code == 409
    assert len(_encryptions(sim, ORDERS)) == 1
    assert [entry["status"] for entry in key_patches(sim, ORDERS)] == [0, 409]


def test_status_after_apply_answers_504_yet_the_encryption_runs(sim: AzureSimulator, std: StandardWorld) -> None:
    sim.add_fault({**KEY_PATCH_RULE, "kind": "statusAfterApply", "status": 504, "count": 1})
    with pytest.raises(HttpResponseError) as raised:
        cosmos_client(sim).database_accounts.begin_update(RG, "cosmos-orders", _key_only(std.key_uri))
    assert raised.value.status_code == 504
    assert raised.value.error is not None and raised.value.error.code == "GatewayTimeout"
    (encryption,) = _encryptions(sim, ORDERS)
    sim.advance(10 * 24 * 3600)
    (encryption,) = _encryptions(sim, ORDERS)
    assert encryption["status"] == "Succeeded"
    assert call(sim, "GET", ORDERS).json()["properties"]["keyVaultKeyUri"] == std.key_uri
    (logged,) = key_patches(sim, ORDERS)
    assert (logged["status"], logged["appliedStatus"]) == (504, 200)


def test_status_after_apply_over_raw_http_carries_an_arm_error_body(sim: AzureSimulator, std: StandardWorld) -> None:
    sim.add_fault(
        {**KEY_PATCH_RULE, "kind": "statusAfterApply", "status": 504, "message": "Gateway timed out.", "retryAfter": 7}
    )
    response = call(sim, "PATCH", ORDERS, {"properties": {"keyVaultKeyUri": std.key_uri}})
    assert response.status_code == 504
    assert response.json() == {"error": {"code": "GatewayTimeout", "message": "Gateway timed out."}}
    assert response.headers["Retry-After"] == "7"
    assert "Azure-AsyncOperation" not in response.headers  # the client never learns the operation URL
    assert len(_encryptions(sim, ORDERS)) == 1
    # A refusal is answered over too: what the rule replaces is whatever the resource provider said.
    again = call(sim, "PATCH", ORDERS, {"properties": {"keyVaultKeyUri": std.key_uri}})
    assert again.status_code == 504
    assert [(entry["status"], entry["appliedStatus"]) for entry in key_patches(sim, ORDERS)] == [(504, 200), (504, 409)]
    assert len(_encryptions(sim, ORDERS)) == 1


def test_body_contains_picks_the_key_patch_and_not_the_identity_patch(sim: AzureSimulator, std: StandardWorld) -> None:
    sim.add_fault({**KEY_PATCH_RULE, "kind": "status", "status": 503})
    client = cosmos_client(sim)
    identity = client.database_accounts.begin_update(
        RG, "cosmos-catalog", DatabaseAccountUpdateParameters(identity=ManagedServiceIdentity(type="SystemAssigned"))
    )
    sim.advance(sim.settings.identity_operation_seconds)
    identity.result()
    assert call(sim, "PATCH", ORDERS, {"tags": {"team": "orders"}}).status_code == 200
    with pytest.raises(HttpResponseError) as raised:
        client.database_accounts.begin_update(RG, "cosmos-catalog", _key_only(std.key_uri))
    assert raised.value.status_code == 503
    assert _encryptions(sim, CATALOG) == []  # a plain `status` fault fails the request before Azure sees it
    (logged,) = key_patches(sim, CATALOG)
    assert logged["status"] == 503 and "appliedStatus" not in logged
    faulted = [entry["path"].split("?")[0] for entry in sim.requests() if "fault" in entry]
    assert faulted == [CATALOG]


def test_body_contains_is_case_insensitive_and_never_matches_an_empty_body(sim: AzureSimulator) -> None:
    sim.add_fault({"path": "cosmos-orders", "bodyContains": "TEAM", "kind": "status", "status": 500})
    assert call(sim, "GET", ORDERS).status_code == 200
    assert call(sim, "PATCH", ORDERS, {"tags": {"owner": "x"}}).status_code == 200
    sim.advance(60)
    assert call(sim, "PATCH", ORDERS, {"tags": {"team": "x"}}).status_code == 500


def test_reset_after_apply_on_a_read_still_logs_and_counts(sim: AzureSimulator) -> None:
    sim.add_fault({"method": "GET", "path": "cosmos-orders\\?", "kind": "resetAfterApply", "count": 2})
    for _ in range(2):
        with pytest.raises(requests.exceptions.ConnectionError):
            call(sim, "GET", ORDERS)
    assert call(sim, "GET", ORDERS).status_code == 200
    statuses = [(entry["status"], entry.get("appliedStatus")) for entry in sim.requests() if entry["method"] == "GET"]
    assert statuses == [(0, 200), (0, 200), (200, None)]


def test_after_apply_faults_validate_like_the_others(start_simulator: Callable[..., AzureSimulator]) -> None:
    simulator = start_simulator()
    for invalid in (
        {"kind": "statusAfterApply", "status": 99},
        {"kind": "resetAfterApply", "bodyContains": ""},
        {"kind": "resetAfterApply", "bodyContains": 3},
        {"kind": "resetLater"},
    ):
        with pytest.raises(ValueError):
            simulator.add_fault(invalid)
    added = simulator.add_fault({"kind": "statusAfterApply", "bodyContains": "keyVaultKeyUri"})
    assert (added["status"], added["code"], added["bodyContains"]) == (503, "ServiceUnavailable", "keyVaultKeyUri")
    over_http = requests.post(
        f"{simulator.base_url}/_sandbox/faults",
        json={"kind": "resetAfterApply", "bodyContains": None, "path": "("},
        verify=simulator.ca_bundle_path,
        timeout=10,
    )
    assert over_http.status_code == 400


def test_key_patches_counts_every_key_patch_per_account_whatever_its_answer(
    sim: AzureSimulator, std: StandardWorld
) -> None:
    sim.add_fault({**KEY_PATCH_RULE, "path": "cosmos-catalog", "kind": "reset", "count": 1})
    with pytest.raises(requests.exceptions.ConnectionError):
        call(sim, "PATCH", CATALOG, {"properties": {"keyVaultKeyUri": std.key_uri}})
    assert call(sim, "PATCH", CATALOG, {"properties": {"keyVaultKeyUri": std.key_uri}}).status_code == 200
    assert call(sim, "PATCH", CATALOG, {"properties": {"keyVaultKeyUri": std.key_uri}}).status_code == 409
    assert call(sim, "PATCH", CATALOG, {"tags": {"a": "b"}}).status_code == 409  # not a key PATCH
    assert call(sim, "PATCH", ORDERS.upper(), {"properties": {"keyVaultKeyUri": std.key_uri}}).status_code == 200
    assert [entry["status"] for entry in key_patches(sim, CATALOG)] == [0, 200, 409]
    assert [entry["status"] for entry in key_patches(sim, ORDERS)] == [200]
