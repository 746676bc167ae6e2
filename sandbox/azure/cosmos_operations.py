"""The asynchronous operations of Cosmos DB accounts: their URLs, and what a finished one changes.

An account write (sandbox/azure/cosmos_accounts.py, and throughput in sandbox/azure/throughput.py) starts an
operation and answers with its Azure-AsyncOperation and Location URLs; this module serves both, only to the
principal that started it, and applies the operation when it completes on the simulated clock (the operation
store's `on_complete` and `on_timer` hooks, wired in sandbox/azure/simulator.py). The behaviours and their sources
are in sandbox/worlds/README.md ("Behaviour reference").
"""

from __future__ import annotations

import contextlib
import copy

from sandbox.azure.cosmos_accounts import (
    ACCOUNT_TEMPLATE,
    KIND_ENABLE_CMK,
    KIND_ROTATE_CMK,
    KIND_SQL_ROLE_ASSIGNMENT,
    KIND_UNCHANGED,
    account_reply,
)
from sandbox.azure.cosmos_identity import resolve_identity
from sandbox.azure.errors import ArmError
from sandbox.azure.ids import JsonDict, id_key, parse_key_uri, same_key_uri
from sandbox.azure.messages import Reply, RequestContext, iso
from sandbox.azure.operation_store import Operation
from sandbox.azure.routing import RouteMatch, RouteTable
from sandbox.azure.state import CloudState
from sandbox.azure.throughput_model import KIND_THROUGHPUT
from sandbox.azure.vault_store import current_key_version, find_key, find_vault

# The operation name of the resource events an account write raises (the request's action is in action_table.py).
ACTION_WRITE = "Microsoft.DocumentDB/databaseAccounts/write"

READ_ONLY_PROPERTIES = frozenset(
    {
        "provisioningState",
        "documentEndpoint",
        "databaseAccountOfferType",
        "writeLocations",
        "readLocations",
        "failoverPolicies",
        "privateEndpointConnections",
        "instanceId",
        "keysMetadata",
        "keyVaultKeyUriVersion",
        "customerManagedKeyStatus",
    }
)
CMK_CONFIRMED = "Access to the configured customer managed key confirmed."
TIMER_CONFIRM_KEY_STATUS = "confirmCustomerManagedKeyStatus"
ACTION_SQL_ROLE_ASSIGNMENT_WRITE = "Microsoft.DocumentDB/databaseAccounts/sqlRoleAssignments/write"

ROUTES = RouteTable()


# ----------------------------------------------------------------------------- operation URLs


def _visible_operation(state: CloudState, context: RequestContext, operation_id: str) -> Operation:
    operation = state.operations.get(operation_id)
    # RPC: the RP validates that the caller is the identity that started the operation; others get a 404 so that
    # operation ids do not leak across principals.
    if operation is None or operation.requested_by.lower() != context.principal_id.lower():
        raise ArmError(404, "NotFound", f"The operation '{operation_id}' was not found.")
    return operation


@ROUTES.route(
    "GET",
    "/subscriptions/{subscription}/providers/Microsoft.DocumentDB/locations/{region}/operationsStatus/{operation}",
)
def operation_status(state: CloudState, context: RequestContext, match: RouteMatch) -> Reply:
    """The Azure-AsyncOperation URL: subscription-scoped, as Cosmos DB's is."""
    subscription_id, region, operation_id = match["subscription"], match["region"], match["operation"]
    operation = _visible_operation(state, context, operation_id)
    if operation.subscription_id.lower() != subscription_id.lower() or operation.region != region.lower():
        raise ArmError(404, "NotFound", f"The operation '{operation_id}' was not found.")
    now = state.now()
    if operation.running:
        status = "Dequeued" if now - operation.start < state.settings.dequeued_seconds else "InProgress"
    else:
        status = operation.status
    body: JsonDict = {"status": status}
    if state.settings.operation_status_detail:
        span = max(operation.end - operation.start, 1e-9)
        body = {
            "id": context.path,
            "name": operation.id,
            "status": status,
            "startTime": iso(operation.start),
            **({"endTime": iso(operation.completed_at)} if operation.completed_at is not None else {}),
            "percentComplete": 100.0
            if not operation.running
            else round(min(99.0, (now - operation.start) / span * 100), 1),
        }
    if operation.status == "Failed" and operation.error is not None:
        body["error"] = operation.error
    headers = {}
    if operation.running and state.settings.async_retry_after_seconds:
        headers["Retry-After"] = str(state.settings.async_retry_after_seconds)
    return Reply(200, body, headers=headers)


@ROUTES.route("GET", ACCOUNT_TEMPLATE + "/operationResults/{operation}")
def operation_result(state: CloudState, context: RequestContext, match: RouteMatch) -> Reply:
    """The Location URL: 202 while the operation runs, then the account (or the operation's error)."""
    account_id, operation_id = "/".join(match.path.split("/")[:-2]), match["operation"]
    operation = _visible_operation(state, context, operation_id)
    if id_key(operation.account_id) != id_key(account_id):
        raise ArmError(404, "NotFound", f"The operation '{operation_id}' was not found.")
    if operation.running:
        headers = {"Location": f"{context.base_url}{context.path}?api-version={context.api_version}"}
        if state.settings.async_retry_after_seconds:
            headers["Retry-After"] = str(state.settings.async_retry_after_seconds)
        return Reply(202, None, headers=headers, empty=True)
    if operation.status == "Failed":
        error = operation.error or {"code": "InternalServerError", "message": "The operation failed."}
        status = 500 if error.get("code") == "InternalServerError" else 400
        raise ArmError(status, str(error.get("code")), str(error.get("message")), details=error.get("details"))
    return account_reply(state, context, account_id)


# ----------------------------------------------------------------------------- completion


def complete_operation(state: CloudState, operation: Operation) -> None:
    """Apply a finished operation to the account (on success) and raise its ARM event."""
    account = state.resources.get(operation.account_id)
    if account is None:
        return
    resource_id, action = str(account["id"]), ACTION_WRITE
    if operation.kind == KIND_SQL_ROLE_ASSIGNMENT:
        resource_id, action = str(operation.changes["id"]), ACTION_SQL_ROLE_ASSIGNMENT_WRITE
        if operation.outcome == "Succeeded":
            state.resources.put(copy.deepcopy(operation.changes))
    elif operation.kind == KIND_THROUGHPUT:
        changed = operation.changes["body"]
        resource_id, action = str(changed["id"]), f"{changed['type']}/write"
        if operation.outcome == "Succeeded":
            state.resources.put(copy.deepcopy(changed))
    elif operation.outcome == "Succeeded":
        state.resources.put(_apply(state, account, operation))
    state.hooks.resource_written(
        None,
        resource_id,
        action,
        operation.outcome,
        claims=operation.requested_by_claims,
        http_method=operation.request_method,
        http_url=operation.request_url,
    )


def _apply(state: CloudState, account: JsonDict, operation: Operation) -> JsonDict:
    updated = copy.deepcopy(account)
    properties: JsonDict = updated.setdefault("properties", {})
    changes = operation.changes
    if operation.kind in (KIND_ENABLE_CMK, KIND_ROTATE_CMK):
        sent = str(changes["properties"]["keyVaultKeyUri"])
        properties["keyVaultKeyUri"] = sent
        parsed = parse_key_uri(sent)
        vault = find_vault(state.resources, parsed.vault_name) if parsed is not None else None
        key = find_key(state.resources, vault, parsed.key_name) if vault is not None and parsed is not None else None
        version = parsed.version if parsed is not None and parsed.version else None
        properties["keyVaultKeyUriVersion"] = version or (current_key_version(key) if key is not None else None)
        lag = _key_status_lag(state, operation)
        if lag > 0:
            # The encryption has succeeded, but the account does not confirm the key yet (see keyStatusLagSeconds).
            properties.pop("customerManagedKeyStatus", None)
            state.operations.add_timer(
                {
                    "id": f"{TIMER_CONFIRM_KEY_STATUS}/{operation.id}",
                    "kind": TIMER_CONFIRM_KEY_STATUS,
                    "dueAt": (operation.completed_at or operation.end) + lag,
                    "accountId": operation.account_id,
                    "keyUri": sent,
                }
            )
        else:
            properties["customerManagedKeyStatus"] = CMK_CONFIRMED
        return updated
    if operation.kind == KIND_UNCHANGED:
        return updated
    if "tags" in changes and changes["tags"] is not None:
        updated["tags"] = copy.deepcopy(changes["tags"])
    if "identity" in changes and changes["identity"] is not None:
        # If a user-assigned identity vanished mid-operation, the identity stays as it was.
        with contextlib.suppress(ArmError):
            updated["identity"] = resolve_identity(state, account, changes["identity"], final=True)
    for name, value in (changes.get("properties") or {}).items():
        if name not in READ_ONLY_PROPERTIES:  # ARM ignores read-only properties in a PATCH body
            properties[name] = copy.deepcopy(value)
    return updated


def _key_status_lag(state: CloudState, operation: Operation) -> float:
    if operation.kind != KIND_ENABLE_CMK:
        return 0.0
    facts = state.accounts.facts(operation.account_id)
    if facts.key_status_lag_seconds is not None:
        return facts.key_status_lag_seconds
    return state.settings.encryption.key_status_lag_seconds


def fire_timer(state: CloudState, timer: JsonDict) -> None:
    """A timer set by this module fell due: the account now confirms the key it was enabled with."""
    if timer.get("kind") != TIMER_CONFIRM_KEY_STATUS:
        return
    account = state.resources.get(str(timer["accountId"]))
    if account is None:
        return
    current = (account.get("properties") or {}).get("keyVaultKeyUri")
    if not isinstance(current, str) or not same_key_uri(current, str(timer["keyUri"])):
        return  # the key changed meanwhile (a rotation sets its own status)
    updated = copy.deepcopy(account)
    updated.setdefault("properties", {})["customerManagedKeyStatus"] = CMK_CONFIRMED
    state.resources.put(updated)
