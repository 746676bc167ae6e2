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
someone else's orchestration).

A lane's input is parsed at every one of its episodes, so it carries no more than it must: its planned accounts,
its counts, and only the report rows it wrote itself (an account whose orchestration broke, or that someone else's
orchestration handled, or that took a second claim). The row of every other account is the output of the
orchestration the lane started for it at its first claim (`rollout_instance_id`), a completed orchestration that
never changes; the rollout collects those rows once, at its end (activities.collect_lane_rows).

The cap bounds encryptions, not preparation: a lane with `preparing` > 0 starts its next accounts' orchestrations
ahead of its slot, each with a `hold`, so they run preflight, identity and key access while the slot's encryption
runs and then wait (phase waitingForSlot) for the lane's SLOT_EVENT before their key PATCH. The lane raises it
(activity release_account_slot) the moment the account holding the slot has ended for good, so the slot is
refilled at once. A held orchestration whose lane is gone (terminated, failed) ends by itself, having changed
nothing irreversible (orchestrators.account). Orchestrations started in an earlier generation of the lane are
followed by reading their status (their completion no longer reaches the lane), and one released but still
waiting is released again. Every wait of the lane is a task_any with a timer it cancels when something else
wins, so the out-of-process protocol never holds back the lane's next action behind a running child
(docs/durable-protocol.md §1.5, §2.5).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Generator
from datetime import datetime, timedelta
from typing import Any, NotRequired, TypedDict

import azure.durable_functions as df
from azure.durable_functions.models.Task import TaskBase, TaskState, TimerTask

from activities.prepare_account_start import PREPARE_ACCOUNT_START
from activities.read_account_instance import READ_ACCOUNT_INSTANCE
from activities.release_account_slot import RELEASE_ACCOUNT_SLOT
from cmk.auth import Actor
from cmk.fleet import PlannedAccount, estimate_scale, scaled_estimate
from cmk.inventory import GraphAnswers, graph_answers_about
from cmk.orchestration import (
    ACCOUNT_ORCHESTRATOR,
    INSTANCE_SUFFIX_SEPARATOR,
    LANE_ORCHESTRATOR,
    AccountInput,
    OrchestrationConfig,
    Outcome,
    account_instance_base,
    rollout_instance_id,
)
from cmk.requests import EnablementRequest
from cmk.rollouts import ReportRow, report_row, unplanned_row
from cmk.throughput import ThroughputRaiseRequest
from coordination.account_instances import ACTIVE_RUNTIME_STATUSES, InstanceReading, Preparation
from orchestrators.steps import first_line, retry_options, sleep

bp = df.Blueprint()

# A lane replays its whole generation's history at every episode (about 9 events an account in a dry run, two
# episodes an account), and the Durable SDK parses each event's timestamp with dateutil: short generations keep
# that replay small. Measured on a 3,000-account dry run (python -m bench.fleet dryrun 3000, 2 worker processes):
# the lanes' orchestrator CPU was 67 s with 25 accounts a generation (113 events an episode), 34 s with 8 (37 events),
# 30 s with 4.
ACCOUNTS_PER_GENERATION = 8
# A lane that prepares ahead always has orchestrations in flight when a generation ends, and follows them from then
# on by reading their status (an activity and a timer each) instead of their completion: its generations are best
# long. Measured on a 1,000-account rollout (python -m bench.fleet rollout-short 1000): with 8 accounts a
# generation the lanes took 10,815 episodes and the run 525 s wall (335 s of host CPU); with 25, 7,510 episodes
# and 413 s (269 s).
ACCOUNTS_PER_GENERATION_PREPARING = 25
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
    # What the rollout's discovery asked Resource Graph about the lane's accounts, for their preflights.
    resourceGraph: GraphAnswers


class CurrentAccount(TypedDict):
    instanceId: str
    started: bool  # started by this lane (a sub-orchestration), or someone else's that the lane reads
    claims: int
    waitSeconds: int
    phase: str | None
    input: NotRequired[AccountInput]  # until it is launched
    launched: NotRequired[bool]  # the lane has started it (absent: not yet)
    held: NotRequired[bool]  # started ahead of the slot: waits for the lane's SLOT_EVENT before its key PATCH
    released: NotRequired[bool]  # the lane has given it the slot


class LaneInput(TypedDict):
    rolloutId: str
    lane: int
    accounts: list[PlannedAccount]
    template: LaneTemplate
    config: OrchestrationConfig
    position: int
    # The report rows the lane wrote itself; every other account before `position` has its row in the output of
    # its first claim's orchestration (see the module's docstring). Lanes started before this was so carry all.
    rows: list[ReportRow]
    # The finished accounts by outcome (absent in lanes started before it was carried: counted from `rows`).
    counts: NotRequired[dict[str, int]]
    current: NotRequired[CurrentAccount | None]
    # How many accounts the lane prepares ahead of its slot (absent: none), and those it has claimed: the accounts
    # at position + 1, position + 2, ... in order.
    preparing: NotRequired[int]
    upcoming: NotRequired[list[CurrentAccount]]
    # How far the lane's finished encryptions took against their estimates (cmk.fleet.estimate_scale).
    estimateScale: NotRequired[float]


@bp.orchestration_trigger(context_name="context", orchestration=LANE_ORCHESTRATOR)
def cmk_rollout_lane(context: df.DurableOrchestrationContext) -> Generator[Any, Any, list[ReportRow] | None]:
    return (yield from run_lane(context))


def run_lane(context: df.DurableOrchestrationContext) -> Generator[Any, Any, list[ReportRow] | None]:
    lane: LaneInput = context.get_input()  # type: ignore[assignment]  # the rollout built it
    accounts, rows = lane["accounts"], lane["rows"]
    counts = lane.setdefault("counts", dict(Counter(row["outcome"] for row in rows)))
    upcoming = lane.setdefault("upcoming", [])
    # Sub-orchestrations started in this generation, by instance id: their completion wakes the lane.
    children: dict[str, TaskBase] = {}
    handled = reads = 0
    while lane["position"] < len(accounts):
        account = accounts[lane["position"]]
        current = lane.get("current")
        try:
            if current is None:
                if upcoming and _same_account(upcoming[0], account):
                    current = upcoming.pop(0)
                    lane["current"] = current
                    yield from _release(context, lane, current)
                else:
                    current = yield from _claim(context, lane, account, claims=0)
                    lane["current"] = current
            yield from _prepare_ahead(context, lane, children)
            if current["started"] and (not current.get("launched") or current["instanceId"] in children):
                # Our own orchestration, started in this generation: its completion wakes the lane; a watchdog
                # notices one that will not report back (terminated by an admin).
                reading = yield from _await_own(context, lane, current, children)
            else:
                # Someone else's (an approval-gated request, an enrolment, another rollout), or ours from an
                # earlier generation of the lane: read its status.
                _report(context, lane)
                reading = yield context.call_activity_with_retry(
                    READ_ACCOUNT_INSTANCE, retry_options(lane["config"]), {"instanceId": current["instanceId"]}
                )
                reads += 1
                if _still_held(reading, current):
                    yield from _release(context, lane, current)
            row = _row_when_done(reading, current, account)
            own_output = row is not None and _is_first_claims_output(lane, reading, current, account)
            if row is not None:
                _learn_estimate_scale(lane, reading, account)
            if row is None and _must_follow_again(reading, current):
                lane["current"] = None
                current = yield from _claim(context, lane, account, claims=current["claims"])
                lane["current"] = current
                continue
            if row is None:
                lane["current"] = current
                yield context.create_timer(_next_read(context, reading, current))
                if reads >= READS_PER_GENERATION:
                    _continue(context, lane)
                    return None
                continue
        except Exception as error:  # one account's failure never stops the others
            row = unplanned_row(account["accountId"], "Failed", first_line(error), account["keyUri"])
            row["instanceId"] = current["instanceId"] if current else None
            own_output = False
        counts[row["outcome"]] = counts.get(row["outcome"], 0) + 1
        if not own_output:
            rows.append(row)
        lane["current"] = None
        lane["position"] += 1
        handled += 1
        if (handled >= _generation_size(lane) or reads >= READS_PER_GENERATION) and lane["position"] < len(accounts):
            _continue(context, lane)
            return None
    _report(context, lane)
    return rows


def _is_first_claims_output(
    lane: LaneInput, reading: InstanceReading, current: CurrentAccount, account: PlannedAccount
) -> bool:
    """The account's row is exactly the output of the orchestration the lane started at its first claim, which the
    rollout's collection reads back at the end: the lane need not carry it."""
    return (
        current["started"]
        and current["instanceId"] == rollout_instance_id(account["accountId"], lane["rolloutId"], 0)
        and reading["runtimeStatus"] == "Completed"
        and isinstance(reading["output"], dict)
        and "outcome" in reading["output"]
    )


def _generation_size(lane: LaneInput) -> int:
    return ACCOUNTS_PER_GENERATION_PREPARING if lane.get("preparing") else ACCOUNTS_PER_GENERATION


def _learn_estimate_scale(lane: LaneInput, reading: InstanceReading, account: PlannedAccount) -> None:
    """How long an encryption of this lane took against its estimate corrects the estimates of the accounts after it
    (cmk.fleet.estimate_scale): the estimate's rate is an assumption, and a monitor that knows when the encryption
    ends notices its end seconds after it, so the next account gets the slot as soon."""
    output = reading["output"]
    if not isinstance(output, dict) or output.get("outcome") != "Enabled":
        return
    running = (output.get("timings") or {}).get("encryptionRunningSeconds")
    scale = estimate_scale(account["expectedSeconds"], running if isinstance(running, int | float) else None)
    if scale is not None:
        lane["estimateScale"] = scale


def _expected_seconds(lane: LaneInput, account: PlannedAccount) -> float:
    return scaled_estimate(account["expectedSeconds"], lane.get("estimateScale"))


def _same_account(entry: CurrentAccount, account: PlannedAccount) -> bool:
    base = entry["instanceId"].split(INSTANCE_SUFFIX_SEPARATOR, 1)[0]
    return base == account_instance_base(account["accountId"])


def _prepare_ahead(
    context: df.DurableOrchestrationContext, lane: LaneInput, children: dict[str, TaskBase]
) -> Generator[Any, Any, None]:
    """Claim the lane's next accounts up to `preparing` and start ours, each held before its key PATCH. A claim that
    fails is left for the account's turn (claimed again then, its failure recorded there)."""
    upcoming = lane.setdefault("upcoming", [])
    accounts = lane["accounts"]
    launched: list[TaskBase] = []
    while len(upcoming) < lane.get("preparing", 0):
        index = lane["position"] + 1 + len(upcoming)
        if index >= len(accounts):
            break
        try:
            entry = yield from _claim(context, lane, accounts[index], claims=0, hold=True)
        except Exception:  # noqa: BLE001 - the account's own turn claims it again and reports what fails
            break
        if entry["started"]:
            children[entry["instanceId"]] = _start_child(context, entry)
            launched.append(children[entry["instanceId"]])
        upcoming.append(entry)
    if launched:
        # Yielding a sub-orchestration is what starts it; a timer due now lets the lane go on at once (the
        # children's completions are awaited at their turn).
        now: TimerTask = sleep(context, 0)
        winner = yield context.task_any([*launched, now])
        if winner is not now:
            now.cancel()  # type: ignore[no-untyped-call]
        _report(context, lane)


def _start_child(context: df.DurableOrchestrationContext, entry: CurrentAccount) -> TaskBase:
    child: TaskBase = context.call_sub_orchestrator(ACCOUNT_ORCHESTRATOR, entry.pop("input"), entry["instanceId"])
    entry["launched"] = True
    return child


def _release(
    context: df.DurableOrchestrationContext, lane: LaneInput, current: CurrentAccount
) -> Generator[Any, Any, None]:
    """Give the slot to an orchestration started ahead of it (its SLOT_EVENT). Raised again when a reading shows
    it still waiting; a release that fails is raised again the same way."""
    if not current.get("held"):
        return
    current["released"] = True
    _report(context, lane)
    try:
        # Released, or it had ended already (prepared, then refused, say): its outcome is read either way.
        yield context.call_activity_with_retry(
            RELEASE_ACCOUNT_SLOT,
            retry_options(lane["config"]),
            {
                "instanceId": current["instanceId"],
                "laneId": context.instance_id,
                "expectedSeconds": _expected_seconds(lane, lane["accounts"][lane["position"]]),
            },
        )
    except Exception:  # noqa: BLE001 - the next reading of the account shows it still waiting: released again
        return


def _still_held(reading: InstanceReading, current: CurrentAccount) -> bool:
    """Released, yet still waiting for its slot: the event was lost (e.g. across its continue_as_new)."""
    return (
        bool(current.get("released"))
        and reading["phase"] == "waitingForSlot"
        and reading["runtimeStatus"] in (ACTIVE_RUNTIME_STATUSES)
    )


def _claim(
    context: df.DurableOrchestrationContext,
    lane: LaneInput,
    account: PlannedAccount,
    *,
    claims: int,
    hold: bool = False,
) -> Generator[Any, Any, CurrentAccount]:
    """The orchestration that handles the account: one already running, or a new one under an id never used
    (`hold`: claimed ahead of the lane's slot, it waits for the slot before its key PATCH)."""
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
        "expectedSeconds": _expected_seconds(lane, account),
        "rollout": lane["rolloutId"],
    }
    if "resourceGraph" in template:
        child_input["resourceGraph"] = graph_answers_about(template["resourceGraph"], [account])
    preparation: Preparation = yield context.call_activity_with_retry(
        PREPARE_ACCOUNT_START,
        retry_options(lane["config"]),
        {"input": child_input, "exclusive": not template.get("dryRun")},
    )
    if preparation["running"] is not None:
        return _current(preparation["running"], started=False, claims=claims + 1, child_input=None)
    # Deterministic per rollout, account and claim, and never used before: no duplicate id for the engine to judge.
    instance_id = rollout_instance_id(account["accountId"], lane["rolloutId"], claims)
    child_input = preparation["input"]
    if hold and not template.get("dryRun"):
        child_input["hold"] = {"laneId": context.instance_id, "rolloutId": lane["rolloutId"]}
    current = _current(instance_id, started=True, claims=claims + 1, child_input=child_input)
    if "hold" in child_input:
        current["held"] = True
    return current


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
    context: df.DurableOrchestrationContext,
    lane: LaneInput,
    current: CurrentAccount,
    children: dict[str, TaskBase],
) -> Generator[Any, Any, InstanceReading]:
    """Run the account orchestration as a sub-orchestration (unless it runs already, started ahead of its slot in
    this generation) and wait for it. A watchdog timer (backing off to WATCHDOG_MAX_SECONDS) reads its status, so
    a child an admin terminated, which may never report back to its parent, does not hold the lane forever, and
    one released but still waiting for its slot is released again."""
    if not current.get("launched"):
        children[current["instanceId"]] = _start_child(context, current)
    child = children[current["instanceId"]]
    _report(context, lane)
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
        if _still_held(reading, current):
            yield from _release(context, lane, current)
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


def _continue(context: df.DurableOrchestrationContext, lane: LaneInput) -> None:
    _report(context, lane)
    context.continue_as_new(lane)


def _report(context: df.DurableOrchestrationContext, lane: LaneInput) -> None:
    """The lane's custom status: counts, the orchestration that holds its slot, and those prepared ahead of it."""
    done = lane.get("counts") or {}
    current = lane.get("current")
    upcoming = lane.get("upcoming") or []
    remaining = len(lane["accounts"]) - lane["position"] - (1 if current else 0) - len(upcoming)
    position = lane["position"]
    accounts = lane["accounts"]
    context.set_custom_status(
        {
            "lane": lane["lane"],
            "done": dict(done),
            "current": {"instanceId": current["instanceId"], "accountId": accounts[position]["accountId"]}
            if current and position < len(accounts)
            else None,
            "upcoming": [
                {"instanceId": entry["instanceId"], "accountId": accounts[position + 1 + index]["accountId"]}
                for index, entry in enumerate(upcoming)
                if position + 1 + index < len(accounts)
            ],
            "remaining": remaining,
        }
    )
