"""Read-only routes over the fleet's live state, for admins, the dashboard and automation alike:

- `GET /api/cmk/overview`: counts of the fleet's accounts by outcome and phase, what awaits approval, the oldest
  running encryption, rollouts running;
- `GET /api/cmk/rollouts`: every rollout, newest first, with live counts (paged);
- `GET /api/cmk/rollouts/{id}/accounts`: each account of a rollout with its phase, outcome, findings, encryption
  against the estimate and step times (paged; filters by phase, outcome, subscription and a search);
- `GET /api/cmk/rollouts/{id}/timeline`: every account's steps on one time axis, and where the time went;
- `GET /api/cmk/accounts`: account orchestrations, newest first (paged; `standalone=true` leaves out those a
  rollout started);
- `GET /api/cmk/instances/{id}/details`: one account orchestration: its steps, plan, findings with what to do
  about them, operation, approval.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Sequence
from datetime import datetime
from typing import Any, TypeVar

import azure.durable_functions as df
import azure.functions as func

from cmk.auth import Role
from cmk.errors import InvalidRequest, shown
from cmk.orchestration import ACCOUNT_ORCHESTRATOR
from cmk.progress import (
    ACTIVE_RUNTIME_STATUSES,
    OUTCOMES,
    PHASES,
    AccountState,
    account_parts,
    account_state,
    as_dict,
    as_list,
    iso,
    known_timings,
    outcome_of,
    parse_time,
    phase_of,
)
from cmk.remedies import with_remedies
from coordination import fleet_status
from triggers.http import INSTANCE_ID, ROUTE_AUTH_LEVEL, authorize, error_response, invalid, json_response

bp = df.Blueprint()

RUNTIME_STATUSES = sorted(ACTIVE_RUNTIME_STATUSES | {"Completed", "Failed", "Terminated"})
DEFAULT_PAGE_SIZE = 50
MAX_PAGE_SIZE = 500
T = TypeVar("T")


# --- paging and filters ------------------------------------------------------------------------------------------


def _page_size(req: func.HttpRequest, default: int = DEFAULT_PAGE_SIZE) -> int:
    top = req.params.get("top")
    if not top:
        return default
    if not top.isdigit() or not 1 <= int(top) <= MAX_PAGE_SIZE:
        raise InvalidRequest("InvalidTop", f"top must be a whole number from 1 to {MAX_PAGE_SIZE}.")
    return int(top)


def _offset(req: func.HttpRequest) -> int:
    """Where the page starts: the continuationToken the previous page returned (the offset of its first item)."""
    token = req.params.get("continuationToken")
    if token is None:
        return 0
    if not (token.isascii() and token.isdigit() and len(token) <= 9):
        raise InvalidRequest(
            "InvalidContinuationToken", "continuationToken is not one this API returned; start without it."
        )
    return int(token)


def _token(offset: int) -> str:
    return str(offset)


def _paged(req: func.HttpRequest, items: Sequence[T], default: int = DEFAULT_PAGE_SIZE) -> tuple[list[T], str | None]:
    size, offset = _page_size(req, default), _offset(req)
    page = list(items[offset : offset + size])
    return page, _token(offset + size) if offset + size < len(items) else None


def _listed(req: func.HttpRequest, name: str) -> list[str] | None:
    """A comma-separated query parameter's items (None when it is absent); an empty item is refused."""
    value = req.params.get(name)
    if value is None:
        return None
    items: list[str] = str(value).split(",")
    if not all(items):
        raise InvalidRequest(
            f"Invalid{name[0].upper()}{name[1:]}", f"{name} is a comma-separated list, not {shown(value)}."
        )
    return items


def _choices(req: func.HttpRequest, name: str, allowed: Sequence[str]) -> set[str]:
    values = _listed(req, name) or []
    unknown = sorted({value for value in values if value not in allowed})
    if unknown:
        raise InvalidRequest(
            f"Invalid{name[0].upper()}{name[1:]}",
            f"Unknown {name} {', '.join(shown(u) for u in unknown)}; use any of {', '.join(allowed)}, comma-separated.",
        )
    return set(values)


class Filters:
    """`phase`, `outcome`, `subscription` (comma-separated, any of) and `search` (in the name or id)."""

    def __init__(self, req: func.HttpRequest) -> None:
        self.phases = _choices(req, "phase", PHASES)
        self.outcomes = _choices(req, "outcome", OUTCOMES)
        self.subscriptions = {value.strip().lower() for value in _listed(req, "subscription") or []}
        self.search = (req.params.get("search") or "").strip().lower()
        if len(self.search) > 200:
            raise InvalidRequest("InvalidSearch", "search is at most 200 characters.")

    def matches(self, account_id: str, instance_id: str | None, phase: str, outcome: str | None) -> bool:
        if self.phases and phase not in self.phases:
            return False
        if self.outcomes and outcome not in self.outcomes:
            return False
        name, subscription, _ = account_parts(account_id)
        if self.subscriptions and (subscription or "") not in self.subscriptions:
            return False
        if self.search:
            haystack = f"{name}\n{account_id}\n{instance_id or ''}".lower()
            return self.search in haystack
        return True

    def echo(self) -> dict[str, Any]:
        return {
            "phase": sorted(self.phases),
            "outcome": sorted(self.outcomes),
            "subscription": sorted(self.subscriptions),
            "search": self.search,
        }


# --- overview ----------------------------------------------------------------------------------------------------


@bp.function_name("cmk_overview")
@bp.route(route="cmk/overview", methods=["GET"], auth_level=ROUTE_AUTH_LEVEL)
@bp.durable_client_input(client_name="client")
async def overview(req: func.HttpRequest, client: df.DurableOrchestrationClient) -> func.HttpResponse:
    if isinstance(denied := authorize(req, Role.READER), func.HttpResponse):
        return denied
    snapshot = await fleet_status.fleet(client)
    newest = fleet_status.newest_per_account(snapshot)
    by_phase: Counter[str] = Counter()
    by_outcome: Counter[str] = Counter()
    encrypting: list[dict[str, Any]] = []
    for instance in newest:
        phase = phase_of(instance)
        by_phase[phase] += 1
        outcome = outcome_of(instance)
        if outcome:
            by_outcome[outcome] += 1
        if phase == "encrypting":
            encrypting.append(instance)
    states = await fleet_status.account_states(client, snapshot, encrypting)
    oldest = fleet_status.counts(states)["oldestEncryption"]
    running_rollouts = [r for r in snapshot.rollouts if r.get("runtimeStatus") in ACTIVE_RUNTIME_STATUSES]
    body = {
        "now": _iso(snapshot.now),
        "accounts": {
            "total": len(newest),
            "orchestrations": len(snapshot.accounts),
            "running": sum(v for k, v in by_phase.items() if k != "done"),
            "byOutcome": dict(by_outcome),
            "byPhase": dict(by_phase),
            "awaitingApproval": by_phase.get("awaitingApproval", 0),
            "oldestEncryption": oldest,
        },
        "rollouts": {"total": len(snapshot.rollouts), "running": len(running_rollouts)},
    }
    return json_response(200, body, headers=_no_store())


# --- rollouts ----------------------------------------------------------------------------------------------------


@bp.function_name("cmk_list_rollouts")
@bp.route(route="cmk/rollouts", methods=["GET"], auth_level=ROUTE_AUTH_LEVEL)
@bp.durable_client_input(client_name="client")
async def list_rollouts(req: func.HttpRequest, client: df.DurableOrchestrationClient) -> func.HttpResponse:
    if isinstance(denied := authorize(req, Role.READER), func.HttpResponse):
        return denied
    try:
        statuses = _choices(req, "runtimeStatus", RUNTIME_STATUSES)
        snapshot = await fleet_status.fleet(client)
        rollouts = [r for r in snapshot.rollouts if not statuses or r.get("runtimeStatus") in statuses]
        page, token = _paged(req, fleet_status.rollouts_newest_first(rollouts), default=20)
    except InvalidRequest as error:
        return invalid(error)
    items = []
    for rollout in page:
        item = fleet_status.rollout_list_item(snapshot, rollout)
        if item["dryRun"] is None:
            full = await fleet_status.read_instance(client, str(rollout["instanceId"]), show_input=True)
            request = as_dict(fleet_status.input_of(full or {}).get("request"))
            item["dryRun"] = bool(request.get("dryRun"))
        items.append(item)
    body = {"now": _iso(snapshot.now), "total": len(rollouts), "rollouts": items, "continuationToken": token}
    return json_response(200, body, headers=_no_store())


@bp.function_name("cmk_rollout_accounts")
@bp.route(route="cmk/rollouts/{instanceId}/accounts", methods=["GET"], auth_level=ROUTE_AUTH_LEVEL)
@bp.durable_client_input(client_name="client")
async def rollout_accounts(req: func.HttpRequest, client: df.DurableOrchestrationClient) -> func.HttpResponse:
    if isinstance(denied := authorize(req, Role.READER), func.HttpResponse):
        return denied
    rollout_id = req.route_params["instanceId"]
    try:
        filters = Filters(req)
        _page_size(req)
        _offset(req)
    except InvalidRequest as error:
        return invalid(error)
    view = await fleet_status.rollout_view(client, rollout_id) if INSTANCE_ID.fullmatch(rollout_id) else None
    if view is None:
        return error_response(404, "RolloutNotFound", f"No rollout {rollout_id}.")
    matched = [a for a in view.accounts if filters.matches(a["accountId"], a["instanceId"], a["phase"], a["outcome"])]
    page, token = _paged(req, matched)
    body = {
        "rolloutId": rollout_id,
        "now": _iso(view.now),
        "rollout": fleet_status.rollout_summary(view),
        "filters": filters.echo(),
        "matched": len(matched),
        "accounts": page,
        "continuationToken": token,
    }
    return json_response(200, body, headers=_no_store())


@bp.function_name("cmk_rollout_timeline")
@bp.route(route="cmk/rollouts/{instanceId}/timeline", methods=["GET"], auth_level=ROUTE_AUTH_LEVEL)
@bp.durable_client_input(client_name="client")
async def rollout_timeline(req: func.HttpRequest, client: df.DurableOrchestrationClient) -> func.HttpResponse:
    if isinstance(denied := authorize(req, Role.READER), func.HttpResponse):
        return denied
    rollout_id = req.route_params["instanceId"]
    view = await fleet_status.rollout_view(client, rollout_id) if INSTANCE_ID.fullmatch(rollout_id) else None
    if view is None:
        return error_response(404, "RolloutNotFound", f"No rollout {rollout_id}.")
    if "timeline" not in view.derived:
        view.derived["timeline"] = json.dumps(timeline(view), separators=(",", ":"))
    return func.HttpResponse(
        view.derived["timeline"], status_code=200, mimetype="application/json", headers=_no_store()
    )


def timeline(view: fleet_status.RolloutView) -> dict[str, Any]:
    """Every account's steps as [phase, start, end] in seconds from the rollout's start (end null: ongoing), the
    accounts ordered by when they started, and the time each phase took in total."""
    origin = parse_time(fleet_status.rollout_started_at(view.rollout)) or view.now
    rows = []
    totals: dict[str, dict[str, float]] = {}
    now_offset = round((view.now - origin).total_seconds(), 1)
    for account in view.accounts:
        spans = []
        for segment in account["segments"]:
            start = fleet_status.moment_seconds(segment["start"], origin)
            end = fleet_status.moment_seconds(segment["end"], origin)
            if start is None or (end is not None and end < 0):
                continue  # before the rollout began (an orchestration that ran before the rollout claimed it)
            spans.append([segment["phase"], round(max(0.0, start)), None if end is None else round(end)])
            seconds = max(0.0, (end if end is not None else now_offset) - max(0.0, start))
            total = totals.setdefault(segment["phase"], {"accounts": 0, "seconds": 0.0, "maxSeconds": 0.0})
            total["accounts"] += 1
            total["seconds"] = round(total["seconds"] + seconds, 1)
            total["maxSeconds"] = round(max(total["maxSeconds"], seconds), 1)
        rows.append(
            {
                "name": account["name"],
                "instanceId": account["instanceId"],
                "lane": account.get("lane"),
                "phase": account["phase"],
                "outcome": account["outcome"],
                "segments": spans,
            }
        )

    def started(row: dict[str, Any]) -> tuple[float, str]:
        begun = [span[1] for span in row["segments"] if span[0] != "queued"]
        return (min(begun) if begun else float("inf"), row["name"].lower())

    rows.sort(key=started)
    # A rollout that failed or was terminated has a reason (a string) for its output, and no finish time.
    output_timings = as_dict(as_dict(view.rollout.get("output")).get("timings"))
    finished = output_timings.get("finishedAt") if view.finished else None
    return {
        "rolloutId": view.rollout["instanceId"],
        "start": fleet_status.rollout_started_at(view.rollout),
        "now": _iso(view.now),
        "nowSeconds": now_offset,
        "endSeconds": fleet_status.moment_seconds(finished, origin) if finished else None,
        "lanes": view.lanes,
        "phases": list(PHASES),
        "phaseTotals": totals,
        "accounts": rows,
    }


# --- account orchestrations --------------------------------------------------------------------------------------


@bp.function_name("cmk_list_accounts")
@bp.route(route="cmk/accounts", methods=["GET"], auth_level=ROUTE_AUTH_LEVEL)
@bp.durable_client_input(client_name="client")
async def list_accounts(req: func.HttpRequest, client: df.DurableOrchestrationClient) -> func.HttpResponse:
    if isinstance(denied := authorize(req, Role.READER), func.HttpResponse):
        return denied
    try:
        filters = Filters(req)
        standalone = req.params.get("standalone", "false")
        if standalone not in ("true", "false"):
            raise InvalidRequest("InvalidStandalone", "standalone must be true or false.")
        _page_size(req)
        _offset(req)
    except InvalidRequest as error:
        return invalid(error)
    snapshot = await fleet_status.fleet(client)
    matched = []
    for instance in fleet_status.newest_first(snapshot.accounts):
        instance_id = str(instance["instanceId"])
        if standalone == "true" and snapshot.rollout_of(instance_id):
            continue
        account_id = fleet_status.account_id_of(instance) or instance_id
        if filters.matches(account_id, instance_id, phase_of(instance), outcome_of(instance)):
            matched.append(instance)
    page, token = _paged(req, matched)
    states = await fleet_status.account_states(client, snapshot, page)
    body = {
        "now": _iso(snapshot.now),
        "filters": filters.echo(),
        "matched": len(matched),
        "accounts": states,
        "continuationToken": token,
    }
    return json_response(200, body, headers=_no_store())


@bp.function_name("cmk_instance_details")
@bp.route(route="cmk/instances/{instanceId}/details", methods=["GET"], auth_level=ROUTE_AUTH_LEVEL)
@bp.durable_client_input(client_name="client")
async def instance_details(req: func.HttpRequest, client: df.DurableOrchestrationClient) -> func.HttpResponse:
    if isinstance(denied := authorize(req, Role.READER), func.HttpResponse):
        return denied
    instance_id = req.route_params["instanceId"]
    instance = None
    if INSTANCE_ID.fullmatch(instance_id):
        instance = await fleet_status.read_instance(client, instance_id, show_input=True, show_history=True)
    if instance is None or instance.get("name") != ACCOUNT_ORCHESTRATOR:
        return error_response(404, "InstanceNotFound", f"No account orchestration {instance_id}.")
    running = instance.get("runtimeStatus") in ACTIVE_RUNTIME_STATUSES
    moment = await fleet_status.recent_now(client) if running else None
    return json_response(200, details(instance, moment), headers=_no_store())


def details(instance: dict[str, Any], moment: datetime | None = None) -> dict[str, Any]:
    """An account orchestration as its account view shows it."""
    history = as_list(instance.get("historyEvents"))
    now = fleet_status.now([instance]) if moment is None else max(moment, fleet_status.now([instance]))
    data = as_dict(instance.get("input"))
    request = as_dict(data.get("request"))
    resume = as_dict(data.get("resume"))
    output = as_dict(instance.get("output"))
    custom = as_dict(instance.get("customStatus"))
    preflights = [
        event["Result"]
        for event in history
        if event.get("FunctionName") == "preflight" and isinstance(event.get("Result"), dict)
    ]
    last_preflight = preflights[-1] if preflights else {}
    account_id = fleet_status.account_id_of(instance) or str(request.get("accountId") or instance["instanceId"])
    state: AccountState = account_state(account_id, instance, now=now, history=history)
    findings = output.get("findings") or resume.get("findings") or last_preflight.get("findings") or []
    plan = output.get("plan") or resume.get("plan") or last_preflight.get("plan")
    decision = next(
        (event.get("Input") for event in history if event.get("EventType") == "EventRaised"),
        None,
    )
    operation = as_dict(output.get("operation"))
    monitor = as_dict(resume.get("monitor"))
    awaiting = state["phase"] == "awaitingApproval"
    running = instance.get("runtimeStatus") in ACTIVE_RUNTIME_STATUSES
    return {
        **state,
        "findings": with_remedies(findings),
        "orchestration": instance.get("name"),
        "request": {
            "keyUri": request.get("keyUri"),
            "identity": request.get("identity"),
            "dryRun": bool(request.get("dryRun")),
            "approval": request.get("approval"),
        },
        "plan": plan,
        "account": last_preflight.get("account"),
        "operation": {
            "status": state["operationStatus"],
            "statusUrl": custom.get("statusUrl")
            or operation.get("statusUrl")
            or (monitor.get("operation") or {}).get("statusUrl"),
            "nextPollAt": None if awaiting else state["nextPollAt"],
            "polls": state["polls"],
            "percentComplete": state["percentComplete"],
            "error": operation.get("error"),
        },
        "approval": {
            "required": request.get("approval") == "required",
            "awaiting": awaiting and running,
            "deadline": custom.get("nextPollAt") if awaiting else None,
            "decision": _decision(decision) or _recorded_decision(output, request),
        },
        "timings": known_timings(instance, history),
        "now": _iso(now),
        "actions": {"approve": awaiting and running, "reject": awaiting and running, "terminate": running},
    }


def _decision(raw: Any) -> dict[str, Any] | None:
    if isinstance(raw, str):
        try:
            raw = json.loads(raw)
        except ValueError:
            return None
    if not isinstance(raw, dict):
        return None
    return {"approved": bool(raw.get("approved")), "by": raw.get("by"), "comment": raw.get("comment")}


def _recorded_decision(output: dict[str, Any], request: dict[str, Any]) -> dict[str, Any] | None:
    """Who decided, and their comment, as the orchestration carries them past continue_as_new."""
    for key, approved in (("approvedBy", True), ("rejectedBy", False)):
        actor = output.get(key) or request.get(key)
        if actor:
            return {"approved": approved, "by": actor, "comment": request.get("decisionComment")}
    return None


def _iso(moment: datetime) -> str:
    return iso(moment)


def _no_store() -> dict[str, str]:
    return {"Cache-Control": "no-store"}
