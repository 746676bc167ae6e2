"""Provisioned throughput of databases and containers: `{parent}/throughputSettings/default`, GET and PUT.

Parents: `sqlDatabases/{db}[/containers/{c}]`, `mongodbDatabases/{db}[/collections/{c}]`,
`gremlinDatabases/{db}[/graphs/{g}]` and `tables/{t}` of an account, what `azure-mgmt-cosmosdb`'s
`get_*_throughput` / `begin_update_*_throughput` send. The behaviours and their sources are in
sandbox/worlds/README.md ("Throughput"). In short:

* GET answers the stored body; a parent without dedicated throughput (a container of a shared-throughput database,
  a database without its own) is 404 NotFound; on a serverless account every read or write of throughput is 400
  "Reading or replacing offers is not supported for serverless accounts." (the message Cosmos DB sends: quoted in
  Azure/azure-sdk-for-java's throughput control, which handles that 400, and in Azure/cosmos-explorer).
* PUT is an asynchronous account operation like the account PATCH: 202 with Azure-AsyncOperation and Location,
  `updateOperationSeconds` long, holding the account's lock, so it is refused with 409 while the CMK encryption
  runs (control-plane changes are blocked until it completes: docs/azure-cmk-facts.md §1.1) and 412 while any
  other operation runs. GET shows the old value until the operation completes.
* A PUT must keep the resource's mode: `throughput` on a manual resource (at least its `minimumThroughput`, a
  multiple of 100), `autoscaleSettings.maxThroughput` on an autoscale one (at least 1000, a multiple of 1000);
  switching mode is Azure's separate migrate action, refused here with 400.
* What a raise adds is spare RU/s for an encryption that starts afterwards (sandbox/azure/throughput_model.py).
"""

from __future__ import annotations

import copy
from typing import Any

from sandbox.azure.cosmos_accounts import Plan, refuse_if_locked, start_operation
from sandbox.azure.errors import bad_request, resource_not_found
from sandbox.azure.ids import JsonDict
from sandbox.azure.messages import Reply, RequestContext
from sandbox.azure.routing import RouteMatch, RouteTable
from sandbox.azure.state import CloudState
from sandbox.azure.throughput_model import (
    CONTAINER_TYPES,
    DATABASE_TYPES,
    KIND_THROUGHPUT,
    TABLE_TYPE,
    THROUGHPUT_SETTINGS,
    provisioned_ru_per_second,
)

SERVERLESS_MESSAGE = "Reading or replacing offers is not supported for serverless accounts."
MANUAL_STEP = 100
AUTOSCALE_MINIMUM = 1000
AUTOSCALE_STEP = 1000
DEFAULT_MINIMUM_THROUGHPUT = 400
MAXIMUM_THROUGHPUT = 1_000_000

ROUTES = RouteTable()
_ACCOUNT = (
    "/subscriptions/{subscription}/resourceGroups/{group}/providers/Microsoft.DocumentDB/databaseAccounts/{account}"
)
_SETTINGS = f"/{THROUGHPUT_SETTINGS}/default"


def _checked(state: CloudState, path: str) -> tuple[JsonDict, JsonDict]:
    """The account and the throughput resource at `path`, or the error Cosmos DB answers."""
    account_id = "/".join(path.split("/")[:9])  # /subscriptions/{s}/resourceGroups/{g}/providers/{ns}/{type}/{a}
    account = state.resources.get(account_id)
    if account is None:
        raise resource_not_found(account_id)
    capabilities = {str(c.get("name", "")).lower() for c in (account.get("properties") or {}).get("capabilities") or []}
    if "enableserverless" in capabilities:
        raise bad_request(SERVERLESS_MESSAGE)
    parent = path[: -len(_SETTINGS)]
    if state.resources.get(parent) is None:
        raise resource_not_found(parent)
    settings = state.resources.get(path)
    if settings is None:
        raise resource_not_found(path)
    return account, settings


def get_throughput(state: CloudState, context: RequestContext, match: RouteMatch) -> Reply:
    _account, settings = _checked(state, match.path)
    return Reply(200, settings)


def put_throughput(state: CloudState, context: RequestContext, match: RouteMatch) -> Reply:
    account, settings = _checked(state, match.path)
    sent = _sent_resource(context.body)
    current: JsonDict = (settings.get("properties") or {}).get("resource") or {}
    updated = copy.deepcopy(settings)
    resource: JsonDict = updated.setdefault("properties", {}).setdefault("resource", {})
    if isinstance(current.get("autoscaleSettings"), dict):
        maximum = _number(sent.get("autoscaleSettings", {}), "maxThroughput", "autoscale")
        if maximum < AUTOSCALE_MINIMUM or maximum % AUTOSCALE_STEP or maximum > MAXIMUM_THROUGHPUT:
            raise bad_request(
                f"The autoscale maximum throughput {maximum} is not valid: it must be a multiple of {AUTOSCALE_STEP} "
                f"from {AUTOSCALE_MINIMUM} to {MAXIMUM_THROUGHPUT}."
            )
        resource["autoscaleSettings"] = {**current["autoscaleSettings"], "maxThroughput": maximum}
        resource["throughput"] = maximum // 10  # autoscale scales between a tenth of its maximum and the maximum
    else:
        if "autoscaleSettings" in sent:
            _number({}, "throughput", "manual")
        throughput = _number(sent, "throughput", "manual")
        minimum = int(str(current.get("minimumThroughput") or DEFAULT_MINIMUM_THROUGHPUT))
        if throughput < minimum or throughput % MANUAL_STEP or throughput > MAXIMUM_THROUGHPUT:
            raise bad_request(
                f"The offer throughput {throughput} is not valid: it must be a multiple of {MANUAL_STEP} from the "
                f"resource's minimum {minimum} to {MAXIMUM_THROUGHPUT}."
            )
        resource["throughput"] = throughput
    refuse_if_locked(state, account)
    changes = {"body": updated, "previous": provisioned_ru_per_second(settings)}
    plan = Plan(KIND_THROUGHPUT, state.settings.update_operation_seconds, "Succeeded", None)
    reply = start_operation(state, context, account, plan, changes)
    return Reply(202, None, headers=reply.headers, empty=True)


def _sent_resource(body: Any) -> JsonDict:
    resource = ((body or {}).get("properties") or {}).get("resource") if isinstance(body, dict) else None
    if not isinstance(resource, dict):
        raise bad_request("The request content must be a JSON object with 'properties.resource'.", "BadRequest")
    if "throughput" in resource and "autoscaleSettings" in resource:
        raise bad_request("Specify either 'throughput' or 'autoscaleSettings', not both.")
    return resource


def _number(resource: Any, name: str, mode: str) -> int:
    value = resource.get(name) if isinstance(resource, dict) else None
    if not isinstance(value, int) or isinstance(value, bool):
        # Cosmos DB's answer to a manual offer sent autoscale settings (pulumi/pulumi-azure-native#4189); the
        # other direction is answered alike.
        raise bad_request(
            f"Updating offer to {'manual' if mode == 'autoscale' else 'autoscale'} throughput is not allowed. "
            "Please invoke migration API to migrate this offer."
        )
    return value


for _database in DATABASE_TYPES:
    _parent = f"{_ACCOUNT}/{_database}/{{database}}"
    ROUTES.add("GET", _parent + _SETTINGS, get_throughput)
    ROUTES.add("PUT", _parent + _SETTINGS, put_throughput)
    _child = f"{_parent}/{CONTAINER_TYPES[_database.lower()]}/{{container}}"
    ROUTES.add("GET", _child + _SETTINGS, get_throughput)
    ROUTES.add("PUT", _child + _SETTINGS, put_throughput)
ROUTES.add("GET", f"{_ACCOUNT}/{TABLE_TYPE}/{{table}}{_SETTINGS}", get_throughput)
ROUTES.add("PUT", f"{_ACCOUNT}/{TABLE_TYPE}/{{table}}{_SETTINGS}", put_throughput)
