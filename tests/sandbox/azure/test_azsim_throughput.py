"""Provisioned throughput in the simulator: reads and asynchronous updates of databases', containers' and tables'
throughputSettings, the refusals Cosmos DB answers (serverless, no dedicated throughput, a mode switch, another
operation, the CMK encryption), and an encryption that runs on the raised spare RU/s."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import pytest

from sandbox.azure import AzureSimulator
from sandbox.azure import builders as b
from sandbox.azure.testing import ADMIN, RG, SUB, StandardWorld, call, standard_world

ORDERS = f"/subscriptions/{SUB}/resourceGroups/{RG}/providers/Microsoft.DocumentDB/databaseAccounts/cosmos-orders"
CATALOG = f"/subscriptions/{SUB}/resourceGroups/{RG}/providers/Microsoft.DocumentDB/databaseAccounts/cosmos-catalog"
SETTINGS = "/throughputSettings/default"


def _account(world: dict[str, Any], account_id: str) -> dict[str, Any]:
    return next(body for body in world["resources"] if body["id"] == account_id)


def _throughput_world(std: StandardWorld) -> dict[str, Any]:
    """cosmos-orders: a manual database (400) with a container of its own (autoscale 4000) and one sharing the
    database's; a Mongo database and collection, a Gremlin graph, a table; cosmos-catalog the same size without any;
    and a serverless account."""
    world = dict(std.world)
    orders = _account(world, ORDERS)
    sales = b.cosmos_database(orders, "sales")
    dedicated = b.cosmos_container(sales, "orders")
    shared = b.cosmos_container(sales, "lines")
    mongo = b.cosmos_database(orders, "shop", "mongodbDatabases")
    carts = b.cosmos_container(mongo, "carts")
    gremlin = b.cosmos_database(orders, "graph", "gremlinDatabases")
    people = b.cosmos_container(gremlin, "people")
    table = b.cosmos_database(orders, "audit", "tables")
    serverless = b.cosmos_account(SUB, RG, "cosmos-serverless", capabilities=["EnableServerless"])
    serverless_db = b.cosmos_database(serverless, "events")
    world["resources"] = [
        *world["resources"],
        sales,
        dedicated,
        shared,
        mongo,
        carts,
        gremlin,
        people,
        table,
        serverless,
        serverless_db,
        b.throughput_settings(sales, throughput=400),
        b.throughput_settings(dedicated, autoscale_max=4000),
        b.throughput_settings(mongo, throughput=1000),
        b.throughput_settings(carts, throughput=600),
        b.throughput_settings(people, autoscale_max=2000),
        b.throughput_settings(table, throughput=500),
    ]
    world["accountData"] = {
        ORDERS: {"dataSizeGiB": 10, "spareRuPerSecond": 1000},
        CATALOG: {"dataSizeGiB": 10, "spareRuPerSecond": 1000},
    }
    return world


@pytest.fixture
def std() -> StandardWorld:
    return standard_world()


@pytest.fixture
def sim(start_simulator: Callable[..., AzureSimulator], std: StandardWorld) -> AzureSimulator:
    return start_simulator(_throughput_world(std))


def _put(sim: AzureSimulator, path: str, resource: dict[str, Any]) -> Any:
    return call(sim, "PUT", path + SETTINGS, {"properties": {"resource": resource}}, principal=ADMIN)


def _resource(sim: AzureSimulator, path: str) -> dict[str, Any]:
    response = call(sim, "GET", path + SETTINGS, principal=ADMIN)
    assert response.status_code == 200, response.text
    resource: dict[str, Any] = response.json()["properties"]["resource"]
    return resource


def _value(sim: AzureSimulator, path: str, field: str) -> int:
    resource = _resource(sim, path)
    return int(resource["autoscaleSettings"]["maxThroughput"] if field == "maxThroughput" else resource["throughput"])


def _seconds(stamp: str) -> float:
    return time.mktime(time.strptime(stamp[:19], "%Y-%m-%dT%H:%M:%S"))


def test_every_api_reads_and_updates_its_throughput_asynchronously(sim: AzureSimulator) -> None:
    for path, field, before, after in (
        (f"{ORDERS}/sqlDatabases/sales", "throughput", 400, 800),
        (f"{ORDERS}/mongodbDatabases/shop/collections/carts", "throughput", 600, 1200),
        (f"{ORDERS}/tables/audit", "throughput", 500, 1000),
        (f"{ORDERS}/sqlDatabases/sales/containers/orders", "maxThroughput", 4000, 8000),
        (f"{ORDERS}/gremlinDatabases/graph/graphs/people", "maxThroughput", 2000, 4000),
    ):
        assert _value(sim, path, field) == before
        sent = {"autoscaleSettings": {"maxThroughput": after}} if field == "maxThroughput" else {"throughput": after}
        response = _put(sim, path, sent)
        assert response.status_code == 202, response.text
        assert "operationsStatus" in response.headers["Azure-AsyncOperation"] and response.headers["Location"]
        status_path = response.headers["Azure-AsyncOperation"].removeprefix(sim.base_url).split("?")[0]
        assert _value(sim, path, field) == before  # until the operation completes, GET shows the old value
        # One operation at a time per account: another write waits for this one (412), as any account operation.
        assert _put(sim, path, sent).status_code == 412
        sim.advance(sim.settings.update_operation_seconds)
        assert call(sim, "GET", status_path, principal=ADMIN).json() == {"status": "Succeeded"}
        resource = _resource(sim, path)
        if field == "maxThroughput":
            assert resource["autoscaleSettings"]["maxThroughput"] == after
            assert resource["throughput"] == after // 10  # what autoscale runs at when idle, not its maximum
        else:
            assert resource["throughput"] == after
    assert call(sim, "GET", ORDERS, principal=ADMIN).json()["properties"]["provisioningState"] == "Succeeded"


def test_refusals_as_cosmos_db_answers_them(sim: AzureSimulator) -> None:
    serverless = f"/subscriptions/{SUB}/resourceGroups/{RG}/providers/Microsoft.DocumentDB/databaseAccounts/"
    serverless += "cosmos-serverless/sqlDatabases/events"
    refused = call(sim, "GET", serverless + SETTINGS, principal=ADMIN)
    assert refused.status_code == 400
    assert refused.json()["error"]["message"] == "Reading or replacing offers is not supported for serverless accounts."
    assert _put(sim, serverless, {"throughput": 800}).status_code == 400
    # A container sharing its database's throughput has none of its own; neither has a database that does not exist.
    assert (
        call(sim, "GET", f"{ORDERS}/sqlDatabases/sales/containers/lines{SETTINGS}", principal=ADMIN).status_code == 404
    )
    assert call(sim, "GET", f"{ORDERS}/sqlDatabases/nope{SETTINGS}", principal=ADMIN).status_code == 404
    sales = f"{ORDERS}/sqlDatabases/sales"
    switched = _put(sim, sales, {"autoscaleSettings": {"maxThroughput": 4000}})  # a mode switch is a migration
    assert switched.status_code == 400 and "Please invoke migration API" in switched.json()["error"]["message"]
    assert _put(sim, sales, {"throughput": 300}).status_code == 400  # under the minimum
    assert _put(sim, sales, {"throughput": 850}).status_code == 400  # not a multiple of 100
    orders = f"{ORDERS}/sqlDatabases/sales/containers/orders"
    assert _put(sim, orders, {"autoscaleSettings": {"maxThroughput": 4500}}).status_code == 400
    assert _resource(sim, sales)["throughput"] == 400
    assert not sim.operations()


def test_throughput_is_blocked_while_the_encryption_runs_and_free_after(
    sim: AzureSimulator, std: StandardWorld
) -> None:
    response = call(sim, "PATCH", ORDERS, {"properties": {"keyVaultKeyUri": std.key_uri}})
    assert response.status_code == 200, response.text
    sales = f"{ORDERS}/sqlDatabases/sales"
    blocked = _put(sim, sales, {"throughput": 400})
    assert blocked.status_code == 409
    assert "customer-managed key encryption" in blocked.json()["error"]["message"]
    (encryption,) = sim.operations()
    sim.advance(_seconds(encryption["scheduledEndTime"]) - _seconds(encryption["startTime"]) + 1)
    assert _put(sim, sales, {"throughput": 500}).status_code == 202
    sim.advance(sim.settings.update_operation_seconds)
    assert _resource(sim, sales)["throughput"] == 500


def test_an_encryption_runs_on_the_raised_spare_throughput(sim: AzureSimulator, std: StandardWorld) -> None:
    # cosmos-orders gets +1000 RU/s (database 400 -> 1400), cosmos-catalog nothing: same data, same spare before.
    assert _put(sim, f"{ORDERS}/sqlDatabases/sales", {"throughput": 1400}).status_code == 202
    sim.advance(sim.settings.update_operation_seconds)
    metrics = call(
        sim,
        "GET",
        f"{ORDERS}/providers/Microsoft.Insights/metrics?metricnames=ProvisionedThroughput&api-version=2023-10-01",
        principal=ADMIN,
        api_version=None,
    ).json()
    assert metrics["value"][0]["timeseries"][0]["data"][0]["maximum"] == 2000
    for account in (ORDERS, CATALOG):
        assert call(sim, "PATCH", account, {"properties": {"keyVaultKeyUri": std.key_uri}}).status_code == 200
    durations = {
        operation["accountId"]: _seconds(operation["scheduledEndTime"]) - _seconds(operation["startTime"])
        for operation in sim.operations()
        if operation["kind"] == "enableCustomerManagedKey"
    }
    expected = 10 * 1024 * 1024 * sim.settings.encryption.ru_per_kib
    assert durations[CATALOG] == pytest.approx(expected / 1000, abs=1.5)
    assert durations[ORDERS] == pytest.approx(expected / 2000, abs=1.5)  # twice the spare: half the time


def test_the_raise_is_counted_from_the_world_across_a_restart(
    start_simulator: Callable[..., AzureSimulator], std: StandardWorld, tmp_path: Any
) -> None:
    world = _throughput_world(std)
    first = start_simulator(world, state_dir=tmp_path)
    sales = f"{ORDERS}/sqlDatabases/sales"
    for value in (1400, 900):  # raised, then part of it given back: +500 from the world's 400
        assert _put(first, sales, {"throughput": value}).status_code == 202
        first.advance(first.settings.update_operation_seconds)
    first.stop()
    second = start_simulator(world, state_dir=tmp_path)
    assert _resource(second, sales)["throughput"] == 900
    assert call(second, "PATCH", ORDERS, {"properties": {"keyVaultKeyUri": std.key_uri}}).status_code == 200
    (encryption,) = [op for op in second.operations() if op["kind"] == "enableCustomerManagedKey"]
    seconds = _seconds(encryption["scheduledEndTime"]) - _seconds(encryption["startTime"])
    assert seconds == pytest.approx(10 * 1024 * 1024 * second.settings.encryption.ru_per_kib / 1500, abs=1.5)
