"""How far each account orchestration has come, as the status API and the dashboard show it: its phase and
outcome, the time each step took (`timings`, and the same as `segments` on a time axis), its encryption against
the estimate. Pure functions over the Durable status payloads; no I/O.

An account orchestration writes its step times into its output when it ends, and into its input when the monitor
continues as new; while its first generation runs they exist only as the moments its history shows. Every step time
is the orchestration's own clock at that step (`context.current_utc_datetime`), which is the `ScheduledTime` of the
activity the next step starts with, so the history gives the same values the output will.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Any, NotRequired, TypedDict

from cmk.orchestration import APPROVAL_EVENT, INSTANCE_SUFFIX_SEPARATOR, SLOT_EVENT
from cmk.phases import OUTCOMES as OUTCOMES
from cmk.phases import PHASES as PHASES

ACTIVE_RUNTIME_STATUSES = frozenset({"Pending", "Running", "ContinuedAsNew", "Suspended"})

TIMING_FIELDS = (
    "startedAt",
    "preflightDoneAt",
    "identityReadyAt",
    "keyAccessReadyAt",
    "approvedAt",
    "slotGrantedAt",
    "enableRequestedAt",
    "encryptionDoneAt",
    "finishedAt",
)
_ACCOUNT_ID = re.compile(
    r"^/subscriptions/(?P<subscription>[^/]+)/resourceGroups/(?P<group>[^/]+)/providers/"
    r"Microsoft\.DocumentDB/databaseAccounts/(?P<name>[^/]+)$",
    re.IGNORECASE,
)


class Segment(TypedDict):
    phase: str
    start: str
    end: str | None  # None: still in it


class Encryption(TypedDict):
    elapsedSeconds: float | None
    expectedSeconds: float | None
    percentComplete: float | None


class AccountState(TypedDict):
    accountId: str
    name: str
    subscriptionId: str | None
    resourceGroup: str | None
    instanceId: str | None
    runtimeStatus: str | None
    phase: str
    outcome: str | None
    reason: str | None
    findings: list[dict[str, Any]]
    blocking: int
    warnings: int
    operationStatus: str | None
    percentComplete: float | None
    nextPollAt: str | None
    polls: int
    detail: str | None
    keyUri: str | None
    dryRun: bool
    createdTime: str | None
    lastUpdatedTime: str | None
    timings: dict[str, Any]
    segments: list[Segment]
    encryption: Encryption | None
    rolloutId: NotRequired[str | None]
    lane: NotRequired[int | None]


def as_dict(value: Any) -> dict[str, Any]:
    """A JSON object from a payload field, or {} when it is anything else."""
    return value if isinstance(value, dict) else {}


def as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else []


def parse_time(value: Any) -> datetime | None:
    """An ISO 8601 time from a status payload (Durable writes up to 7 fractional digits), or None."""
    if not isinstance(value, str) or not value:
        return None
    try:
        parsed = datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def iso(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")


def api_time(value: Any) -> str | None:
    """A time as every route of the API returns it: RFC 3339 in UTC with `Z` (the Durable store writes `Z`, the SDK
    hands back datetimes whose isoformat says `+00:00`). Text that is not a time is returned as it is."""
    if value is None:
        return None
    moment = value if isinstance(value, datetime) else parse_time(value)
    if moment is None:
        return str(value)
    return iso(moment if moment.tzinfo else moment.replace(tzinfo=UTC))


def account_parts(account_id: str) -> tuple[str, str | None, str | None]:
    """(name, subscription id, resource group) of an account id; the last segment when it does not parse."""
    match = _ACCOUNT_ID.match(account_id or "")
    if match is None:
        return (account_id or "").rstrip("/").rsplit("/", 1)[-1], None, None
    return match["name"], match["subscription"].lower(), match["group"]


def instance_base(instance_id: str) -> str:
    """`cmk-<name>-<digest>` of an account orchestration's id (what every orchestration of the account shares)."""
    return instance_id.split(INSTANCE_SUFFIX_SEPARATOR, 1)[0]


def outcome_of(instance: dict[str, Any] | None) -> str | None:
    """The outcome an ended orchestration reached; None while it runs."""
    if not instance:
        return None
    output = instance.get("output")
    if isinstance(output, dict) and isinstance(output.get("outcome"), str):
        return str(output["outcome"])
    status = instance.get("runtimeStatus")
    if status == "Terminated":
        return "Terminated"
    if status == "Failed":
        return "Failed"
    return None


def phase_of(instance: dict[str, Any] | None) -> str:
    if not instance:
        return "queued"
    if instance.get("runtimeStatus") not in ACTIVE_RUNTIME_STATUSES:
        return "done"
    custom = instance.get("customStatus")
    phase = custom.get("phase") if isinstance(custom, dict) else None
    return str(phase) if phase in PHASES else "starting"


def timings_from_history(events: list[dict[str, Any]]) -> dict[str, str]:
    """The step times of an account orchestration's current generation, from its history (status API events).

    Each step's time is the orchestration's clock when it moved on, which is the `ScheduledTime` of the first
    activity of the next step (or the `Timestamp` of the approval timer it created in that same episode). Steps
    are told apart by the activities that start them (preflight; grant_key_access; enable_cmk, then a status read
    or verify_cmk); whatever else runs in between (identity operations, checks before the key PATCH) belongs to
    the step it runs in. Only the steps the history has passed are returned.
    """
    timings: dict[str, str] = {}
    completed = [
        (str(event.get("FunctionName") or ""), str(event.get("ScheduledTime") or ""), index)
        for index, event in enumerate(events)
        if event.get("EventType") in ("TaskCompleted", "TaskFailed") and event.get("ScheduledTime")
    ]

    def first(after: int = -1, names: tuple[str, ...] = (), but: tuple[str, ...] = ()) -> tuple[str, int] | None:
        for name, scheduled, index in completed:
            if index > after and (not names or name in names) and name not in but:
                return scheduled, index
        return None

    if not completed:
        return timings
    timings["startedAt"] = completed[0][1]
    if completed[0][0] != "preflight":
        return timings  # a monitor's later generation, or a re-attached one: no steps before the encryption here
    identity = first(but=("preflight",))
    if identity is None:
        return timings
    timings["preflightDoneAt"] = identity[0]
    grant = first(names=("grant_key_access",))
    if grant is None:
        return timings
    timings["identityReadyAt"] = grant[0]
    after_grant = grant[1]
    if _result_number(events[grant[1]], "propagationWaitSeconds") > 0:
        fired = next((i for i, e in enumerate(events) if i > grant[1] and e.get("EventType") == "TimerFired"), None)
        if fired is None:
            return timings  # still waiting for the role assignment to propagate
        after_grant = fired
        timings["keyAccessReadyAt"] = str(events[fired].get("FireAt") or "")  # refined below
    approval = _raised(events, after_grant, APPROVAL_EVENT)
    # The lane may give the slot while the account still prepares: the SDK keeps the event for the wait.
    slot = _raised(events, -1, SLOT_EVENT)
    # A held orchestration reads its lane while it waits for its slot: those reads are not a step.
    next_activity = first(after_grant, but=("read_account_instance",))
    wait_timer = next(
        (i for i, e in enumerate(events) if i > after_grant and e.get("EventType") == "TimerCreated"), None
    )
    waits = (
        approval is not None
        or slot is not None
        or (wait_timer is not None and (next_activity is None or wait_timer < next_activity[1]))
    )
    if waits:
        if wait_timer is not None:
            timings["keyAccessReadyAt"] = str(events[wait_timer].get("Timestamp"))
        enable_after = after_grant
        for field, event in (("approvedAt", approval), ("slotGrantedAt", slot)):
            if event is None:
                continue
            enable_after = max(event, enable_after)  # it moved on once it waited and the event had come
            moment = _moment_after(events, completed, enable_after)
            if moment is None:
                return timings
            timings[field] = moment
        if approval is None and slot is None:
            return timings  # still waiting
    else:
        if next_activity is None:
            return {key: value for key, value in timings.items() if value}
        timings["keyAccessReadyAt"] = next_activity[0]
        enable_after = after_grant
    enable = first(enable_after, names=("enable_cmk",))
    if enable is None:
        return timings
    following = first(enable[1], names=("poll_operation", "verify_cmk"))
    if following is None:
        return timings
    timings["enableRequestedAt"] = following[0]
    verify = first(enable[1], names=("verify_cmk",))
    if verify is not None:
        timings["encryptionDoneAt"] = verify[0]
    return timings


def _raised(events: list[dict[str, Any]], after: int, name: str) -> int | None:
    return next(
        (
            i
            for i, e in enumerate(events)
            if i > after and e.get("EventType") == "EventRaised" and e.get("Name") == name
        ),
        None,
    )


def _moment_after(events: list[dict[str, Any]], completed: list[tuple[str, str, int]], index: int) -> str | None:
    """The orchestration's clock when it moved on from the event at `index`: the scheduled time of the next
    activity, or the time of the next timer it created, whichever came first. Not earlier than the event itself: an
    activity scheduled before it may complete after it (a held orchestration's read of its lane)."""
    since = parse_time(events[index].get("Timestamp"))
    scheduled = [moment for _, moment, at in completed if at > index]
    created = [str(e.get("Timestamp")) for e in events[index + 1 :] if e.get("EventType") == "TimerCreated"]
    known = [(at, moment) for moment in scheduled + created if (at := parse_time(moment)) is not None]
    later = [(at, moment) for at, moment in known if since is None or at >= since]
    return min(later)[1] if later else None


def _result_number(event: dict[str, Any], key: str) -> float:
    result = event.get("Result")
    value = result.get(key) if isinstance(result, dict) else None
    return float(value) if isinstance(value, int | float) else 0.0


def known_timings(instance: dict[str, Any], history: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    """The step times known for an instance: its output's when it ended, else its input's (a monitor generation
    carries them) completed from its history (the first generation)."""
    output = as_dict(instance.get("output"))
    if isinstance(output.get("timings"), dict):
        return _normalised(output["timings"])
    data = as_dict(instance.get("input"))
    # A monitor generation carries them in `resume`, a generation waiting for its slot in `held`.
    timings: dict[str, Any] = dict(as_dict(as_dict(data.get("resume") or data.get("held")).get("timings")))
    if history and not timings:
        for key, value in timings_from_history(history).items():
            timings.setdefault(key, value)
    return _normalised(timings)


def _normalised(timings: dict[str, Any]) -> dict[str, Any]:
    """Every time in one ISO form (Durable's history writes 7 fractional digits, the orchestrator 6)."""
    result: dict[str, Any] = {}
    for key, value in timings.items():
        moment = parse_time(value) if key in TIMING_FIELDS else None
        result[key] = iso(moment) if moment is not None else value
    return result


def segments(
    timings: dict[str, Any], phase: str, *, queued_since: str | None = None, approval: bool = False
) -> list[Segment]:
    """The steps on a time axis: each from its start to the next step's, the last one open while the account is in
    it. `queued_since`: when the account started waiting for a lane (a rollout's start); `approval`: the request
    waited (or waits) for an approval, so key access is followed by that wait."""
    finished = timings.get("finishedAt")
    approval = approval or "approvedAt" in timings or phase == "awaitingApproval"
    held = "slotGrantedAt" in timings or phase == "waitingForSlot"
    waits: list[tuple[str, str]] = []
    ready = "keyAccessReadyAt"  # when the step before the key PATCH begins
    if approval:
        waits.append(("awaitingApproval", ready))
        ready = "approvedAt"
    if held:  # prepared ahead of its rollout lane's slot
        waits.append(("waitingForSlot", ready))
        ready = "slotGrantedAt"
    starts = [
        ("preflight", "startedAt"),
        ("identity", "preflightDoneAt"),
        ("keyAccess", "identityReadyAt"),
        *waits,
        ("enabling", ready),
        ("encrypting", "enableRequestedAt"),
        ("verifying", "encryptionDoneAt"),
    ]
    marks = [(step, str(timings[field])) for step, field in starts if timings.get(field)]
    if marks and marks[0][0] == "preflight" and "preflightDoneAt" not in timings:
        following = [step for step, _ in marks[1:]]
        if following and following[0] in ("encrypting", "verifying"):
            marks = marks[1:]
        elif phase in ("encrypting", "verifying") or (not following and timings.get("encryptionDoneAt")):
            marks[0] = ("encrypting", marks[0][1])  # re-attached to an encryption: no preflight of its own
    result: list[Segment] = []
    started = marks[0][1] if marks else None
    queued_at, started_at = parse_time(queued_since), parse_time(started)
    if queued_since and queued_at and (started_at is None or queued_at < started_at):
        result.append({"phase": "queued", "start": queued_since, "end": started or finished})
    for index, (step, start) in enumerate(marks):
        end = marks[index + 1][1] if index + 1 < len(marks) else finished
        if index and index == len(marks) - 1 and end is not None and parse_time(end) == parse_time(start):
            continue  # the orchestration ended as this step began (an encryption Azure failed: no verification)
        label = step
        if end is None and phase in PHASES and phase not in ("queued", "starting", "done"):
            label = phase if PHASES.index(phase) >= PHASES.index(step) else step
        result.append({"phase": label, "start": start, "end": end})
    return result


def encryption(
    timings: dict[str, Any], now: datetime, expected_seconds: float | None, percent: float | None
) -> Encryption | None:
    started = parse_time(timings.get("enableRequestedAt"))
    if started is None:
        if expected_seconds is None:
            return None
        return {"elapsedSeconds": None, "expectedSeconds": expected_seconds, "percentComplete": None}
    seconds = timings.get("encryptionSeconds")
    if not isinstance(seconds, int | float):
        ended = parse_time(timings.get("encryptionDoneAt")) or parse_time(timings.get("finishedAt")) or now
        seconds = max(0.0, (ended - started).total_seconds())
    return {"elapsedSeconds": round(float(seconds), 1), "expectedSeconds": expected_seconds, "percentComplete": percent}


def account_state(
    account_id: str,
    instance: dict[str, Any] | None,
    *,
    now: datetime,
    history: list[dict[str, Any]] | None = None,
    timings: dict[str, Any] | None = None,
    expected_seconds: float | None = None,
    queued_since: str | None = None,
    row: dict[str, Any] | None = None,
) -> AccountState:
    """One account as the API lists it: from its orchestration's status payload (None: not started), or from a
    rollout's report row when no orchestration handled it."""
    name, subscription, group = account_parts(account_id)
    source = instance or {}
    custom = as_dict(source.get("customStatus"))
    output = as_dict(source.get("output"))
    request = as_dict(as_dict(source.get("input")).get("request"))
    phase = phase_of(instance) if instance or row is None else "done"
    outcome = outcome_of(instance) if instance else (row or {}).get("outcome")
    reason = output.get("reason") if output else None
    if reason is None and row is not None:
        reason = row.get("reason")
    if reason is None and outcome == "Terminated":
        reason = "Terminated: the orchestration was stopped before it reached an outcome"
    findings: list[dict[str, Any]] = list(output.get("findings") or [])
    if not findings and row is not None:
        findings = [{"code": code, "severity": None, "message": None} for code in row.get("findings") or []]
    if timings is None:
        timings = known_timings(instance, history) if instance else {}
    operation = as_dict(output.get("operation"))
    percent = custom.get("percentComplete")
    state: AccountState = {
        "accountId": account_id,
        "name": name,
        "subscriptionId": subscription,
        "resourceGroup": group,
        "instanceId": instance.get("instanceId") if instance else (row or {}).get("instanceId"),
        "runtimeStatus": instance.get("runtimeStatus") if instance else None,
        "phase": phase,
        "outcome": outcome,
        "reason": reason,
        "findings": findings,
        "blocking": sum(1 for f in findings if f.get("severity") == "blocking"),
        "warnings": sum(1 for f in findings if f.get("severity") == "warning"),
        "operationStatus": custom.get("operationStatus")
        or operation.get("status")
        or (row or {}).get("operationStatus"),
        "percentComplete": percent if isinstance(percent, int | float) else None,
        "nextPollAt": custom.get("nextPollAt") if phase != "done" else None,
        "polls": int(custom.get("polls") or operation.get("polls") or 0),
        "detail": custom.get("detail"),
        "keyUri": output.get("keyUri") or request.get("keyUri") or (row or {}).get("keyUri"),
        "dryRun": bool(request.get("dryRun")) or outcome == "Planned",
        "createdTime": instance.get("createdTime") if instance else None,
        "lastUpdatedTime": instance.get("lastUpdatedTime") if instance else None,
        "timings": timings,
        "segments": segments(timings, phase, queued_since=queued_since, approval=_approval(request, reason)),
        "encryption": encryption(timings, now, expected_seconds, percent if isinstance(percent, int | float) else None)
        if phase != "queued" or expected_seconds is not None
        else None,
    }
    return state


def _approval(request: dict[str, Any], reason: Any) -> bool:
    if request.get("approval") == "required":
        return True
    return isinstance(reason, str) and reason.startswith(("Rejected", "No approval before"))


def latest_moment(instances: list[dict[str, Any]], *, floor: datetime) -> datetime:
    """Now, for elapsed times: the wall clock, or the newest time the store wrote if that is later (the local
    simulator runs orchestration time faster than the wall clock; in Azure the two agree)."""
    newest = floor
    for instance in instances:
        for key in ("lastUpdatedTime", "createdTime"):
            moment = parse_time(instance.get(key))
            if moment is not None and moment > newest:
                newest = moment
    return newest
