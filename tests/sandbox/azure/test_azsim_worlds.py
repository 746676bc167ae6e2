"""World files: the loader's tolerance for Azure CLI output, settings validation, and the shipped demo world."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from azure.cosmos import CosmosClient
from azure.cosmos.exceptions import CosmosHttpResponseError
from azure.identity import DefaultAzureCredential

from sandbox.azure import AzureSimulator, WorldError, load_world
from sandbox.azure import builders as b
from sandbox.azure.testing import RG, SUB, TENANT, call
from sandbox.azure.world import load_worlds

DEMO = Path(__file__).resolve().parents[3] / "sandbox" / "worlds" / "demo.json"


def test_loader_accepts_azure_cli_output_shapes(tmp_path: Path) -> None:
    account = b.cosmos_account(SUB, RG, "cosmos-exported")
    vault = b.key_vault(SUB, RG, "kv-exported", tenant_id=TENANT)
    resource_show = {**vault, "resourceGroup": RG, "managedBy": None, "sku": None, "plan": None}
    assert load_world([account]).resources == [account]  # az rest ... list, `value` already unwrapped
    assert load_world({"value": [account]}).resources == [account]  # az rest raw list response
    assert load_world(resource_show).resources == [vault]  # az resource show adds resourceGroup and nulls
    assert load_world(resource_show).tenant_id == TENANT  # taken from the vault when the world has none
    first, second = tmp_path / "accounts.json", tmp_path / "vault.json"
    first.write_text(json.dumps({"value": [account]}))
    second.write_text(json.dumps(resource_show))
    merged = load_worlds([first, second])
    assert [body["name"] for body in merged.resources] == ["cosmos-exported", "kv-exported"]


@pytest.mark.parametrize(
    ("world", "message"),
    [
        ({"resources": [], "simulator": {"rbacPropagationSecs": 1}}, "unknown setting"),
        ({"resources": [], "simulator": {"throttling": {"readBucket": "many"}}}, "must be a number"),
        ({"resources": [{"name": "no-id"}]}, "expected a resource body"),
        ({"resources": [], "accountData": {"/subscriptions/x": {}}}, "not a database account id"),
        (
            {"resources": [], "accountData": {b.cosmos_account(SUB, RG, "a")["id"]: {"largestDocumentIdBytes": 5000}}},
            "1023",
        ),
    ],
)
def test_malformed_worlds_are_refused_with_a_pointer(world: dict[str, Any], message: str) -> None:
    with pytest.raises(WorldError, match=message):
        load_world(world)


def _demo() -> dict[str, Any]:
    data: dict[str, Any] = json.loads(DEMO.read_text())
    return data


def test_demo_world_covers_the_required_cases() -> None:
    world = _demo()
    outcomes = {expectation["outcome"] for expectation in world["expectations"].values()}
    assert outcomes == {"Enabled", "AlreadyEnabled", "Refused", "Failed"}
    subscriptions = {account_id.split("/")[2] for account_id in world["expectations"]}
    assert len(subscriptions) == 2 and len(world["expectations"]) >= 12
    assert set(world["expectations"]) == {
        body["id"] for body in world["resources"] if body["type"] == "Microsoft.DocumentDB/databaseAccounts"
    }


def _grant(
    simulator: AzureSimulator, world: dict[str, Any], account: dict[str, Any], key_uri: str, principal: str
) -> None:
    """What the product does before the key PATCH: give the default identity access to the key."""
    vault_name = key_uri.split("//")[1].split(".")[0]
    vault = next(
        body
        for body in world["resources"]
        if body["type"] == "Microsoft.KeyVault/vaults" and body["name"] == vault_name
    )
    if vault["properties"]["enableRbacAuthorization"]:
        path = (
            f"{vault['id']}/providers/Microsoft.Authorization/roleAssignments/{b.stable_guid(vault['id'], principal)}"
        )
        role = "/providers/Microsoft.Authorization/roleDefinitions/e147488a-f6f5-4113-8e2d-b22465e65bf6"
        body = {"properties": {"roleDefinitionId": role, "principalId": principal, "principalType": "ServicePrincipal"}}
        assert call(simulator, "PUT", path, body, api_version="2022-04-01").status_code in (200, 201)
    else:
        policy = {"properties": {"accessPolicies": [b.access_policy(world["tenantId"], principal)]}}
        assert call(simulator, "PUT", f"{vault['id']}/accessPolicies/add", policy).status_code == 200


def _default_principal(world: dict[str, Any], account: dict[str, Any]) -> str:
    default = account["properties"]["defaultIdentity"]
    if default.startswith("UserAssignedIdentity="):
        return str(account["identity"]["userAssignedIdentities"][default.split("=", 1)[1]]["principalId"])
    return str(world["simulator"]["firstPartyPrincipalId"])


def _largest_scanned_id(simulator: AzureSimulator, account: dict[str, Any]) -> int | None:
    endpoint = call(simulator, "GET", account["id"]).json()["properties"]["documentEndpoint"]
    try:
        client = CosmosClient(endpoint, credential=DefaultAzureCredential())
    except CosmosHttpResponseError:
        return None  # the account firewall or data-plane RBAC blocks the scan
    sizes = [
        len(item["id"].encode())
        for database in client.list_databases()
        for container in client.get_database_client(database["id"]).list_containers()
        for item in client.get_database_client(database["id"])
        .get_container_client(container["id"])
        .query_items(
            "SELECT c.id FROM c WHERE LENGTH(c.id) > @n",
            parameters=[{"name": "@n", "value": 200}],
            enable_cross_partition_query=True,
        )
    ]
    return max(sizes, default=0)


@pytest.mark.filterwarnings("ignore::urllib3.exceptions.InsecureRequestWarning")
def test_demo_expectations_hold_against_the_simulator(start_simulator: Callable[..., AzureSimulator]) -> None:
    """Each expectation is what the simulator really does when an account is handled correctly."""
    world = _demo()
    simulator = start_simulator(world)
    accounts = {
        body["id"]: body for body in world["resources"] if body["type"] == "Microsoft.DocumentDB/databaseAccounts"
    }
    status_paths: dict[str, str] = {}
    for account_id, expectation in world["expectations"].items():
        account = accounts[account_id]
        if expectation["outcome"] == "AlreadyEnabled":
            assert call(simulator, "GET", account_id).json()["properties"]["keyVaultKeyUri"] == expectation["keyUri"]
            continue
        largest = _largest_scanned_id(simulator, account) if account["kind"] == "GlobalDocumentDB" else 0
        if expectation["reason"] == "LargeDocumentIdFound":
            assert largest is not None and largest > 990  # preflight sees it
        if expectation["outcome"] == "Failed":
            assert largest is None  # preflight cannot see it
        _grant(simulator, world, account, expectation["keyUri"], _default_principal(world, account))
    simulator.advance(simulator.settings.rbac_propagation_seconds)
    for account_id, expectation in world["expectations"].items():
        if expectation["outcome"] == "AlreadyEnabled":
            continue
        patch = call(simulator, "PATCH", account_id, {"properties": {"keyVaultKeyUri": expectation["keyUri"]}})
        assert patch.status_code == 200, patch.text
        status_paths[account_id] = patch.headers["Azure-AsyncOperation"].removeprefix(simulator.base_url).split("?")[0]
    simulator.advance(12 * 3600)
    clickstream = next(account_id for account_id in status_paths if account_id.endswith("/cosmos-clickstream"))
    assert call(simulator, "GET", status_paths[clickstream]).json() == {"status": "InProgress"}  # simulated hours
    simulator.advance(6 * 3600)
    for account_id, status_path in status_paths.items():
        expectation = world["expectations"][account_id]
        status = call(simulator, "GET", status_path).json()
        if expectation["outcome"] == "Enabled":
            assert status == {"status": "Succeeded"}, account_id
        else:
            assert status["status"] == "Failed", account_id
            assert status["error"]["details"][0]["code"] == expectation["reason"].split(" ")[0], account_id
