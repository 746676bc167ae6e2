"""Fault injection rules: make chosen requests fail, reset the connection, or answer slowly.

A rule: `{"id"?, "method"?: "PATCH"|"*", "path": "<regex searched in path+query, case-insensitive>",
"bodyContains"?: "<text>", "kind": "status"|"reset"|"slow"|"statusAfterApply"|"resetAfterApply",
"status"?: 503, "code"?, "message"?, "retryAfter"?: seconds, "delaySeconds"?: 2.5,
"delayClock"?: "real"|"simulated", "probability"?: 0.3, "count"?: N}`.
`bodyContains` restricts the rule to requests whose raw body contains the text (case-insensitive).
`count` limits the rule to the next N matching requests; `probability` draws from the simulator's seeded RNG,
so a run is repeatable. A slow reply waits, then serves the request normally. `status` and `reset` fail the
request before it reaches the resource provider; `statusAfterApply` and `resetAfterApply` let it take full effect
(an operation starts, a resource changes) and then answer the error or reset the connection instead of the reply:
the client does not learn what Azure did.
"""

from __future__ import annotations

import random
import re
import uuid
from typing import Any

from sandbox.azure.ids import JsonDict

KINDS = ("status", "reset", "slow", "statusAfterApply", "resetAfterApply")
STATUS_KINDS = ("status", "statusAfterApply")
AFTER_APPLY_KINDS = ("statusAfterApply", "resetAfterApply")
_FIELDS = {
    "id",
    "method",
    "path",
    "bodyContains",
    "kind",
    "status",
    "code",
    "message",
    "retryAfter",
    "delaySeconds",
    "delayClock",
    "probability",
    "count",
    "remaining",
}


def validate_fault_rule(rule: Any, rng: random.Random) -> JsonDict:
    if not isinstance(rule, dict):
        raise ValueError("a fault rule must be an object")
    unknown = sorted(set(rule) - _FIELDS)
    if unknown:
        raise ValueError(f"fault rule: unknown field(s) {unknown}; known: {sorted(_FIELDS - {'remaining'})}")
    path = rule.get("path", ".*")
    try:
        re.compile(str(path))
    except re.error as error:
        raise ValueError(f"fault rule: 'path' is not a valid regex: {error}") from error
    body_contains = rule.get("bodyContains")
    if body_contains is not None and (not isinstance(body_contains, str) or not body_contains):
        raise ValueError("fault rule: 'bodyContains' must be a non-empty string")
    kind = rule.get("kind", "status")
    if kind not in KINDS:
        raise ValueError(f"fault rule: 'kind' must be one of {list(KINDS)}")
    probability = float(rule.get("probability", 1.0))
    if not 0.0 <= probability <= 1.0:
        raise ValueError("fault rule: 'probability' must be between 0 and 1")
    count = rule.get("count")
    if count is not None and (not isinstance(count, int) or count < 1):
        raise ValueError("fault rule: 'count' must be a positive integer")
    status = int(rule.get("status", 503))
    if kind in STATUS_KINDS and not 100 <= status <= 599:
        raise ValueError("fault rule: 'status' must be an HTTP status code")
    delay_clock = rule.get("delayClock", "real")
    if delay_clock not in ("real", "simulated"):
        raise ValueError("fault rule: 'delayClock' must be 'real' or 'simulated'")
    normalized: JsonDict = {
        "id": str(rule.get("id") or uuid.UUID(int=rng.getrandbits(128), version=4)),
        "method": str(rule.get("method", "*")).upper(),
        "path": str(path),
        "kind": kind,
        "probability": probability,
        "remaining": rule.get("remaining", count),
    }
    if body_contains is not None:
        normalized["bodyContains"] = body_contains
    if count is not None:
        normalized["count"] = count
    if kind in STATUS_KINDS:
        normalized["status"] = status
        normalized["code"] = str(rule.get("code", _default_code(status)))
        normalized["message"] = str(rule.get("message", "Injected fault from the sandbox fault rules."))
        if rule.get("retryAfter") is not None:
            normalized["retryAfter"] = int(rule["retryAfter"])
    if kind == "slow":
        normalized["delaySeconds"] = float(rule.get("delaySeconds", 5.0))
        normalized["delayClock"] = delay_clock
    return normalized


def _default_code(status: int) -> str:
    return {
        429: "TooManyRequests",
        500: "InternalServerError",
        502: "BadGateway",
        503: "ServiceUnavailable",
        504: "GatewayTimeout",
    }.get(status, "InjectedFault")


def pick_fault(
    rules: list[JsonDict], method: str, path_and_query: str, rng: random.Random, body: bytes = b""
) -> JsonDict | None:
    """The first rule that fires for this request (its `remaining` count is decremented by the caller)."""
    body_text: str | None = None
    for rule in rules:
        if rule["method"] not in ("*", method.upper()):
            continue
        if rule.get("remaining") is not None and int(rule["remaining"]) <= 0:
            continue
        if not re.search(str(rule["path"]), path_and_query, re.IGNORECASE):
            continue
        if rule.get("bodyContains") is not None:
            if body_text is None:
                body_text = body.decode("utf-8", "replace").casefold()
            if str(rule["bodyContains"]).casefold() not in body_text:
                continue
        if float(rule["probability"]) < 1.0 and rng.random() >= float(rule["probability"]):
            continue
        return rule
    return None
