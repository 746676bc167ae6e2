"""Azure RBAC for the simulated Azure Resource Manager: who may perform which action where.

Everything ARM authorization needs lives here: the built-in role definitions the project meets (real GUIDs and
permission lists, from Azure's built-in roles reference), custom role definitions from the world or created with a
PUT, role assignments at any scope with inheritance (and the propagation delay), `actions`/`notActions` and
`dataActions`/`notDataActions` with wildcards, the ABAC conditions of constrained delegation, and ACTION_TABLE, the
one table that maps every ARM request the simulator serves to the action ARM checks. sandbox/worlds/README.md
("ARM authorization") documents the behaviour and its sources.

The server calls `authorize()` for every ARM request after authentication, api-version, throttling and the
subscription check, in ARM's order; a denial is 403 `AuthorizationFailed` (or `LinkedAuthorizationFailed`) with
Azure's message, and the request log records the action and the decision either way. `simulator.authorization.
enforce: false` computes and logs the same decisions without refusing anything.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from functools import lru_cache
from typing import TYPE_CHECKING, Any

from sandbox.azure.errors import ArmError
from sandbox.azure.ids import (
    ROLE_ASSIGNMENT_TYPE,
    ROLE_DEFINITION_TYPE,
    JsonDict,
    id_key,
    is_scope_at_or_above,
    normalize_id,
    parse_resource_id,
    split_role_assignment_id,
)

if TYPE_CHECKING:
    from sandbox.azure.engine import CloudState, RequestContext

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


def custom_roles(state: CloudState) -> dict[str, RoleDefinition]:
    roles: dict[str, RoleDefinition] = {}
    for body in state.of_type(ROLE_DEFINITION_TYPE):
        try:
            role = role_from_body(body)
        except ValueError:
            continue
        roles[role.guid] = role
    return roles


def find_role(state: CloudState, role_definition_id: str) -> RoleDefinition | None:
    guid = role_guid(role_definition_id)
    if guid is None:
        return None
    return BUILTIN_ROLES.get(guid) or custom_roles(state).get(guid)


# ---------------------------------------------------------------------------------------------------------------
# ABAC conditions (version 2.0) on role assignments: the constrained-delegation subset
# ---------------------------------------------------------------------------------------------------------------

# learn.microsoft.com/azure/role-based-access-control/conditions-authorization-actions-attributes: the attributes
# and operators a condition on role assignments can use; conditions-format for ActionMatches and the grammar.
_CONDITION_ATTRIBUTES = {
    "microsoft.authorization/roleassignments:roledefinitionid": ("RoleDefinitionId", "guid"),
    "microsoft.authorization/roleassignments:principalid": ("PrincipalId", "guid"),
    "microsoft.authorization/roleassignments:principaltype": ("PrincipalType", "string"),
}
_CONDITION_OPERATORS = {
    "guid": {"guidequals", "guidnotequals"},
    "string": {"stringequalsignorecase", "stringnotequalsignorecase"},
}
_CONDITION_TOKEN = re.compile(
    r"""\s*(?:
        (?P<open>\() | (?P<close>\)) | (?P<not>!|\bNOT\b) | (?P<and>&&|\bAND\b) | (?P<or>\|\||\bOR\b)
        | (?P<matches>ActionMatches\s*\{\s*'(?P<action>[^']*)'\s*\})
        | (?P<attribute>@(?P<source>Request|Resource)\[(?P<name>[^\]]+)\])
        | (?P<values>\{[^}]*\}|'[^']*'|[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12})
        | (?P<operator>(?:(?:ForAnyOfAnyValues|ForAllOfAnyValues|ForAnyOfAllValues|ForAllOfAllValues):)?[A-Za-z]+)
    )""",
    re.VERBOSE | re.IGNORECASE,
)


_TOKEN_KINDS = ("open", "close", "not", "and", "or", "matches", "attribute", "values", "operator")


class UnsupportedCondition(ValueError):
    """A condition outside the subset the simulator evaluates (it refuses it rather than guess)."""


@dataclass(frozen=True)
class ConditionAttributes:
    """What a condition can look at: the action, and the role assignment in the request or in Azure."""

    action: str
    request: dict[str, str | None] = field(default_factory=dict)
    resource: dict[str, str | None] = field(default_factory=dict)


Condition = Callable[[ConditionAttributes], bool]


def _tokens(text: str) -> list[tuple[str, re.Match[str]]]:
    tokens: list[tuple[str, re.Match[str]]] = []
    position = 0
    stripped = text.rstrip()
    while position < len(stripped):
        match = _CONDITION_TOKEN.match(stripped, position)
        if match is None or match.end() == position:
            raise UnsupportedCondition(f"cannot read the condition at {stripped[position : position + 40]!r}")
        kind = next(name for name in _TOKEN_KINDS if match.group(name) is not None)
        tokens.append((kind, match))
        position = match.end()
    return tokens


def _values(text: str) -> list[str]:
    inner = text[1:-1] if text.startswith("{") else text
    items = [item.strip() for item in inner.split(",")] if inner.strip() else []
    return [item[1:-1] if len(item) >= 2 and item[0] == item[-1] == "'" else item for item in items]


@lru_cache(maxsize=256)
def parse_condition(text: str) -> Condition:
    """Compile a version 2.0 condition of the constrained-delegation subset; UnsupportedCondition otherwise."""
    tokens = _tokens(text)
    position = 0

    def peek() -> str | None:
        return tokens[position][0] if position < len(tokens) else None

    def take(kind: str) -> re.Match[str]:
        nonlocal position
        if peek() != kind:
            found = tokens[position][1].group(0).strip() if position < len(tokens) else "the end"
            raise UnsupportedCondition(f"expected {kind} in the condition, found {found!r}")
        position += 1
        return tokens[position - 1][1]

    def disjunction() -> Condition:
        parts = [conjunction()]
        while peek() == "or":
            take("or")
            parts.append(conjunction())
        return parts[0] if len(parts) == 1 else (lambda attributes: any(part(attributes) for part in parts))

    def conjunction() -> Condition:
        parts = [negation()]
        while peek() == "and":
            take("and")
            parts.append(negation())
        return parts[0] if len(parts) == 1 else (lambda attributes: all(part(attributes) for part in parts))

    def negation() -> Condition:
        if peek() == "not":
            take("not")
            inner = negation()
            return lambda attributes: not inner(attributes)
        return primary()

    def primary() -> Condition:
        kind = peek()
        if kind == "open":
            take("open")
            inner = disjunction()
            take("close")
            return inner
        if kind == "matches":
            pattern = take("matches").group("action")
            return lambda attributes: action_matches(pattern, attributes.action)
        if kind == "attribute":
            return comparison()
        found = tokens[position][1].group(0).strip() if position < len(tokens) else "the end"
        raise UnsupportedCondition(f"unexpected {found!r} in the condition")

    def comparison() -> Condition:
        attribute = take("attribute")
        source = attribute.group("source").lower()
        known = _CONDITION_ATTRIBUTES.get(attribute.group("name").strip().lower())
        if known is None:
            raise UnsupportedCondition(f"the attribute {attribute.group('name')!r} is not one the simulator evaluates")
        name, kind = known
        operator = take("operator").group("operator")
        quantifier, _, base = operator.rpartition(":")
        if base.lower() not in _CONDITION_OPERATORS[kind] or quantifier.lower() not in ("", "foranyofanyvalues"):
            raise UnsupportedCondition(f"the operator {operator!r} is not one the simulator evaluates on {name}")
        wanted = _values(take("values").group("values"))
        if not quantifier and len(wanted) != 1:
            raise UnsupportedCondition(f"{operator} compares with one value; use ForAnyOfAnyValues for a set")
        negated = "not" in base.lower()

        def equal(left: str, right: str) -> bool:
            return left.strip().lower() == right.strip().lower()  # GUIDs and IgnoreCase strings alike

        def holds(attributes: ConditionAttributes) -> bool:
            values = attributes.request if source == "request" else attributes.resource
            value = values.get(name)
            if value is None:
                return False  # an attribute the request does not carry matches nothing
            if negated:
                return any(not equal(value, item) for item in wanted)
            return any(equal(value, item) for item in wanted)

        return holds

    condition = disjunction()
    if position != len(tokens):
        raise UnsupportedCondition(f"unexpected {tokens[position][1].group(0).strip()!r} in the condition")
    return condition


def check_condition(condition: Any, version: Any) -> None:
    """Refuse (ValueError) a role assignment condition the simulator cannot evaluate."""
    if condition in (None, ""):
        return
    if not isinstance(condition, str):
        raise UnsupportedCondition("a condition must be a string")
    if str(version or "2.0") != "2.0":
        raise UnsupportedCondition(f"conditionVersion {version!r} is not supported; use '2.0'")
    try:
        parse_condition(condition)
    except UnsupportedCondition as error:
        raise UnsupportedCondition(f"condition: {error}") from error


# ---------------------------------------------------------------------------------------------------------------
# Role assignments and evaluation
# ---------------------------------------------------------------------------------------------------------------


def is_effective(state: CloudState, assignment_id: str) -> bool:
    """A role assignment counts only `rbacPropagationSeconds` after it was created (world ones at once)."""
    created = state.created_at.get(id_key(assignment_id), 0.0)
    return state.now() >= created + state.settings.rbac_propagation_seconds


def assignment_scope(assignment: JsonDict) -> str:
    properties = assignment.get("properties") or {}
    return str(properties.get("scope") or split_role_assignment_id(str(assignment["id"]))[0])


def _principal_assignments(state: CloudState, principal_id: str) -> Iterator[tuple[JsonDict, RoleDefinition]]:
    """The principal's effective role assignments, each with its role (assignments of unknown roles grant nothing)."""
    wanted = principal_id.lower()
    customs: dict[str, RoleDefinition] | None = None
    for assignment in state.of_type(ROLE_ASSIGNMENT_TYPE):
        properties = assignment.get("properties") or {}
        if str(properties.get("principalId", "")).lower() != wanted:
            continue
        if not is_effective(state, str(assignment["id"])):
            continue
        guid = role_guid(str(properties.get("roleDefinitionId", "")))
        role = BUILTIN_ROLES.get(guid or "")
        if role is None:
            customs = custom_roles(state) if customs is None else customs
            role = customs.get(guid or "")
        if role is not None:
            yield assignment, role


def _condition_holds(assignment: JsonDict, attributes: ConditionAttributes) -> bool:
    condition = (assignment.get("properties") or {}).get("condition")
    if not condition:
        return True
    try:
        return parse_condition(str(condition))(attributes)
    except UnsupportedCondition:
        return False  # refused at PUT and at load; fail closed should one slip through


def find_grant(
    state: CloudState,
    principal_id: str,
    action: str,
    scope: str,
    *,
    data: bool = False,
    attributes: ConditionAttributes | None = None,
) -> tuple[JsonDict, RoleDefinition] | None:
    """The role assignment (and role) that lets `principal_id` perform `action` at `scope`, if any."""
    checked = attributes or ConditionAttributes(action)
    for assignment, role in _principal_assignments(state, principal_id):
        if not is_scope_at_or_above(assignment_scope(assignment), scope):
            continue
        if role.permits(action, data=data) and _condition_holds(assignment, checked):
            return assignment, role
    return None


def granted_below(state: CloudState, principal_id: str, action: str, scope: str) -> bool:
    """Whether some assignment at or below `scope` grants `action` (a list there returns what it may read)."""
    for assignment, role in _principal_assignments(state, principal_id):
        where = assignment_scope(assignment)
        related = is_scope_at_or_above(where, scope) or is_scope_at_or_above(scope, where)
        if related and role.permits(action) and _condition_holds(assignment, ConditionAttributes(action)):
            return True
    return False


def effective_data_actions(state: CloudState, principal_id: str, resource_id: str) -> list[str]:
    """Data actions granted to `principal_id` on `resource_id` by role assignments that have propagated."""
    actions: list[str] = []
    for assignment, role in _principal_assignments(state, principal_id):
        if is_scope_at_or_above(assignment_scope(assignment), resource_id):
            for permission in role.permissions:
                actions.extend(
                    action
                    for action in permission.data_actions
                    if not any(action_matches(denied, action) for denied in permission.not_data_actions)
                )
    return actions


def has_data_actions(state: CloudState, principal_id: str, resource_id: str, required: Iterable[str]) -> bool:
    """Whether effective role assignments grant every one of `required` data actions on `resource_id`."""
    return all(find_grant(state, principal_id, action, resource_id, data=True) is not None for action in required)


# ---------------------------------------------------------------------------------------------------------------
# The action table: every ARM request the simulator serves, mapped to the action ARM authorizes
# ---------------------------------------------------------------------------------------------------------------

_CRUD = {"GET": "read", "HEAD": "read", "PUT": "write", "PATCH": "write", "DELETE": "delete"}
SCOPE_URL = "url"  # the request's path, as ARM names it in AuthorizationFailed
SCOPE_QUERY_SUBSCRIPTIONS = "subscriptions in the query"  # Resource Graph: each subscription of the request body
LINKED_USER_ASSIGNED_IDENTITIES = "userAssignedIdentities in the body"  # ARM's linked check on identities
LINKED_ASSIGNABLE_SCOPES = "assignableScopes in the body"  # ARM's linked check on a custom role's scopes


@dataclass(frozen=True)
class ActionRule:
    """Requests with one of `methods` whose path (no query) fully matches `path` perform `action`.

    `action` may use `{crud}` (read/write/delete from the method), `{type}` (the resource type named by the URL) and
    `{verb}` (the last segment of a POST). `scope` says where ARM checks it; `linked` names the linked-access check
    ARM adds (on other resources the body references)."""

    methods: tuple[str, ...]
    path: str
    action: str
    scope: str = SCOPE_URL
    linked: str | None = None
    note: str = ""
    collection: bool = False  # a list: without the action at the scope, grants below it give a partial answer

    @property
    def pattern(self) -> re.Pattern[str]:
        return _compiled(self.path)


@lru_cache(maxsize=64)
def _compiled(path: str) -> re.Pattern[str]:
    return re.compile(path, re.IGNORECASE)


_ID = r"/subscriptions/[^/]+(?:/resourceGroups/[^/]+)?/providers/[^/]+(?:/[^/]+)+"
_ANY_SCOPE = r"(?:/.*)?"
ACTION_TABLE: tuple[ActionRule, ...] = (
    ActionRule(
        ("POST",),
        r"/providers/Microsoft\.ResourceGraph/resources",
        "Microsoft.ResourceGraph/resources/read",
        SCOPE_QUERY_SUBSCRIPTIONS,
        note="results hold only the rows the caller may read ({type}/read at the row); 403 if no subscription of "
        "the query is readable",
    ),
    ActionRule(
        ("GET",),
        r"/subscriptions/[^/]+/providers/Microsoft\.DocumentDB/locations/[^/]+/operationsStatus/[^/]+",
        "Microsoft.DocumentDB/locations/operationsStatus/read",
        note="the Azure-AsyncOperation URL: a subscription-level path, so resource-group grants do not reach it",
    ),
    ActionRule(
        ("GET",),
        _ID + r"/providers/Microsoft\.Insights/metrics",
        "Microsoft.Insights/metrics/read",
        note="Azure Monitor's extension route on a resource",
    ),
    ActionRule(
        ("GET",),
        _ANY_SCOPE + r"/providers/Microsoft\.Authorization/roleAssignments",
        "Microsoft.Authorization/roleAssignments/read",
        note="list at a scope",
        collection=True,
    ),
    ActionRule(
        ("GET", "PUT", "DELETE"),
        _ANY_SCOPE + r"/providers/Microsoft\.Authorization/roleAssignments/[^/]+",
        "Microsoft.Authorization/roleAssignments/{crud}",
        note="conditions see the role, principal and principal type in the request (write) or in Azure (delete)",
    ),
    ActionRule(
        ("GET",),
        _ANY_SCOPE + r"/providers/Microsoft\.Authorization/roleDefinitions",
        "Microsoft.Authorization/roleDefinitions/read",
        collection=True,
    ),
    ActionRule(
        ("GET", "PUT", "DELETE"),
        _ANY_SCOPE + r"/providers/Microsoft\.Authorization/roleDefinitions/[^/]+",
        "Microsoft.Authorization/roleDefinitions/{crud}",
        linked=LINKED_ASSIGNABLE_SCOPES,
        note="a PUT also needs roleDefinitions/write on every assignable scope",
    ),
    ActionRule(
        ("PUT",),
        _ID + r"/accessPolicies/(?:add|replace|remove)",
        "Microsoft.KeyVault/vaults/accessPolicies/write",
    ),
    ActionRule(
        ("PUT", "PATCH"),
        r"/subscriptions/[^/]+/resourceGroups/[^/]+/providers/Microsoft\.DocumentDB/databaseAccounts/[^/]+",
        "Microsoft.DocumentDB/databaseAccounts/write",
        linked=LINKED_USER_ASSIGNED_IDENTITIES,
        note="attaching a user-assigned identity also needs its assign/action on the identity",
    ),
    ActionRule(
        ("GET", "PUT", "DELETE"),
        r"/subscriptions/[^/]+/resourceGroups/[^/]+",
        "Microsoft.Resources/subscriptions/resourceGroups/{crud}",
    ),
    ActionRule(
        ("GET",),
        r"/subscriptions/[^/]+/resourceGroups",
        "Microsoft.Resources/subscriptions/resourceGroups/read",
        collection=True,
    ),
    ActionRule(("GET",), r"/subscriptions/[^/]+", "Microsoft.Resources/subscriptions/read"),
    ActionRule(
        ("GET", "PUT", "PATCH", "DELETE"),
        _ID,
        "{type}/{crud}",
        note="any resource or collection: {type} from the URL, e.g. .../databaseAccounts/{a}/operationResults/{id} "
        "is Microsoft.DocumentDB/databaseAccounts/operationResults/read",
    ),
    ActionRule(("POST",), _ID, "{type}/{verb}/action", note="the last segment names the action"),
)


@dataclass(frozen=True)
class MappedRequest:
    rule: ActionRule
    action: str
    scope: str
    collection: bool
    container: str = ""  # a list's parent (subscription, group or resource): grants there or below give a part


def map_request(method: str, path: str) -> MappedRequest | None:
    """The action (and where it is checked) of an ARM request, from ACTION_TABLE; None when nothing matches."""
    clean = "/" + path.split("?", 1)[0].strip("/") if path.strip("/") else "/"
    method = method.upper()
    for rule in ACTION_TABLE:
        if method not in rule.methods or not rule.pattern.fullmatch(clean):
            continue
        full_type = verb = ""
        collection = False
        if "{type}" in rule.action:
            target = clean
            if method == "POST":
                target, verb = clean.rsplit("/", 1)
            parsed = parse_resource_id(target)
            if parsed is None or parsed.namespace is None or not parsed.type_segments:
                continue
            full_type = parsed.full_type
            collection = len(parsed.name_segments) < len(parsed.type_segments)
        else:
            collection = rule.collection
        action = rule.action.format(crud=_CRUD.get(method, "action"), type=full_type, verb=verb)
        scope = normalize_id(clean) if clean != "/" else "/"
        container = _container(clean) if collection else ""
        return MappedRequest(rule, action, scope, collection, container)
    return None


def _container(path: str) -> str:
    """`{parent}/providers/{namespace}/{type}` → parent; `{resource}/{childType}` → resource."""
    head = path.rstrip("/").rpartition("/")[0]
    lowered = head.lower()
    if "/providers/" in lowered and lowered.rsplit("/providers/", 1)[1].count("/") == 0:
        head = head[: lowered.rindex("/providers/")]  # a top-level type: drop `/providers/{namespace}`
    return normalize_id(head) if head.strip("/") else "/"


# ---------------------------------------------------------------------------------------------------------------
# Decisions
# ---------------------------------------------------------------------------------------------------------------


@dataclass
class Decision:
    """What authorization decided for one request; logged with it (`authorization` in the request log)."""

    action: str
    scope: str
    allowed: bool
    enforced: bool
    granted_by: str | None = None
    role: str | None = None
    partial: bool = False  # a list or query answered with only what the caller may read
    subscriptions: list[str] = field(default_factory=list)  # Resource Graph: the subscriptions it may read
    linked: list[JsonDict] = field(default_factory=list)

    @property
    def denied(self) -> bool:
        return not self.allowed or any(not item["allowed"] for item in self.linked)

    def log_json(self) -> JsonDict:
        entry: JsonDict = {
            "decision": "Denied" if self.denied else "Allowed",
            "enforced": self.enforced,
            "action": self.action,
            "scope": self.scope,
        }
        if self.granted_by is not None:
            entry["grantedBy"] = self.granted_by
            entry["role"] = self.role
        if self.partial:
            entry["partial"] = True
        if self.linked:
            entry["linked"] = [dict(item) for item in self.linked]
        return entry


def _client(context: RequestContext) -> tuple[str, str]:
    claims = context.claims
    principal = context.principal_id
    client = (claims.raw.get("upn") or claims.app_id) if claims is not None else principal
    return str(client or principal), principal


def authorization_failed(context: RequestContext, action: str, scope: str) -> ArmError:
    client, principal = _client(context)
    return ArmError(
        403,
        "AuthorizationFailed",
        f"The client '{client}' with object id '{principal}' does not have authorization to perform action "
        f"'{action}' over scope '{scope}' or the scope is invalid. If access was recently granted, please refresh "
        "your credentials.",
    )


def linked_authorization_failed(context: RequestContext, decision: Decision) -> ArmError:
    client, principal = _client(context)
    failed = [item for item in decision.linked if not item["allowed"]]
    actions = ",".join(str(item["action"]) for item in failed)
    scopes = ",".join(str(item["scope"]) for item in failed)
    return ArmError(
        403,
        "LinkedAuthorizationFailed",
        f"The client '{client}' with object id '{principal}' has permission to perform action '{decision.action}' "
        f"on scope '{decision.scope}'; however, it does not have permission to perform action(s) '{actions}' on the "
        f"linked scope(s) '{scopes}' (respectively) or the linked scope(s) are invalid.",
    )


def _role_assignment_attributes(state: CloudState, context: RequestContext, action: str) -> ConditionAttributes:
    request: dict[str, str | None] = {}
    body = context.body
    properties = body.get("properties") if isinstance(body, dict) else None
    if context.method == "PUT" and isinstance(properties, dict):
        request = {
            "RoleDefinitionId": role_guid(str(properties.get("roleDefinitionId") or "")),
            "PrincipalId": str(properties.get("principalId") or "") or None,
            "PrincipalType": str(properties.get("principalType") or "") or None,
        }
    resource: dict[str, str | None] = {}
    existing = state.get(context.path)
    if existing is not None:
        current = existing.get("properties") or {}
        resource = {
            "RoleDefinitionId": role_guid(str(current.get("roleDefinitionId") or "")),
            "PrincipalId": str(current.get("principalId") or "") or None,
            "PrincipalType": str(current.get("principalType") or "") or None,
        }
    return ConditionAttributes(action, request, resource)


def _linked_checks(rule: ActionRule, context: RequestContext) -> list[tuple[str, str]]:
    body = context.body if isinstance(context.body, dict) else {}
    if rule.linked == LINKED_USER_ASSIGNED_IDENTITIES:
        identity = body.get("identity")
        users = identity.get("userAssignedIdentities") if isinstance(identity, dict) else None
        if not isinstance(users, dict):
            return []
        return [
            ("Microsoft.ManagedIdentity/userAssignedIdentities/assign/action", normalize_id(str(identity_id)))
            for identity_id, entry in users.items()
            if entry is not None  # `{id: null}` detaches an identity: nothing to assign
        ]
    if rule.linked == LINKED_ASSIGNABLE_SCOPES and context.method == "PUT":
        properties = body.get("properties")
        scopes = properties.get("assignableScopes") if isinstance(properties, dict) else None
        if isinstance(scopes, list):
            return [("Microsoft.Authorization/roleDefinitions/write", str(scope)) for scope in scopes]
    return []


def authorize(state: CloudState, context: RequestContext) -> Decision | None:
    """Decide one ARM request (recorded on `context.authorization`); raise 403 when enforced and denied."""
    mapped = map_request(context.method, context.path)
    if mapped is None:
        return None
    enforced = state.settings.authorization.enforce
    principal = context.principal_id
    action = mapped.action
    if mapped.rule.scope == SCOPE_QUERY_SUBSCRIPTIONS:
        decision = _authorize_query(state, context, action, enforced)
    else:
        attributes = ConditionAttributes(action)
        if action.lower().startswith("microsoft.authorization/roleassignments/"):
            attributes = _role_assignment_attributes(state, context, action)
        grant = find_grant(state, principal, action, mapped.scope, attributes=attributes)
        decision = Decision(action, mapped.scope, grant is not None, enforced)
        if grant is not None:
            decision.granted_by, decision.role = str(grant[0]["id"]), grant[1].name
        elif (
            mapped.collection and context.method == "GET" and granted_below(state, principal, action, mapped.container)
        ):
            decision.allowed = decision.partial = True
        for linked_action, linked_scope in _linked_checks(mapped.rule, context):
            allowed = find_grant(state, principal, linked_action, linked_scope) is not None
            decision.linked.append({"action": linked_action, "scope": linked_scope, "allowed": allowed})
    context.authorization = decision
    if enforced and not decision.allowed:
        raise authorization_failed(context, decision.action, decision.scope)
    if enforced and decision.denied:
        raise linked_authorization_failed(context, decision)
    return decision


def _authorize_query(state: CloudState, context: RequestContext, action: str, enforced: bool) -> Decision:
    body = context.body if isinstance(context.body, dict) else {}
    # Without `subscriptions` the query spans the tenant: every subscription the caller may query.
    requested = [str(item) for item in body.get("subscriptions") or []] or sorted(state.known_subscriptions())
    readable = [
        subscription
        for subscription in requested
        if granted_below(state, context.principal_id, action, f"/subscriptions/{subscription}")
    ]
    scope = f"/subscriptions/{requested[0]}" if requested else "/"
    decision = Decision(action, scope, bool(readable), enforced, partial=bool(readable), subscriptions=readable)
    return decision


def visible(state: CloudState, context: RequestContext, resource_id: str, resource_type: str | None = None) -> bool:
    """Whether the caller may read this resource (what a partial list or a Resource Graph query keeps)."""
    decision = getattr(context, "authorization", None)
    if decision is None or not decision.enforced or not decision.partial:
        return True
    full_type = resource_type
    if full_type is None:
        parsed = parse_resource_id(resource_id)
        full_type = parsed.full_type if parsed is not None else ""
    return find_grant(state, context.principal_id, f"{full_type}/read", resource_id) is not None


def filter_visible(state: CloudState, context: RequestContext, items: list[Any]) -> list[Any]:
    """The items of a partial list the caller may read (each judged by `{its type}/read` at its id)."""
    return [
        item
        for item in items
        if isinstance(item, dict) and isinstance(item.get("id"), str) and visible(state, context, item["id"])
    ]
