"""The fleet rollout: discover the accounts, choose each one's key, plan lanes under the concurrency caps, run
them, and report every account named or discovered with an outcome."""

from __future__ import annotations

import contextlib
from collections import Counter
from collections.abc import Generator
from typing import Any, TypedDict

import azure.durable_functions as df
from azure.durable_functions.models.Task import TaskState, TimerTask

from activities.discover_accounts import DISCOVER_ACCOUNTS
from activities.summarize_rollout import SUMMARIZE_ROLLOUT
from cmk.fleet import PlannedAccount, plan_lanes
from cmk.orchestration import LANE_ORCHESTRATOR, ROLLOUT_ORCHESTRATOR, OrchestrationConfig
from cmk.rollouts import Discovery, ReportRow, RolloutRequest, plan_accounts, unplanned_row
from orchestrators.rollout_lane import LaneInput, LaneTemplate
from orchestrators.steps import call_arm, first_line, now_iso, sleep

bp = df.Blueprint()

FIRST_STATUS_REFRESH_SECONDS = 60
MAX_STATUS_REFRESH_SECONDS = 600


class RolloutInput(TypedDict):
    request: RolloutRequest
    config: OrchestrationConfig


@bp.orchestration_trigger(context_name="context", orchestration=ROLLOUT_ORCHESTRATOR)
def cmk_rollout(context: df.DurableOrchestrationContext) -> Generator[Any, Any, dict[str, Any]]:
    return (yield from run_rollout(context))


def run_rollout(context: df.DurableOrchestrationContext) -> Generator[Any, Any, dict[str, Any]]:
    data: RolloutInput = context.get_input()  # type: ignore[assignment]  # the starter built it
    request, config = data["request"], data["config"]
    timings = {"startedAt": now_iso(context)}
    _status(context, "discovering", 0, Counter(), {})
    rows: list[ReportRow] = []
    try:
        discovery: Discovery = yield from call_arm(
            context, DISCOVER_ACCOUNTS, {"accounts": request.get("accounts"), "scope": request.get("scope")}, config
        )
    except Exception as error:
        discovery = {"accounts": [], "missing": [], "resourceGraphPages": 0}
        reason = f"Discovery failed: {first_line(error)}"
        rows = [unplanned_row(account, "Failed", reason) for account in request.get("accounts", [])]
        return _output(context, request, rows, timings, discovery, reason)
    timings["discoveredAt"] = now_iso(context)

    planned, unplanned = plan_accounts(request, discovery)
    rows += unplanned
    total = len(rows) + len(planned)
    lanes = plan_lanes(planned, request["maxConcurrency"], request["maxConcurrencyPerSubscription"]) if planned else []
    template: LaneTemplate = {"dryRun": request["dryRun"]}
    if "identity" in request:
        template["identity"] = request["identity"]
    if "throughputRaise" in request:
        template["throughputRaise"] = request["throughputRaise"]
    if "requestedBy" in request:
        template["requestedBy"] = request["requestedBy"]
    lane_ids = [f"{context.instance_id}-lane-{index}" for index in range(len(lanes))]
    lane_tasks = [
        context.call_sub_orchestrator(LANE_ORCHESTRATOR, _lane_input(context, index, lane, template, config), lane_id)
        for index, (lane, lane_id) in enumerate(zip(lanes, lane_ids, strict=True))
    ]
    by_outcome: Counter[str] = Counter(row["outcome"] for row in rows)
    _status(context, "running", total, by_outcome, {"queued": len(planned)}, lanes=len(lanes))
    if lane_tasks:
        all_lanes = context.task_all(lane_tasks)
        refresh = FIRST_STATUS_REFRESH_SECONDS
        while True:
            timer: TimerTask = sleep(context, refresh)
            winner = yield context.task_any([all_lanes, timer])
            if winner is all_lanes:
                timer.cancel()  # type: ignore[no-untyped-call]
                break
            summary = yield from call_arm(context, SUMMARIZE_ROLLOUT, {"lanes": lane_ids}, config)
            if isinstance(summary, dict) and "byOutcome" in summary:
                live: Counter[str] = by_outcome + Counter(summary["byOutcome"])
                _status(context, "running", total, live, summary["byPhase"], lanes=len(lanes))
            refresh = min(refresh * 2, MAX_STATUS_REFRESH_SECONDS)
        for lane, task in zip(lanes, lane_tasks, strict=True):
            # task_all fails fast: if a lane itself broke, the others may still be running; wait for them all.
            if not task.is_completed:
                with contextlib.suppress(Exception):  # reported below from the task's state
                    yield task
            if task.state == TaskState.FAILED:  # lanes catch account failures: this is a lane that broke
                reason = f"Lane failed: {first_line(Exception(task.result))}"
                rows += [unplanned_row(a["accountId"], "Failed", reason, a["keyUri"]) for a in lane]
            else:
                rows += task.result or []
    return _output(context, request, rows, timings, discovery, None)


def _lane_input(
    context: df.DurableOrchestrationContext,
    index: int,
    lane: list[PlannedAccount],
    template: LaneTemplate,
    config: OrchestrationConfig,
) -> LaneInput:
    return {
        "rolloutId": context.instance_id,
        "lane": index,
        "accounts": lane,
        "template": template,
        "config": config,
        "position": 0,
        "rows": [],
    }


def _status(
    context: df.DurableOrchestrationContext,
    phase: str,
    total: int,
    by_outcome: Counter[str],
    by_phase: dict[str, int],
    *,
    lanes: int = 0,
) -> None:
    context.set_custom_status(
        {
            "phase": phase,
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
    discovery: Discovery,
    error: str | None,
) -> dict[str, Any]:
    timings["finishedAt"] = now_iso(context)
    totals: Counter[str] = Counter(row["outcome"] for row in rows)
    _status(context, "done", len(rows), totals, {})
    rows = sorted(rows, key=lambda row: row["accountId"].lower())
    for row in rows:  # every row says who asked: the account's own requester, else the rollout's
        row["requestedBy"] = row.get("requestedBy") or request.get("requestedBy")
    return {
        "rolloutId": context.instance_id,
        "dryRun": request["dryRun"],
        "total": len(rows),
        "totals": dict(totals),
        "accounts": rows,
        "discovery": {
            "resourceGraphPages": discovery["resourceGraphPages"],
            "missing": len(discovery["missing"]),
            "scopeFindings": discovery.get("scopeFindings", []),
        },
        "timings": timings,
        "error": error,
        "requestedBy": request.get("requestedBy"),
    }
