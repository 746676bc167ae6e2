"""Provisioned throughput of an account's databases and containers, and what a raise adds to its spare RU/s.

The throughput resources (`.../sqlDatabases/{db}/throughputSettings/default` and the Mongo, Gremlin, Table and
container equivalents) are stored like any resource; the provider that serves and changes them is
sandbox/azure/throughput.py. Cosmos DB (sandbox/azure/cosmos_accounts.py) reads from here how much throughput was
added since the world began, because the CMK encryption runs on spare RU/s: what a raise adds is spare, the workload
does not grow with it. The RU/s each resource had before its first change is the `previous` its first throughput
operation recorded, so the accounting survives a restart with the operation log.
"""

from __future__ import annotations

from typing import Any

from sandbox.azure.ids import JsonDict, id_key
from sandbox.azure.state import CloudState

KIND_THROUGHPUT = "throughput"
THROUGHPUT_SETTINGS = "throughputSettings"
# The account's child types that can hold dedicated throughput, by parent (database) and child (container) type.
DATABASE_TYPES = ("sqlDatabases", "mongodbDatabases", "gremlinDatabases")
CONTAINER_TYPES = {
    "sqldatabases": "containers",
    "mongodbdatabases": "collections",
    "gremlindatabases": "graphs",
}
TABLE_TYPE = "tables"


def provisioned_ru_per_second(body: JsonDict | None) -> float:
    """The RU/s a throughput resource provides at most: its autoscale maximum, else its manual throughput."""
    resource: Any = ((body or {}).get("properties") or {}).get("resource") or {}
    autoscale = resource.get("autoscaleSettings")
    if isinstance(autoscale, dict) and isinstance(autoscale.get("maxThroughput"), int | float):
        return float(autoscale["maxThroughput"])
    throughput = resource.get("throughput")
    return float(throughput) if isinstance(throughput, int | float) else 0.0


def raised_ru_per_second(state: CloudState, account_id: str) -> float:
    """RU/s the account's throughput resources provide beyond what they had when the world began (negative when
    lowered): every succeeded throughput operation of the account, each resource counted from its first."""
    account_key = id_key(account_id)
    first_previous: dict[str, float] = {}
    for operation in sorted(state.operations.all(), key=lambda item: item.start):
        if operation.kind != KIND_THROUGHPUT or id_key(operation.account_id) != account_key:
            continue
        resource_key = id_key(str(operation.changes["body"]["id"]))
        first_previous.setdefault(resource_key, float(operation.changes.get("previous", 0.0)))
    return sum(
        provisioned_ru_per_second(state.resources.get(resource_key)) - previous
        for resource_key, previous in first_previous.items()
    )
