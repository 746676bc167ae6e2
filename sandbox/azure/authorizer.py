"""The authorization decision for one ARM request, in ARM's order.

The router (arm.py) calls `authorize()` for every ARM request after authentication, api-version, throttling and
the subscription check; a denial is 403 `AuthorizationFailed` (or `LinkedAuthorizationFailed`) with Azure's
message, and the request log records the action and the decision either way. `simulator.authorization.enforce:
false` computes and logs the same decisions without refusing anything.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from sandbox.azure.action_table import (
    LINKED_ASSIGNABLE_SCOPES,
    LINKED_USER_ASSIGNED_IDENTITIES,
    SCOPE_QUERY_SUBSCRIPTIONS,
    ActionRule,
    map_request,
)
from sandbox.azure.conditions import ConditionAttributes
from sandbox.azure.errors import ArmError
from sandbox.azure.grants import find_grant, granted_below
from sandbox.azure.ids import (
    JsonDict,
    normalize_id,
    parse_resource_id,
)
from sandbox.azure.messages import RequestContext
from sandbox.azure.rbac import role_guid
from sandbox.azure.state import CloudState

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
    existing = state.resources.get(context.path)
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
    requested = [str(item) for item in body.get("subscriptions") or []] or sorted(state.resources.known_subscriptions())
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
