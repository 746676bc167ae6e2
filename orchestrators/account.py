"""The per-account orchestration: preflight, identity, key access, optional approval, the key PATCH, the
encryption monitor, verification, and one JSON output that always says what happened.

The monitor is part of this orchestration (not a child) so the status admins query carries the live encryption
state; it bounds its history with continue_as_new, resuming straight into the encrypting phase.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Generator
from datetime import datetime, timedelta
from typing import Any

import azure.durable_functions as df
from azure.durable_functions.models.Task import TimerTask

from activities.enable_cmk import ENABLE_CMK
from activities.ensure_identity import ENSURE_IDENTITY
from activities.grant_key_access import GRANT_KEY_ACCESS
from activities.poll_operation import POLL_OPERATION
from activities.preflight import PREFLIGHT
from activities.verify_cmk import VERIFY_CMK
from cmk.findings import Code, Finding
from cmk.orchestration import (
    ACCOUNT_ORCHESTRATOR,
    APPROVAL_EVENT,
    AccountInput,
    AccountOutput,
    MonitorState,
    OperationSummary,
    OrchestrationConfig,
    Outcome,
    Phase,
    ResumeState,
    Timings,
)
from cmk.preflight import Plan, PreflightResult
from cmk.requests import EnablementRequest
from orchestrators.steps import call_arm, first_line, iso, now_iso, report, sleep

bp = df.Blueprint()
logger = logging.getLogger(__name__)

MAX_IDENTITY_STEPS = 8
IDENTITY_OPERATION_DEADLINE = timedelta(hours=2)
VERIFY_ATTEMPTS = 3


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
        return (yield from _monitor_and_finish(context, request, config, resume))

    timings: Timings = {"startedAt": now_iso(context)}
    findings: list[Finding] = []
    plan: Plan | None = None
    try:
        report(context, "preflight", request["accountId"])
        preflight = yield from _preflight(context, request, config)
        findings = preflight["findings"]
        timings["preflightDoneAt"] = now_iso(context)
        if preflight["blocked"]:
            codes = [f["code"] for f in findings if f["severity"] == "blocking"]
            outcome: Outcome = "AlreadyEnabled" if codes == [Code.ALREADY_ENABLED] else "Refused"
            return _finish(context, request, outcome, _reason(findings), findings, None, None, timings)
        plan = preflight["plan"]
        assert plan is not None  # an unblocked preflight always plans
        if request.get("dryRun"):
            output = _finish(context, request, "Planned", "dry run: preflight passed", findings, None, None, timings)
            output["plan"] = plan
            return output

        principal_id, tenant_id = yield from _ensure_identity(context, request, plan, config)
        timings["identityReadyAt"] = now_iso(context)
        yield from _grant_key_access(context, request, plan, principal_id, tenant_id, config)
        timings["keyAccessReadyAt"] = now_iso(context)

        if request.get("approval") == "required":
            yield from _await_approval(context, request, config)
            timings["approvedAt"] = now_iso(context)
            # Hours may have passed: check again right before the step that cannot be undone.
            again = yield from _preflight(context, request, config)
            findings = again["findings"]
            if again["blocked"]:
                return _finish(context, request, "Refused", _reason(findings), findings, None, None, timings)

        report(context, "enabling", request["accountId"])
        enabled = yield from call_arm(
            context, ENABLE_CMK, {"accountId": request["accountId"], "keyUri": plan["keyUri"]}, config
        )
        _raise_if_not_done(enabled, "Azure refused the key PATCH")
        timings["enableRequestedAt"] = now_iso(context)
        if not context.is_replaying:
            logger.info("CMK PATCH accepted for %s; following %s", request["accountId"], enabled["operation"])
    except StepFailed as stop:
        return _finish(context, request, stop.outcome, stop.reason, stop.findings or findings, plan, None, timings)
    except Exception as error:  # an activity that failed after its retries: still report an outcome
        return _finish(context, request, "Failed", first_line(error), findings, plan, None, timings)

    deadline = context.current_utc_datetime + timedelta(hours=config["monitorDeadlineHours"])
    monitor: MonitorState = {
        "operation": enabled["operation"],
        "polls": 0,
        "generation": 0,
        "intervalSeconds": config["pollIntervalSeconds"],
        "deadline": iso(deadline),
        "lastStatus": None,
        "lastReading": None,
        "readFailures": 0,
    }
    resume_state: ResumeState = {
        "monitor": monitor,
        "findings": findings,
        "plan": plan,
        "identity": _identity_label(plan),
        "timings": timings,
    }
    return (yield from _monitor_and_finish(context, request, config, resume_state))


def _preflight(
    context: df.DurableOrchestrationContext, request: EnablementRequest, config: OrchestrationConfig
) -> Generator[Any, Any, PreflightResult]:
    result = yield from call_arm(context, PREFLIGHT, {"request": request, "asOf": now_iso(context)}, config)
    _raise_if_not_done(result, "Azure refused a preflight read")
    preflight: PreflightResult = result
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
        _raise_if_not_done(step, "Azure refused an identity change")
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
        reading = yield from call_arm(context, POLL_OPERATION, {"operation": operation}, config)
        polls += 1
        if "throttled" not in reading and "refused" not in reading and reading["terminal"]:
            return dict(reading)
        status = reading.get("status") if "status" in reading else None
        wait = reading.get("retryAfterSeconds") or interval
        next_poll = context.current_utc_datetime + timedelta(seconds=wait)
        if next_poll > deadline:
            raise StepFailed("Failed", f"The {phase} operation did not finish within {IDENTITY_OPERATION_DEADLINE}.")
        report(context, phase, account_id, operation_status=status, next_poll_at=iso(next_poll), polls=polls)
        yield context.create_timer(next_poll)
        interval = min(interval * 2, config["pollMaxIntervalSeconds"])


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
    _raise_if_not_done(grant, "Azure refused the Key Vault permission change")
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
    if not decision.get("approved"):
        who = f" by {decision['by']}" if decision.get("by") else ""
        raise StepFailed("Refused", f"Rejected{who}: {decision.get('comment') or 'no comment'}.")


def _monitor_and_finish(
    context: df.DurableOrchestrationContext,
    request: EnablementRequest,
    config: OrchestrationConfig,
    resume: ResumeState,
) -> Generator[Any, Any, AccountOutput | None]:
    state = resume["monitor"]
    timings = resume["timings"]
    account_id = request["accountId"]
    deadline = datetime.fromisoformat(state["deadline"])
    polls_this_generation = 0
    try:
        while True:
            reading = yield from call_arm(
                context, POLL_OPERATION, {"operation": state["operation"], "fallbackToAccount": True}, config
            )
            state["polls"] += 1
            polls_this_generation += 1
            if "throttled" in reading or "refused" in reading:
                # Not knowing is not failing: the encryption goes on; read again later.
                state["readFailures"] += 1
                status = state["lastStatus"]
            else:
                state["lastReading"] = reading
                if reading["readError"]:
                    state["readFailures"] += 1
                if reading["terminal"]:
                    break
                status = reading["status"]
            if status == state["lastStatus"]:
                state["intervalSeconds"] = min(state["intervalSeconds"] * 2, config["pollMaxIntervalSeconds"])
            else:
                state["intervalSeconds"] = config["pollIntervalSeconds"]
            state["lastStatus"] = status
            retry_after = reading.get("retryAfterSeconds") if isinstance(reading, dict) else None
            wait = retry_after or state["intervalSeconds"]
            next_poll = context.current_utc_datetime + timedelta(seconds=wait)
            if next_poll > deadline:
                reason = (
                    f"Stopped following the encryption at its deadline {state['deadline']} "
                    f"(CMK_MONITOR_DEADLINE_HOURS={config['monitorDeadlineHours']:g}); last status {status}. "
                    "The encryption goes on in Azure and cannot be reverted: watch the account's "
                    "provisioningState and customerManagedKeyStatus."
                )
                return _finish_monitor(context, request, resume, "Failed", reason, status)
            last = state["lastReading"]
            report(
                context,
                "encrypting",
                account_id,
                operation_status=status,
                next_poll_at=iso(next_poll),
                polls=state["polls"],
                percent_complete=last["percentComplete"] if last else None,
            )
            yield context.create_timer(next_poll)
            if polls_this_generation >= config["pollsPerGeneration"]:
                state["generation"] += 1
                context.continue_as_new({"request": request, "config": config, "resume": resume})
                return None

        final = state["lastReading"]
        assert final is not None
        timings["encryptionDoneAt"] = now_iso(context)
        if "enableRequestedAt" in timings:
            started = datetime.fromisoformat(timings["enableRequestedAt"].replace("Z", "+00:00"))
            timings["encryptionSeconds"] = (context.current_utc_datetime - started).total_seconds()
        if not final["succeeded"]:
            error = final["error"] or {"code": final["status"], "message": ""}
            reason = f"Azure reported the encryption {final['status']}: {error['code']}: {error['message']}"
            return _finish_monitor(context, request, resume, "Failed", reason, final["status"])
        return (yield from _verify(context, request, config, resume))
    except Exception as error:
        return _finish_monitor(context, request, resume, "Failed", first_line(error), state["lastStatus"])


def _verify(
    context: df.DurableOrchestrationContext,
    request: EnablementRequest,
    config: OrchestrationConfig,
    resume: ResumeState,
) -> Generator[Any, Any, AccountOutput]:
    detail = ""
    for attempt in range(VERIFY_ATTEMPTS):
        report(
            context, "verifying", request["accountId"], operation_status="Succeeded", polls=resume["monitor"]["polls"]
        )
        verification = yield from call_arm(
            context, VERIFY_CMK, {"accountId": request["accountId"], "keyUri": resume["plan"]["keyUri"]}, config
        )
        _raise_if_not_done(verification, "Azure refused to show the account")
        if verification["verified"]:
            return _finish_monitor(context, request, resume, "Enabled", verification["detail"], "Succeeded")
        detail = verification["detail"]
        if attempt + 1 < VERIFY_ATTEMPTS:
            # customerManagedKeyStatus can lag the operation's completion by a little.
            yield sleep(context, config["pollIntervalSeconds"])
    return _finish_monitor(
        context,
        request,
        resume,
        "Failed",
        f"Encryption reported Succeeded but the account does not confirm: {detail}",
        "Succeeded",
    )


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


def _raise_if_not_done(result: Any, what: str) -> None:
    if isinstance(result, dict) and "refused" in result:
        refused = result["refused"]
        raise StepFailed("Failed", f"{what}: HTTP {refused['httpStatus']} {refused['code']}: {refused['message']}")
    if isinstance(result, dict) and "throttled" in result:
        raise StepFailed("Failed", f"{what}: still throttled after repeated waits ({result['throttled']['message']})")
