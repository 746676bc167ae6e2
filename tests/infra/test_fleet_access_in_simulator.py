"""infra/fleet-access proven against ARM authorization: the role definitions and assignments its Bicep creates
(read with pycep and evaluated by sandbox/azure/fleet_access.py, no Bicep CLI here) are deployed through the
simulator's ARM by an Owner, at each scope option the template offers (subscriptions, resource groups), and the
demo rollout then runs through the HTTP API with the app holding only those: every account reaches its predicted
outcome, nothing the app asks is denied, and every Azure-AsyncOperation status URL is read (200), so the monitor
never falls back to the account."""

from __future__ import annotations

import io
import json
from typing import Any

import pytest
import requests

from sandbox.azure import builders as b
from sandbox.azure import fleet_access, mint_token
from sandbox.azure.ids import ACCOUNT_TYPE, IDENTITY_TYPE, VAULT_TYPE, parse_resource_id, resource_type_of
from sandbox.azure.rbac import OWNER
from sandbox.azure.simulator import AzureSimulator
from sandbox.azure.testing import IDENTITY_ENV
from sandbox.demo import DEFAULT_WORLD, run_demo
from sandbox.stack import LocalAzureStack

DEPLOYER = "d3e4f5a6-b7c8-4d9e-8f0a-1b2c3d4e5f60"  # who runs `az deployment sub create`: Owner of the subscriptions
INSTALLATION = "proof"
STATUS_READ = "Microsoft.DocumentDB/locations/operationsStatus/read"


def _demo_without_fleet_access() -> tuple[dict[str, Any], list[str]]:
    """The demo world without what infra/fleet-access creates, with an Owner to deploy it; and the accounts whose
    data-plane reader the deployment must grant."""
    world: dict[str, Any] = json.loads(DEFAULT_WORLD.read_text(encoding="utf-8"))
    kept = [body for body in world["resources"] if not fleet_access.is_fleet_access_body(body)]
    # The data-plane reader comes from the deployment too (cosmosAccountIds), as infra/fleet-access grants it.
    readers = [body for body in kept if resource_type_of(body["id"]).endswith("/sqlroleassignments")]
    kept = [body for body in kept if body not in readers]
    owners = [
        b.role_assignment(f"/subscriptions/{subscription}", OWNER, DEPLOYER)
        for subscription in fleet_access.world_subscriptions(kept)
    ]
    world["resources"] = kept + owners
    return world, sorted({body["id"].split("/sqlRoleAssignments/")[0] for body in readers})


def _parameters(world: dict[str, Any], readers: list[str], option: str) -> dict[str, Any]:
    resources = world["resources"]
    app = world["simulator"]["systemPrincipalId"]
    parameters: dict[str, Any] = {
        "appPrincipalId": app,
        "installationName": INSTALLATION,
        "keyVaultIds": fleet_access.rbac_vaults(resources),
        "cosmosAccountIds": readers,
    }
    if option == "subscriptions":
        parameters["subscriptionIds"] = fleet_access.world_subscriptions(resources)
    else:  # every resource group holding an account, a key vault or a user-assigned identity
        groups = set()
        for body in resources:
            if resource_type_of(body["id"]) in (ACCOUNT_TYPE, VAULT_TYPE, IDENTITY_TYPE):
                parsed = parse_resource_id(body["id"])
                assert parsed is not None and parsed.resource_group is not None
                groups.add(f"/subscriptions/{parsed.subscription_id}/resourceGroups/{parsed.resource_group}")
        parameters["resourceGroupIds"] = sorted(groups)
    return parameters


def _deploy(simulator: AzureSimulator, resources: list[fleet_access.DeployedResource]) -> None:
    token = mint_token(DEPLOYER, tenant_id=simulator.tenant_id)
    for resource in resources:
        response = requests.put(
            f"{simulator.base_url}{resource.id}",
            params={"api-version": resource.api_version},
            json={"properties": resource.properties},
            headers={"Authorization": f"Bearer {token}"},
            verify=simulator.ca_bundle_path,
            timeout=30,
        )
        assert response.status_code in (201, 202), (resource.id, response.text)


@pytest.mark.parametrize("option", ["subscriptions", "resource groups"])
def test_the_demo_rollout_runs_on_exactly_what_fleet_access_grants(
    option: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in IDENTITY_ENV:
        monkeypatch.delenv(name, raising=False)
    world, readers = _demo_without_fleet_access()
    parameters = _parameters(world, readers, option)
    home = fleet_access.world_subscriptions(world["resources"])[0]
    deployed = fleet_access.deploy(parameters, home_subscription=home)
    app = parameters["appPrincipalId"]
    assert {
        resource.properties.get("principalId") for resource in deployed if "principalId" in resource.properties
    } == {app}
    expectations = world["expectations"]
    out = io.StringIO()
    with LocalAzureStack(world, discrete=True) as stack:
        simulator = stack.simulator
        _deploy(simulator, deployed)
        # New role assignments count after the propagation delay; the data-plane grants are account operations.
        settings = simulator.settings
        simulator.advance(max(settings.rbac_propagation_seconds, settings.update_operation_seconds) + 1)
        exit_code = run_demo(stack, expectations, timeout=300, out=out)
        log = [entry for entry in simulator.requests() if entry["principal"] == app and not entry.get("plane")]

    report = out.getvalue()
    assert exit_code == 0, report
    assert f"{len(expectations)}/{len(expectations)} accounts reached the predicted outcome" in report
    denied = [(e["method"], e["path"], e["authorization"]) for e in log if _decision(e) == "Denied"]
    assert not denied, denied
    assert all(_decision(entry) == "Allowed" for entry in log if entry["status"] not in (401,))
    status_reads = [entry for entry in log if entry["action"] == STATUS_READ]
    assert len(status_reads) >= len([entry for entry in log if entry["method"] == "PATCH" and entry["status"] == 200])
    # Every status URL read was answered: the monitor never had a read error, so it never read the account instead.
    assert {entry["status"] for entry in status_reads} == {200}, [(e["path"], e["status"]) for e in status_reads]
    assert not [entry for entry in log if "/operationresults/" in entry["path"].lower()]


def _decision(entry: dict[str, Any]) -> str | None:
    authorization = entry.get("authorization")
    return str(authorization["decision"]) if isinstance(authorization, dict) else None


# ---------------------------------------------------------------------------------------------------------------
# The operation-status reader: what it holds and where it goes
# ---------------------------------------------------------------------------------------------------------------

ENTRY_POINTS = (fleet_access.FLEET_ACCESS / "main.bicep", fleet_access.SUBSCRIPTIONS_TEMPLATE)


def _variables(name: str) -> dict[str, Any]:
    parsed: dict[str, Any] = fleet_access._parse(fleet_access.FLEET_ACCESS / name)
    return {key: value["value"] for key, value in parsed["variables"].items()}


def test_the_operation_status_role_reads_operation_statuses_only_and_adds_no_action() -> None:
    roles = _variables("roles.bicep")
    assert roles["cmkOperationStatusActions"] == [STATUS_READ]
    assert set(roles["cmkOperationStatusActions"]) <= set(roles["cmkOperatorActions"])


@pytest.mark.parametrize("path", ENTRY_POINTS, ids=lambda path: path.name)
def test_the_operation_status_role_is_assigned_at_subscriptions_only(path: Any) -> None:
    modules = fleet_access._parse(path)["modules"]
    (module,) = [
        module
        for module in modules.values()
        if "operationStatusRole" in json.dumps(module["config"].get("config", module["config"])["params"])
    ]
    assert module["detail"]["path"] == "./modules/subscription-role-assignment.bicep"
    assert module["config"]["loop_type"]["detail"]["array_name"] == "operationStatusSubscriptionIds"


@pytest.mark.parametrize(
    ("parameters", "status_scopes"),
    [
        ({"subscriptionIds": ["S-1"]}, []),
        (
            {"resourceGroupIds": ["/subscriptions/S-1/resourceGroups/a", "/subscriptions/s-1/resourceGroups/b"]},
            ["/subscriptions/s-1"],
        ),
        (
            {
                "subscriptionIds": ["S-2"],
                "resourceGroupIds": ["/subscriptions/s-2/resourceGroups/c", "/subscriptions/s-3/resourceGroups/d"],
            },
            ["/subscriptions/s-3"],
        ),
    ],
    ids=["subscriptions", "resource groups", "both"],
)
def test_the_status_reader_goes_where_resource_groups_are_granted_and_nowhere_else(
    parameters: dict[str, Any], status_scopes: list[str]
) -> None:
    deployed = fleet_access.deploy(
        {"appPrincipalId": DEPLOYER, "installationName": INSTALLATION, **parameters}, home_subscription="s-1"
    )
    (status_role,) = [
        resource
        for resource in deployed
        if resource.properties.get("roleName", "").startswith("Cosmos DB CMK Operation Status Reader")
    ]
    assigned = [
        resource.body()["properties"]["scope"]
        for resource in deployed
        if str(resource.properties.get("roleDefinitionId", "")).endswith(status_role.name)
    ]
    assert assigned == status_scopes
