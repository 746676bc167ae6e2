"""Azure RBAC's role definitions: the built-in roles the project meets (real GUIDs and permission lists, from
Azure's built-in roles reference), custom roles from their ARM body, and Azure's action matching (`actions`/
`notActions`, `dataActions`/`notDataActions`, `*` wildcards).

ARM authorization is built from this module and four others: conditions.py (the ABAC conditions of constrained
delegation), grants.py (role assignments at any scope with inheritance and the propagation delay: who holds which
action where), action_table.py (the one table that maps every ARM request the simulator serves to the action ARM
checks) and authorizer.py (the decision for one request, 403s in Azure's words). sandbox/worlds/README.md ("ARM
authorization") documents the behaviour and its sources.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from sandbox.azure.ids import (
    JsonDict,
    is_scope_at_or_above,
)

# ---------------------------------------------------------------------------------------------------------------
# Role definitions
# ---------------------------------------------------------------------------------------------------------------

OWNER = "8e3af657-a8ff-443c-a75c-2fe8c4bcb635"
CONTRIBUTOR = "b24988ac-6180-42a0-ab88-20f7382dd24c"
READER = "acdd72a7-3385-48ef-bd42-f606fba81ae7"
USER_ACCESS_ADMINISTRATOR = "18d7d88d-d35e-4fb5-a5c3-7773c20a72d9"
KEY_VAULT_ADMINISTRATOR = "00482a5a-887f-4fb3-b363-3b7fe8e74483"
KEY_VAULT_CONTRIBUTOR = "f25e0fa2-a7c8-4377-a976-54943a77a395"
KEY_VAULT_CRYPTO_OFFICER = "14b46e9e-c2b7-41b4-b07b-48a6ebf60603"
KEY_VAULT_CRYPTO_SERVICE_ENCRYPTION_USER = "e147488a-f6f5-4113-8e2d-b22465e65bf6"
KEY_VAULT_CRYPTO_USER = "12338af0-0e69-4776-bea7-57ae8d297424"
KEY_VAULT_READER = "21090545-7ca7-4776-b22c-e363652d74d2"
DOCUMENTDB_ACCOUNT_CONTRIBUTOR = "5bd9cd88-fe45-4216-938b-f97437e15450"
COSMOS_DB_OPERATOR = "230815da-be43-4aae-9cb4-875f7bd000aa"
MANAGED_IDENTITY_OPERATOR = "f1a07417-d97a-45cb-824c-7a7467783830"

# What Cosmos DB needs on a key (RBAC-model vaults): Key Vault Crypto Service Encryption User's data actions.
CMK_KEY_DATA_ACTIONS = (
    "Microsoft.KeyVault/vaults/keys/read",
    "Microsoft.KeyVault/vaults/keys/wrap/action",
    "Microsoft.KeyVault/vaults/keys/unwrap/action",
)


@dataclass(frozen=True)
class Permission:
    """One entry of a role definition's `permissions`."""

    actions: tuple[str, ...] = ()
    not_actions: tuple[str, ...] = ()
    data_actions: tuple[str, ...] = ()
    not_data_actions: tuple[str, ...] = ()

    def permits(self, action: str, *, data: bool) -> bool:
        allowed, denied = (self.data_actions, self.not_data_actions) if data else (self.actions, self.not_actions)
        return any(action_matches(pattern, action) for pattern in allowed) and not any(
            action_matches(pattern, action) for pattern in denied
        )

    @classmethod
    def from_json(cls, data: Any) -> Permission:
        if not isinstance(data, dict):
            raise ValueError("every permission must be an object")

        def strings(name: str) -> tuple[str, ...]:
            value = data.get(name) or []
            if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
                raise ValueError(f"permissions[].{name} must be a list of strings")
            return tuple(value)

        return cls(strings("actions"), strings("notActions"), strings("dataActions"), strings("notDataActions"))

    def to_json(self) -> JsonDict:
        return {
            "actions": list(self.actions),
            "notActions": list(self.not_actions),
            "dataActions": list(self.data_actions),
            "notDataActions": list(self.not_data_actions),
        }


@dataclass(frozen=True)
class RoleDefinition:
    guid: str
    name: str
    permissions: tuple[Permission, ...]
    assignable_scopes: tuple[str, ...] = ("/",)
    custom: bool = False

    def permits(self, action: str, *, data: bool = False) -> bool:
        return any(permission.permits(action, data=data) for permission in self.permissions)

    def assignable_at(self, scope: str) -> bool:
        return any(is_scope_at_or_above(assignable, scope) for assignable in self.assignable_scopes)


def _builtin(guid: str, name: str, actions: Iterable[str] = (), not_actions: Iterable[str] = (), **data: Any) -> Any:
    permission = Permission(
        tuple(actions), tuple(not_actions), tuple(data.get("data_actions", ())), tuple(data.get("not_data_actions", ()))
    )
    return guid, RoleDefinition(guid, name, (permission,))


# The management actions every Key Vault data role carries besides its data actions.
_KEY_VAULT_DATA_ROLE_ACTIONS = (
    "Microsoft.Authorization/*/read",
    "Microsoft.Insights/alertRules/*",
    "Microsoft.Resources/deployments/*",
    "Microsoft.Resources/subscriptions/resourceGroups/read",
    "Microsoft.Support/*",
    "Microsoft.KeyVault/checkNameAvailability/read",
    "Microsoft.KeyVault/deletedVaults/read",
    "Microsoft.KeyVault/locations/*/read",
    "Microsoft.KeyVault/vaults/*/read",
    "Microsoft.KeyVault/operations/read",
)
_COSMOS_ROLE_ACTIONS = (
    "Microsoft.Authorization/*/read",
    "Microsoft.DocumentDb/databaseAccounts/*",
    "Microsoft.Insights/alertRules/*",
    "Microsoft.ResourceHealth/availabilityStatuses/read",
    "Microsoft.Resources/deployments/*",
    "Microsoft.Resources/subscriptions/resourceGroups/read",
    "Microsoft.Support/*",
    "Microsoft.Network/virtualNetworks/subnets/joinViaServiceEndpoint/action",
)

# learn.microsoft.com/azure/role-based-access-control/built-in-roles (Privileged, General, Security, Databases,
# Identity); MicrosoftDocs/azure-docs articles/role-based-access-control/built-in-roles/*.md, 2026.
BUILTIN_ROLES: dict[str, RoleDefinition] = dict(
    [
        _builtin(OWNER, "Owner", ["*"]),
        _builtin(
            CONTRIBUTOR,
            "Contributor",
            ["*"],
            [
                "Microsoft.Authorization/*/Delete",
                "Microsoft.Authorization/*/Write",
                "Microsoft.Authorization/elevateAccess/Action",
                "Microsoft.Blueprint/blueprintAssignments/write",
                "Microsoft.Blueprint/blueprintAssignments/delete",
                "Microsoft.Compute/galleries/share/action",
                "Microsoft.Purview/consents/write",
                "Microsoft.Purview/consents/delete",
                "Microsoft.Resources/deploymentStacks/manageDenySetting/action",
                "Microsoft.Subscription/cancel/action",
                "Microsoft.Subscription/enable/action",
            ],
        ),
        _builtin(READER, "Reader", ["*/read"]),
        _builtin(
            USER_ACCESS_ADMINISTRATOR,
            "User Access Administrator",
            ["*/read", "Microsoft.Authorization/*", "Microsoft.Support/*"],
        ),
        _builtin(
            KEY_VAULT_ADMINISTRATOR,
            "Key Vault Administrator",
            _KEY_VAULT_DATA_ROLE_ACTIONS,
            data_actions=["Microsoft.KeyVault/vaults/*"],
        ),
        _builtin(
            KEY_VAULT_CONTRIBUTOR,
            "Key Vault Contributor",
            [
                "Microsoft.Authorization/*/read",
                "Microsoft.Insights/alertRules/*",
                "Microsoft.KeyVault/*",
                "Microsoft.Resources/deployments/*",
                "Microsoft.Resources/subscriptions/resourceGroups/read",
                "Microsoft.Support/*",
            ],
            [
                "Microsoft.KeyVault/locations/deletedVaults/purge/action",
                "Microsoft.KeyVault/hsmPools/*",
                "Microsoft.KeyVault/managedHsms/*",
            ],
        ),
        _builtin(
            KEY_VAULT_CRYPTO_OFFICER,
            "Key Vault Crypto Officer",
            _KEY_VAULT_DATA_ROLE_ACTIONS,
            data_actions=["Microsoft.KeyVault/vaults/keys/*", "Microsoft.KeyVault/vaults/keyrotationpolicies/*"],
        ),
        _builtin(
            KEY_VAULT_CRYPTO_SERVICE_ENCRYPTION_USER,
            "Key Vault Crypto Service Encryption User",
            [
                "Microsoft.EventGrid/eventSubscriptions/write",
                "Microsoft.EventGrid/eventSubscriptions/read",
                "Microsoft.EventGrid/eventSubscriptions/delete",
            ],
            data_actions=list(CMK_KEY_DATA_ACTIONS),
        ),
        _builtin(
            KEY_VAULT_CRYPTO_USER,
            "Key Vault Crypto User",
            data_actions=[
                "Microsoft.KeyVault/vaults/keys/read",
                "Microsoft.KeyVault/vaults/keys/update/action",
                "Microsoft.KeyVault/vaults/keys/backup/action",
                "Microsoft.KeyVault/vaults/keys/encrypt/action",
                "Microsoft.KeyVault/vaults/keys/decrypt/action",
                "Microsoft.KeyVault/vaults/keys/wrap/action",
                "Microsoft.KeyVault/vaults/keys/unwrap/action",
                "Microsoft.KeyVault/vaults/keys/sign/action",
                "Microsoft.KeyVault/vaults/keys/verify/action",
            ],
        ),
        _builtin(
            KEY_VAULT_READER,
            "Key Vault Reader",
            _KEY_VAULT_DATA_ROLE_ACTIONS,
            data_actions=["Microsoft.KeyVault/vaults/*/read", "Microsoft.KeyVault/vaults/secrets/readMetadata/action"],
        ),
        _builtin(DOCUMENTDB_ACCOUNT_CONTRIBUTOR, "DocumentDB Account Contributor", _COSMOS_ROLE_ACTIONS),
        _builtin(
            COSMOS_DB_OPERATOR,
            "Cosmos DB Operator",
            _COSMOS_ROLE_ACTIONS,
            [
                "Microsoft.DocumentDB/databaseAccounts/dataTransferJobs/*",
                "Microsoft.DocumentDB/databaseAccounts/readonlyKeys/*",
                "Microsoft.DocumentDB/databaseAccounts/regenerateKey/*",
                "Microsoft.DocumentDB/databaseAccounts/listKeys/*",
                "Microsoft.DocumentDB/databaseAccounts/listConnectionStrings/*",
                "Microsoft.DocumentDB/databaseAccounts/sqlRoleDefinitions/write",
                "Microsoft.DocumentDB/databaseAccounts/sqlRoleDefinitions/delete",
                "Microsoft.DocumentDB/databaseAccounts/sqlRoleAssignments/write",
                "Microsoft.DocumentDB/databaseAccounts/sqlRoleAssignments/delete",
                "Microsoft.DocumentDB/databaseAccounts/mongodbRoleDefinitions/write",
                "Microsoft.DocumentDB/databaseAccounts/mongodbRoleDefinitions/delete",
                "Microsoft.DocumentDB/databaseAccounts/mongodbUserDefinitions/write",
                "Microsoft.DocumentDB/databaseAccounts/mongodbUserDefinitions/delete",
            ],
        ),
        _builtin(
            MANAGED_IDENTITY_OPERATOR,
            "Managed Identity Operator",
            [
                "Microsoft.ManagedIdentity/userAssignedIdentities/*/read",
                "Microsoft.ManagedIdentity/userAssignedIdentities/*/assign/action",
                "Microsoft.Authorization/*/read",
                "Microsoft.Insights/alertRules/*",
                "Microsoft.Resources/subscriptions/resourceGroups/read",
                "Microsoft.Resources/deployments/*",
                "Microsoft.Support/*",
            ],
        ),
    ]
)


@lru_cache(maxsize=4096)
def _action_pattern(pattern: str) -> re.Pattern[str]:
    # `*` stands for any characters, '/' included (`*/read`, `Microsoft.KeyVault/*`); a whole `/*/` segment also
    # stands for no segment at all, so Managed Identity Operator's `userAssignedIdentities/*/assign/action` grants
    # `userAssignedIdentities/assign/action`, which is what Azure documents that role for.
    escaped = re.escape(pattern.lower()).replace("/\\*/", "(?:/|/.*/)").replace("\\*", ".*")
    return re.compile(escaped + r"\Z")


def action_matches(pattern: str, action: str) -> bool:
    """Azure's action matching: case-insensitive, `*` a wildcard."""
    return _action_pattern(pattern).match(action.lower()) is not None


_ROLE_DEFINITION_ID = re.compile(
    r"^(?:/.*)?/providers/Microsoft\.Authorization/roleDefinitions/(?P<guid>[0-9a-fA-F-]{36})/?$", re.IGNORECASE
)


def role_guid(role_definition_id: str) -> str | None:
    """The GUID of `/[scope]/providers/Microsoft.Authorization/roleDefinitions/{guid}` (or of a bare GUID)."""
    text = role_definition_id.strip()
    if re.fullmatch(r"[0-9a-fA-F]{8}-(?:[0-9a-fA-F]{4}-){3}[0-9a-fA-F]{12}", text):
        return text.lower()
    match = _ROLE_DEFINITION_ID.match(text)
    return match.group("guid").lower() if match else None


def role_from_body(body: JsonDict) -> RoleDefinition:
    """A custom role from its ARM body (`Microsoft.Authorization/roleDefinitions`, as GET returns it)."""
    properties = body.get("properties")
    if not isinstance(properties, dict):
        raise ValueError("a role definition needs 'properties'")
    permissions = properties.get("permissions")
    if not isinstance(permissions, list) or not permissions:
        raise ValueError("a role definition needs at least one entry in 'properties.permissions'")
    scopes = properties.get("assignableScopes")
    if not isinstance(scopes, list) or not scopes or not all(isinstance(scope, str) for scope in scopes):
        raise ValueError("a role definition needs 'properties.assignableScopes' (a list of scopes)")
    guid = role_guid(str(body.get("name") or body.get("id") or ""))
    if guid is None:
        raise ValueError("a role definition's name must be a GUID")
    return RoleDefinition(
        guid,
        str(properties.get("roleName") or guid),
        tuple(Permission.from_json(permission) for permission in permissions),
        tuple(scopes),
        custom=True,
    )
