"""Routing of Azure Resource Manager requests to the resource providers the simulator implements."""

from __future__ import annotations

from sandbox.azure import authorization, cosmos, keyvault, monitor, rbac, resource_graph
from sandbox.azure.engine import CloudState, Reply, RequestContext
from sandbox.azure.errors import ArmError, resource_not_found
from sandbox.azure.ids import ACCOUNT_TYPE, SQL_ROLE_ASSIGNMENT_TYPE, VAULT_TYPE, id_key, parse_resource_id
from sandbox.azure.throttling import ArmThrottle, ResourceGraphQuota

RESOURCE_GRAPH_PATH = "/providers/microsoft.resourcegraph/resources"
_ROLE_ASSIGNMENT_SEGMENTS = ("providers", "microsoft.authorization", "roleassignments")
_ROLE_DEFINITION_SEGMENTS = ("providers", "microsoft.authorization", "roledefinitions")


class ArmRouter:
    def __init__(self, state: CloudState) -> None:
        self.state = state
        self.throttle = ArmThrottle(state.settings.throttling)
        self.resource_graph_quota = ResourceGraphQuota(state.settings.throttling)

    def dispatch(self, context: RequestContext) -> Reply:
        state = self.state
        path = "/" + context.path.strip("/")
        segments = [segment for segment in path.split("/") if segment]
        lowered = [segment.lower() for segment in segments]
        if path.lower() == RESOURCE_GRAPH_PATH:
            if context.method != "POST":
                raise _method_not_allowed(context)
            quota = self.resource_graph_quota.take(context.principal_id, state.now())
            try:
                rbac.authorize(state, context)
            except ArmError as error:
                error.headers = {**quota, **error.headers}
                raise
            reply = resource_graph.query_resources(
                state, context, visible=lambda resource_id: rbac.visible(state, context, resource_id)
            )
            reply.headers.update(quota)
            return reply
        throttle_headers: dict[str, str] = {}
        if len(segments) >= 2 and lowered[0] == "subscriptions":
            throttle_headers = self.throttle.take(segments[1], context.principal_id, context.method, state.now())
        try:
            reply = self._route(context, path, segments, lowered)
        except ArmError as error:
            error.headers = {**throttle_headers, **error.headers}
            raise
        reply.headers = {**throttle_headers, **reply.headers}
        decision = context.authorization
        if decision is not None and decision.partial and isinstance(reply.body, dict):
            items = reply.body.get("value")
            if isinstance(items, list):  # a list the caller may read only part of: ARM answers with that part
                reply.body = {**reply.body, "value": rbac.filter_visible(state, context, items)}
        return reply

    def _route(self, context: RequestContext, path: str, segments: list[str], lowered: list[str]) -> Reply:
        state = self.state
        role_index = _find_sequence(lowered, _ROLE_ASSIGNMENT_SEGMENTS)
        if role_index is not None:
            rbac.authorize(state, context)
            return self._role_assignments(context, segments, role_index)
        definition_index = _find_sequence(lowered, _ROLE_DEFINITION_SEGMENTS)
        if definition_index is not None:
            rbac.authorize(state, context)
            return self._role_definitions(context, segments, definition_index)
        if len(segments) < 2 or lowered[0] != "subscriptions":
            raise ArmError(404, "NotFound", f"No route for '{context.method} {path}'.")
        if lowered[1] not in state.known_subscriptions():
            raise ArmError(404, "SubscriptionNotFound", f"The subscription '{segments[1]}' could not be found.")
        rbac.authorize(state, context)
        # /subscriptions/{s}/providers/Microsoft.DocumentDB/locations/{region}/operationsStatus/{id}
        if (
            len(lowered) == 8
            and lowered[2:5] == ["providers", "microsoft.documentdb", "locations"]
            and lowered[6] == "operationsstatus"
        ):
            _require_method(context, "GET")
            return cosmos.operation_status(state, context, segments[1], segments[5], segments[7])
        # {account}/providers/Microsoft.Insights/metrics: Azure Monitor's extension route on the account
        if len(lowered) > 3 and lowered[-3:] == ["providers", "microsoft.insights", "metrics"]:
            _require_method(context, "GET")
            return monitor.account_metrics(state, context, "/" + "/".join(segments[:-3]))
        parsed = parse_resource_id(path)
        if parsed is None or parsed.namespace is None:
            raise ArmError(404, "NotFound", f"No route for '{context.method} {path}'.")
        type_key = parsed.type_key
        items = len(parsed.name_segments)
        types = len(parsed.type_segments)
        # .../databaseAccounts/{a}/operationResults/{id}
        if type_key == ACCOUNT_TYPE + "/operationresults" and items == 2:
            _require_method(context, "GET")
            account_id = "/".join(path.split("/")[:-2])
            return cosmos.operation_result(state, context, account_id, segments[-1])
        # .../vaults/{v}/accessPolicies/{add|replace|remove}
        if type_key == VAULT_TYPE + "/accesspolicies" and items == 2:
            _require_method(context, "PUT")
            vault_id = "/".join(path.split("/")[:-2])
            return keyvault.update_access_policy(state, context, vault_id, segments[-1])
        if type_key == SQL_ROLE_ASSIGNMENT_TYPE and items == 2 and context.method == "PUT":
            return cosmos.put_sql_role_assignment(state, context, path)
        if type_key == ACCOUNT_TYPE and items == 1:
            if context.method == "PATCH":
                return cosmos.patch_account(state, context, path)
            if context.method == "PUT":
                return cosmos.put_account(state, context, path)
            _require_method(context, "GET")
            return cosmos.get_account(state, context, path)
        _require_method(context, "GET")
        if items == types:
            found = state.get(path)
            if found is None:
                raise resource_not_found(path)
            return Reply(200, found)
        if items == types - 1:
            return self._collection(context, path, parsed.type_key)
        raise ArmError(404, "NotFound", f"No route for '{context.method} {path}'.")

    def _collection(self, context: RequestContext, path: str, type_key: str) -> Reply:
        """`{parent}/{type}`: every resource of that type under the parent (subscription, group or resource)."""
        state = self.state
        parent_prefix = id_key("/".join(path.rstrip("/").split("/")[:-1]))
        if parent_prefix.endswith("/providers/" + type_key.split("/")[0]):
            parent_prefix = parent_prefix[: -len("/providers/" + type_key.split("/")[0])]
        if "/" not in type_key.split("/", 1)[1]:
            # top-level type: the parent is a subscription or resource group
            parent_prefix = parent_prefix.split("/providers/")[0]
        values = []
        for key in state.keys_of_type(type_key):
            if not key.startswith(parent_prefix + "/"):
                continue
            body = state.resources[key]
            if type_key == ACCOUNT_TYPE:
                body = cosmos.account_view(state, body, context.api_version, context.base_url)
            values.append(body)
        return Reply(200, {"value": values})

    def _role_assignments(self, context: RequestContext, segments: list[str], index: int) -> Reply:
        state = self.state
        scope = "/" + "/".join(segments[:index]) if index > 0 else "/"
        tail = segments[index + 3 :]
        if not tail:
            _require_method(context, "GET")
            return authorization.list_role_assignments(state, scope, context.query.get("$filter"))
        if len(tail) != 1:
            raise ArmError(404, "NotFound", f"No route for '{context.method} {context.path}'.")
        name = tail[0]
        if context.method == "PUT":
            return authorization.put_role_assignment(state, context, scope, name)
        if context.method == "DELETE":
            return authorization.delete_role_assignment(state, context, scope, name)
        _require_method(context, "GET")
        return authorization.get_role_assignment(state, scope, name)

    def _role_definitions(self, context: RequestContext, segments: list[str], index: int) -> Reply:
        state = self.state
        scope = "/" + "/".join(segments[:index]) if index > 0 else "/"
        tail = segments[index + 3 :]
        if not tail:
            _require_method(context, "GET")
            return authorization.list_role_definitions(state, scope, context.query.get("$filter"))
        if len(tail) != 1:
            raise ArmError(404, "NotFound", f"No route for '{context.method} {context.path}'.")
        if context.method == "PUT":
            return authorization.put_role_definition(state, context, scope, tail[0])
        if context.method == "DELETE":
            return authorization.delete_role_definition(state, scope, tail[0])
        _require_method(context, "GET")
        return authorization.get_role_definition(state, scope, tail[0])


def _find_sequence(haystack: list[str], needle: tuple[str, ...]) -> int | None:
    for index in range(len(haystack) - len(needle), -1, -1):
        if tuple(haystack[index : index + len(needle)]) == needle:
            return index
    return None


def _require_method(context: RequestContext, *allowed: str) -> None:
    if context.method not in allowed:
        raise _method_not_allowed(context)


def _method_not_allowed(context: RequestContext) -> ArmError:
    return ArmError(
        405,
        "MethodNotAllowed",
        f"The requested resource does not support http method '{context.method}'.",
    )
