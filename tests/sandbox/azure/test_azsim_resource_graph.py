"""Resource Graph: the KQL subset used to discover Cosmos DB accounts, paging and the per-user quota."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
import requests
from azure.core.exceptions import HttpResponseError
from azure.mgmt.resourcegraph import ResourceGraphClient
from azure.mgmt.resourcegraph.models import QueryRequest, QueryRequestOptions

from sandbox.azure import AzureSimulator, mint_token
from sandbox.azure import builders as b
from sandbox.azure.testing import RG, SUB, SYSTEM, TENANT, call, standard_world

SUB_2 = "c4f1e2d3-5a6b-4c7d-8e9f-0a1b2c3d4e5f"
ACCOUNTS = "resources | where type =~ 'microsoft.documentdb/databaseaccounts'"


def _world() -> dict[str, Any]:
    std = standard_world(grants=False)
    extra = [
        b.cosmos_account(SUB_2, "rg-analytics", "cosmos-events", tags={"env": "prod"}),
        b.cosmos_account(SUB_2, "rg-analytics", "cosmos-sandbox", tags={"env": "dev"}, kind="MongoDB"),
    ]
    return b.world([*std.world["resources"], *extra], tenant_id=TENANT)  # the app's grants cover SUB_2 too


@pytest.fixture
def graph(start_simulator: Callable[..., AzureSimulator]) -> tuple[AzureSimulator, ResourceGraphClient]:
    simulator = start_simulator(_world())
    return simulator, ResourceGraphClient(simulator.credential(), base_url=simulator.base_url, retry_total=0)


def _query(client: ResourceGraphClient, query: str, subscriptions: list[str] | None = None, **options: Any) -> Any:
    return client.resources(
        QueryRequest(
            subscriptions=subscriptions or [SUB, SUB_2],
            query=query,
            options=QueryRequestOptions(**options) if options else None,
        )
    )


def test_discovery_pages_through_every_account(graph: tuple[AzureSimulator, ResourceGraphClient]) -> None:
    _, client = graph
    names: list[str] = []
    skip_token = None
    pages = 0
    while True:
        page = _query(
            client, f"{ACCOUNTS} | project id, name, subscriptionId | order by name asc", top=2, skip_token=skip_token
        )
        pages += 1
        assert page.total_records == 5
        names += [row["name"] for row in page.data]
        skip_token = page.skip_token
        if not skip_token:
            assert page.result_truncated == "false"
            break
    assert pages == 3
    assert names == sorted(names) and len(names) == 5


def test_filters_of_the_discovery_subset(graph: tuple[AzureSimulator, ResourceGraphClient]) -> None:
    simulator, client = graph
    by_group = _query(
        client, f"{ACCOUNTS} | where resourceGroup in~ ('RG-ANALYTICS') | project name | order by name asc"
    )
    assert [row["name"] for row in by_group.data] == ["cosmos-events", "cosmos-sandbox"]
    by_tag = _query(client, f"{ACCOUNTS} | where tags['env'] =~ 'PROD' | project name")
    assert [row["name"] for row in by_tag.data] == ["cosmos-events"]
    one_subscription = _query(client, f"{ACCOUNTS} | where subscriptionId =~ '{SUB_2.upper()}' | project id", [SUB_2])
    assert one_subscription.total_records == 2
    scoped = _query(client, ACCOUNTS, [SUB])
    assert {row["subscriptionId"] for row in scoped.data} == {SUB}
    row = scoped.data[0]
    assert row["type"] == "microsoft.documentdb/databaseaccounts" and row["resourceGroup"] == RG.lower()
    # KQL's == is case-sensitive and ARG stores types lowercase: the classic mistake finds nothing
    assert _query(client, "resources | where type == 'Microsoft.DocumentDB/databaseAccounts'").total_records == 0
    del simulator


def test_accounts_without_cmk(graph: tuple[AzureSimulator, ResourceGraphClient]) -> None:
    simulator, client = graph
    std = standard_world()
    orders = std.account_id("cosmos-orders")
    patch = call(simulator, "PATCH", orders, {"properties": {"keyVaultKeyUri": std.key_uri}})
    assert patch.status_code == 200
    simulator.advance(30 * 24 * 3600)
    query = f"{ACCOUNTS} | where isempty(tostring(properties.keyVaultKeyUri)) | project name, kind | order by name desc"
    result = _query(client, query)
    assert [row["name"] for row in result.data] == [
        "cosmos-sandbox",
        "cosmos-events",
        "cosmos-continuous",
        "cosmos-catalog",
    ]
    assert result.data[0] == {"name": "cosmos-sandbox", "kind": "MongoDB"}


def test_distinct_gives_one_row_per_combination(graph: tuple[AzureSimulator, ResourceGraphClient]) -> None:
    """How the app learns the tenant of every subscription that holds an account, in one query."""
    _, client = graph
    result = _query(client, f"{ACCOUNTS} | distinct subscriptionId, tenantId")
    assert sorted(row["subscriptionId"] for row in result.data) == sorted([SUB, SUB_2])
    assert all(row == {"subscriptionId": row["subscriptionId"], "tenantId": TENANT} for row in result.data)


def test_limit_truncates_without_a_token(graph: tuple[AzureSimulator, ResourceGraphClient]) -> None:
    _, client = graph
    limited = _query(client, f"{ACCOUNTS} | project id | limit 10", top=2)
    assert limited.count == 2 and limited.result_truncated == "true" and limited.skip_token is None


def test_unsupported_kql_is_a_clear_400(graph: tuple[AzureSimulator, ResourceGraphClient]) -> None:
    _, client = graph
    with pytest.raises(HttpResponseError) as refused:
        _query(client, f"{ACCOUNTS} | summarize count() by location")
    assert refused.value.status_code == 400
    assert "summarize" in str(refused.value)


def test_per_user_quota(graph: tuple[AzureSimulator, ResourceGraphClient]) -> None:
    simulator, _ = graph
    url = f"{simulator.base_url}/providers/Microsoft.ResourceGraph/resources?api-version=2021-03-01"
    headers = {"Authorization": f"Bearer {mint_token(SYSTEM, tenant_id=TENANT)}"}
    body = {"subscriptions": [SUB], "query": ACCOUNTS}
    remaining = []
    for _ in range(15):
        response = requests.post(url, json=body, headers=headers, verify=simulator.ca_bundle_path, timeout=10)
        assert response.status_code == 200
        remaining.append(int(response.headers["x-ms-user-quota-remaining"]))
    assert remaining == list(range(14, -1, -1))
    throttled = requests.post(url, json=body, headers=headers, verify=simulator.ca_bundle_path, timeout=10)
    assert throttled.status_code == 429
    assert throttled.headers["x-ms-user-quota-remaining"] == "0"
    assert throttled.headers["x-ms-user-quota-resets-after"] in {"00:00:05", "00:00:04", "00:00:03"}
    simulator.advance(5)
    assert (
        requests.post(url, json=body, headers=headers, verify=simulator.ca_bundle_path, timeout=10).status_code == 200
    )
