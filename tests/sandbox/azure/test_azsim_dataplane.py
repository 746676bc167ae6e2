"""The Cosmos DB data plane as azure-cosmos 4.17 uses it to find long document ids."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from azure.cosmos import CosmosClient
from azure.cosmos.exceptions import CosmosHttpResponseError
from azure.identity import DefaultAzureCredential

from sandbox.azure import AzureSimulator
from sandbox.azure import builders as b
from sandbox.azure.testing import ADMIN, RG, SUB, SYSTEM, TENANT, call, standard_world

# azure-cosmos turns certificate verification off for 127.0.0.1/localhost (its emulator rule) and says so.
pytestmark = pytest.mark.filterwarnings("ignore::urllib3.exceptions.InsecureRequestWarning")

LONG_ID_QUERY = "SELECT c.id FROM c WHERE LENGTH(c.id) > @minChars"


def _world(account_data: dict[str, Any], **account_options: Any) -> tuple[dict[str, Any], dict[str, Any]]:
    account = b.cosmos_account(SUB, RG, "cosmos-scan", **account_options)
    std = standard_world()
    resources = [*std.world["resources"], account, b.sql_role_assignment(account, SYSTEM)]
    return b.world(resources, tenant_id=TENANT, account_data={account["id"]: account_data}), account


def _longest_ids(client: CosmosClient, min_chars: int) -> dict[str, int]:
    """What a preflight does: every container, the parameterised cross-partition query."""
    found: dict[str, int] = {}
    for database in client.list_databases():
        database_client = client.get_database_client(database["id"])
        for container in database_client.list_containers():
            items = database_client.get_container_client(container["id"]).query_items(
                LONG_ID_QUERY,
                parameters=[{"name": "@minChars", "value": min_chars}],
                enable_cross_partition_query=True,
                max_item_count=2,
            )
            lengths = [len(item["id"].encode()) for item in items]
            if lengths:
                found[f"{database['id']}/{container['id']}"] = max(lengths)
    return found


def test_preflight_query_through_azure_cosmos(start_simulator: Callable[..., AzureSimulator]) -> None:
    documents = {
        "orders": {"orders": [{"id": f"order-{index}"} for index in range(7)], "audit": [{"id": "é" * 600}]},
        "catalog": {"products": [{"id": "p" * 1000}, {"id": "short"}]},
    }
    world, account = _world({"databases": documents})
    simulator = start_simulator(world)
    endpoint = call(simulator, "GET", account["id"]).json()["properties"]["documentEndpoint"]
    client = CosmosClient(endpoint, credential=DefaultAzureCredential())
    assert _longest_ids(client, 0) == {"orders/orders": 7, "orders/audit": 1200, "catalog/products": 1000}
    assert _longest_ids(client, 500) == {"orders/audit": 1200, "catalog/products": 1000}  # LENGTH counts characters
    data_plane = [entry for entry in simulator.requests() if entry.get("plane") == "data"]
    assert {entry["principal"] for entry in data_plane} == {SYSTEM}
    assert any(entry["action"].endswith("/executeQuery") for entry in data_plane)


def test_documents_are_synthesized_from_the_largest_id(start_simulator: Callable[..., AzureSimulator]) -> None:
    world, account = _world({"largestDocumentIdBytes": 1023})
    simulator = start_simulator(world)
    client = CosmosClient(f"{simulator.base_url}/cosmos/{account['name']}/", credential=DefaultAzureCredential())
    assert _longest_ids(client, 0) == {"appdb/items": 1023}


def test_data_plane_rbac_is_enforced(start_simulator: Callable[..., AzureSimulator]) -> None:
    world, account = _world({})
    simulator = start_simulator(world)
    stranger = simulator.credential("5f6a7b8c-9d0e-4f1a-8b2c-3d4e5f6a7b8c")
    with pytest.raises(CosmosHttpResponseError) as refused:  # the client reads the account when it is created
        CosmosClient(f"{simulator.base_url}/cosmos/{account['name']}/", credential=stranger)
    assert refused.value.status_code == 403
    assert "does not have required RBAC permissions" in str(refused.value.message)


def test_account_firewall_blocks_the_scan(start_simulator: Callable[..., AzureSimulator]) -> None:
    world, account = _world({}, ip_rules=["40.112.0.10"])
    simulator = start_simulator(world)
    with pytest.raises(CosmosHttpResponseError) as blocked:
        CosmosClient(f"{simulator.base_url}/cosmos/{account['name']}/", credential=DefaultAzureCredential())
    assert blocked.value.status_code == 403
    assert "firewall" in str(blocked.value.message)


def test_unsupported_queries_are_refused(start_simulator: Callable[..., AzureSimulator]) -> None:
    world, account = _world({})
    simulator = start_simulator(world)
    container = (
        CosmosClient(f"{simulator.base_url}/cosmos/{account['name']}/", credential=DefaultAzureCredential())
        .get_database_client("appdb")
        .get_container_client("items")
    )
    with pytest.raises(CosmosHttpResponseError) as refused:
        list(container.query_items("SELECT * FROM c ORDER BY c._ts", enable_cross_partition_query=True))
    assert refused.value.status_code == 400


def test_granting_data_plane_access_through_arm(start_simulator: Callable[..., AzureSimulator]) -> None:
    from azure.mgmt.cosmosdb.models import SqlRoleAssignmentCreateUpdateParameters, SqlRoleAssignmentResource

    from sandbox.azure.testing import cosmos_client

    account = b.cosmos_account(SUB, RG, "cosmos-ungranted")
    std = standard_world()
    simulator = start_simulator(b.world([*std.world["resources"], account], tenant_id=TENANT))
    endpoint = f"{simulator.base_url}/cosmos/{account['name']}/"
    with pytest.raises(CosmosHttpResponseError):
        CosmosClient(endpoint, credential=DefaultAzureCredential())
    # The app's role cannot grant data-plane access (infra/fleet-access does): the subscription's Owner does.
    admin = cosmos_client(simulator, simulator.credential(ADMIN))
    poller = admin.sql_resources.begin_create_update_sql_role_assignment(
        "0c1d2e3f-4a5b-4c6d-8e7f-9a0b1c2d3e4f",
        RG,
        account["name"],
        SqlRoleAssignmentCreateUpdateParameters(
            properties=SqlRoleAssignmentResource(
                role_definition_id=f"{account['id']}/sqlRoleDefinitions/{b.COSMOS_DATA_READER}",
                scope=account["id"],
                principal_id=SYSTEM,
            )
        ),
        polling_interval=0.01,
    )
    simulator.advance(simulator.settings.update_operation_seconds)
    assert poller.result(timeout=30).principal_id == SYSTEM
    assert _longest_ids(CosmosClient(endpoint, credential=DefaultAzureCredential()), 0) == {"appdb/items": 36}
