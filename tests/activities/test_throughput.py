"""The throughput raise's activities against the simulator, through azure-mgmt-cosmosdb as the app's role allows:
the plan reads every API's databases and containers, and each converge step reads before it writes, sends one PUT
at most, and is safe to run twice or after a lost reply."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from activities.converge_throughput import converge_throughput_activity
from activities.plan_throughput_raise import plan_throughput_raise_activity
from cmk.fleet import expected_encryption_seconds
from sandbox.azure import AzureSimulator
from sandbox.azure import builders as b
from sandbox.azure.testing import IDENTITY_ENV, SYSTEM, TENANT, call

SUB = "6a1e3c5d-7f90-4b2a-8c4d-e6f8a0b2c4d6"
RG = "rg-throughput"
RAISE = {"factor": 2, "maxRuPerSecond": 50000}


def _account_id(name: str) -> str:
    return f"/subscriptions/{SUB}/resourceGroups/{RG}/providers/Microsoft.DocumentDB/databaseAccounts/{name}"


def _world() -> dict[str, Any]:
    vault = b.key_vault(SUB, RG, "kv-throughput", tenant_id=TENANT)
    key = b.vault_key(vault, "cosmos-cmk")
    nosql = b.cosmos_account(SUB, RG, "tp-nosql")
    sales = b.cosmos_database(nosql, "sales")
    orders, lines = b.cosmos_container(sales, "orders"), b.cosmos_container(sales, "lines")
    mongo = b.cosmos_account(SUB, RG, "tp-mongo", kind="MongoDB", capabilities=["EnableMongo"])
    shop = b.cosmos_database(mongo, "shop", "mongodbDatabases")
    carts = b.cosmos_container(shop, "carts")
    gremlin = b.cosmos_account(SUB, RG, "tp-gremlin", capabilities=["EnableGremlin"])
    graph = b.cosmos_database(gremlin, "graph", "gremlinDatabases")
    people = b.cosmos_container(graph, "people")
    table_account = b.cosmos_account(SUB, RG, "tp-table", capabilities=["EnableTable"])
    audit = b.cosmos_database(table_account, "audit", "tables")
    serverless = b.cosmos_account(SUB, RG, "tp-serverless", capabilities=["EnableServerless"])
    resources = [vault, key, nosql, sales, orders, lines, mongo, shop, carts, gremlin, graph, people]
    resources += [table_account, audit, serverless, b.cosmos_database(serverless, "events")]
    resources += [
        b.throughput_settings(sales, throughput=400),
        b.throughput_settings(orders, autoscale_max=4000),  # lines shares the database's
        b.throughput_settings(carts, throughput=1000),
        b.throughput_settings(people, autoscale_max=2000),
        b.throughput_settings(audit, throughput=600),
    ]
    account_data = {_account_id("tp-nosql"): {"dataSizeGiB": 4, "spareRuPerSecond": 500}}
    return b.world(resources, tenant_id=TENANT, account_data=account_data)


@pytest.fixture(scope="module")
def simulator() -> Iterator[AzureSimulator]:
    with pytest.MonkeyPatch.context() as patch, AzureSimulator(_world(), time_scale=1.0) as started:
        for name in IDENTITY_ENV:
            patch.delenv(name, raising=False)
        for name, value in started.app_settings().items():
            patch.setenv(name, value)
        yield started


def _plan(name: str, raise_: dict[str, Any] = RAISE) -> dict[str, Any]:
    plan: dict[str, Any] = plan_throughput_raise_activity({"accountId": _account_id(name), "throughputRaise": raise_})
    return plan


def _puts(simulator: AzureSimulator, since: int) -> list[dict[str, Any]]:
    return [r for r in simulator.requests(since=since) if r["method"] == "PUT" and "throughputSettings" in r["path"]]


def test_the_plan_reads_each_apis_throughput_and_the_estimate(simulator: AzureSimulator) -> None:
    nosql = _plan("tp-nosql")
    assert nosql["possible"] is True, nosql["reason"]
    assert [
        (c["resourceId"].split("/databaseAccounts/")[1], c["mode"], c["fromRuPerSecond"], c["toRuPerSecond"])
        for c in nosql["changes"]
    ] == [
        ("tp-nosql/sqlDatabases/sales", "manual", 400, 800),
        ("tp-nosql/sqlDatabases/sales/containers/orders", "autoscale", 4000, 8000),
    ]
    # Azure Monitor: 4 GiB and 500 RU/s spare (the simulator's metrics) -> the rollout's estimate, with 4400 more.
    assert nosql["expectedSeconds"] == pytest.approx(expected_encryption_seconds(4 * 2**30, 500))
    assert nosql["expectedSecondsRaised"] == pytest.approx(expected_encryption_seconds(4 * 2**30, 4900))
    for name, resource in (
        ("tp-mongo", "shop/collections/carts"),
        ("tp-gremlin", "graph/graphs/people"),
        ("tp-table", "tables/audit"),
    ):
        plan = _plan(name)
        assert plan["possible"] is True and [c["resourceId"].rsplit("/", 3)[-3:] for c in plan["changes"]]
        assert any(c["resourceId"].endswith(resource) for c in plan["changes"]), plan["changes"]
    serverless = _plan("tp-serverless")
    assert serverless["possible"] is False and "serverless" in serverless["reason"]
    ceiling = _plan("tp-nosql", {"factor": 2, "maxRuPerSecond": 4000})
    assert ceiling["possible"] is False and "ceiling" in ceiling["reason"]
    assert _puts(simulator, 0) == []  # planning reads only


def test_converge_reads_before_it_writes_and_survives_a_lost_reply(simulator: AzureSimulator) -> None:
    account = _account_id("tp-gremlin")
    plan = _plan("tp-gremlin")
    targets = [
        {"resourceId": c["resourceId"], "mode": c["mode"], "ruPerSecond": c["toRuPerSecond"]} for c in plan["changes"]
    ]
    since = len(simulator.requests())
    first = converge_throughput_activity({"accountId": account, "targets": targets})
    assert first["state"] == "pending", first
    # The same step again before Azure finished (a retried activity, or one whose reply was lost): it reads the
    # old value, asks again, and Azure's 412 says another operation holds the account; no second change starts.
    again = converge_throughput_activity({"accountId": account, "targets": targets})
    assert again["state"] == "busy", again
    assert [r["status"] for r in _puts(simulator, since)] == [202, 412]
    simulator.advance(simulator.settings.update_operation_seconds)
    done = converge_throughput_activity({"accountId": account, "targets": targets})
    assert done["state"] == "done" and done["atTarget"] == [t["resourceId"] for t in targets]
    assert len(_puts(simulator, since)) == 2  # nothing sent once every target holds
    restore = [{**t, "ruPerSecond": c["fromRuPerSecond"]} for t, c in zip(targets, plan["changes"], strict=True)]
    assert converge_throughput_activity({"accountId": account, "targets": restore})["state"] == "pending"
    simulator.advance(simulator.settings.update_operation_seconds)
    assert converge_throughput_activity({"accountId": account, "targets": restore})["state"] == "done"
    assert _plan("tp-gremlin")["changes"] == plan["changes"]  # back exactly: the same plan again


def test_converge_is_blocked_while_the_encryption_runs(simulator: AzureSimulator) -> None:
    account = _account_id("tp-table")
    plan = _plan("tp-table")
    (change,) = plan["changes"]
    key_uri = "https://kv-throughput.vault.azure.net/keys/cosmos-cmk"
    assert call(simulator, "PATCH", account, {"properties": {"keyVaultKeyUri": key_uri}}, principal=SYSTEM).ok
    target = {"resourceId": change["resourceId"], "mode": "manual", "ruPerSecond": change["toRuPerSecond"]}
    step = converge_throughput_activity({"accountId": account, "targets": [target]})
    assert step["state"] == "blocked" and "encryption" in step["detail"]
