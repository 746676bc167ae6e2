"""A rollout lane: enables its accounts one after another. One lane is one unit of concurrency.

For each account the lane first asks whether an orchestration of the account is running already (an
approval-gated request, an Event Grid enrolment, another rollout): then it waits for that one, reading its status
on durable timers, and reports the outcome it reached. Otherwise it runs a new account orchestration as a
sub-orchestration, under an instance id never used before, so nothing depends on the engine's answer to a
duplicate id; a watchdog timer reads the child's status too, so a child an admin terminated (which may never report
back) does not hold the lane. The lane's slot is held until Azure's encryption ends: an orchestration that stopped
following an encryption (its deadline, or terminated after the key PATCH) is followed by a new one, which sends no
second PATCH. So a rollout's concurrency cap holds in Azure, not only in the lanes. A failing account is recorded
and the lane moves on; the lane bounds its history with continue_as_new between accounts (and while it reads
someone else's orchestration), carrying the rows it has so far.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Generator
from datetime import datetime, timedelta
from typing import Any, NotRequired, TypedDict

import azure.durable_functions as df
from azure.durable_functions.models.Task import TaskState, TimerTask

from activities.prepare_account_start import PREPARE_ACCOUNT_START
from activities.read_account_instance import READ_ACCOUNT_INSTANCE
from cmk.auth import Actor
from cmk.fleet import PlannedAccount
from cmk.orchestration import (
    ACCOUNT_ORCHESTRATOR,
    LANE_ORCHESTRATOR,
    AccountInput,
    OrchestrationConfig,
    Outcome,
    account_instance_id,
    short_digest,
)
from cmk.requests import EnablementRequest
from cmk.rollouts import ReportRow, report_row, unplanned_row
from cmk.throughput import ThroughputRaiseRequest
from coordination.account_instances import ACTIVE_RUNTIME_STATUSES, InstanceReading, Preparation
from orchestrators.steps import first_line, retry_options, sleep

bp = df.Blueprint()

ACCOUNTS_PER_GENERATION = 25
READS_PER_GENERATION = 40
FIRST_WAIT_SECONDS = 10
MAX_WAIT_SECONDS = 300
WATCHDOG_FIRST_SECONDS = 600
WATCHDOG_MAX_SECONDS = 6 * 3600
# Claims of one account: the first, and new ones after an orchestration stopped following its encryption.
MAX_CLAIMS = 4
FOLLOWING_PHASES = {"enabling", "encrypting", "verifying"}


class LaneTemplate(TypedDict, total=False):
    dryRun: bool
    identity: str
    throughputRaise: ThroughputRaiseRequest
    requestedBy: Actor  # the rollout's requester: each account's request records it


class CurrentAccount(TypedDict):
    instanceId: str
    started: bool  # started by this lane (a sub-orchestration), or someone else's that the lane reads
    claims: int
    waitSeconds: int
    phase: str | None
    input: NotRequired[AccountInput]


class LaneInput(TypedDict):
    rolloutId: str
    lane: int
    accounts: list[PlannedAccount]
    template: LaneTemplate
    config: OrchestrationConfig
    position: int
    rows: list[ReportRow]
    current: NotRequired[CurrentAccount | None]


@bp.orchestration_trigger(context_name="context", orchestration=LANE_ORCHESTRATOR)
def cmk_rollout_lane(context: df.DurableOrchestrationContext) -> Generator[Any, Any, list[ReportRow] | None]:
    return (yield from run_lane(context))


def run_lane(context: df.DurableOrchestrationContext) -> Generator[Any, Any, list[ReportRow] | None]:
    lane: LaneInput = context.get_input()  # type: ignore[assignment]  # the rollout built it
    accounts, rows = lane["accounts"], lane["rows"]
    handled = reads = 0
    while lane["position"] < len(accounts):
        account = accounts[lane["position"]]
        current = lane.get("current")
        try:
            if current is None:
                current = yield from _claim(context, lane, account, claims=0)
            if current["started"]:
                # Our own orchestration: its completion wakes the lane; a watchdog notices one that will not report
                # back (terminated by an admin).
                reading = yield from _await_own(context, lane, current)
            else:
                # Someone else's (an approval-gated request, an enrolment, another rollout): read its status.
                _report(context, lane, rows, current["instanceId"], account["accountId"])
                reading = yield context.call_activity_with_retry(
                    READ_ACCOUNT_INSTANCE, retry_options(lane["config"]), {"instanceId": current["instanceId"]}
                )
                reads += 1
            row = _row_when_done(reading, current, account)
            if row is None and _must_follow_again(reading, current):
                lane["current"] = None
                current = yield from _claim(context, lane, account, claims=current["claims"])
                lane["current"] = current
                continue
            if row is None:
                lane["current"] = current
                yield context.create_timer(_next_read(context, reading, current))
                if reads >= READS_PER_GENERATION:
                    _continue(context, lane, rows)
                    return None
                continue
        except Exception as error:  # one account's failure never stops the others
            row = unplanned_row(account["accountId"], "Failed", first_line(error), account["keyUri"])
            row["instanceId"] = current["instanceId"] if current else None
        rows.append(row)
        lane["current"] = None
        lane["position"] += 1
        handled += 1
        if (handled >= ACCOUNTS_PER_GENERATION or reads >= READS_PER_GENERATION) and lane["position"] < len(accounts):
            _continue(context, lane, rows)
            return None
    _report(context, lane, rows, None, None)
    return rows


def _claim(
    context: df.DurableOrchestrationContext, lane: LaneInput, account: PlannedAccount, *, claims: int
) -> Generator[Any, Any, CurrentAccount]:
    """The orchestration that handles the account: one already running, or a new one under an id never used."""
    request: EnablementRequest = {"accountId": account["accountId"], "keyUri": account["keyUri"]}
    template = lane["template"]
    if template.get("dryRun"):
        request["dryRun"] = True
    if "identity" in template:
        request["identity"] = template["identity"]
    if "throughputRaise" in template:
        request["throughputRaise"] = template["throughputRaise"]
    if "requestedBy" in template:
        request["requestedBy"] = template["requestedBy"]
    child_input: AccountInput = {
        "request": request,
        "config": lane["config"],
        "expectedSeconds": account["expectedSeconds"],
    }
    preparation: Preparation = yield context.call_activity_with_retry(
        PREPARE_ACCOUNT_START,
        retry_options(lane["config"]),
        {"input": child_input, "exclusive": not template.get("dryRun")},
    )
    if preparation["running"] is not None:
        return _current(preparation["running"], started=False, claims=claims + 1, child_input=None)
    # Deterministic per rollout, account and claim, and never used before: no duplicate id for the engine to judge.
    instance_id = account_instance_id(account["accountId"], short_digest(f"{lane['rolloutId']}/{claims}"))
    return _current(instance_id, started=True, claims=claims + 1, child_input=preparation["input"])


def _current(instance_id: str, *, started: bool, claims: int, child_input: AccountInput | None) -> CurrentAccount:
    current: CurrentAccount = {
        "instanceId": instance_id,
        "started": started,
        "claims": claims,
        "waitSeconds": FIRST_WAIT_SECONDS,
        "phase": None,
    }
    if child_input is not None:
        current["input"] = child_input
    return current


def _await_own(
    context: df.DurableOrchestrationContext, lane: LaneInput, current: CurrentAccount
) -> Generator[Any, Any, InstanceReading]:
    """Run the account orchestration as a sub-orchestration and wait for it. A watchdog timer (backing off to
    WATCHDOG_MAX_SECONDS) reads its status, so a child an admin terminated, which may never report back to its
    parent, does not hold the lane forever."""
    _report(context, lane, lane["rows"], current["instanceId"], current["input"]["request"]["accountId"])
    child = context.call_sub_orchestrator(ACCOUNT_ORCHESTRATOR, current["input"], current["instanceId"])
    watch = WATCHDOG_FIRST_SECONDS
    while True:
        timer: TimerTask = sleep(context, watch)
        winner = yield context.task_any([child, timer])
        if winner is child:
            timer.cancel()  # type: ignore[no-untyped-call]
            if child.state != TaskState.FAILED:
                return {
                    "exists": True,
                    "runtimeStatus": "Completed",
                    "output": child.result,
                    "phase": "done",
                    "nextPollAt": None,
                }
        reading: InstanceReading = yield context.call_activity_with_retry(
            READ_ACCOUNT_INSTANCE, retry_options(lane["config"]), {"instanceId": current["instanceId"]}
        )
        if winner is child or reading["runtimeStatus"] not in ACTIVE_RUNTIME_STATUSES:
            return reading
        watch = min(watch * 2, WATCHDOG_MAX_SECONDS)


def _row_when_done(reading: InstanceReading, current: CurrentAccount, account: PlannedAccount) -> ReportRow | None:
    """The account's report row once its orchestration has ended for good, else None (still running, or to be
    followed again)."""
    status = reading["runtimeStatus"]
    if reading["exists"] and status in ("Pending", "Running", "ContinuedAsNew", "Suspended"):
        return None
    output = reading["output"]
    if status == "Completed" and isinstance(output, dict) and "outcome" in output:
        if output["outcome"] == "Encrypting" and current["claims"] < MAX_CLAIMS:
            return None
        row = report_row(output, current["instanceId"])  # type: ignore[arg-type]  # an account orchestration's output
        if not current["started"]:
            row["reason"] = f"{row['reason']} (handled by orchestration {current['instanceId']}, already running)"
        return row
    if _stopped_while_following(reading) and current["claims"] < MAX_CLAIMS:
        return None
    ended = "does not exist" if not reading["exists"] else f"ended {status}"
    reason = f"Orchestration {current['instanceId']} {ended} in phase {reading['phase'] or 'unknown'}"
    outcome: Outcome
    if reading["phase"] in FOLLOWING_PHASES:
        outcome = "Encrypting"
        reason += "; the key PATCH may be running in Azure: run the account again to follow it"
    else:
        outcome = "Failed"
        reason += " before the key PATCH; nothing irreversible was done"
    row = unplanned_row(account["accountId"], outcome, reason, account["keyUri"])
    row["instanceId"] = current["instanceId"]
    return row


def _stopped_while_following(reading: InstanceReading) -> bool:
    """Ended without an outcome (terminated, or failed: the output is then the reason, or nothing) at a point
    where the key PATCH may have been sent."""
    has_outcome = isinstance(reading["output"], dict) and "outcome" in reading["output"]
    return not has_outcome and reading["phase"] in FOLLOWING_PHASES


def _must_follow_again(reading: InstanceReading, current: CurrentAccount) -> bool:
    """The orchestration ended but Azure may still encrypt: claim again so that someone follows it to its end."""
    status = reading["runtimeStatus"]
    if reading["exists"] and status in ("Pending", "Running", "ContinuedAsNew", "Suspended"):
        return False
    if current["claims"] >= MAX_CLAIMS:
        return False
    output = reading["output"]
    if isinstance(output, dict) and output.get("outcome") == "Encrypting":
        return True
    return not reading["exists"] or _stopped_while_following(reading)


def _next_read(context: df.DurableOrchestrationContext, reading: InstanceReading, current: CurrentAccount) -> datetime:
    """Soon after the account orchestration's own next poll, when it says one; else a growing wait."""
    now = context.current_utc_datetime
    if reading["phase"] != current["phase"]:
        current["phase"] = reading["phase"]
        current["waitSeconds"] = FIRST_WAIT_SECONDS
    wait = current["waitSeconds"]
    current["waitSeconds"] = min(int(wait * 1.5), MAX_WAIT_SECONDS)
    if reading["nextPollAt"]:
        due = datetime.fromisoformat(reading["nextPollAt"].replace("Z", "+00:00"))
        wait = int(min(MAX_WAIT_SECONDS, max(FIRST_WAIT_SECONDS, (due - now).total_seconds() + FIRST_WAIT_SECONDS)))
    return now + timedelta(seconds=wait)


def _continue(context: df.DurableOrchestrationContext, lane: LaneInput, rows: list[ReportRow]) -> None:
    current = lane.get("current")
    _report(context, lane, rows, current["instanceId"] if current else None, None)
    context.continue_as_new(lane)


def _report(
    context: df.DurableOrchestrationContext,
    lane: LaneInput,
    rows: list[ReportRow],
    instance_id: str | None,
    account_id: str | None,
) -> None:
    done = Counter(row["outcome"] for row in rows)
    remaining = len(lane["accounts"]) - lane["position"] - (1 if instance_id else 0)
    current = {"instanceId": instance_id, "accountId": account_id} if instance_id else None
    context.set_custom_status({"lane": lane["lane"], "done": dict(done), "current": current, "remaining": remaining})
