"""ARM's generic reads: any stored resource by its id, and a collection `{parent}/{type}` of them.

The routes here come last in the table: a provider's own route for a path wins (sandbox/azure/arm.py).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

from sandbox.azure.errors import resource_not_found
from sandbox.azure.ids import JsonDict, id_key, parse_resource_id
from sandbox.azure.messages import Reply, RequestContext
from sandbox.azure.routing import RouteMatch, RouteTable
from sandbox.azure.state import CloudState

# The body a GET shows for a stored resource of one type (`cosmos_accounts.account_view` for accounts); stored as is
# otherwise.
View = Callable[[CloudState, JsonDict, str, str], JsonDict]

_RESOURCE = "/subscriptions/{subscription}[/resourceGroups/{group}]/providers/{namespace}[/{types:path}]"


def get_resource(state: CloudState, context: RequestContext, match: RouteMatch) -> Reply:
    found = state.resources.get(match.path)
    if found is None:
        raise resource_not_found(match.path)
    return Reply(200, found)


def routes(views: Mapping[str, View]) -> RouteTable:
    """The generic GETs; `views` by lowercased resource type."""
    table = RouteTable()

    def resource_or_collection(state: CloudState, context: RequestContext, match: RouteMatch) -> Reply:
        parsed = parse_resource_id(match.path)
        assert parsed is not None  # the template is a resource id's shape
        items, types = len(parsed.name_segments), len(parsed.type_segments)
        if items == types:
            return get_resource(state, context, match)
        return collection(state, context, match.path, parsed.type_key, views.get(parsed.type_key))

    # `{namespace}` then type/name pairs: a resource; one type more than names: a collection of that type.
    table.add("GET", _RESOURCE, resource_or_collection)
    return table


def collection(state: CloudState, context: RequestContext, path: str, type_key: str, view: View | None) -> Reply:
    """`{parent}/{type}`: every resource of that type under the parent (subscription, group or resource)."""
    parent_prefix = id_key("/".join(path.rstrip("/").split("/")[:-1]))
    if parent_prefix.endswith("/providers/" + type_key.split("/")[0]):
        parent_prefix = parent_prefix[: -len("/providers/" + type_key.split("/")[0])]
    if "/" not in type_key.split("/", 1)[1]:
        # top-level type: the parent is a subscription or resource group
        parent_prefix = parent_prefix.split("/providers/")[0]
    values = []
    for key in state.resources.keys_of_type(type_key):
        if not key.startswith(parent_prefix + "/"):
            continue
        body = state.resources.get(key)
        assert body is not None  # a key of the type index
        if view is not None:
            body = view(state, body, context.api_version, context.base_url)
        values.append(body)
    return Reply(200, {"value": values})
