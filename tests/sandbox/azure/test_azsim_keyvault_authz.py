"""Key Vault (vaults, access policies, keys), managed identities and role assignments, through the real SDKs."""

from __future__ import annotations

import pytest
from azure.core.exceptions import HttpResponseError, ResourceExistsError
from azure.mgmt.authorization import AuthorizationManagementClient
from azure.mgmt.authorization.v2022_04_01.models import RoleAssignmentCreateParameters
from azure.mgmt.keyvault import KeyVaultManagementClient
from azure.mgmt.keyvault.models import (
    AccessPolicyEntry,
    Permissions,
    VaultAccessPolicyParameters,
    VaultAccessPolicyProperties,
)
from azure.mgmt.msi import ManagedServiceIdentityClient

from sandbox.azure import AzureSimulator
from sandbox.azure.testing import (
    ADMIN,
    CRYPTO_SERVICE_ENCRYPTION_USER,
    FIRST_PARTY,
    RG,
    SUB,
    SYSTEM,
    TENANT,
    StandardWorld,
    call,
)

PRINCIPAL = "6a7b8c9d-0e1f-4a2b-9c3d-4e5f6a7b8c9d"


def _policy(object_id: str, *keys: str) -> VaultAccessPolicyParameters:
    entry = AccessPolicyEntry(tenant_id=TENANT, object_id=object_id, permissions=Permissions(keys_property=list(keys)))
    return VaultAccessPolicyParameters(properties=VaultAccessPolicyProperties(access_policies=[entry]))


def _keys_of(vault_properties: dict[str, object], object_id: str) -> list[str] | None:
    for policy in vault_properties["accessPolicies"]:  # type: ignore[attr-defined]
        if policy["objectId"] == object_id:
            return list(policy["permissions"].get("keys", []))
    return None


def test_access_policy_add_replace_remove(sim: AzureSimulator, std: StandardWorld) -> None:
    client = KeyVaultManagementClient(sim.credential(), SUB, base_url=sim.base_url)
    vault_name = std.vault["name"]
    added = client.vaults.update_access_policy(RG, vault_name, "add", _policy(PRINCIPAL, "get", "wrapKey"))
    assert added.type == "Microsoft.KeyVault/vaults/accessPolicies"
    client.vaults.update_access_policy(RG, vault_name, "add", _policy(PRINCIPAL, "wrapKey", "unwrapKey"))
    vault = call(sim, "GET", std.vault["id"]).json()["properties"]
    assert _keys_of(vault, PRINCIPAL) == ["get", "wrapKey", "unwrapKey"]  # merged, no duplicates
    client.vaults.update_access_policy(RG, vault_name, "replace", _policy(PRINCIPAL, "list"))
    assert _keys_of(call(sim, "GET", std.vault["id"]).json()["properties"], PRINCIPAL) == ["list"]
    client.vaults.update_access_policy(RG, vault_name, "remove", _policy(PRINCIPAL, "list"))
    assert _keys_of(call(sim, "GET", std.vault["id"]).json()["properties"], PRINCIPAL) is None
    fetched = client.vaults.get(RG, vault_name)
    assert fetched.properties.enable_purge_protection is True


def test_access_policy_for_another_tenant_is_refused(sim: AzureSimulator, std: StandardWorld) -> None:
    body = {
        "properties": {
            "accessPolicies": [
                {
                    "tenantId": "11111111-2222-3333-4444-555555555555",
                    "objectId": PRINCIPAL,
                    "permissions": {"keys": ["get"]},
                }
            ]
        }
    }
    assert call(sim, "PUT", f"{std.vault['id']}/accessPolicies/add", body).status_code == 400


def test_keys_and_versions(sim: AzureSimulator, std: StandardWorld) -> None:
    client = KeyVaultManagementClient(sim.credential(), SUB, base_url=sim.base_url)
    key = client.keys.get(RG, std.vault["name"], "cosmos-cmk")
    assert key.key_uri == std.key["properties"]["keyUri"]
    versions = list(client.keys.list_versions(RG, std.vault["name"], "cosmos-cmk"))
    version_name = std.key["properties"]["keyUriWithVersion"].rsplit("/", 1)[1]
    assert [version.name for version in versions] == [version_name]
    single = client.keys.get_version(RG, std.vault["name"], "cosmos-cmk", version_name)
    assert single.type == "Microsoft.KeyVault/vaults/keys/versions"
    assert single.key_uri_with_version == std.key["properties"]["keyUriWithVersion"]
    assert [item.name for item in client.keys.list(RG, std.vault["name"])] == ["cosmos-cmk"]


def test_user_assigned_identities(sim: AzureSimulator, std: StandardWorld) -> None:
    client = ManagedServiceIdentityClient(sim.credential(), SUB, base_url=sim.base_url)
    identity = client.user_assigned_identities.get(RG, "id-cosmos-cmk")
    assert identity.principal_id == std.uami["properties"]["principalId"]
    assert [item.name for item in client.user_assigned_identities.list_by_resource_group(RG)] == ["id-cosmos-cmk"]


def _role_client(sim: AzureSimulator) -> AuthorizationManagementClient:
    """As the subscription's Owner: these tests are about the role assignment API, not who may call it."""
    return AuthorizationManagementClient(sim.credential(ADMIN), SUB, base_url=sim.base_url, retry_total=0)


ROLE_DEFINITION = (
    f"/subscriptions/{SUB}/providers/Microsoft.Authorization/roleDefinitions/{CRYPTO_SERVICE_ENCRYPTION_USER}"
)


def _parameters(
    principal: str = FIRST_PARTY, principal_type: str = "ServicePrincipal"
) -> RoleAssignmentCreateParameters:
    return RoleAssignmentCreateParameters(
        role_definition_id=ROLE_DEFINITION, principal_id=principal, principal_type=principal_type
    )


def test_role_assignment_create_is_idempotent_by_name_and_unique_by_content(
    sim: AzureSimulator, std: StandardWorld
) -> None:
    client = _role_client(sim)
    scope = std.rbac_vault["id"]
    created = client.role_assignments.create(scope, "0a1b2c3d-4e5f-4a6b-8c7d-9e0f1a2b3c4d", _parameters())
    assert (
        created.role_definition_id
        == f"/providers/Microsoft.Authorization/roleDefinitions/{CRYPTO_SERVICE_ENCRYPTION_USER}"
    )
    first = sim.requests()[-1]
    assert first["status"] == 201
    client.role_assignments.create(scope, "0a1b2c3d-4e5f-4a6b-8c7d-9e0f1a2b3c4d", _parameters())
    assert sim.requests()[-1]["status"] == 200
    with pytest.raises(ResourceExistsError) as duplicate:
        client.role_assignments.create(scope, "9f8e7d6c-5b4a-4392-8170-6f5e4d3c2b1a", _parameters())
    assert duplicate.value.error is not None and duplicate.value.error.code == "RoleAssignmentExists"
    fetched = client.role_assignments.get(scope, "0a1b2c3d-4e5f-4a6b-8c7d-9e0f1a2b3c4d")
    assert fetched.principal_id == FIRST_PARTY


def test_role_assignment_validation(sim: AzureSimulator, std: StandardWorld) -> None:
    client = _role_client(sim)
    with pytest.raises(HttpResponseError) as not_a_guid:
        client.role_assignments.create(std.rbac_vault["id"], "my-assignment", _parameters())
    assert not_a_guid.value.status_code == 400
    # azure-mgmt-authorization defaults principal_type to "User"; managed identities are service principals
    with pytest.raises(HttpResponseError) as mistyped:
        client.role_assignments.create(
            std.rbac_vault["id"], "4a5b6c7d-8e9f-4a0b-9c1d-2e3f4a5b6c7d", _parameters(principal_type="User")
        )
    assert mistyped.value.error is not None and mistyped.value.error.code == "UnmatchedPrincipalType"
    stranger = "77777777-8888-4999-aaaa-bbbbbbbbbbbb"
    path = (
        f"{std.rbac_vault['id']}/providers/Microsoft.Authorization/roleAssignments/5e6f7a8b-9c0d-4e1f-a2b3-c4d5e6f7a8b9"
    )
    untyped = {"properties": {"roleDefinitionId": ROLE_DEFINITION, "principalId": stranger}}
    unknown = call(sim, "PUT", path, untyped, api_version="2022-04-01", principal=ADMIN)
    assert unknown.status_code == 400 and unknown.json()["error"]["code"] == "PrincipalNotFound"
    client.role_assignments.create(std.rbac_vault["id"], "5e6f7a8b-9c0d-4e1f-a2b3-c4d5e6f7a8b9", _parameters(stranger))


def test_list_for_scope_filters(sim: AzureSimulator, std: StandardWorld) -> None:
    client = _role_client(sim)
    vault_scope = std.rbac_vault["id"]
    client.role_assignments.create(f"/subscriptions/{SUB}", "1b2c3d4e-5f6a-4b7c-8d9e-0f1a2b3c4d5e", _parameters(SYSTEM))
    client.role_assignments.create(vault_scope, "2c3d4e5f-6a7b-4c8d-9e0f-1a2b3c4d5e6f", _parameters(FIRST_PARTY))
    key_scope = std.rbac_key["id"]
    client.role_assignments.create(key_scope, "3d4e5f6a-7b8c-4d9e-8f0a-1b2c3d4e5f6a", _parameters(PRINCIPAL))
    at_scope = {item.principal_id for item in client.role_assignments.list_for_scope(vault_scope, filter="atScope()")}
    assert at_scope == {SYSTEM, FIRST_PARTY, ADMIN}  # at or above the vault (ADMIN: the subscription's Owner)
    everything = {item.principal_id for item in client.role_assignments.list_for_scope(vault_scope)}
    assert everything == {SYSTEM, FIRST_PARTY, ADMIN, PRINCIPAL}  # plus below
    mine = list(client.role_assignments.list_for_scope(vault_scope, filter=f"principalId eq '{FIRST_PARTY}'"))
    assert [item.principal_id for item in mine] == [FIRST_PARTY]
    client.role_assignments.delete(vault_scope, "2c3d4e5f-6a7b-4c8d-9e0f-1a2b3c4d5e6f")
    assert not list(client.role_assignments.list_for_scope(vault_scope, filter=f"principalId eq '{FIRST_PARTY}'"))
