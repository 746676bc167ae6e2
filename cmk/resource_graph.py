"""Azure Resource Graph: one paged query across subscriptions, for discovery and for finding resources by name.

The graph is a cached snapshot of ARM (it can lag writes by minutes), so callers decide nothing from it but where
to look; what they act on they re-read through ARM.
"""

from __future__ import annotations

from typing import Any

from azure.mgmt.resourcegraph.models import QueryRequest, QueryRequestOptions

from cmk import clients

PAGE_SIZE = 1000


def kql_string(value: str) -> str:
    """A KQL string literal."""
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


def query_all(query: str, subscriptions: list[str] | None) -> tuple[list[dict[str, Any]], int]:
    """Every row of `query` (following $skipToken) and the number of pages read.

    `subscriptions=None` asks Resource Graph for every subscription the app's identity can read (its tenant and any
    subscription delegated to it through Azure Lighthouse): Resource Graph returns only resources the caller may
    read, and a request without `subscriptions` is evaluated at that scope (api-version 2021-03-01 and later).
    """
    client = clients.resource_graph()
    rows: list[dict[str, Any]] = []
    token: str | None = None
    pages = 0
    while True:
        options = QueryRequestOptions(top=PAGE_SIZE, skip_token=token, result_format="objectArray")
        response = client.resources(QueryRequest(subscriptions=subscriptions, query=query, options=options))
        pages += 1
        data: Any = response.data or []
        rows.extend(data if isinstance(data, list) else [])
        token = response.skip_token
        if not token:
            return rows, pages
