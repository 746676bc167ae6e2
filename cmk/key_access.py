"""Letting the account's identity use the key: an access policy or an RBAC role, as the vault requires.

Key Vault has two permission models and only one is active per vault. Access policies apply at once; RBAC role
assignments take minutes to propagate, so the caller waits before the key PATCH (Azure checks access then).
Both paths look before they write, so a re-run adds no duplicate policy or assignment.
"""

from __future__ import annotations

from typing import Literal, TypedDict

from azure.core.exceptions import HttpResponseError
from azure.mgmt.authorization.v2022_04_01.models import RoleAssignmentCreateParameters
from azure.mgmt.keyvault import models as keyvault_models

from cmk import clients, inventory, settings
from cmk.preflight import PlannedVault
from cmk.resource_ids import parse_vault_id, role_assignment_name

KEY_PERMISSIONS = ("get", "wrapKey", "unwrapKey")
# Key Vault Crypto Service Encryption User: read keys, wrap and unwrap, nothing else.
CRYPTO_SERVICE_ENCRYPTION_USER = "e147488a-f6f5-4113-8e2d-b22465e65bf6"


class GrantResult(TypedDict):
    model: Literal["accessPolicy", "rbac"]
    changed: bool
    propagationWaitSeconds: int
    detail: str


def grant_key_access(vault: PlannedVault, principal_id: str, tenant_id: str | None) -> GrantResult:
    if vault["permissionModel"] == "rbac":
        return _grant_role(vault, principal_id)
    return _grant_access_policy(vault, principal_id, tenant_id)


def _grant_access_policy(vault: PlannedVault, principal_id: str, tenant_id: str | None) -> GrantResult:
    current = inventory.read_vault(vault["id"])
    if current is None:
        raise LookupError(f"Key Vault {vault['id']} no longer exists.")
    for policy in current["accessPolicies"]:
        if str(policy.get("objectId", "")).lower() == principal_id.lower():
            granted = {str(p).lower() for p in (policy.get("permissions") or {}).get("keys") or []}
            if granted >= {p.lower() for p in KEY_PERMISSIONS} or "all" in granted:
                return _result("accessPolicy", False, 0, "access policy already grants get, wrapKey, unwrapKey")
    vault_id = parse_vault_id(vault["id"])
    entry = keyvault_models.AccessPolicyEntry(
        tenant_id=current["tenantId"] or tenant_id or "",
        object_id=principal_id,
        permissions=keyvault_models.Permissions(keys_property=list(KEY_PERMISSIONS)),
    )
    # "add" merges into an existing entry for the same object id instead of replacing its other permissions.
    clients.keyvault(vault_id.subscription_id).vaults.update_access_policy(
        vault_id.resource_group,
        vault_id.name,
        "add",
        keyvault_models.VaultAccessPolicyParameters(
            properties=keyvault_models.VaultAccessPolicyProperties(access_policies=[entry])
        ),
    )
    return _result("accessPolicy", True, 0, "access policy added: get, wrapKey, unwrapKey")


def _grant_role(vault: PlannedVault, principal_id: str) -> GrantResult:
    vault_id = parse_vault_id(vault["id"])
    scope = str(vault_id)
    client = clients.authorization(vault_id.subscription_id)
    for assignment in client.role_assignments.list_for_scope(scope, filter=f"principalId eq '{principal_id}'"):
        role = str(assignment.role_definition_id or "").lower()
        inherited_or_here = scope.lower().startswith(str(assignment.scope or "").lower().rstrip("/"))
        if role.endswith(CRYPTO_SERVICE_ENCRYPTION_USER) and inherited_or_here:
            return _result("rbac", False, 0, f"role assignment {assignment.name} already grants the key role")
    role_definition_id = (
        f"/subscriptions/{vault_id.subscription_id}/providers/Microsoft.Authorization"
        f"/roleDefinitions/{CRYPTO_SERVICE_ENCRYPTION_USER}"
    )
    name = role_assignment_name(scope, principal_id, CRYPTO_SERVICE_ENCRYPTION_USER)
    try:
        client.role_assignments.create(
            scope,
            name,
            RoleAssignmentCreateParameters(
                role_definition_id=role_definition_id,
                principal_id=principal_id,
                # Set explicitly so a brand-new identity is not refused while Entra ID replicates it.
                principal_type="ServicePrincipal",
                description="Cosmos DB customer-managed key access (cmk-rollout)",
            ),
        )
    except HttpResponseError as error:
        code = getattr(error.error, "code", "") if error.error is not None else ""
        if error.status_code == 409 and code == "RoleAssignmentExists":
            return _result("rbac", False, 0, "an identical role assignment exists under another name")
        raise
    wait = settings.get_int("CMK_RBAC_PROPAGATION_WAIT_SECONDS")
    return _result("rbac", True, wait, f"role assignment {name} created; RBAC needs time to propagate")


def _result(model: Literal["accessPolicy", "rbac"], changed: bool, wait_seconds: int, detail: str) -> GrantResult:
    return {"model": model, "changed": changed, "propagationWaitSeconds": wait_seconds, "detail": detail}
