"""The throughput raise's reads and writes through azure-mgmt-cosmosdb (cmk.throughput plans them).

Reads: the account (its API and whether it is serverless), its databases and containers (or tables) and each one's
`throughputSettings/default` (404: no throughput of its own), and Azure Monitor's estimate inputs.

Writes are one step at a time and never blind, so every step is safe to run twice and safe when its reply is lost:
`converge` reads each resource's throughput before writing it, skips those already at their target, and sends at
most one PUT per call (`begin_update_*_throughput` without waiting for its operation). A PUT whose reply was lost is
found by the next call: the resource shows the target (done), or still the old value while Azure runs the update,
and asking again is then answered 412 (another operation holds the account), which only means "wait". While the
CMK encryption runs Azure answers 409: the write is `blocked` until the encryption has ended.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Literal, TypedDict

from azure.core.exceptions import HttpResponseError
from azure.mgmt.cosmosdb import CosmosDBManagementClient

from cmk import clients, inventory
from cmk.arm import describe, is_not_found
from cmk.resource_ids import ResourceId, parse_account_id
from cmk.rollouts import encryption_inputs
from cmk.throughput import ThroughputInventory, ThroughputMode, ThroughputSetting, ThroughputTarget

ConvergeState = Literal["done", "pending", "busy", "blocked", "failed"]
SERVERLESS = "EnableServerless"


class ConvergeStep(TypedDict):
    """done: every target holds (or its resource is gone); pending: this call sent a PUT for `resourceId`; busy:
    another operation holds the account (perhaps that PUT): read again later; blocked: Azure refuses throughput
    changes while the CMK encryption runs (409); failed: the orchestrator's own mark for a step that failed after
    its retries (never returned by converge)."""

    state: ConvergeState
    resourceId: str | None
    detail: str
    atTarget: list[str]
    gone: list[str]


# One API per account: its database and container types, and the SDK's operation group and method names for them.
_APIS: dict[str, tuple[str, str, str, str]] = {
    # api: (operation group, database word in method names, container word, container type in ids)
    "sql": ("sql_resources", "sql_database", "sql_container", "containers"),
    "mongodb": ("mongo_db_resources", "mongo_db_database", "mongo_db_collection", "collections"),
    "gremlin": ("gremlin_resources", "gremlin_database", "gremlin_graph", "graphs"),
}
_DATABASE_TYPES = {"sql": "sqlDatabases", "mongodb": "mongodbDatabases", "gremlin": "gremlinDatabases"}


def account_api(kind: str, capabilities: list[str]) -> str | None:
    """The account's API as ARM names its resources; None for Cassandra (not supported by CMK on existing ones)."""
    if kind == "MongoDB" or "EnableMongo" in capabilities:
        return "mongodb"
    if "EnableGremlin" in capabilities:
        return "gremlin"
    if "EnableTable" in capabilities:
        return "table"
    if "EnableCassandra" in capabilities:
        return None
    return "sql"


def read_inventory(account_id: str) -> ThroughputInventory:
    account = parse_account_id(account_id)
    facts = inventory.read_account(account)
    size, spare = encryption_inputs(account_id)
    result: ThroughputInventory = {
        "accountId": str(account),
        "serverless": False,
        "settings": [],
        "dataSizeBytes": size,
        "spareRuPerSecond": spare,
    }
    if facts is None:
        return result
    if SERVERLESS in facts["capabilities"]:
        result["serverless"] = True
        return result
    api = account_api(facts["kind"], facts["capabilities"])
    if api is None:
        return result
    client = clients.cosmos(account.subscription_id)
    for parent_id in _parents(client, account, api):
        setting = _read_setting(client, parent_id)
        if setting is not None:
            result["settings"].append(setting)
    return result


def _parents(client: CosmosDBManagementClient, account: ResourceId, api: str) -> list[str]:
    """Every database and container (or table) of the account, databases first."""
    base = str(account)
    group, name = account.resource_group, account.name
    if api == "table":
        return [f"{base}/tables/{table.name}" for table in client.table_resources.list_tables(group, name)]
    operations_name, database_word, container_word, container_type = _APIS[api]
    operations = getattr(client, operations_name)
    parents: list[str] = []
    for database in getattr(operations, f"list_{database_word}s")(group, name):
        database_id = f"{base}/{_DATABASE_TYPES[api]}/{database.name}"
        parents.append(database_id)
        for container in getattr(operations, f"list_{container_word}s")(group, name, database.name):
            parents.append(f"{database_id}/{container_type}/{container.name}")
    return parents


def _methods(
    client: CosmosDBManagementClient, parent_id: str
) -> tuple[Callable[..., Any], Callable[..., Any], list[str]]:
    """(get throughput, begin update throughput, their positional arguments) for a database, container or table."""
    parts = parent_id.strip("/").split("/")
    group, account_name, rest = parts[3], parts[7], parts[8:]
    if rest[0].lower() == "tables":
        operations: Any = client.table_resources
        word = "table"
    else:
        api = next(api for api, type_name in _DATABASE_TYPES.items() if type_name.lower() == rest[0].lower())
        operations_name, database_word, container_word, _ = _APIS[api]
        operations = getattr(client, operations_name)
        word = database_word if len(rest) == 2 else container_word
    names = [group, account_name, *rest[1::2]]
    return getattr(operations, f"get_{word}_throughput"), getattr(operations, f"begin_update_{word}_throughput"), names


def _read_setting(client: CosmosDBManagementClient, parent_id: str) -> ThroughputSetting | None:
    get, _update, names = _methods(client, parent_id)
    try:
        body = get(*names).as_dict()
    except HttpResponseError as error:
        if is_not_found(error):
            return None  # no throughput of its own (it shares its database's)
        raise
    resource = (body.get("properties") or {}).get("resource") or {}
    autoscale = resource.get("autoscaleSettings")
    mode: ThroughputMode = "manual"
    value = resource.get("throughput")
    if isinstance(autoscale, dict) and autoscale.get("maxThroughput"):
        mode, value = "autoscale", autoscale["maxThroughput"]  # what autoscale may scale to, not where it is now
    return {
        "resourceId": parent_id,
        "mode": mode,
        "ruPerSecond": int(value or 0),
        "minimumRuPerSecond": _int(resource.get("minimumThroughput")) or 0,
        "instantMaximumRuPerSecond": _int(resource.get("instantMaximumThroughput")),
    }


def _int(value: Any) -> int | None:
    try:
        return int(value) if value is not None else None
    except (TypeError, ValueError):
        return None


def converge(account_id: str, targets: list[ThroughputTarget]) -> ConvergeStep:
    """One step toward `targets`: read each, write the first one that differs (one PUT at most), say where it is."""
    account = parse_account_id(account_id)
    client = clients.cosmos(account.subscription_id)
    at_target: list[str] = []
    gone: list[str] = []
    for target in targets:
        setting = _read_setting(client, target["resourceId"])
        if setting is None:
            gone.append(target["resourceId"])  # deleted meanwhile (or its throughput): nothing left to set
            continue
        if setting["ruPerSecond"] == target["ruPerSecond"] and setting["mode"] == target["mode"]:
            at_target.append(target["resourceId"])
            continue
        _get, update, names = _methods(client, target["resourceId"])
        resource: dict[str, Any] = (
            {"autoscaleSettings": {"maxThroughput": target["ruPerSecond"]}}
            if target["mode"] == "autoscale"
            else {"throughput": target["ruPerSecond"]}
        )
        try:
            update(*names, {"properties": {"resource": resource}}, polling=False)
        except HttpResponseError as error:
            if error.status_code == 412:
                return _step("busy", target, describe(error), at_target, gone)
            if error.status_code == 409:
                return _step("blocked", target, describe(error), at_target, gone)
            raise
        sent = f"{setting['ruPerSecond']} -> {target['ruPerSecond']} RU/s ({target['mode']})"
        return _step("pending", target, sent, at_target, gone)
    return {"state": "done", "resourceId": None, "detail": "every target holds", "atTarget": at_target, "gone": gone}


def _step(
    state: ConvergeState, target: ThroughputTarget, detail: str, at_target: list[str], gone: list[str]
) -> ConvergeStep:
    return {"state": state, "resourceId": target["resourceId"], "detail": detail, "atTarget": at_target, "gone": gone}
