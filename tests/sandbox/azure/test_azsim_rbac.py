"""ARM authorization in the simulator (sandbox/azure/rbac.py): the action each request maps to, Azure's 403s,
roles and their wildcards, scope inheritance, propagation, custom roles, the constrained-delegation condition,
linked checks, lists and Resource Graph answering with what the caller may read, and enforcement switched off."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from sandbox.azure import AzureSimulator, WorldError, action_table, fleet_access, grants, load_world, rbac
from sandbox.azure import builders as b
from sandbox.azure.testing import ADMIN, FIRST_PARTY, RG, SUB, SYSTEM, TENANT, call, standard_world

DEMO = Path(__file__).resolve().parents[3] / "sandbox" / "worlds" / "demo.json"
ORDERS = f"/subscriptions/{SUB}/resourceGroups/{RG}/providers/Microsoft.DocumentDB/databaseAccounts/cosmos-orders"
STATUS = f"/subscriptions/{SUB}/providers/Microsoft.DocumentDB/locations/eastus/operationsStatus/1"
STRANGER = "5c6d7e8f-9a0b-4c1d-8e2f-3a4b5c6d7e8f"
OTHER_RG = "rg-elsewhere"
ASSIGNMENTS = "/providers/Microsoft.Authorization/roleAssignments"
ENCRYPTION_USER_ID = f"/subscriptions/{SUB}/providers/Microsoft.Authorization/roleDefinitions/" + (
    rbac.KEY_VAULT_CRYPTO_SERVICE_ENCRYPTION_USER
)


@pytest.mark.parametrize(
    ("method", "path", "action"),
    [
        ("GET", ORDERS, "Microsoft.DocumentDB/databaseAccounts/read"),
        ("PATCH", ORDERS, "Microsoft.DocumentDB/databaseAccounts/write"),
        ("DELETE", ORDERS, "Microsoft.DocumentDB/databaseAccounts/delete"),
        ("POST", ORDERS + "/listKeys", "Microsoft.DocumentDB/databaseAccounts/listKeys/action"),
        ("GET", ORDERS + "/services", "Microsoft.DocumentDB/databaseAccounts/services/read"),
        ("GET", ORDERS + "/operationResults/1", "Microsoft.DocumentDB/databaseAccounts/operationResults/read"),
        ("GET", STATUS, "Microsoft.DocumentDB/locations/operationsStatus/read"),
        ("GET", ORDERS + "/providers/Microsoft.Insights/metrics", "Microsoft.Insights/metrics/read"),
        ("POST", "/providers/Microsoft.ResourceGraph/resources", "Microsoft.ResourceGraph/resources/read"),
        ("GET", f"/subscriptions/{SUB}/providers/Microsoft.KeyVault/vaults", "Microsoft.KeyVault/vaults/read"),
        ("GET", f"/subscriptions/{SUB}/resourceGroups/{RG}/providers/Microsoft.KeyVault/vaults/kv/keys/k/versions",
         "Microsoft.KeyVault/vaults/keys/versions/read"),
        ("PUT", f"/subscriptions/{SUB}/resourceGroups/{RG}/providers/Microsoft.KeyVault/vaults/kv/accessPolicies/add",
         "Microsoft.KeyVault/vaults/accessPolicies/write"),
        ("PUT", ORDERS + ASSIGNMENTS + "/0", "Microsoft.Authorization/roleAssignments/write"),
        ("DELETE", ORDERS + ASSIGNMENTS + "/0", "Microsoft.Authorization/roleAssignments/delete"),
        ("GET", f"/subscriptions/{SUB}{ASSIGNMENTS}", "Microsoft.Authorization/roleAssignments/read"),
        ("PUT", f"/subscriptions/{SUB}/providers/Microsoft.Authorization/roleDefinitions/0",
         "Microsoft.Authorization/roleDefinitions/write"),
        ("PUT", ORDERS + "/sqlRoleAssignments/0", "Microsoft.DocumentDB/databaseAccounts/sqlRoleAssignments/write"),
        ("GET", f"/subscriptions/{SUB}/resourceGroups/{RG}", "Microsoft.Resources/subscriptions/resourceGroups/read"),
        ("GET", f"/subscriptions/{SUB}", "Microsoft.Resources/subscriptions/read"),
    ],
)  # fmt: skip
def test_every_request_maps_to_its_action(method: str, path: str, action: str) -> None:
    mapped = action_table.map_request(method, path + "?api-version=1")
    assert mapped is not None and mapped.action == action


def test_a_denial_is_azures_authorization_failed(sim: AzureSimulator) -> None:
    denied = call(sim, "GET", ORDERS, principal=STRANGER)
    assert denied.status_code == 403
    assert denied.json() == {
        "error": {
            "code": "AuthorizationFailed",
            "message": f"The client '{STRANGER}' with object id '{STRANGER}' does not have authorization to perform "
            f"action 'Microsoft.DocumentDB/databaseAccounts/read' over scope '{ORDERS}' or the scope is invalid. If "
            "access was recently granted, please refresh your credentials.",
        }
    }
    entry = sim.requests()[-1]
    assert entry["action"] == "Microsoft.DocumentDB/databaseAccounts/read" and entry["status"] == 403
    assert entry["authorization"] == {
        "decision": "Denied",
        "enforced": True,
        "action": "Microsoft.DocumentDB/databaseAccounts/read",
        "scope": ORDERS,
    }
    assert call(sim, "GET", ORDERS).status_code == 200
    allowed = sim.requests()[-1]["authorization"]
    assert allowed["decision"] == "Allowed" and allowed["role"].startswith("Cosmos DB CMK Rollout Operator")


def _world_with(*extra: dict[str, Any], **simulator: Any) -> dict[str, Any]:
    std = standard_world(**simulator)
    return dict(std.world, resources=[*std.world["resources"], *extra])


def test_roles_grant_what_their_actions_and_not_actions_say(start_simulator: Callable[..., AzureSimulator]) -> None:
    reader, contributor, operator = "0a0a0a0a-0000-4000-8000-000000000001", STRANGER, FIRST_PARTY
    simulator = start_simulator(
        _world_with(
            b.role_assignment(f"/subscriptions/{SUB}", rbac.READER, reader),
            b.role_assignment(f"/subscriptions/{SUB}", rbac.CONTRIBUTOR, contributor),
            b.role_assignment(f"/subscriptions/{SUB}", rbac.MANAGED_IDENTITY_OPERATOR, operator),
        )
    )
    assert call(simulator, "GET", ORDERS, principal=reader).status_code == 200  # */read
    assert call(simulator, "PATCH", ORDERS, {"tags": {}}, principal=reader).status_code == 403
    assert call(simulator, "PATCH", ORDERS, {"tags": {}}, principal=contributor).status_code == 200  # *
    assignment = {"properties": {"roleDefinitionId": ENCRYPTION_USER_ID, "principalId": FIRST_PARTY}}
    path = f"/subscriptions/{SUB}{ASSIGNMENTS}/6b7c8d9e-0f1a-4b2c-9d3e-4f5a6b7c8d9e"
    refused = call(simulator, "PUT", path, assignment, principal=contributor, api_version="2022-04-01")
    assert refused.status_code == 403  # notActions Microsoft.Authorization/*/Write
    # Managed Identity Operator's userAssignedIdentities/*/assign/action grants userAssignedIdentities/assign/action
    role = rbac.BUILTIN_ROLES[rbac.MANAGED_IDENTITY_OPERATOR]
    assert role.permits("Microsoft.ManagedIdentity/userAssignedIdentities/assign/action")
    assert role.permits("Microsoft.ManagedIdentity/userAssignedIdentities/read")
    assert not role.permits("Microsoft.ManagedIdentity/userAssignedIdentities/write")


def test_resource_group_grants_reach_below_and_not_the_subscription_level_status_urls(
    start_simulator: Callable[..., AzureSimulator],
) -> None:
    std = standard_world(grants=False)
    operator = "0a0a0a0a-0000-4000-8000-000000000002"
    elsewhere = b.key_vault(SUB, OTHER_RG, "kv-elsewhere", tenant_id=TENANT)
    grant = b.role_assignment(f"/subscriptions/{SUB}/resourceGroups/{RG}", rbac.COSMOS_DB_OPERATOR, operator)
    vault_reader = b.role_assignment(f"/subscriptions/{SUB}/resourceGroups/{RG}", rbac.READER, operator)
    simulator = start_simulator(b.world([*std.world["resources"], elsewhere, grant, vault_reader], tenant_id=TENANT))
    patch = call(simulator, "PATCH", ORDERS, {"tags": {"a": "b"}}, principal=operator)
    assert patch.status_code == 200
    status_path = patch.headers["Azure-AsyncOperation"].removeprefix(simulator.base_url).split("?")[0]
    status = call(simulator, "GET", status_path, principal=operator)
    assert status.status_code == 403 and "Microsoft.DocumentDB/locations/operationsStatus/read" in status.text
    # A list at the subscription answers with what the caller may read there (ARM's partial list).
    vaults = call(simulator, "GET", f"/subscriptions/{SUB}/providers/Microsoft.KeyVault/vaults", principal=operator)
    assert vaults.status_code == 200 and "kv-elsewhere" not in {vault["name"] for vault in vaults.json()["value"]}
    assert {vault["name"] for vault in vaults.json()["value"]} == {"kv-cmk-prod", "kv-cmk-rbac"}
    assert simulator.requests()[-1]["authorization"]["partial"] is True
    stranger = call(simulator, "GET", f"/subscriptions/{SUB}/providers/Microsoft.KeyVault/vaults", principal=STRANGER)
    assert stranger.status_code == 403


def test_new_assignments_count_after_the_propagation_delay(sim: AzureSimulator) -> None:
    path = f"/subscriptions/{SUB}{ASSIGNMENTS}/7c8d9e0f-1a2b-4c3d-8e4f-5a6b7c8d9e0f"
    reader = f"/subscriptions/{SUB}/providers/Microsoft.Authorization/roleDefinitions/{rbac.READER}"
    body = {"properties": {"roleDefinitionId": reader, "principalId": STRANGER, "principalType": "ServicePrincipal"}}
    assert call(sim, "PUT", path, body, principal=ADMIN, api_version="2022-04-01").status_code == 201
    assert call(sim, "GET", ORDERS, principal=STRANGER).status_code == 403
    sim.advance(sim.settings.rbac_propagation_seconds)
    assert call(sim, "GET", ORDERS, principal=STRANGER).status_code == 200


def test_the_constrained_delegation_condition_allows_only_its_role_and_principal_type(sim: AzureSimulator) -> None:
    vault = f"/subscriptions/{SUB}/resourceGroups/{RG}/providers/Microsoft.KeyVault/vaults/kv-cmk-rbac"

    def assign(name: str, role: str, principal_type: str | None, scope: str = vault) -> int:
        properties = {"roleDefinitionId": role, "principalId": FIRST_PARTY}
        if principal_type:
            properties["principalType"] = principal_type
        path = f"{scope}{ASSIGNMENTS}/{name}"
        return call(sim, "PUT", path, {"properties": properties}, api_version="2022-04-01").status_code

    owner = f"/subscriptions/{SUB}/providers/Microsoft.Authorization/roleDefinitions/{rbac.OWNER}"
    assert assign("1a2b3c4d-0000-4000-8000-000000000001", owner, "ServicePrincipal") == 403  # another role
    assert assign("1a2b3c4d-0000-4000-8000-000000000002", ENCRYPTION_USER_ID, "User") == 403  # a user
    assert assign("1a2b3c4d-0000-4000-8000-000000000003", ENCRYPTION_USER_ID, None) == 403  # type not stated
    assert assign("1a2b3c4d-0000-4000-8000-000000000004", ENCRYPTION_USER_ID, "ServicePrincipal") == 201
    at_account = assign("1a2b3c4d-0000-4000-8000-000000000005", ENCRYPTION_USER_ID, "ServicePrincipal", ORDERS)
    assert at_account == 403  # the role assigner is on the RBAC vault only
    listed = call(sim, "GET", f"{vault}{ASSIGNMENTS}", api_version="2022-04-01")
    assert listed.status_code == 200  # reads are not constrained
    assert call(sim, "DELETE", f"{vault}{ASSIGNMENTS}/1a2b3c4d-0000-4000-8000-000000000004").status_code == 403


@pytest.mark.parametrize(
    "condition",
    [
        "@Resource[Microsoft.Storage/storageAccounts/blobServices/containers/blobs/tags:project] StringEquals 'x'",
        "@Request[Microsoft.Authorization/roleAssignments:RoleDefinitionId] GuidEquals {a, b}",
        "(@Request[Microsoft.Authorization/roleAssignments:PrincipalType] StringLike 'Service*')",
        "((!(ActionMatches{'Microsoft.Authorization/roleAssignments/write'}))",
    ],
)
def test_conditions_it_cannot_evaluate_are_refused(sim: AzureSimulator, condition: str) -> None:
    path = f"/subscriptions/{SUB}{ASSIGNMENTS}/8d9e0f1a-2b3c-4d4e-8f5a-6b7c8d9e0f1a"
    reader = f"/subscriptions/{SUB}/providers/Microsoft.Authorization/roleDefinitions/{rbac.READER}"
    properties = {
        "roleDefinitionId": reader,
        "principalId": STRANGER,
        "principalType": "ServicePrincipal",
        "condition": condition,
        "conditionVersion": "2.0",
    }
    refused = call(sim, "PUT", path, {"properties": properties}, principal=ADMIN, api_version="2022-04-01")
    assert refused.status_code == 400 and refused.json()["error"]["code"] == "UnsupportedCondition"
    assignment = b.role_assignment(f"/subscriptions/{SUB}", rbac.READER, STRANGER)
    assignment["properties"].update(condition=condition, conditionVersion="2.0")
    with pytest.raises(WorldError, match="condition"):
        load_world(_world_with(assignment))


def test_custom_roles_from_the_world_and_from_a_put(start_simulator: Callable[..., AzureSimulator]) -> None:
    guid = "2b3c4d5e-0000-4000-8000-000000000001"
    definition_path = f"/subscriptions/{SUB}/providers/Microsoft.Authorization/roleDefinitions/{guid}"
    reader_role = {
        "roleName": "Account reader (test)",
        "type": "CustomRole",
        "assignableScopes": [f"/subscriptions/{SUB}/resourceGroups/{RG}"],
        "permissions": [{"actions": ["Microsoft.DocumentDB/databaseAccounts/*"], "notActions": ["*/write"]}],
    }
    simulator = start_simulator(standard_world().world)
    put = call(
        simulator, "PUT", definition_path, {"properties": reader_role}, principal=ADMIN, api_version="2022-04-01"
    )
    assert put.status_code == 201 and put.json()["properties"]["type"] == "CustomRole"
    assignment = {
        "properties": {
            "roleDefinitionId": definition_path,
            "principalId": STRANGER,
            "principalType": "ServicePrincipal",
        }
    }
    outside = f"/subscriptions/{SUB}{ASSIGNMENTS}/3c4d5e6f-0000-4000-8000-000000000001"
    refused = call(simulator, "PUT", outside, assignment, principal=ADMIN, api_version="2022-04-01")
    assert refused.status_code == 400 and refused.json()["error"]["code"] == "RoleDefinitionDoesNotExist"
    inside = f"/subscriptions/{SUB}/resourceGroups/{RG}{ASSIGNMENTS}/3c4d5e6f-0000-4000-8000-000000000002"
    assert call(simulator, "PUT", inside, assignment, principal=ADMIN, api_version="2022-04-01").status_code == 201
    simulator.advance(simulator.settings.rbac_propagation_seconds)
    assert call(simulator, "GET", ORDERS, principal=STRANGER).status_code == 200
    assert call(simulator, "PATCH", ORDERS, {"tags": {}}, principal=STRANGER).status_code == 403  # notActions
    # Creating a custom role needs roleDefinitions/write on every assignable scope (a linked check).
    elsewhere = dict(reader_role, roleName="Elsewhere (test)", assignableScopes=["/subscriptions/other"])
    other = definition_path.replace(guid, "2b3c4d5e-0000-4000-8000-000000000002")
    linked = call(simulator, "PUT", other, {"properties": elsewhere}, principal=ADMIN, api_version="2022-04-01")
    assert linked.status_code == 403 and linked.json()["error"]["code"] == "LinkedAuthorizationFailed"


def test_attaching_an_identity_needs_its_assign_action(sim: AzureSimulator) -> None:
    identity = f"/subscriptions/{SUB}/resourceGroups/{RG}/providers/Microsoft.ManagedIdentity/userAssignedIdentities/"
    identity += "id-cosmos-cmk"
    body = {"identity": {"type": "UserAssigned", "userAssignedIdentities": {identity: {}}}}
    assert call(sim, "PATCH", ORDERS, body).status_code == 200  # the app's role holds assign/action
    entry = sim.requests()[-1]["authorization"]
    assert entry["linked"] == [
        {"action": "Microsoft.ManagedIdentity/userAssignedIdentities/assign/action", "scope": identity, "allowed": True}
    ]


def test_a_write_without_the_linked_assign_action_is_linked_authorization_failed(
    start_simulator: Callable[..., AzureSimulator],
) -> None:
    writer = b.role_assignment(f"/subscriptions/{SUB}", rbac.DOCUMENTDB_ACCOUNT_CONTRIBUTOR, STRANGER)
    simulator = start_simulator(_world_with(writer))
    identity = f"/subscriptions/{SUB}/resourceGroups/{RG}/providers/Microsoft.ManagedIdentity/userAssignedIdentities/"
    identity += "id-cosmos-cmk"
    body = {"identity": {"type": "UserAssigned", "userAssignedIdentities": {identity: {}}}}
    refused = call(simulator, "PATCH", ORDERS, body, principal=STRANGER)
    assert refused.status_code == 403
    assert refused.json()["error"] == {
        "code": "LinkedAuthorizationFailed",
        "message": f"The client '{STRANGER}' with object id '{STRANGER}' has permission to perform action "
        f"'Microsoft.DocumentDB/databaseAccounts/write' on scope '{ORDERS}'; however, it does not have permission to "
        f"perform action(s) 'Microsoft.ManagedIdentity/userAssignedIdentities/assign/action' on the linked scope(s) "
        f"'{identity}' (respectively) or the linked scope(s) are invalid.",
    }
    assert simulator.operations() == []  # refused before the resource provider: nothing started


def test_resource_graph_answers_with_what_the_caller_may_read(start_simulator: Callable[..., AzureSimulator]) -> None:
    other_sub = "d5e6f7a8-0000-4000-8000-000000000001"
    std = standard_world(grants=False)
    hidden = b.cosmos_account(other_sub, "rg-hidden", "cosmos-hidden")
    group_reader = b.role_assignment(f"/subscriptions/{SUB}/resourceGroups/{RG}", rbac.READER, STRANGER)
    simulator = start_simulator(b.world([*std.world["resources"], hidden, group_reader], tenant_id=TENANT))
    query = {"query": "resources | where type =~ 'microsoft.documentdb/databaseaccounts' | project name"}
    everything = {"subscriptions": [SUB, other_sub], **query}
    path = "/providers/Microsoft.ResourceGraph/resources"
    mine = call(simulator, "POST", path, everything, principal=STRANGER, api_version="2021-03-01")
    assert mine.status_code == 200
    assert {row["name"] for row in mine.json()["data"]} == {"cosmos-orders", "cosmos-catalog", "cosmos-continuous"}
    app = call(simulator, "POST", path, everything, api_version="2021-03-01")
    assert len(app.json()["data"]) == 4  # the app's grants cover both subscriptions
    only_other = {"subscriptions": [other_sub], **query}
    refused = call(simulator, "POST", path, only_other, principal=STRANGER, api_version="2021-03-01")
    assert refused.status_code == 403 and refused.json()["error"]["code"] == "AuthorizationFailed"


def test_key_vault_data_access_follows_data_actions(sim: AzureSimulator) -> None:
    key = f"/subscriptions/{SUB}/resourceGroups/{RG}/providers/Microsoft.KeyVault/vaults/kv-cmk-rbac/keys/cosmos-cmk"
    with sim.state.lock:
        assert not grants.has_data_actions(sim.state, FIRST_PARTY, key, rbac.CMK_KEY_DATA_ACTIONS)
    for role, can in (
        (rbac.KEY_VAULT_CRYPTO_SERVICE_ENCRYPTION_USER, True),
        (rbac.KEY_VAULT_CRYPTO_USER, True),
        (rbac.KEY_VAULT_ADMINISTRATOR, True),
        (rbac.KEY_VAULT_READER, False),
        (rbac.OWNER, False),
    ):
        permits = all(rbac.BUILTIN_ROLES[role].permits(action, data=True) for action in rbac.CMK_KEY_DATA_ACTIONS)
        assert permits is can, rbac.BUILTIN_ROLES[role].name


def test_enforcement_off_logs_the_decisions_and_refuses_nothing(start_simulator: Callable[..., AzureSimulator]) -> None:
    simulator = start_simulator(standard_world(grants=False, authorization={"enforce": False}).world)
    assert call(simulator, "GET", ORDERS, principal=STRANGER).status_code == 200
    assert simulator.requests()[-1]["authorization"] == {
        "decision": "Denied",
        "enforced": False,
        "action": "Microsoft.DocumentDB/databaseAccounts/read",
        "scope": ORDERS,
    }


def test_the_app_principal_holds_what_infra_grants_unless_asked_otherwise() -> None:
    granted = standard_world().world["resources"]
    bare = standard_world(grants=False).world["resources"]
    extra = [body for body in granted if body not in bare]
    names = {body["properties"].get("roleName") for body in extra if "roleName" in body["properties"]}
    assert names == {
        "Cosmos DB CMK Rollout Operator (sandbox)",
        "Cosmos DB CMK Key Vault Role Assigner (sandbox)",
        "Cosmos DB CMK Operation Status Reader (sandbox)",
    }
    assignments = [body for body in extra if body["type"] == "Microsoft.Authorization/roleAssignments"]
    assert {body["properties"]["principalId"] for body in assignments} == {SYSTEM}
    assert {body["properties"]["scope"] for body in assignments} == {
        f"/subscriptions/{SUB}",
        f"/subscriptions/{SUB}/resourceGroups/{RG}/providers/Microsoft.KeyVault/vaults/kv-cmk-rbac",
    }


def test_the_demo_world_grants_exactly_what_the_bicep_creates_today() -> None:
    """sandbox/worlds/demo.json is rewritten by `python -m sandbox.azure.fleet_access` when infra changes."""
    world = json.loads(DEMO.read_text(encoding="utf-8"))
    app = world["simulator"]["systemPrincipalId"]
    assert fleet_access.regrant(world, [app], installation="demo") == world
