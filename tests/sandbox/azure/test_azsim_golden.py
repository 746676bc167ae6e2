"""Every golden spec example loads verbatim and GET returns it field for field.

The only permitted difference is `properties.documentEndpoint` of database accounts: it is the simulated cloud's
own address (the account's data plane is served by the simulator at https://127.0.0.1:PORT/cosmos/<account>/),
so a client that follows it reaches the simulator instead of *.documents.azure.com.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from sandbox.azure import AzureSimulator
from sandbox.azure.testing import call
from tests import GOLDEN


def _bodies(example: Path) -> list[dict[str, Any]]:
    data = json.loads(example.read_text())
    responses = data["responses"]
    body = (responses.get("200") or responses.get("201"))["body"]
    return list(body["value"]) if "value" in body and "id" not in body else [body]


EXAMPLES = sorted(
    path
    for folder in ("cosmosdb/2026-07-15", "cosmosdb/2025-10-15", "keyvault", "msi", "authorization")
    for path in (GOLDEN / folder).glob("*.json")
    if path.name != "updateAccessPoliciesAdd.json"  # a PUT response, not a resource: tested below
)


def _expected_view(body: dict[str, Any], base_url: str) -> dict[str, Any]:
    expected = copy.deepcopy(body)
    properties = expected.get("properties")
    if (
        body.get("type") == "Microsoft.DocumentDB/databaseAccounts"
        and isinstance(properties, dict)
        and "documentEndpoint" in properties
    ):
        properties["documentEndpoint"] = f"{base_url}/cosmos/{body['name']}/"
    return expected


def _world(bodies: list[dict[str, Any]]) -> dict[str, Any]:
    """The examples as a world. Their subscriptions have no role assignments and these tests are about bodies, not
    authorization: enforcement off (the decisions are still logged)."""
    return {"resources": bodies, "simulator": {"authorization": {"enforce": False}}}


def _api_version(example: Path) -> str:
    return str(json.loads(example.read_text())["parameters"]["api-version"])


@pytest.mark.parametrize("example", EXAMPLES, ids=lambda path: f"{path.parent.name}/{path.name}")
def test_golden_example_round_trips(start_simulator: Callable[..., AzureSimulator], example: Path) -> None:
    bodies = _bodies(example)
    simulator = start_simulator(_world(bodies))
    for body in bodies:
        response = call(simulator, "GET", body["id"], api_version=_api_version(example))
        assert response.status_code == 200, response.text
        assert response.json() == _expected_view(body, simulator.base_url)


def test_golden_account_list_round_trips(start_simulator: Callable[..., AzureSimulator]) -> None:
    example = GOLDEN / "cosmosdb/2026-07-15/CosmosDBDatabaseAccountList.json"
    listed = json.loads(example.read_text())["responses"]["200"]["body"]
    simulator = start_simulator(_world(listed["value"]))
    response = call(simulator, "GET", "/subscriptions/subid/providers/Microsoft.DocumentDB/databaseAccounts")
    assert response.status_code == 200
    assert response.json() == {"value": [_expected_view(body, simulator.base_url) for body in listed["value"]]}


def test_golden_access_policy_add_answers_the_example_body(start_simulator: Callable[..., AzureSimulator]) -> None:
    example = json.loads((GOLDEN / "keyvault/updateAccessPoliciesAdd.json").read_text())
    parameters = example["parameters"]
    vault_id = (
        f"/subscriptions/{parameters['subscriptionId']}/resourceGroups/{parameters['resourceGroupName']}"
        f"/providers/Microsoft.KeyVault/vaults/{parameters['vaultName']}"
    )
    vault = {
        "id": vault_id,
        "name": parameters["vaultName"],
        "type": "Microsoft.KeyVault/vaults",
        "location": "westus",
        "properties": {"tenantId": "00000000-0000-0000-0000-000000000000", "accessPolicies": []},
    }
    simulator = start_simulator(_world([vault]))
    response = call(
        simulator,
        "PUT",
        f"{vault_id}/accessPolicies/{parameters['operationKind']}",
        parameters["parameters"],
        api_version=parameters["api-version"],
    )
    assert response.status_code == 200
    assert response.json() == example["responses"]["200"]["body"]


def test_golden_role_assignment_create_answers_the_example_body(start_simulator: Callable[..., AzureSimulator]) -> None:
    """The response carries every field of the example, with roleDefinitionId normalised as in the example.

    It also carries the fields the 2022-04-01 API (azure-mgmt-authorization 4.0.0's default) returns besides them:
    condition, conditionVersion, createdOn, updatedOn, createdBy, updatedBy, delegatedManagedIdentityResourceId,
    description. Those are compared for presence only.
    """
    example = json.loads((GOLDEN / "authorization/RoleAssignments_CreateForResource.json").read_text())
    parameters = example["parameters"]
    expected = example["responses"]["201"]["body"]
    scope = "/" + parameters["scope"]
    simulator = start_simulator(_world([]))
    path = f"{scope}/providers/Microsoft.Authorization/roleAssignments/{parameters['roleAssignmentName']}"
    created = call(simulator, "PUT", path, parameters["parameters"], api_version=parameters["api-version"])
    assert created.status_code == 201
    body = created.json()
    assert {key: body[key] for key in expected} | {"properties": None} == expected | {"properties": None}
    assert {key: body["properties"][key] for key in expected["properties"]} == expected["properties"]
    assert {"createdOn", "updatedOn", "createdBy", "condition", "description"} <= set(body["properties"])
    again = call(simulator, "PUT", path, parameters["parameters"], api_version=parameters["api-version"])
    assert again.status_code == 200
    assert again.json() == body
