"""The fleet rollout: discover the accounts, choose each one's key, plan lanes under the concurrency caps, run
them, and report every account named or discovered with an outcome.

While the lanes run, the rollout refreshes its custom status (counts only) on a backing-off timer. A rollout can
run for weeks, so it continues as new every REFRESHES_PER_GENERATION refreshes, carrying what its report needs;
from then on the lanes' completions no longer reach it (they were its first generation's sub-orchestrations), so it
follows them by reading their status. Either way, once every lane has ended it collects their rows in one activity
(a lane carries only the rows it wrote itself; the others are its accounts' orchestrations' outputs).
"""

from __future__ import annotations

import contextlib
import logging
from collections import Counter
from collections.abc import Generator
from typing import Any, NotRequired, TypedDict

import azure.durable_functions as df
from azure.durable_functions.models.Task import TaskState, TimerTask

from activities.collect_lane_rows import COLLECT_LANE_ROWS, CollectedRows
from activities.discover_accounts import DISCOVER_ACCOUNTS
from activities.estimate_encryption import ESTIMATE_ENCRYPTION
from activities.summarize_rollout import SUMMARIZE_ROLLOUT
from cmk.arm_pacing import WAKE_GRID_SECONDS, wake_delay_seconds
from cmk.fleet import PlannedAccount, plan_lanes, preparing_per_lane
from cmk.inventory import graph_answers_about
from cmk.orchestration import LANE_ORCHESTRATOR, ROLLOUT_ORCHESTRATOR, OrchestrationConfig
from cmk.rollouts import (
    Discovery,
    EncryptionEstimates,
    ReportRow,
    RolloutKey,
    RolloutRequest,
    next_estimate_batch,
    plan_accounts,
    unplanned_row,
)
from orchestrators.rollout_lane import LaneInput, LaneTemplate
from orchestrators.steps import ArmCallFailed, call_arm, first_line, now_iso, sleep

bp = df.Blueprint()
logger = logging.getLogger(__name__)

FIRST_STATUS_REFRESH_SECONDS = 60
MAX_STATUS_REFRESH_SECONDS = 600
# About 16 hours of refreshes (60 s doubling to 600 s) per generation: short rollouts never continue as new.
REFRESHES_PER_GENERATION = 100
# Rounds of encryption estimates (one Azure Monitor read per account, each round within the read budget, a few
# seconds apart); accounts left after them, a fleet of tens of thousands in one subscription, start on the default
# estimate: the estimate only orders the accounts, and the history of the rollout's first generation stays bounded.
MAX_ESTIMATE_ROUNDS = 120
# Discovery only reads, so a failure that outlasts its activity's retries (an outage of minutes) is tried again on a
# durable timer, 1, 2, 4, 8 and 16 minutes later, before the rollout ends with none of its scope's accounts. A
# refusal (a 4xx) is final. `make chaos` saw 3 of its 14 rollouts end with no account in December 2026 (none of 4 at
# 6a2433e): four resets of the discovery query in a row, a POST the SDK did not send again (cmk.clients now does).
DISCOVERY_ROUNDS = 6
FIRST_DISCOVERY_RETRY_SECONDS = 60


class DiscoverySummary(TypedDict):
    resourceGraphPages: int
    missing: int
    scopeFindings: list[Any]


class Following(TypedDict):
    """What a rollout carries into its later generations, where it follows its lanes by reading them."""

    laneIds: list[str]
    rows: list[ReportRow]  # the accounts no lane took (not found, no key)
    total: int
    timings: dict[str, str]
    discovery: DiscoverySummary
    refreshSeconds: int
    byOutcome: dict[str, int]
    byPhase: dict[str, int]


class RolloutInput(TypedDict):
    request: RolloutRequest
    config: OrchestrationConfig
    following: NotRequired[Following]


@bp.orchestration_trigger(context_name="context", orchestration=ROLLOUT_ORCHESTRATOR)
def cmk_rollout(context: df.DurableOrchestrationContext) -> Generator[Any, Any, dict[str, Any] | None]:
    return (yield from run_rollout(context))


def run_rollout(context: df.DurableOrchestrationContext) -> Generator[Any, Any, dict[str, Any] | None]:
    data: RolloutInput = context.get_input()  # type: ignore[assignment]  # the starter built it
    request, config = data["request"], data["config"]
    following = data.get("following")
    if following is not None:
        return (yield from _follow_lanes(context, data, following))
    timings = {"startedAt": now_iso(context)}
    _status(context, "discovering", timings["startedAt"], 0, Counter(), {})
    rows: list[ReportRow] = []
    try:
        discovery = yield from _discover(context, request, config)
    except Exception as error:
        discovery = {"accounts": [], "missing": [], "resourceGraphPages": 0}
        reason = f"Discovery failed: {first_line(error)}"
        rows = [unplanned_row(account, "Failed", reason) for account in request.get("accounts", [])]
        return _output(context, request, rows, timings, _summary(discovery), reason)
    timings["discoveredAt"] = now_iso(context)
    discovery = yield from _estimate_encryptions(context, discovery, config)

    planned, unplanned = plan_accounts(request, discovery)
    rows += unplanned
    total = len(rows) + len(planned)
    lanes = plan_lanes(planned, request["maxConcurrency"], request["maxConcurrencyPerSubscription"]) if planned else []
    # A dry run changes nothing, so it has no key PATCH to hold its accounts before: its lanes prepare nothing ahead.
    preparing = preparing_per_lane(len(lanes), 0 if request["dryRun"] else request.get("maxPreparing", 0))
    template: LaneTemplate = {"dryRun": request["dryRun"]}
    if "identity" in request:
        template["identity"] = request["identity"]
    if "throughputRaise" in request:
        template["throughputRaise"] = request["throughputRaise"]
    if "requestedBy" in request:
        template["requestedBy"] = request["requestedBy"]
    if "tenants" in discovery:
        template["resourceGraph"] = {
            "at": timings["discoveredAt"],
            "tenants": discovery["tenants"],
            "vaults": discovery.get("vaults", {}),
        }
    lane_ids = [f"{context.instance_id}-lane-{index}" for index in range(len(lanes))]
    lane_tasks = [
        context.call_sub_orchestrator(
            LANE_ORCHESTRATOR, _lane_input(context, index, lane, template, config, preparing[index]), lane_id
        )
        for index, (lane, lane_id) in enumerate(zip(lanes, lane_ids, strict=True))
    ]
    by_outcome: Counter[str] = Counter(row["outcome"] for row in rows)
    by_phase: dict[str, int] = {"queued": len(planned)}
    _status(context, "running", timings["startedAt"], total, by_outcome, by_phase, lanes=len(lanes))
    if lane_tasks:
        all_lanes = context.task_all(lane_tasks)
        refresh = FIRST_STATUS_REFRESH_SECONDS
        ended = False
        for _ in range(REFRESHES_PER_GENERATION):
            timer: TimerTask = sleep(context, refresh)
            winner = yield context.task_any([all_lanes, timer])
            if winner is all_lanes:
                timer.cancel()  # type: ignore[no-untyped-call]
                ended = True
                break
            live = yield from _refresh(context, lane_ids, timings["startedAt"], by_outcome, total, config)
            if live is not None:
                by_phase = live
            refresh = min(refresh * 2, MAX_STATUS_REFRESH_SECONDS)
        lane_rows: list[ReportRow] | None = None
        if ended:
            broken: dict[str, str] = {}
            for lane_id, task in zip(lane_ids, lane_tasks, strict=True):
                # task_all fails fast: if a lane itself broke, the others may still be running; wait for them all.
                if not task.is_completed:
                    with contextlib.suppress(Exception):  # reported below from the task's state
                        yield task
                if task.state == TaskState.FAILED:  # lanes catch account failures: this is a lane that broke
                    broken[lane_id] = f"Lane failed: {first_line(Exception(task.result))}"
            try:
                lane_rows = yield from _rows_of_lanes(context, lanes, lane_ids, broken, config)
            except Exception as error:  # noqa: BLE001 - read again by the next generation, at each refresh
                if not context.is_replaying:
                    logger.warning("Rollout %s: lane rows not read: %s", context.instance_id, first_line(error))
                refresh, by_outcome, by_phase = FIRST_STATUS_REFRESH_SECONDS, Counter(), {}
        if lane_rows is None:
            # Weeks-long rollouts bound their history, and rows that could not be read are read again: the next
            # generation follows the lanes by reading them.
            later: Following = {
                "laneIds": lane_ids,
                "rows": rows,
                "total": total,
                "timings": timings,
                "discovery": _summary(discovery),
                "refreshSeconds": refresh,
                "byOutcome": dict(by_outcome),
                "byPhase": by_phase,
            }
            context.continue_as_new({"request": request, "config": config, "following": later})
            return None
        rows += lane_rows
    return _output(context, request, rows, timings, _summary(discovery), None)


def _discover(
    context: df.DurableOrchestrationContext, request: RolloutRequest, config: OrchestrationConfig
) -> Generator[Any, Any, Discovery]:
    """The accounts named or in scope (activities.discover_accounts), tried DISCOVERY_ROUNDS times unless Azure
    refuses; raises the last failure."""
    payload = {"accounts": request.get("accounts"), "scope": request.get("scope"), "key": _key(request)}
    wait = FIRST_DISCOVERY_RETRY_SECONDS
    for _ in range(DISCOVERY_ROUNDS - 1):
        try:
            discovery: Discovery = yield from call_arm(context, DISCOVER_ACCOUNTS, payload, config)
            return discovery
        except Exception as error:  # noqa: BLE001 - the activity failed after its retries: a fault, tried again
            if isinstance(error, ArmCallFailed) and error.kind == "refused":
                raise
            if not context.is_replaying:
                logger.warning(
                    "Rollout %s: discovery failed, again in %d s: %s", context.instance_id, wait, first_line(error)
                )
        yield sleep(context, wait)
        wait *= 2
    last: Discovery = yield from call_arm(context, DISCOVER_ACCOUNTS, payload, config)
    return last


def _estimate_encryptions(
    context: df.DurableOrchestrationContext, discovery: Discovery, config: OrchestrationConfig
) -> Generator[Any, Any, Discovery]:
    """Discovery with each account's expected encryption time, read in rounds within the ARM read budget (see
    cmk.rollouts). Best effort: an account not estimated (rounds exhausted, the reads failing) keeps none and is
    planned on the default estimate."""
    pending = [account["accountId"] for account in discovery["accounts"] if "expectedSeconds" not in account]
    estimates: dict[str, float] = {}
    for _ in range(MAX_ESTIMATE_ROUNDS):
        batch = next_estimate_batch(pending)
        if not batch:
            break
        try:
            result: EncryptionEstimates = yield from call_arm(context, ESTIMATE_ENCRYPTION, {"accounts": batch}, config)
        except Exception as error:
            if not context.is_replaying:
                logger.warning(
                    "Rollout %s: estimates stopped, the rest on the default: %s", context.instance_id, first_line(error)
                )
            break
        estimates.update(result["estimates"])
        pending = [account_id for account_id in pending if account_id not in estimates]
        if pending:
            wait = max(result["retryAfterSeconds"], WAKE_GRID_SECONDS)
            yield sleep(context, wake_delay_seconds(context.current_utc_datetime.timestamp(), wait))
    if not estimates:
        return discovery
    return {
        **discovery,
        "accounts": [
            {**account, "expectedSeconds": estimates[account["accountId"]]}
            if account["accountId"] in estimates
            else account
            for account in discovery["accounts"]
        ],
    }


def _rows_of_lanes(
    context: df.DurableOrchestrationContext,
    lanes: list[list[PlannedAccount]],
    lane_ids: list[str],
    broken: dict[str, str],
    config: OrchestrationConfig,
) -> Generator[Any, Any, list[ReportRow]]:
    """Every planned account's row, once all lanes have ended: the rows each lane wrote, the others read from their
    orchestrations. A lane that broke had finished some accounts and handed others to orchestrations that may still
    be encrypting: each is reported as it is, never Failed wholesale. Raises when the rows cannot be read."""
    collected: CollectedRows = yield from call_arm(context, COLLECT_LANE_ROWS, {"lanes": lane_ids}, config)
    rows = list(collected["rows"])
    reported = {str(row["accountId"]).lower() for row in rows}
    for lane, lane_id in zip(lanes, lane_ids, strict=True):  # a lane not found: its accounts still get a row each
        reason = broken.get(lane_id) or f"Lane {lane_id} was not found: its accounts' outcomes could not be read"
        rows += [
            unplanned_row(a["accountId"], "Failed", reason, a["keyUri"])
            for a in lane
            if a["accountId"].lower() not in reported
        ]
    return rows


def _refresh(
    context: df.DurableOrchestrationContext,
    lane_ids: list[str],
    started_at: str,
    by_outcome: Counter[str],
    total: int,
    config: OrchestrationConfig,
) -> Generator[Any, Any, dict[str, Any] | None]:
    """Read the lanes' live counts into the custom status; the summary read (None when it could not be read: not
    knowing is not failing, the next refresh reads again)."""
    try:
        summary = yield from call_arm(context, SUMMARIZE_ROLLOUT, {"lanes": lane_ids}, config)
    except Exception:  # noqa: BLE001 - see the docstring
        return None
    if not (isinstance(summary, dict) and "byOutcome" in summary):
        return None
    live: Counter[str] = by_outcome + Counter(summary["byOutcome"])
    _status(context, "running", started_at, total, live, summary["byPhase"], lanes=len(lane_ids))
    result: dict[str, Any] = summary
    return result


def _follow_lanes(
    context: df.DurableOrchestrationContext, data: RolloutInput, following: Following
) -> Generator[Any, Any, dict[str, Any] | None]:
    """A later generation: read the lanes on the refresh timer until none runs, then collect their rows."""
    request, config = data["request"], data["config"]
    lane_ids = following["laneIds"]
    by_outcome: Counter[str] = Counter(row["outcome"] for row in following["rows"])
    started_at = following["timings"]["startedAt"]
    _status(
        context,
        "running",
        started_at,
        following["total"],
        by_outcome + Counter(following["byOutcome"]),
        following["byPhase"],
        lanes=len(lane_ids),
    )
    for _ in range(REFRESHES_PER_GENERATION):
        summary = yield from _refresh(context, lane_ids, started_at, by_outcome, following["total"], config)
        if summary is not None:
            following["byOutcome"], following["byPhase"] = summary["byOutcome"], summary["byPhase"]
            if summary.get("runningLanes") == 0:
                try:
                    collected: CollectedRows = yield from call_arm(
                        context, COLLECT_LANE_ROWS, {"lanes": lane_ids}, config
                    )
                except Exception as error:  # noqa: BLE001 - read again at the next refresh
                    if not context.is_replaying:
                        logger.warning("Rollout %s: lane rows not read: %s", context.instance_id, first_line(error))
                else:
                    rows = following["rows"] + collected["rows"]
                    error_text = "; ".join(collected["errors"]) or None
                    return _output(context, request, rows, following["timings"], following["discovery"], error_text)
        yield sleep(context, following["refreshSeconds"])
        following["refreshSeconds"] = min(following["refreshSeconds"] * 2, MAX_STATUS_REFRESH_SECONDS)
    context.continue_as_new({"request": request, "config": config, "following": following})
    return None


def _summary(discovery: Discovery) -> DiscoverySummary:
    return {
        "resourceGraphPages": discovery["resourceGraphPages"],
        "missing": len(discovery["missing"]),
        "scopeFindings": list(discovery.get("scopeFindings", [])),
    }


def _key(request: RolloutRequest) -> RolloutKey:
    return {"keyUri": request["keyUri"]} if "keyUri" in request else {"keyPolicy": request["keyPolicy"]}


def _lane_input(
    context: df.DurableOrchestrationContext,
    index: int,
    lane: list[PlannedAccount],
    template: LaneTemplate,
    config: OrchestrationConfig,
    preparing: int,
) -> LaneInput:
    graph = template.get("resourceGraph")
    if graph is not None:
        # Each lane carries (and replays) only what concerns its accounts.
        template = {**template, "resourceGraph": graph_answers_about(graph, lane)}
    return {
        "rolloutId": context.instance_id,
        "lane": index,
        "accounts": lane,
        "template": template,
        "config": config,
        "position": 0,
        "rows": [],
        "preparing": preparing,
        "upcoming": [],
    }


def _status(
    context: df.DurableOrchestrationContext,
    phase: str,
    started_at: str,
    total: int,
    by_outcome: Counter[str],
    by_phase: dict[str, int],
    *,
    lanes: int = 0,
) -> None:
    context.set_custom_status(
        {
            "phase": phase,
            # Azure resets createdTime at each continue-as-new (azure-functions-durable-extension #2088): views
            # read the rollout's start from here.
            "startedAt": started_at,
            "total": total,
            "done": sum(by_outcome.values()),
            "byOutcome": dict(by_outcome),
            "byPhase": by_phase,
            "lanes": lanes,
            "updatedAt": now_iso(context),
        }
    )


def _output(
    context: df.DurableOrchestrationContext,
    request: RolloutRequest,
    rows: list[ReportRow],
    timings: dict[str, str],
    discovery: DiscoverySummary,
    error: str | None,
) -> dict[str, Any]:
    timings["finishedAt"] = now_iso(context)
    totals: Counter[str] = Counter(row["outcome"] for row in rows)
    _status(context, "done", timings["startedAt"], len(rows), totals, {})
    rows = sorted(rows, key=lambda row: row["accountId"].lower())
    for row in rows:  # every row says who asked: the account's own requester, else the rollout's
        row["requestedBy"] = row.get("requestedBy") or request.get("requestedBy")
    return {
        "rolloutId": context.instance_id,
        "dryRun": request["dryRun"],
        "total": len(rows),
        "totals": dict(totals),
        "accounts": rows,
        "discovery": discovery,
        "timings": timings,
        "error": error,
        "requestedBy": request.get("requestedBy"),
    }
