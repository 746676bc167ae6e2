"""Event Grid enrolment: which ARM write events should enrol an account, decided from the event alone.

Azure raises `Microsoft.Resources.ResourceWriteSuccess` for every PUT/PATCH, ours included, may deliver an event
twice or out of order, and the event carries no resource body. So the event only nominates an account; the
trigger then re-reads the account and starts at most one orchestration per account (its instance id).
"""

from __future__ import annotations

import hashlib
from typing import Any, Literal, TypedDict

from cmk.errors import InvalidRequest
from cmk.resource_ids import ResourceId, parse_account_id, parse_scope

WRITE_SUCCESS = "Microsoft.Resources.ResourceWriteSuccess"
ACCOUNT_WRITE = "Microsoft.DocumentDB/databaseAccounts/write"
ROLLOUT_REQUESTED = "Cmk.RolloutRequested"
OBJECT_ID_CLAIM = "http://schemas.microsoft.com/identity/claims/objectidentifier"


class Decision(TypedDict):
    action: Literal["ignore", "enrol", "rollout"]
    reason: str
    accountId: str | None


def _ignore(reason: str) -> Decision:
    return {"action": "ignore", "reason": reason, "accountId": None}


def caller_principal(data: dict[str, Any]) -> str | None:
    evidence = ((data.get("authorization") or {}).get("evidence") or {}) if isinstance(data, dict) else {}
    claims = data.get("claims") or {} if isinstance(data, dict) else {}
    principal = evidence.get("principalId") or claims.get(OBJECT_ID_CLAIM) or claims.get("oid")
    return str(principal).lower() if principal else None


def in_scope(account: ResourceId, scope: list[Any]) -> bool:
    for entry in scope:
        try:
            subscription, group = parse_scope(entry)
        except InvalidRequest:
            continue
        if subscription == account.subscription_id and (
            group is None or group.lower() == account.resource_group.lower()
        ):
            return True
    return False


def decide(event_type: str, subject: str | None, data: Any, scope: list[Any], app_principal: str | None) -> Decision:
    """What to do with one event. Pure: no I/O, so it is cheap for the many events that are not for us."""
    if event_type == ROLLOUT_REQUESTED:
        return {"action": "rollout", "reason": "rollout requested by event", "accountId": None}
    if event_type != WRITE_SUCCESS:
        return _ignore(f"event type {event_type} is not handled")
    payload = data if isinstance(data, dict) else {}
    resource = payload.get("resourceUri") or subject or ""
    operation = str(payload.get("operationName") or "")
    if operation and operation.lower() != ACCOUNT_WRITE.lower():
        return _ignore(f"operation {operation} is not an account write")
    try:
        account = parse_account_id(resource)
    except InvalidRequest:
        return _ignore("the event is not about a Cosmos DB account")
    principal = caller_principal(payload)
    if app_principal and principal == app_principal.lower():
        return _ignore("the write was made by this app")
    if not scope:
        return _ignore("enrolment is off (CMK_ENROLMENT_SCOPE is empty)")
    if not in_scope(account, scope):
        return _ignore("the account is outside CMK_ENROLMENT_SCOPE")
    return {"action": "enrol", "reason": "account written inside the enrolment scope", "accountId": str(account)}


def rollout_instance_id(event_id: str) -> str:
    """A rollout started by an event is named after the event, so a redelivery finds it instead of starting twice."""
    return f"cmk-rollout-event-{hashlib.sha256(event_id.encode()).hexdigest()[:20]}"
