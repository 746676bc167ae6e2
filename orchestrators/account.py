"""The per-account orchestration: preflight, identity, key access, optional approval, the key PATCH, the
encryption monitor, verification, and one JSON output that always says what happened.

The monitor is part of this orchestration (not a child) so the status admins query carries the live encryption
state; it runs on a history of its own (continue_as_new right after the key PATCH, and again every
CMK_MONITOR_POLLS_PER_GENERATION polls), resuming straight into the encrypting phase.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Generator
from datetime import datetime, timedelta
from typing import Any, Literal, NamedTuple

import azure.durable_functions as df
from azure.durable_functions.models.Task import TimerTask

from activities.enable_cmk import ENABLE_CMK
from activities.ensure_identity import ENSURE_IDENTITY
from activities.find_older_orchestration import FIND_OLDER_ORCHESTRATION
from activities.grant_key_access import GRANT_KEY_ACCESS
from activities.poll_operation import POLL_OPERATION
from activities.preflight import PREFLIGHT
from activities.read_account_instance import READ_ACCOUNT_INSTANCE
from activities.verify_cmk import VERIFY_CMK
from cmk.auth import Actor
from cmk.enablement import EnableResult, Verification
from cmk.findings import Code, Finding, blocking_codes
from cmk.operations import OperationReading, OperationRef
from cmk.orchestration import (
    ACCOUNT_ORCHESTRATOR,
    APPROVAL_EVENT,
    SLOT_EVENT,
    AccountInput,
    AccountOutput,
    HeldState,
    MonitorState,
    OperationSummary,
    OrchestrationConfig,
    Outcome,
    Phase,
    ResumeState,
    Timings,
)
from cmk.polling import MAX_VERIFY_INTERVAL_SECONDS, doubled, expected_from_progress, monitor_interval_seconds
from cmk.preflight import Plan, PreflightResult
from cmk.requests import EnablementRequest
from cmk.throughput import RaisePlan, ThroughputRaiseReport
from coordination.account_instances import ACTIVE_RUNTIME_STATUSES, InstanceReading
from orchestrators.steps import ArmCallFailed, call_arm, first_line, iso, now_iso, report, retry_options, sleep
from orchestrators.throughput_raise import not_possible, plan_raise, planned_report, raise_throughput, restore_into

bp = df.Blueprint()
logger = logging.getLogger(__name__)

MAX_IDENTITY_STEPS = 8
IDENTITY_OPERATION_DEADLINE = timedelta(hours=2)
# Attempts of the enable step whose answers leave open whether the PATCH applied, before following the account.
MAX_ENABLE_ATTEMPTS = 5
# A held orchestration (prepared ahead of its rollout lane's slot) reads its lane after this long, then at doubling
# intervals up to the maximum: a lane that was terminated or failed cannot give the slot, and the orchestration
# must not wait for it forever. It continues as new every HOLD_CHECKS_PER_GENERATION reads.
HOLD_FIRST_CHECK_SECONDS = 300
HOLD_MAX_CHECK_SECONDS = 3600
HOLD_CHECKS_PER_GENERATION = 20
# Held longer than this, the account is checked again (preflight) before its key PATCH, as after an approval.
HOLD_RECHECK_SECONDS = 3600


class StepFailed(Exception):
    """A step ended the orchestration: carries the outcome and the reason to report."""

    def __init__(self, outcome: Outcome, reason: str, findings: list[Finding] | None = None) -> None:
        super().__init__(reason)
        self.outcome = outcome
        self.reason = reason
        self.findings = findings


@bp.orchestration_trigger(context_name="context", orchestration=ACCOUNT_ORCHESTRATOR)
def cmk_account(context: df.DurableOrchestrationContext) -> Generator[Any, Any, AccountOutput | None]:
    return (yield from run_account(context))


def run_account(context: df.DurableOrchestrationContext) -> Generator[Any, Any, AccountOutput | None]:
    data: AccountInput = context.get_input()  # type: ignore[assignment]  # the starter built it
    request, config = data["request"], data["config"]
    resume = data.get("resume")
    if resume is not None:
        return (
            yield from _restoring(
                context, request, config, resume, _monitor_and_finish(context, request, config, resume)
            )
        )

    held = data.get("held")
    if held is None:
        prepared = yield from _prepare(context, data)
        if not isinstance(prepared, Prepared):
            return prepared  # ended (refused, dry run, failed) or following an encryption someone else started
        findings, plan, timings = prepared
        hold = data.get("hold")
        if hold is not None and not request.get("dryRun"):
            held = {
                "findings": findings,
                "plan": plan,
                "timings": timings,
                "since": now_iso(context),
                "checks": 0,
                "checkSeconds": HOLD_FIRST_CHECK_SECONDS,
            }
    if held is not None:
        granted = yield from _await_slot(context, data, held)
        if granted is not True:
            return granted  # the lane is gone (an output that says what was prepared), or continued as new
        findings, plan, timings = held["findings"], held["plan"], held["timings"]
        since = datetime.fromisoformat(held["since"].replace("Z", "+00:00"))
        held_seconds = (context.current_utc_datetime - since).total_seconds()
        if held_seconds > HOLD_RECHECK_SECONDS:
            # As after an approval: hours may have passed, check again right before the step that cannot be undone.
            try:
                again = yield from _preflight_until_idle(context, request, config, _shared_reads(data))
            except Exception as error:  # an activity that failed after its retries, before any PATCH of the key
                return _finish(context, request, "Failed", first_line(error), findings, plan, None, timings)
            findings = again["findings"]
            if again["blocked"]:
                return (yield from _blocked(context, request, config, findings, timings))

    raised: ThroughputRaiseReport | None = None
    if "throughputRaise" in request:
        # Right before the key PATCH (after any approval or slot): Azure blocks throughput changes once it is sent.
        attempt = yield from raise_throughput(context, request, config)
        if attempt.failure is not None:
            outcome: Outcome = "Refused" if attempt.findings else "Failed"
            output = _finish(
                context, request, outcome, attempt.failure, findings + attempt.findings, plan, None, timings
            )
            if attempt.report is not None:
                output["throughputRaise"] = attempt.report
            return output
        raised = attempt.report
    report(context, "enabling", request["accountId"])
    try:
        enabled = yield from _enable(context, request, config)
    except StepFailed as stop:
        output = _finish(context, request, stop.outcome, stop.reason, stop.findings or findings, plan, None, timings)
        return (yield from restore_into(context, request, config, raised, output))
    timings["enableRequestedAt"] = now_iso(context)
    if not context.is_replaying:
        logger.info("CMK enable step for %s: %s (%s)", request["accountId"], enabled["status"], enabled["detail"])
    operation = enabled["operation"] or _account_operation(request)
    state = _resume_state(
        context,
        config,
        operation,
        findings,
        plan,
        timings,
        certain=enabled["status"] in ("accepted", "applied"),
        expected_seconds=data.get("expectedSeconds"),
    )
    if raised is not None:
        state["throughputRaise"] = raised
    if enabled["status"] == "applied":
        return (yield from _restoring(context, request, config, state, _verify(context, request, config, state)))
    # The monitor starts on a fresh history, as its later generations do: otherwise each of its polls would replay
    # the preparation's (preflight, identity, key access, the PATCH: about a hundred events), which made the
    # account orchestrations most of a short-encryption rollout's CPU.
    context.continue_as_new({"request": request, "config": config, "resume": state})
    return None


def _restoring(
    context: df.DurableOrchestrationContext,
    request: EnablementRequest,
    config: OrchestrationConfig,
    resume: ResumeState,
    steps: Generator[Any, Any, AccountOutput | None],
) -> Generator[Any, Any, AccountOutput | None]:
    """Run the steps to the outcome, then restore a throughput raise (once the encryption has ended)."""
    output = yield from steps
    return (yield from restore_into(context, request, config, resume.get("throughputRaise"), output))


class Prepared(NamedTuple):
    """An account ready for its key PATCH: preflight passed, identity and key access in place (and approved)."""

    findings: list[Finding]
    plan: Plan
    timings: Timings


def _prepare(
    context: df.DurableOrchestrationContext, data: AccountInput
) -> Generator[Any, Any, Prepared | AccountOutput | None]:
    """Everything before the key PATCH: preflight, identity, key access, approval. Returns the prepared account, or
    the output when the orchestration ends here (None: it continued as new following an encryption)."""
    request, config = data["request"], data["config"]
    timings: Timings = {"startedAt": now_iso(context)}
    reattach = data.get("reattach")
    if reattach is not None and not request.get("dryRun"):
        # An earlier orchestration of this account stopped following an encryption Azure still runs.
        state = _resume_state(context, config, reattach, [], None, timings, certain=True, reattached=True)
        return (yield from _monitor_and_finish(context, request, config, state))

    findings: list[Finding] = []
    plan: Plan | None = None
    try:
        report(context, "preflight", request["accountId"])
        preflight = yield from _preflight_until_idle(context, request, config, _shared_reads(data))
        findings = preflight["findings"]
        timings["preflightDoneAt"] = now_iso(context)
        if preflight["blocked"]:
            return (yield from _blocked(context, request, config, findings, timings))
        plan = preflight["plan"]
        assert plan is not None  # an unblocked preflight always plans
        raise_plan: RaisePlan | None = None
        if "throughputRaise" in request:
            raise_plan = yield from plan_raise(context, request, config)
            if not raise_plan["possible"]:
                findings = [*findings, not_possible(raise_plan)]
                output = _finish(context, request, "Refused", _reason(findings), findings, None, None, timings)
                output["throughputRaise"] = planned_report(request, raise_plan)
                return output
        if request.get("dryRun"):
            output = _finish(context, request, "Planned", "dry run: preflight passed", findings, None, None, timings)
            output["plan"] = plan
            if raise_plan is not None:
                output["throughputRaise"] = planned_report(request, raise_plan)
            return output

        principal_id, tenant_id = yield from _ensure_identity(context, request, plan, config)
        timings["identityReadyAt"] = now_iso(context)
        yield from _grant_key_access(context, request, plan, principal_id, tenant_id, config)
        timings["keyAccessReadyAt"] = now_iso(context)

        if request.get("approval") == "required":
            yield from _await_approval(context, request, config)
            timings["approvedAt"] = now_iso(context)
            # Hours may have passed: check again right before the step that cannot be undone, with fresh reads (the
            # approver may have just changed the vault).
            again = yield from _preflight_until_idle(context, request, config, {})
            findings = again["findings"]
            if again["blocked"]:
                return (yield from _blocked(context, request, config, findings, timings))
    except StepFailed as stop:
        return _finish(context, request, stop.outcome, stop.reason, stop.findings or findings, plan, None, timings)
    except Exception as error:  # an activity that failed after its retries, before any PATCH of the key
        return _finish(context, request, "Failed", first_line(error), findings, plan, None, timings)
    assert plan is not None  # set before any step that can return past here
    return Prepared(findings, plan, timings)


def _resume_state(
    context: df.DurableOrchestrationContext,
    config: OrchestrationConfig,
    operation: OperationRef,
    findings: list[Finding],
    plan: Plan | None,
    timings: Timings,
    *,
    certain: bool,
    reattached: bool = False,
    expected_seconds: float | None = None,
) -> ResumeState:
    deadline = context.current_utc_datetime + timedelta(hours=config["monitorDeadlineHours"])
    monitor: MonitorState = {
        "operation": operation,
        "polls": 0,
        "generation": 0,
        "intervalSeconds": config["pollIntervalSeconds"],
        "deadline": iso(deadline),
        "startedAt": now_iso(context),
        "lastStatus": None,
        "lastReading": None,
        "readFailures": 0,
        "enableAttempts": 1,
        "certain": certain,
        "reattached": reattached,
        "expectedSeconds": expected_seconds,
    }
    return {
        "monitor": monitor,
        "findings": findings,
        "plan": plan,
        "identity": _identity_label(plan),
        "timings": timings,
    }


def _account_operation(request: EnablementRequest) -> OperationRef:
    """Follow the account's own state: used when the operation's status URL is not known (a lost reply, an
    encryption another orchestration started, an operation in flight that may or may not be ours)."""
    return {
        "accountId": request["accountId"],
        "kind": "enableCmk",
        "statusUrl": None,
        "locationUrl": None,
        "retryAfterSeconds": None,
        "expectedKeyUri": request["keyUri"],
    }


def _blocked(
    context: df.DurableOrchestrationContext,
    request: EnablementRequest,
    config: OrchestrationConfig,
    findings: list[Finding],
    timings: Timings,
) -> Generator[Any, Any, AccountOutput | None]:
    codes = blocking_codes(findings)
    if codes == [Code.ENCRYPTION_IN_PROGRESS]:
        # The account already has this key and is still encrypting: follow it to its end.
        state = _resume_state(
            context, config, _account_operation(request), findings, None, timings, certain=True, reattached=True
        )
        return (yield from _monitor_and_finish(context, request, config, state))
    outcome: Outcome = "AlreadyEnabled" if codes == [Code.ALREADY_ENABLED] else "Refused"
    return _finish(context, request, outcome, _reason(findings), findings, None, None, timings)


def _preflight_until_idle(
    context: df.DurableOrchestrationContext,
    request: EnablementRequest,
    config: OrchestrationConfig,
    shared: dict[str, Any],
) -> Generator[Any, Any, PreflightResult]:
    """Preflight; an account busy with another operation (and nothing else wrong) is waited for, durably and up
    to CMK_BUSY_WAIT_HOURS, before it is refused as ACCOUNT_BUSY: busy is a state, not a verdict. `shared`: what
    the rollout that started this account shares with its preflight (_shared_reads; empty: read everything)."""
    give_up = context.current_utc_datetime + timedelta(hours=config["busyWaitHours"])
    interval = config["pollIntervalSeconds"]
    while True:
        result = yield from _preflight(context, request, config, shared)
        codes = set(blocking_codes(result["findings"]))
        if codes != {Code.ACCOUNT_BUSY.value}:
            return result
        next_try = context.current_utc_datetime + timedelta(seconds=interval)
        if next_try > give_up:
            waited = f" Waited {config['busyWaitHours']:g} h for it (CMK_BUSY_WAIT_HOURS)."
            result["findings"] = [
                {**finding, "message": finding["message"] + waited} if finding["code"] == Code.ACCOUNT_BUSY else finding
                for finding in result["findings"]
            ]
            return result
        busy = next(f["message"] for f in result["findings"] if f["code"] == Code.ACCOUNT_BUSY)
        report(context, "waitingForAccount", request["accountId"], next_poll_at=iso(next_try), detail=busy)
        yield context.create_timer(next_try)
        interval = doubled(interval, config["pollMaxIntervalSeconds"])


def _after_older_orchestrations(
    context: df.DurableOrchestrationContext, request: EnablementRequest, config: OrchestrationConfig
) -> Generator[Any, Any, None]:
    """Two starters that raced can leave two orchestrations of one account; the younger waits here for the older
    before its key PATCH (then reads the account like any attempt: applied, busy, or idle), up to
    CMK_BUSY_WAIT_HOURS. Dry runs send no PATCH and never wait."""
    if request.get("dryRun"):
        return
    give_up = context.current_utc_datetime + timedelta(hours=config["busyWaitHours"])
    interval = config["pollIntervalSeconds"]
    payload = {"accountId": request["accountId"], "instanceId": context.instance_id}
    while context.current_utc_datetime < give_up:
        older: str | None = yield context.call_activity_with_retry(
            FIND_OLDER_ORCHESTRATION, retry_options(config), payload
        )
        if older is None:
            return
        next_check = context.current_utc_datetime + timedelta(seconds=interval)
        detail = f"orchestration {older} is enabling this account; waiting for it before any PATCH"
        report(context, "waitingForAccount", request["accountId"], next_poll_at=iso(next_check), detail=detail)
        yield context.create_timer(next_check)
        interval = doubled(interval, config["pollMaxIntervalSeconds"])


def _enable(
    context: df.DurableOrchestrationContext, request: EnablementRequest, config: OrchestrationConfig
) -> Generator[Any, Any, EnableResult]:
    """The key PATCH, made safe to retry: the activity reads the account before every attempt and sends the PATCH
    only when nothing is in flight. Once an attempt may have reached Azure, every later doubt is resolved by
    following the account, never by reporting Failed while Azure may be encrypting."""
    yield from _after_older_orchestrations(context, request, config)
    maybe_sent = False  # an earlier attempt ended without saying whether its PATCH applied
    result: EnableResult = {"status": "uncertain", "operation": None, "provisioningState": None, "detail": ""}
    for _ in range(MAX_ENABLE_ATTEMPTS):
        try:
            result = yield from call_arm(
                context, ENABLE_CMK, {"accountId": request["accountId"], "keyUri": request["keyUri"]}, config
            )
        except ArmCallFailed as refused:
            if not maybe_sent:  # Azure refused before any attempt could have applied: nothing changed
                raise StepFailed("Failed", str(refused)) from refused
            result = {"status": "uncertain", "operation": None, "provisioningState": None, "detail": str(refused)}
        except Exception as error:  # the activity failed after its retries: the PATCH may have been applied
            result = {"status": "uncertain", "operation": None, "provisioningState": None, "detail": first_line(error)}
        if result["status"] == "differentKey":
            raise StepFailed("Refused", f"{Code.DIFFERENT_KEY_CONFIGURED}: {result['detail']}; nothing was changed.")
        if result["status"] == "missing":
            raise StepFailed("Failed", "The account disappeared before its key could be set.")
        if result["status"] != "uncertain":
            return result
        maybe_sent = True
        yield sleep(context, config["pollIntervalSeconds"])
    return result


def _shared_reads(data: AccountInput) -> dict[str, Any]:
    """What the preflight payload carries from the rollout that started the account: the rollout, whose accounts
    share their key's vault and key reads, and what its discovery asked Resource Graph (cmk.inventory)."""
    shared: dict[str, Any] = {}
    if "rollout" in data:
        shared["sharedReads"] = data["rollout"]
        if "resourceGraph" in data:
            shared["resourceGraph"] = data["resourceGraph"]
    return shared


def _preflight(
    context: df.DurableOrchestrationContext,
    request: EnablementRequest,
    config: OrchestrationConfig,
    shared: dict[str, Any],
) -> Generator[Any, Any, PreflightResult]:
    payload: dict[str, Any] = {"request": request, "asOf": now_iso(context), **shared}
    preflight: PreflightResult = yield from call_arm(context, PREFLIGHT, payload, config)
    return preflight


def _ensure_identity(
    context: df.DurableOrchestrationContext, request: EnablementRequest, plan: Plan, config: OrchestrationConfig
) -> Generator[Any, Any, tuple[str, str | None]]:
    account_id = request["accountId"]
    for _ in range(MAX_IDENTITY_STEPS):
        report(context, "identity", account_id, detail=f"{plan['identity']['type']} -> {plan['defaultIdentity']}")
        step = yield from call_arm(
            context, ENSURE_IDENTITY, {"accountId": account_id, "identity": plan["identity"]}, config
        )
        if step["status"] == "ready":
            return step["principalId"], step["tenantId"]
        if step["status"] == "missing":
            raise StepFailed("Failed", "The account disappeared while its identity was being prepared.")
        if step["operation"] is not None:
            reading = yield from _follow_operation(context, account_id, step["operation"], config, "identity")
            if not reading["succeeded"]:
                error = reading.get("error") or {}
                raise StepFailed(
                    "Failed", f"Identity change {step['action']} ended {reading['status']}: {error.get('message')}"
                )
        else:
            yield sleep(context, config["pollIntervalSeconds"])
    raise StepFailed("Failed", f"The identity was not ready after {MAX_IDENTITY_STEPS} steps.")


def _follow_operation(
    context: df.DurableOrchestrationContext,
    account_id: str,
    operation: dict[str, Any],
    config: OrchestrationConfig,
    phase: Phase,
) -> Generator[Any, Any, dict[str, Any]]:
    """Poll a short operation (identity changes take seconds to minutes) until it is terminal."""
    deadline = context.current_utc_datetime + IDENTITY_OPERATION_DEADLINE
    interval = config["pollIntervalSeconds"]
    polls = 0
    while True:
        try:
            reading: OperationReading | None = yield from call_arm(
                context, POLL_OPERATION, {"operation": operation}, config
            )
        except ArmCallFailed:
            reading = None  # a failed read is not a failed operation: read again
        polls += 1
        if reading is not None and reading["terminal"]:
            return dict(reading)
        status = reading["status"] if reading else None
        wait = (reading["retryAfterSeconds"] if reading else None) or interval
        next_poll = context.current_utc_datetime + timedelta(seconds=wait)
        if next_poll > deadline:
            raise StepFailed("Failed", f"The {phase} operation did not finish within {IDENTITY_OPERATION_DEADLINE}.")
        report(context, phase, account_id, operation_status=status, next_poll_at=iso(next_poll), polls=polls)
        yield context.create_timer(next_poll)
        interval = doubled(interval, config["pollMaxIntervalSeconds"])


def _grant_key_access(
    context: df.DurableOrchestrationContext,
    request: EnablementRequest,
    plan: Plan,
    principal_id: str,
    tenant_id: str | None,
    config: OrchestrationConfig,
) -> Generator[Any, Any, None]:
    report(context, "keyAccess", request["accountId"], detail=plan["vault"]["permissionModel"])
    payload = {"vault": plan["vault"], "principalId": principal_id, "tenantId": tenant_id}
    grant = yield from call_arm(context, GRANT_KEY_ACCESS, payload, config)
    if grant["propagationWaitSeconds"] > 0:
        wait_until = context.current_utc_datetime + timedelta(seconds=grant["propagationWaitSeconds"])
        report(
            context,
            "keyAccess",
            request["accountId"],
            next_poll_at=iso(wait_until),
            detail="waiting for the role assignment to propagate",
        )
        yield context.create_timer(wait_until)


def _await_approval(
    context: df.DurableOrchestrationContext, request: EnablementRequest, config: OrchestrationConfig
) -> Generator[Any, Any, None]:
    deadline = context.current_utc_datetime + timedelta(hours=config["approvalTimeoutHours"])
    report(context, "awaitingApproval", request["accountId"], next_poll_at=iso(deadline), detail="approve or reject")
    decision_task = context.wait_for_external_event(APPROVAL_EVENT)
    timeout_task: TimerTask = context.create_timer(deadline)  # type: ignore[assignment]
    winner = yield context.task_any([decision_task, timeout_task])
    if winner is not decision_task:
        raise StepFailed("Refused", f"No approval before {iso(deadline)}; nothing irreversible was done.")
    # A pending timer would keep the orchestration alive until it fires.
    timeout_task.cancel()  # type: ignore[no-untyped-call]
    decision = _event_payload(decision_task.result)
    by = _decider(decision.get("by"))
    if isinstance(decision.get("comment"), str) and decision["comment"]:
        request["decisionComment"] = decision["comment"]
    if not decision.get("approved"):
        if by is not None:
            request["rejectedBy"] = by  # carried into the output (and across continue_as_new) with the request
        who = f" by {by['displayName']}" if by else ""
        raise StepFailed("Refused", f"Rejected{who}: {decision.get('comment') or 'no comment'}.")
    if by is not None:
        request["approvedBy"] = by


def _granted(context: df.DurableOrchestrationContext, data: AccountInput, held: HeldState, given: Any) -> Literal[True]:
    """The slot is ours. The lane's event may carry the estimate corrected by what its finished encryptions took
    (cmk.fleet.estimate_scale); the monitor paces its reads by it."""
    held["timings"]["slotGrantedAt"] = now_iso(context)
    expected = _event_payload(given).get("expectedSeconds")
    if isinstance(expected, int | float) and expected > 0:
        data["expectedSeconds"] = float(expected)
    return True


def _await_slot(
    context: df.DurableOrchestrationContext, data: AccountInput, held: HeldState
) -> Generator[Any, Any, Literal[True] | AccountOutput | None]:
    """Prepared ahead of its rollout lane's slot: wait for the lane's SLOT_EVENT before the key PATCH. True once
    the slot is given; the output when the lane is gone (it can no longer give the slot: nothing irreversible was
    done, and the output says what was prepared); None when the wait continued as new.

    The event may come before this waits for it (the SDK keeps it), or twice (the second is never read). While it
    waits, the orchestration reads its lane now and then, backing off; it continues as new every
    HOLD_CHECKS_PER_GENERATION reads, first making sure no event arrived meanwhile. The lane raises the event
    again should an orchestration it released still wait (an event lost across continue_as_new)."""
    request, config = data["request"], data["config"]
    hold = data["hold"]
    report(
        context,
        "waitingForSlot",
        request["accountId"],
        detail=f"prepared; waiting for a slot of rollout {hold['rolloutId']} (lane {hold['laneId']})",
    )
    slot = context.wait_for_external_event(SLOT_EVENT)
    checks = 0
    while True:
        check: TimerTask = sleep(context, held["checkSeconds"])
        winner = yield context.task_any([slot, check])
        if winner is slot:
            check.cancel()  # type: ignore[no-untyped-call]
            return _granted(context, data, held, slot.result)
        try:
            lane: InstanceReading = yield context.call_activity_with_retry(
                READ_ACCOUNT_INSTANCE, retry_options(config), {"instanceId": hold["laneId"]}
            )
        except Exception:  # not knowing is not a verdict: wait on, read again later
            lane = {"exists": True, "runtimeStatus": "Running", "output": None, "phase": None, "nextPollAt": None}
        if slot.is_completed:  # given while the lane was read
            return _granted(context, data, held, slot.result)
        if not lane["exists"] or lane["runtimeStatus"] not in ACTIVE_RUNTIME_STATUSES:
            ended = "no longer exists" if not lane["exists"] else f"ended {lane['runtimeStatus']}"
            return _finish(
                context,
                request,
                "Refused",
                _lane_gone_reason(hold["laneId"], ended, held),
                held["findings"],
                held["plan"],
                None,
                held["timings"],
            )
        held["checks"] += 1
        held["checkSeconds"] = min(held["checkSeconds"] * 2, HOLD_MAX_CHECK_SECONDS)
        checks += 1
        if checks >= HOLD_CHECKS_PER_GENERATION:
            context.continue_as_new({**data, "held": held})
            return None


def _lane_gone_reason(lane_id: str, ended: str, held: HeldState) -> str:
    plan = held["plan"]
    access = (
        "a Key Vault role assignment" if plan["vault"]["permissionModel"] == "rbac" else "a Key Vault access policy"
    )
    return (
        f"Prepared ahead of its slot, but the rollout lane {lane_id} {ended} before giving it the slot: no key PATCH "
        f"was sent, nothing irreversible was done. What was changed stays: the account's identity "
        f"({plan['identity']['type']}, default identity {plan['defaultIdentity']}) and {access} for it on the "
        "key's vault. Run the account again to enable it."
    )


def _decider(by: Any) -> Actor | None:
    """Who decided: the approve/reject route records the authenticated caller ({objectId, displayName, at});
    events raised before it did carry a self-declared name."""
    if isinstance(by, dict) and by.get("displayName"):
        return {
            "objectId": str(by.get("objectId") or ""),
            "displayName": str(by["displayName"]),
            "at": str(by.get("at") or ""),
        }
    return {"objectId": "", "displayName": str(by)} if isinstance(by, str) and by else None


def _monitor_and_finish(
    context: df.DurableOrchestrationContext,
    request: EnablementRequest,
    config: OrchestrationConfig,
    resume: ResumeState,
) -> Generator[Any, Any, AccountOutput | None]:
    """Follow the encryption to its end, however long: reads are paced by its expected end (cmk.polling), a read
    that fails is not an outcome, and past the deadline the outcome is Encrypting (Azure goes on), never Failed."""
    state = resume["monitor"]
    account_id = request["accountId"]
    deadline = datetime.fromisoformat(state["deadline"])
    started = datetime.fromisoformat(state["startedAt"].replace("Z", "+00:00"))
    polls_this_generation = 0
    while True:
        reading: OperationReading | None
        try:
            reading = yield from call_arm(
                context, POLL_OPERATION, {"operation": state["operation"], "fallbackToAccount": True}, config
            )
        except Exception:  # refused, throttled or failed after its retries: not knowing is not failing
            reading = None
        state["polls"] += 1
        polls_this_generation += 1
        status = state["lastStatus"]
        if reading is None:
            state["readFailures"] += 1
        else:
            state["lastReading"] = reading
            if reading["readError"]:
                state["readFailures"] += 1
            status = reading["status"]
            if not reading["terminal"] and not reading["readError"]:
                state["lastRunningAt"] = now_iso(context)
            if reading["terminal"]:
                if _not_applied(reading, state):
                    decided = yield from _decide_again(context, request, config, resume)
                    if decided is not None:
                        return decided
                    status = state["lastStatus"]
                else:
                    return (yield from _operation_ended(context, request, config, resume, reading))
        elapsed = (context.current_utc_datetime - started).total_seconds()
        # Azure's own progress, when its status carries any, says more than the rollout's estimate.
        progress = expected_from_progress(elapsed, reading["percentComplete"] if reading else None)
        state["intervalSeconds"] = monitor_interval_seconds(
            elapsed,
            progress or state.get("expectedSeconds"),
            config["pollIntervalSeconds"],
            config["pollMaxIntervalSeconds"],
        )
        state["lastStatus"] = status
        retry_after = reading["retryAfterSeconds"] if reading else None
        wait = retry_after or state["intervalSeconds"]
        next_poll = context.current_utc_datetime + timedelta(seconds=wait)
        if next_poll > deadline:
            return _finish_monitor(
                context, request, resume, "Encrypting", _deadline_reason(state, config, status), status
            )
        last = state["lastReading"]
        report(
            context,
            "encrypting",
            account_id,
            operation_status=status,
            next_poll_at=iso(next_poll),
            polls=state["polls"],
            percent_complete=last["percentComplete"] if last else None,
            status_url=state["operation"]["statusUrl"],
        )
        yield context.create_timer(next_poll)
        if polls_this_generation >= config["pollsPerGeneration"]:
            state["generation"] += 1
            context.continue_as_new({"request": request, "config": config, "resume": resume})
            return None


def _not_applied(reading: OperationReading, state: MonitorState) -> bool:
    """The account went idle without the key while we followed its own state (no status URL): whatever ran was
    not our key PATCH, or it did not apply. Nothing is encrypting; the enable step decides again."""
    code = reading["error"]["code"] if reading["error"] else None
    return reading["source"] == "account" and code == "NotApplied" and state["operation"]["statusUrl"] is None


def _decide_again(
    context: df.DurableOrchestrationContext,
    request: EnablementRequest,
    config: OrchestrationConfig,
    resume: ResumeState,
) -> Generator[Any, Any, AccountOutput | None]:
    """After following an operation we could not identify: PATCH now if the account is idle without the key.
    Returns the output when the orchestration ends here, else None (the monitor goes on with `state`)."""
    state = resume["monitor"]
    if state["reattached"] or resume["plan"] is None:
        # Re-attached to an encryption that did not apply the key: start over from preflight (identity, access).
        context.continue_as_new({"request": request, "config": config})
        return None
    if state["enableAttempts"] >= MAX_ENABLE_ATTEMPTS:
        reason = (
            f"The key was not applied after {state['enableAttempts']} attempts: the account is idle without it, "
            "so nothing is encrypting. Run the account again."
        )
        return _finish_monitor(context, request, resume, "Failed", reason, state["lastStatus"])
    state["enableAttempts"] += 1
    try:
        enabled = yield from _enable(context, request, config)
    except StepFailed as stop:
        return _finish_monitor(context, request, resume, stop.outcome, stop.reason, state["lastStatus"])
    state["certain"] = enabled["status"] in ("accepted", "applied")
    if enabled["status"] == "applied":
        return (yield from _verify(context, request, config, resume))
    state["operation"] = enabled["operation"] or _account_operation(request)
    state["lastReading"] = None
    return None


def _operation_ended(
    context: df.DurableOrchestrationContext,
    request: EnablementRequest,
    config: OrchestrationConfig,
    resume: ResumeState,
    final: OperationReading,
) -> Generator[Any, Any, AccountOutput]:
    timings = resume["timings"]
    timings["encryptionDoneAt"] = now_iso(context)
    if "enableRequestedAt" in timings:
        started = datetime.fromisoformat(timings["enableRequestedAt"].replace("Z", "+00:00"))
        timings["encryptionSeconds"] = (context.current_utc_datetime - started).total_seconds()
        running = resume["monitor"].get("lastRunningAt")
        if running is not None:
            last = datetime.fromisoformat(running.replace("Z", "+00:00"))
            timings["encryptionRunningSeconds"] = max(0.0, (last - started).total_seconds())
    if not final["succeeded"]:
        error = final["error"] or {"code": final["status"], "message": ""}
        reason = f"Azure reported the encryption {final['status']}: {error['code']}: {error['message']}"
        return _finish_monitor(context, request, resume, "Failed", reason, final["status"])
    return (yield from _verify(context, request, config, resume))


def _deadline_reason(state: MonitorState, config: OrchestrationConfig, status: str | None) -> str:
    accepted = (
        "Azure accepted the key PATCH"
        if state["certain"]
        else "The key PATCH may have been accepted (its reply was lost) and the account is still busy"
    )
    return (
        f"{accepted}; this orchestration stopped following the encryption at its deadline {state['deadline']} "
        f"(CMK_MONITOR_DEADLINE_HOURS={config['monitorDeadlineHours']:g}); last status {status}. The encryption "
        "goes on in Azure and cannot be reverted: a new request for this account follows it again without "
        "sending the key twice."
    )


def _verify(
    context: df.DurableOrchestrationContext,
    request: EnablementRequest,
    config: OrchestrationConfig,
    resume: ResumeState,
) -> Generator[Any, Any, AccountOutput]:
    """Re-read the account, backing off, until customerManagedKeyStatus confirms access (it can lag the
    operation's end); only then Enabled. Past CMK_VERIFY_WINDOW_MINUTES: Failed, saying the key stays."""
    window_end = context.current_utc_datetime + timedelta(minutes=config["verifyWindowMinutes"])
    interval = config["pollIntervalSeconds"]
    detail = "no answer"
    while True:
        report(
            context, "verifying", request["accountId"], operation_status="Succeeded", polls=resume["monitor"]["polls"]
        )
        try:
            verification: Verification = yield from call_arm(
                context, VERIFY_CMK, {"accountId": request["accountId"], "keyUri": request["keyUri"]}, config
            )
        except Exception as error:
            detail = f"the account could not be read ({first_line(error)})"
        else:
            if verification["verified"]:
                return _finish_monitor(context, request, resume, "Enabled", verification["detail"], "Succeeded")
            detail = verification["detail"]
        next_read = context.current_utc_datetime + timedelta(seconds=interval)
        if next_read > window_end:
            reason = (
                "Azure reported the encryption Succeeded, but within "
                f"{config['verifyWindowMinutes']:g} minutes (CMK_VERIFY_WINDOW_MINUTES) the account did not confirm "
                f"access to the key: {detail}. The key is configured and cannot be removed; check that the "
                "account's default identity can get, wrap and unwrap the key."
            )
            return _finish_monitor(context, request, resume, "Failed", reason, "Succeeded")
        yield context.create_timer(next_read)
        interval = doubled(interval, MAX_VERIFY_INTERVAL_SECONDS)


def _finish_monitor(
    context: df.DurableOrchestrationContext,
    request: EnablementRequest,
    resume: ResumeState,
    outcome: Outcome,
    reason: str,
    status: str | None,
) -> AccountOutput:
    state = resume["monitor"]
    last = state["lastReading"]
    operation: OperationSummary = {
        "statusUrl": state["operation"]["statusUrl"],
        "status": status,
        "polls": state["polls"],
        "error": {"code": last["error"]["code"], "message": last["error"]["message"]}
        if last and last["error"]
        else None,
    }
    return _finish(context, request, outcome, reason, resume["findings"], resume["plan"], operation, resume["timings"])


def _finish(
    context: df.DurableOrchestrationContext,
    request: EnablementRequest,
    outcome: Outcome,
    reason: str,
    findings: list[Finding],
    plan: Plan | None,
    operation: OperationSummary | None,
    timings: Timings,
) -> AccountOutput:
    timings["finishedAt"] = now_iso(context)
    report(
        context,
        "done",
        request["accountId"],
        operation_status=operation["status"] if operation else None,
        polls=operation["polls"] if operation else 0,
        detail=f"{outcome}: {reason}",
    )
    if not context.is_replaying:
        logger.info("%s ended %s: %s", request["accountId"], outcome, reason)
    return {
        "accountId": request["accountId"],
        "outcome": outcome,
        "reason": reason,
        "findings": findings,
        "keyUri": plan["keyUri"] if plan else request["keyUri"],
        "identity": _identity_label(plan) if plan else request.get("identity"),
        "operation": operation,
        "timings": timings,
        "requestedBy": request.get("requestedBy"),
        "approvedBy": request.get("approvedBy"),
        "rejectedBy": request.get("rejectedBy"),
    }


def _event_payload(payload: Any) -> dict[str, Any]:
    """The Python Durable client JSON-encodes event data before posting it, so it arrives as a JSON string
    (azure-functions-durable-python #295); events raised over the HTTP API arrive as objects."""
    if isinstance(payload, str):
        try:
            payload = json.loads(payload)
        except ValueError:
            return {}
    return payload if isinstance(payload, dict) else {}


def _identity_label(plan: Plan | None) -> str | None:
    return plan["defaultIdentity"] if plan else None


def _reason(findings: list[Finding]) -> str:
    blocking = [f for f in findings if f["severity"] == "blocking"]
    return "; ".join(f"{f['code']}: {f['message']}" for f in blocking) or "no blocking finding"
