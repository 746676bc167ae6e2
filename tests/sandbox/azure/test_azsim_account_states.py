"""States an account can be in that the product must see through: a key status that lags the encryption's end, an
account busy with someone else's operation from the start, and a repeated key PATCH (counted per account)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from sandbox.azure import AzureSimulator, cosmos_accounts, load_world
from sandbox.azure.testing import RG, SUB, StandardWorld, call, cosmos_client, key_patches, standard_world
from sandbox.azure.world import RESERVED_OPERATION_KINDS, WorldError

CONFIRMED = "Access to the configured customer managed key confirmed."
ORDERS = f"/subscriptions/{SUB}/resourceGroups/{RG}/providers/Microsoft.DocumentDB/databaseAccounts/cosmos-orders"
CATALOG = f"/subscriptions/{SUB}/resourceGroups/{RG}/providers/Microsoft.DocumentDB/databaseAccounts/cosmos-catalog"
ENCRYPTION_SECONDS = 600.0  # minSeconds: 0.05 GiB at 1000 RU/s is shorter
BUSY_MESSAGE = "There is another user operation in progress which requires an exclusive lock on [cosmos-orders]."


def _world(account_data: dict[str, Any], **simulator: Any) -> dict[str, Any]:
    world = standard_world(**simulator).world
    return dict(world, accountData=account_data)


def _enable(simulator: AzureSimulator, account_id: str, key_uri: str) -> str:
    response = call(simulator, "PATCH", account_id, {"properties": {"keyVaultKeyUri": key_uri}})
    assert response.status_code == 200, response.text
    return str(response.headers["Azure-AsyncOperation"]).removeprefix(simulator.base_url).split("?")[0]


def _properties(simulator: AzureSimulator, account_id: str) -> dict[str, Any]:
    properties: dict[str, Any] = call(simulator, "GET", account_id).json()["properties"]
    return properties


# ----------------------------------------------------------------------------- key status lag


def test_key_status_is_absent_for_the_lag_after_the_encryption_succeeds(
    start_simulator: Callable[..., AzureSimulator], std: StandardWorld
) -> None:
    small = {"dataSizeGiB": 0.05}
    simulator = start_simulator(_world({ORDERS: small}, encryption={"keyStatusLagSeconds": 300}))
    status_path = _enable(simulator, ORDERS, std.key_uri)
    simulator.advance(ENCRYPTION_SECONDS)
    assert call(simulator, "GET", status_path).json() == {"status": "Succeeded"}
    properties = _properties(simulator, ORDERS)
    assert properties["provisioningState"] == "Succeeded"
    assert properties["keyVaultKeyUri"] == std.key_uri
    assert "customerManagedKeyStatus" not in properties
    account = cosmos_client(simulator).database_accounts.get(RG, "cosmos-orders")
    assert account.properties is not None and account.properties.customer_managed_key_status is None
    simulator.advance(299)
    assert "customerManagedKeyStatus" not in _properties(simulator, ORDERS)
    simulator.advance(1)
    assert _properties(simulator, ORDERS)["customerManagedKeyStatus"] == CONFIRMED
    assert simulator.state.operations.timers == {}


def test_the_lag_can_be_set_per_account(start_simulator: Callable[..., AzureSimulator], std: StandardWorld) -> None:
    simulator = start_simulator(
        _world(
            {ORDERS: {"dataSizeGiB": 0.05, "keyStatusLagSeconds": 0}, CATALOG: {"dataSizeGiB": 0.05}},
            encryption={"keyStatusLagSeconds": 3600},
        )
    )
    _enable(simulator, ORDERS, std.key_uri)
    _enable(simulator, CATALOG, std.key_uri)
    simulator.advance(ENCRYPTION_SECONDS)
    assert _properties(simulator, ORDERS)["customerManagedKeyStatus"] == CONFIRMED
    assert "customerManagedKeyStatus" not in _properties(simulator, CATALOG)
    due_now, next_due = simulator.schedule_state()  # the confirmation is something due, like an operation's end
    assert not due_now and next_due == pytest.approx(simulator.clock.timestamp() + 3600, abs=2)
    simulator.advance(3600)
    assert _properties(simulator, CATALOG)["customerManagedKeyStatus"] == CONFIRMED


def test_by_default_the_key_is_confirmed_when_the_encryption_ends(sim: AzureSimulator, std: StandardWorld) -> None:
    _enable(sim, ORDERS, std.key_uri)
    sim.advance(10 * 24 * 3600)
    assert _properties(sim, ORDERS)["customerManagedKeyStatus"] == CONFIRMED
    assert sim.settings.encryption.key_status_lag_seconds == 0


def test_a_failed_encryption_never_confirms_a_key(start_simulator: Callable[..., AzureSimulator]) -> None:
    simulator = start_simulator(_world({}, encryption={"keyStatusLagSeconds": 60}))
    missing = "https://kv-cmk-prod.vault.azure.net/keys/no-such-key"
    status_path = _enable(simulator, ORDERS, missing)
    simulator.advance(10 * 24 * 3600)
    assert call(simulator, "GET", status_path).json()["status"] == "Failed"
    properties = _properties(simulator, ORDERS)
    assert "keyVaultKeyUri" not in properties and "customerManagedKeyStatus" not in properties
    assert simulator.state.operations.timers == {}


def test_the_lag_survives_a_restart(tmp_path: Path) -> None:
    std = standard_world(encryption={"keyStatusLagSeconds": 600})
    world = dict(std.world, accountData={ORDERS: {"dataSizeGiB": 0.05}})
    with AzureSimulator(world, state_dir=tmp_path) as simulator:
        _enable(simulator, ORDERS, std.key_uri)
        simulator.advance(ENCRYPTION_SECONDS + 10)
        assert "customerManagedKeyStatus" not in _properties(simulator, ORDERS)
    with AzureSimulator({"resources": []}, state_dir=tmp_path) as restarted:
        assert len(restarted.state.operations.timers) == 1
        assert "customerManagedKeyStatus" not in _properties(restarted, ORDERS)
        restarted.advance(600)
        assert _properties(restarted, ORDERS)["customerManagedKeyStatus"] == CONFIRMED


# ----------------------------------------------------------------------------- busy accounts


def test_a_busy_account_is_updating_and_refuses_writes_with_412_until_its_operation_ends(
    start_simulator: Callable[..., AzureSimulator], std: StandardWorld
) -> None:
    simulator = start_simulator(_world({ORDERS: {"busyForSeconds": 3600, "busyOperation": "scale"}}))
    (busy,) = simulator.operations()
    assert (busy["kind"], busy["status"], busy["accountId"]) == ("scale", "InProgress", ORDERS)
    assert busy["requestedBy"] not in (std.uami["properties"]["principalId"], simulator.settings.system_principal_id)
    assert _properties(simulator, ORDERS)["provisioningState"] == "Updating"
    assert _properties(simulator, CATALOG)["provisioningState"] == "Succeeded"
    for body in ({"properties": {"keyVaultKeyUri": std.key_uri}}, {"identity": {"type": "SystemAssigned"}}):
        refused = call(simulator, "PATCH", ORDERS, body)
        assert refused.status_code == 412
        assert refused.json()["error"]["code"] == "PreconditionFailed"
        assert refused.json()["error"]["message"].startswith(BUSY_MESSAGE)
    assert call(simulator, "PUT", ORDERS, call(simulator, "GET", ORDERS).json()).status_code == 412
    simulator.advance(3599)
    assert _properties(simulator, ORDERS)["provisioningState"] == "Updating"
    simulator.advance(1)
    assert _properties(simulator, ORDERS)["provisioningState"] == "Succeeded"
    _enable(simulator, ORDERS, std.key_uri)
    assert [entry["status"] for entry in key_patches(simulator, ORDERS)] == [412, 200]
    kinds = [(operation["kind"], operation["status"]) for operation in simulator.operations()]
    assert kinds == [("scale", "Succeeded"), ("enableCustomerManagedKey", "InProgress")]


def test_the_busy_operation_defaults_to_an_update_nobody_can_read(
    start_simulator: Callable[..., AzureSimulator],
) -> None:
    simulator = start_simulator(_world({ORDERS: {"busyForSeconds": 60}}))
    (busy,) = simulator.operations()
    assert busy["kind"] == "update"
    region = "eastus"
    status = call(
        simulator,
        "GET",
        f"/subscriptions/{SUB}/providers/Microsoft.DocumentDB/locations/{region}/operationsStatus/{busy['id']}",
    )
    assert status.status_code == 404  # another principal's operation


def test_a_busy_account_stays_busy_across_a_restart(tmp_path: Path) -> None:
    world = _world({ORDERS: {"busyForSeconds": 3600, "busyOperation": "failover"}})
    with AzureSimulator(world, state_dir=tmp_path) as simulator:
        simulator.advance(1800)
        assert _properties(simulator, ORDERS)["provisioningState"] == "Updating"
    with AzureSimulator(world, state_dir=tmp_path) as restarted:  # the stored state wins: no second operation
        (busy,) = restarted.operations()
        assert (busy["kind"], busy["status"]) == ("failover", "InProgress")
        assert call(restarted, "PATCH", ORDERS, {"tags": {"a": "b"}}).status_code == 412
        restarted.advance(1800)
        assert _properties(restarted, ORDERS)["provisioningState"] == "Succeeded"
        assert restarted.operations()[0]["status"] == "Succeeded"


@pytest.mark.parametrize(
    ("facts", "message"),
    [
        ({"busyOperation": "scale"}, "positive busyForSeconds"),
        ({"busyForSeconds": 60, "busyOperation": "enableCustomerManagedKey"}, "busyOperation cannot be"),
        ({"busyForSeconds": 60, "busyOperation": "scale out"}, "busyOperation must be a name"),
        ({"busyForSeconds": -1}, "busyForSeconds must be a non-negative number"),
        ({"keyStatusLagSeconds": "soon"}, "keyStatusLagSeconds must be a non-negative number"),
    ],
)
def test_account_state_fields_are_validated(facts: dict[str, Any], message: str) -> None:
    with pytest.raises(WorldError, match=message):
        load_world(_world({ORDERS: facts}))


def test_a_busy_account_must_exist(tmp_path: Path) -> None:
    missing = ORDERS.replace("cosmos-orders", "cosmos-missing")
    with pytest.raises(WorldError, match="no such database account"):
        AzureSimulator(_world({missing: {"busyForSeconds": 60}}), state_dir=tmp_path)


def test_reserved_kinds_are_the_simulators_own() -> None:
    own = {
        cosmos_accounts.KIND_ENABLE_CMK,
        cosmos_accounts.KIND_ROTATE_CMK,
        cosmos_accounts.KIND_SQL_ROLE_ASSIGNMENT,
        cosmos_accounts.KIND_UNCHANGED,
    }
    assert {kind.lower() for kind in own} == RESERVED_OPERATION_KINDS


# ----------------------------------------------------------------------------- repeated key PATCHes


def test_key_patches_during_and_after_the_encryption_are_counted_per_account(
    sim: AzureSimulator, std: StandardWorld
) -> None:
    """409 while the account's own encryption runs; after it, the same key again is a quick `unchanged` operation.
    The request log counts every key PATCH; the operation log only those that started an operation."""
    _enable(sim, ORDERS, std.key_uri)
    during = call(sim, "PATCH", ORDERS, {"properties": {"keyVaultKeyUri": std.key_uri}})
    assert during.status_code == 409 and during.json()["error"]["code"] == "Conflict"
    sim.advance(10 * 24 * 3600)
    repeat = _enable(sim, ORDERS, std.key_uri + "/")
    sim.advance(sim.settings.unchanged_operation_seconds)
    assert call(sim, "GET", repeat).json() == {"status": "Succeeded"}
    assert [entry["status"] for entry in key_patches(sim, ORDERS)] == [200, 409, 200]
    assert key_patches(sim, CATALOG) == []
    kinds = [operation["kind"] for operation in sim.operations() if operation["accountId"] == ORDERS]
    assert kinds == ["enableCustomerManagedKey", "unchanged"]
