"""Microsoft.Authorization/roleAssignments: create, read, list, delete, and the "effective after propagation" rule.

A role assignment counts for authorization checks only `rbacPropagationSeconds` (simulated) after it was created,
as Azure RBAC "can take several minutes" to apply. Assignments that come from the world file are already
effective. Only the built-in roles that matter to CMK carry data actions here; any other well-formed role
definition id is accepted (it may be a custom role) and grants no data actions.
"""

from __future__ import annotations

import fnmatch
import re
import uuid
from dataclasses import dataclass
from typing import Any

from sandbox.azure.engine import CloudState, Reply, RequestContext, iso
from sandbox.azure.errors import ArmError, bad_request
from sandbox.azure.ids import (
    IDENTITY_TYPE,
    ROLE_ASSIGNMENT_TYPE,
    JsonDict,
    id_key,
    is_scope_at_or_above,
    normalize_id,
    split_role_assignment_id,
)


@dataclass(frozen=True)
class RoleDefinition:
    name: str
    data_actions: tuple[str, ...]


KEY_VAULT_CRYPTO_SERVICE_ENCRYPTION_USER = "e147488a-f6f5-4113-8e2d-b22465e65bf6"

BUILTIN_ROLES: dict[str, RoleDefinition] = {
    KEY_VAULT_CRYPTO_SERVICE_ENCRYPTION_USER: RoleDefinition(
        "Key Vault Crypto Service Encryption User",
        (
            "Microsoft.KeyVault/vaults/keys/read",
            "Microsoft.KeyVault/vaults/keys/wrapKey/action",
            "Microsoft.KeyVault/vaults/keys/unwrapKey/action",
        ),
    ),
    "00482a5a-887f-4fb3-b363-3b7fe8e74483": RoleDefinition("Key Vault Administrator", ("Microsoft.KeyVault/vaults/*",)),
    "14b46e9e-c2b7-41b4-b07b-48a6ebf60603": RoleDefinition(
        "Key Vault Crypto Officer",
        ("Microsoft.KeyVault/vaults/keys/*", "Microsoft.KeyVault/vaults/keyrotationpolicies/*"),
    ),
    "12338af0-0e69-4776-bea7-57ae8d297424": RoleDefinition(
        "Key Vault Crypto User",
        (
            "Microsoft.KeyVault/vaults/keys/read",
            "Microsoft.KeyVault/vaults/keys/update/action",
            "Microsoft.KeyVault/vaults/keys/backup/action",
            "Microsoft.KeyVault/vaults/keys/encrypt/action",
            "Microsoft.KeyVault/vaults/keys/decrypt/action",
            "Microsoft.KeyVault/vaults/keys/wrapKey/action",
            "Microsoft.KeyVault/vaults/keys/unwrapKey/action",
            "Microsoft.KeyVault/vaults/keys/sign/action",
            "Microsoft.KeyVault/vaults/keys/verify/action",
        ),
    ),
    "21090545-7ca7-4776-b22c-e363652d74d2": RoleDefinition(
        "Key Vault Reader",
        ("Microsoft.KeyVault/vaults/*/read", "Microsoft.KeyVault/vaults/secrets/readMetadata/action"),
    ),
    "f25e0fa2-a7c8-4377-a976-54943a77a395": RoleDefinition("Key Vault Contributor", ()),
    "8e3af657-a8ff-443c-a75c-2fe8c4bcb635": RoleDefinition("Owner", ()),
    "b24988ac-6180-42a0-ab88-20f7382dd24c": RoleDefinition("Contributor", ()),
    "acdd72a7-3385-48ef-bd42-f606fba81ae7": RoleDefinition("Reader", ()),
    "18d7d88d-d35e-4fb5-a5c3-7773c20a72d9": RoleDefinition("User Access Administrator", ()),
}

CMK_KEY_DATA_ACTIONS = (
    "Microsoft.KeyVault/vaults/keys/read",
    "Microsoft.KeyVault/vaults/keys/wrapKey/action",
    "Microsoft.KeyVault/vaults/keys/unwrapKey/action",
)

_ROLE_DEFINITION_ID = re.compile(
    r"^(?:/subscriptions/[^/]+)?/providers/Microsoft\.Authorization/roleDefinitions/(?P<guid>[0-9a-fA-F-]{36})$",
    re.IGNORECASE,
)
_PRINCIPAL_TYPES = {"User", "Group", "ServicePrincipal", "ForeignGroup", "Device"}
ACTION_WRITE = "Microsoft.Authorization/roleAssignments/write"
ACTION_READ = "Microsoft.Authorization/roleAssignments/read"
ACTION_DELETE = "Microsoft.Authorization/roleAssignments/delete"


def role_guid(role_definition_id: str) -> str | None:
    match = _ROLE_DEFINITION_ID.match(role_definition_id.strip())
    return match.group("guid").lower() if match else None


def _is_guid(value: str) -> bool:
    try:
        uuid.UUID(value)
    except ValueError:
        return False
    return True


def is_effective(state: CloudState, assignment_id: str) -> bool:
    created = state.created_at.get(id_key(assignment_id), 0.0)
    return state.now() >= created + state.settings.rbac_propagation_seconds


def effective_data_actions(state: CloudState, principal_id: str, resource_id: str) -> list[str]:
    """Data actions granted to `principal_id` on `resource_id` by role assignments that have propagated."""
    actions: list[str] = []
    for assignment in state.of_type(ROLE_ASSIGNMENT_TYPE):
        properties = assignment.get("properties") or {}
        if str(properties.get("principalId", "")).lower() != principal_id.lower():
            continue
        scope = str(properties.get("scope") or split_role_assignment_id(str(assignment["id"]))[0])
        if not is_scope_at_or_above(scope, resource_id):
            continue
        if not is_effective(state, str(assignment["id"])):
            continue
        guid = role_guid(str(properties.get("roleDefinitionId", "")))
        role = BUILTIN_ROLES.get(guid or "")
        if role is not None:
            actions.extend(role.data_actions)
    return actions


def has_data_actions(granted: list[str], required: tuple[str, ...]) -> bool:
    lowered = [action.lower() for action in granted]
    return all(any(fnmatch.fnmatchcase(need.lower(), pattern) for pattern in lowered) for need in required)


def known_principals(state: CloudState) -> set[str]:
    """Principals the simulated directory knows (for PrincipalNotFound)."""
    principals = {
        state.settings.system_principal_id.lower(),
        state.settings.first_party_principal_id.lower(),
    }
    for body in state.resources.values():
        identity = body.get("identity")
        if isinstance(identity, dict):
            if isinstance(identity.get("principalId"), str):
                principals.add(identity["principalId"].lower())
            for entry in (identity.get("userAssignedIdentities") or {}).values():
                if isinstance(entry, dict) and isinstance(entry.get("principalId"), str):
                    principals.add(entry["principalId"].lower())
        properties = body.get("properties")
        is_identity = str(body.get("type", "")).lower() == IDENTITY_TYPE
        if is_identity and isinstance(properties, dict) and isinstance(properties.get("principalId"), str):
            principals.add(properties["principalId"].lower())
    for entry in state.requests_log[-2000:]:
        if entry.get("principal"):
            principals.add(str(entry["principal"]).lower())
    return principals


def _assignment_id(scope: str, name: str) -> str:
    base = "" if scope in ("", "/") else normalize_id(scope)
    return f"{base}/providers/Microsoft.Authorization/roleAssignments/{name}"


def put_role_assignment(state: CloudState, context: RequestContext, scope: str, name: str) -> Reply:
    body = context.body
    if not isinstance(body, dict) or not isinstance(body.get("properties"), dict):
        raise bad_request("The request body must contain 'properties'.", "InvalidRequestContent")
    properties: JsonDict = body["properties"]
    if not _is_guid(name):
        raise bad_request(
            f"The role assignment ID '{name}' is not valid. The role assignment ID must be a GUID.",
            "InvalidRoleAssignmentId",
        )
    role_definition_id = str(properties.get("roleDefinitionId", ""))
    guid = role_guid(role_definition_id)
    if guid is None:
        raise bad_request(f"The role definition ID '{role_definition_id}' is not valid.", "InvalidRoleDefinitionId")
    principal_id = str(properties.get("principalId", ""))
    if not _is_guid(principal_id):
        raise bad_request(f"The principal ID '{principal_id}' is not valid.", "InvalidPrincipalId")
    principal_type = properties.get("principalType")
    if principal_type is not None and principal_type not in _PRINCIPAL_TYPES:
        raise bad_request(f"The principal type '{principal_type}' is not valid.", "InvalidPrincipalType")
    if principal_type is None and principal_id.lower() not in known_principals(state):
        raise bad_request(
            f"Principal {principal_id.replace('-', '')} does not exist in the directory {state.tenant_id}. Check that "
            "you have the correct principal ID. If you are creating this principal and then immediately assigning "
            "a role, this error might be related to a replication delay. In this case, set the role assignment "
            "principalType property to a value, such as ServicePrincipal, User, or Group.  See "
            "https://aka.ms/docs-principaltype",
            "PrincipalNotFound",
        )
    if (
        principal_type is not None
        and principal_type != "ServicePrincipal"
        and principal_id.lower() in known_principals(state)
    ):
        # Every principal the simulated directory knows is a service principal (apps, managed identities).
        raise bad_request(
            f"The PrincipalId '{principal_id.replace('-', '')}' has type 'ServicePrincipal' , which is different from "
            f"specified PrincipalType '{principal_type}'.",
            "UnmatchedPrincipalType",
        )
    assignment_id = _assignment_id(scope, name)
    scope_value = "/" if scope in ("", "/") else normalize_id(scope)
    existing = state.get(assignment_id)
    if existing is not None:
        existing_properties = existing.get("properties") or {}
        same = (
            str(existing_properties.get("principalId", "")).lower() == principal_id.lower()
            and role_guid(str(existing_properties.get("roleDefinitionId", ""))) == guid
        )
        if not same:
            raise ArmError(
                409,
                "RoleAssignmentUpdateNotPermitted",
                "Tenant ID, application ID, principal ID, and scope are not allowed to be updated.",
            )
        return Reply(200, existing, action=ACTION_WRITE)
    for other in state.of_type(ROLE_ASSIGNMENT_TYPE):
        other_properties = other.get("properties") or {}
        other_scope = str(other_properties.get("scope") or split_role_assignment_id(str(other["id"]))[0])
        if (
            str(other_properties.get("principalId", "")).lower() == principal_id.lower()
            and role_guid(str(other_properties.get("roleDefinitionId", ""))) == guid
            and id_key(other_scope) == id_key(scope_value)
        ):
            raise ArmError(409, "RoleAssignmentExists", "The role assignment already exists.")
    now = iso(state.now())
    created: JsonDict = {
        "properties": {
            "roleDefinitionId": f"/providers/Microsoft.Authorization/roleDefinitions/{guid}",
            "principalId": principal_id,
            "principalType": principal_type or "ServicePrincipal",
            "scope": scope_value,
            "condition": properties.get("condition"),
            "conditionVersion": properties.get("conditionVersion"),
            "createdOn": now,
            "updatedOn": now,
            "createdBy": context.principal_id,
            "updatedBy": context.principal_id,
            "delegatedManagedIdentityResourceId": properties.get("delegatedManagedIdentityResourceId"),
            "description": properties.get("description"),
        },
        "id": assignment_id,
        "type": "Microsoft.Authorization/roleAssignments",
        "name": name,
    }
    state.put_resource(created)
    from sandbox.azure.eventgrid import emit_resource_event

    emit_resource_event(state, context, assignment_id, ACTION_WRITE, "Succeeded")
    return Reply(201, created, action=ACTION_WRITE)


def get_role_assignment(state: CloudState, scope: str, name: str) -> Reply:
    found = state.get(_assignment_id(scope, name))
    if found is None:
        raise ArmError(404, "RoleAssignmentNotFound", f"The role assignment '{name}' is not found.")
    return Reply(200, found, action=ACTION_READ)


def delete_role_assignment(state: CloudState, context: RequestContext, scope: str, name: str) -> Reply:
    assignment_id = _assignment_id(scope, name)
    found = state.get(assignment_id)
    if found is None:
        return Reply(204, None, action=ACTION_DELETE, empty=True)
    state.delete_resource(assignment_id)
    return Reply(200, found, action=ACTION_DELETE)


def list_role_assignments(state: CloudState, scope: str, filter_text: str | None) -> Reply:
    at_scope_only, principal = _parse_filter(filter_text)
    scope_value = "/" if scope in ("", "/") else normalize_id(scope)
    results: list[Any] = []
    for assignment in state.of_type(ROLE_ASSIGNMENT_TYPE):
        properties = assignment.get("properties") or {}
        assignment_scope = str(properties.get("scope") or split_role_assignment_id(str(assignment["id"]))[0])
        above = is_scope_at_or_above(assignment_scope, scope_value)
        below = is_scope_at_or_above(scope_value, assignment_scope)
        if at_scope_only and not above:
            continue
        if not (above or below):
            continue
        if principal is not None and str(properties.get("principalId", "")).lower() != principal:
            continue
        results.append(assignment)
    return Reply(200, {"value": results}, action=ACTION_READ)


def _parse_filter(filter_text: str | None) -> tuple[bool, str | None]:
    """Supports what azure-mgmt-authorization callers send: atScope(), principalId eq '...', assignedTo('...')."""
    if not filter_text:
        return False, None
    at_scope = False
    principal: str | None = None
    for clause in re.split(r"\s+and\s+", filter_text.strip(), flags=re.IGNORECASE):
        clause = clause.strip()
        if re.fullmatch(r"atScope\(\)", clause, re.IGNORECASE):
            at_scope = True
            continue
        match = re.fullmatch(
            r"(?:principalId\s+eq\s+'(?P<a>[^']+)'|assignedTo\('(?P<b>[^']+)'\))", clause, re.IGNORECASE
        )
        if match:
            principal = (match.group("a") or match.group("b")).lower()
            continue
        raise bad_request(f"The filter '{filter_text}' is not supported.", "UnsupportedQuery")
    return at_scope, principal
