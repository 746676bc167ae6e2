"""The shape of an enablement request, checked before anything starts."""

from __future__ import annotations

from typing import Any, Literal, NotRequired, TypedDict

from cmk.auth import Actor
from cmk.errors import InvalidRequest
from cmk.key_uris import accepted_key_uri
from cmk.resource_ids import parse_account_id, parse_identity_id
from cmk.throughput import ThroughputRaiseRequest, parse_throughput_raise

SYSTEM_ASSIGNED = "SystemAssigned"


class EnablementRequest(TypedDict):
    accountId: str
    keyUri: str
    identity: NotRequired[str]
    dryRun: NotRequired[bool]
    approval: NotRequired[Literal["required"]]
    # Opt-in: raise the account's throughput before the key PATCH, restore it after the encryption (cmk.throughput).
    throughputRaise: NotRequired[ThroughputRaiseRequest]
    # Set by the app, never taken from a body: who asked (the route's caller, a rollout's requester, Event Grid),
    # and who decided on the approval, each with the time.
    requestedBy: NotRequired[Actor]
    approvedBy: NotRequired[Actor]
    rejectedBy: NotRequired[Actor]
    # The decider's comment, carried with the request past continue_as_new (the history then no longer has it).
    decisionComment: NotRequired[str]


_FIELDS = {"accountId", "keyUri", "identity", "dryRun", "approval", "throughputRaise"}


# What the app records in a request (who asked, who decided); never accepted from a caller's body.
RECORDED_FIELDS = ("requestedBy", "approvedBy", "rejectedBy", "decisionComment")


def without_records(request: Any) -> Any:
    """A recorded request as its body was, to check it again (the preflight activity does)."""
    return {k: v for k, v in request.items() if k not in RECORDED_FIELDS} if isinstance(request, dict) else request


def parse_enablement_request(body: Any) -> EnablementRequest:
    """Validate and normalise a request body; raises InvalidRequest with a code and a message."""
    if not isinstance(body, dict):
        raise InvalidRequest("InvalidRequestBody", "The request body must be a JSON object.")
    unknown = sorted(set(body) - _FIELDS)
    if unknown:
        raise InvalidRequest(
            "UnknownField",
            f"Unknown field(s) {', '.join(unknown)}; accepted fields are {', '.join(sorted(_FIELDS))}.",
        )
    account = parse_account_id(body.get("accountId"))
    key_uri = accepted_key_uri(body.get("keyUri"))
    request: EnablementRequest = {"accountId": str(account), "keyUri": str(key_uri)}
    # A field that is present is checked, null included: null is not "absent".
    if "identity" in body:
        identity = body["identity"]
        if isinstance(identity, str) and identity.strip().lower() == SYSTEM_ASSIGNED.lower():
            request["identity"] = SYSTEM_ASSIGNED
        else:
            request["identity"] = str(parse_identity_id(identity))
    if "dryRun" in body:
        dry_run = body["dryRun"]
        if not isinstance(dry_run, bool):
            raise InvalidRequest("InvalidDryRun", "dryRun must be true or false.")
        request["dryRun"] = dry_run
    if "approval" in body:
        if body["approval"] != "required":
            raise InvalidRequest("InvalidApproval", 'approval, when given, must be "required".')
        request["approval"] = "required"
    if "throughputRaise" in body:
        request["throughputRaise"] = parse_throughput_raise(body["throughputRaise"])
    return request
