"""ACTION_TABLE: every ARM request the simulator serves, mapped to the action ARM authorizes and where it checks it."""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache

from sandbox.azure.ids import (
    normalize_id,
    parse_resource_id,
)

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
