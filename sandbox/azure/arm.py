"""Azure Resource Manager's front door: what ARM does before and after a resource provider's handler.

In ARM's order: the subscription throttle (or Resource Graph's per-user quota), the subscription check,
authorization (sandbox/azure/authorizer.py), then the handler the route table names (sandbox/azure/routing.py), and a
list the caller may read only part of answered with that part.
"""

from __future__ import annotations

from sandbox.azure import (
    authorization,
    authorizer,
    cosmos_accounts,
    cosmos_operations,
    keyvault,
    monitor,
    resource_graph,
    resources,
    throughput,
)
from sandbox.azure.errors import ArmError
from sandbox.azure.ids import ACCOUNT_TYPE
from sandbox.azure.messages import Reply, RequestContext
from sandbox.azure.routing import SCOPE_ANY, SCOPE_TENANT_QUERY, RouteTable, no_route
from sandbox.azure.state import CloudState
from sandbox.azure.throttling import ArmThrottle, ResourceGraphQuota

# Precedence: the first template that matches a path owns it. Role assignments and definitions live at any scope
# (so they come first); the generic resource reads come last.
ROUTE_TABLE = RouteTable.join(
    resource_graph.ROUTES,
    authorization.ROUTES,
    cosmos_accounts.ROUTES,
    cosmos_operations.ROUTES,
    throughput.ROUTES,
    keyvault.ROUTES,
    monitor.ROUTES,
    resources.routes(views={ACCOUNT_TYPE: cosmos_accounts.account_view}),
)


class ArmRouter:
    def __init__(self, state: CloudState, table: RouteTable = ROUTE_TABLE) -> None:
        self.state = state
        self.table = table
        self.throttle = ArmThrottle(state.settings.throttling)
        self.resource_graph_quota = ResourceGraphQuota(state.settings.throttling)

    def dispatch(self, context: RequestContext) -> Reply:
        state = self.state
        path = "/" + context.path.strip("/")
        segments = [segment for segment in path.split("/") if segment]
        resolved = self.table.resolve(path, "/" + "/".join(segments))
        if resolved is not None and resolved.scope == SCOPE_TENANT_QUERY:
            handler = resolved.handler_for(context.method)
            quota = self.resource_graph_quota.take(context.principal_id, state.now())
            try:
                authorizer.authorize(state, context)
            except ArmError as error:
                error.headers = {**quota, **error.headers}
                raise
            reply = handler(state, context, resolved.match)
            reply.headers.update(quota)
            return reply
        throttle_headers: dict[str, str] = {}
        in_subscription = len(segments) >= 2 and segments[0].lower() == "subscriptions"
        if in_subscription:
            throttle_headers = self.throttle.take(segments[1], context.principal_id, context.method, state.now())
        try:
            if resolved is None or resolved.scope != SCOPE_ANY:
                if not in_subscription:
                    raise no_route(context.method, path)
                if segments[1].lower() not in state.resources.known_subscriptions():
                    raise ArmError(404, "SubscriptionNotFound", f"The subscription '{segments[1]}' could not be found.")
            authorizer.authorize(state, context)
            if resolved is None:
                raise no_route(context.method, path)
            reply = resolved.handler_for(context.method)(state, context, resolved.match)
        except ArmError as error:
            error.headers = {**throttle_headers, **error.headers}
            raise
        reply.headers = {**throttle_headers, **reply.headers}
        decision = context.authorization
        if decision is not None and decision.partial and isinstance(reply.body, dict):
            items = reply.body.get("value")
            if isinstance(items, list):  # a list the caller may read only part of: ARM answers with that part
                reply.body = {**reply.body, "value": authorizer.filter_visible(state, context, items)}
        return reply
