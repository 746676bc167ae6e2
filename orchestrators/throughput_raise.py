"""The account orchestration's temporary throughput raise (opt-in, cmk.throughput): plan it, raise before the key
PATCH, restore every recorded value once the encryption has ended. Replay-safe generator steps (no I/O).

The recorded values are the plan's (`changes[].fromRuPerSecond`, read right before the raise): they live in the
orchestration's history and, across continue_as_new, in its ResumeState, so a crash between raise and restore
(the host killed, restarted) replays to the same record and restores it. Each write goes through the
converge_throughput activity, which reads before it writes and sends at most one PUT per call.
"""

from __future__ import annotations

from collections.abc import Generator
from datetime import timedelta
from typing import Any, NamedTuple

import azure.durable_functions as df

from activities.converge_throughput import CONVERGE_THROUGHPUT
from activities.plan_throughput_raise import PLAN_THROUGHPUT_RAISE
from cmk.findings import Code, Finding, blocking
from cmk.orchestration import AccountOutput, OrchestrationConfig, Phase
from cmk.polling import doubled
from cmk.requests import EnablementRequest
from cmk.throughput import (
    RaisedChange,
    RaisePlan,
    ThroughputRaiseReport,
    ThroughputTarget,
    raise_targets,
    restore_targets,
)
from cmk.throughput_arm import ConvergeStep
from orchestrators.steps import ArmCallFailed, call_arm, first_line, iso, now_iso, report

# Converge steps (one PUT at most each) before a raise is given up, and before a restore is reported not done.
MAX_RAISE_STEPS = 100
MAX_RESTORE_STEPS = 300


class RaiseResult(NamedTuple):
    """`report` when something was raised (or planned); `failure` when the raise did not happen (`findings` then
    has THROUGHPUT_RAISE_NOT_POSSIBLE when it was not possible, none when Azure refused or failed it)."""

    report: ThroughputRaiseReport | None
    failure: str | None
    findings: list[Finding]


class NotConverged(Exception):
    pass


def plan_raise(
    context: df.DurableOrchestrationContext, request: EnablementRequest, config: OrchestrationConfig
) -> Generator[Any, Any, RaisePlan]:
    payload = {"accountId": request["accountId"], "throughputRaise": request["throughputRaise"]}
    plan: RaisePlan = yield from call_arm(context, PLAN_THROUGHPUT_RAISE, payload, config)
    return plan


def not_possible(plan: RaisePlan) -> Finding:
    return blocking(
        Code.THROUGHPUT_RAISE_NOT_POSSIBLE,
        f"The throughput raise this request asked for is not possible: {plan['reason']}. Nothing was changed.",
    )


def planned_report(request: EnablementRequest, plan: RaisePlan) -> ThroughputRaiseReport:
    """A dry run's (or a refused request's) report: the plan, nothing changed."""
    return {
        "requested": request["throughputRaise"],
        "status": "planned" if plan["possible"] else "notPossible",
        "plan": plan,
        "changes": [],
        "reason": None if plan["possible"] else plan["reason"],
    }


def raise_throughput(
    context: df.DurableOrchestrationContext, request: EnablementRequest, config: OrchestrationConfig
) -> Generator[Any, Any, RaiseResult]:
    """Right before the key PATCH: read and record every value, raise each, wait until Azure shows them all. A raise
    that fails midway is restored before this returns the failure (nothing irreversible was done yet)."""
    try:
        plan = yield from plan_raise(context, request, config)
    except Exception as error:  # refused, throttled through every wait, or failed after its retries
        reason = str(error) if isinstance(error, ArmCallFailed) else first_line(error)
        return RaiseResult(None, f"The throughput raise could not be planned ({reason}); nothing was changed.", [])
    if not plan["possible"]:
        finding = not_possible(plan)
        return RaiseResult(planned_report(request, plan), finding["message"], [finding])
    changes: list[RaisedChange] = [{**change, "raisedAt": None, "restoredAt": None} for change in plan["changes"]]
    raised: ThroughputRaiseReport = {
        "requested": request["throughputRaise"],
        "status": "restored",  # until the restore says otherwise: nothing is raised yet
        "plan": plan,
        "changes": changes,
        "reason": None,
    }
    try:
        yield from _converge(context, request, config, raise_targets(plan), "enabling", "raising throughput")
    except NotConverged as error:
        failure = f"The throughput raise could not be done ({error}); no key PATCH was sent."
        yield from _restore(context, request, config, raised)
        return RaiseResult(raised, f"{failure} {_restore_summary(raised)}", [])
    for change in changes:
        change["raisedAt"] = now_iso(context)
    return RaiseResult(raised, None, [])


def restore_into(
    context: df.DurableOrchestrationContext,
    request: EnablementRequest,
    config: OrchestrationConfig,
    raised: ThroughputRaiseReport | None,
    output: AccountOutput | None,
) -> Generator[Any, Any, AccountOutput | None]:
    """After the orchestration's outcome: put every recorded value back (Azure accepts it once the encryption has
    ended, whatever its end), and say so in the output. An encryption Azure still runs (Encrypting) blocks it."""
    if output is None or raised is None:
        return output  # continued as new (it restores in a later generation), or nothing was raised
    if output["outcome"] == "Encrypting":
        raised["status"] = "restoreAfterEncryption"
        raised["reason"] = (
            "Azure still encrypts and refuses throughput changes until it ends; this orchestration stopped following "
            "it, so the raised values stay: put each change's fromRuPerSecond back once the encryption has ended."
        )
        output["throughputRaise"] = raised
        return output
    yield from _restore(context, request, config, raised)
    output["throughputRaise"] = raised
    if raised["status"] != "restored":
        output["reason"] = f"{output['reason']} {_restore_summary(raised)}"
    output["timings"]["finishedAt"] = now_iso(context)
    report(context, "done", request["accountId"], detail=f"{output['outcome']}: {_restore_summary(raised)}")
    return output


def _restore(
    context: df.DurableOrchestrationContext,
    request: EnablementRequest,
    config: OrchestrationConfig,
    raised: ThroughputRaiseReport,
) -> Generator[Any, Any, None]:
    """Converge to the recorded values, retrying (backing off) until Azure accepts; a refusal is reported."""
    try:
        step = yield from _converge(
            context,
            request,
            config,
            restore_targets(raised["changes"]),
            "done",
            "restoring throughput",
            max_steps=MAX_RESTORE_STEPS,
            retry_failures=True,
        )
    except NotConverged as error:
        raised["status"] = "notRestored"
        raised["reason"] = f"Azure did not accept the restore: {error}"
        return
    restored = set(step["atTarget"]) | set(step["gone"])
    for change in raised["changes"]:
        if change["resourceId"] in restored:
            change["restoredAt"] = now_iso(context)
    raised["status"] = "restored"
    gone = [change["resourceId"] for change in raised["changes"] if change["resourceId"] in step["gone"]]
    raised["reason"] = f"deleted meanwhile, nothing to restore: {', '.join(gone)}" if gone else None


def _converge(
    context: df.DurableOrchestrationContext,
    request: EnablementRequest,
    config: OrchestrationConfig,
    targets: list[ThroughputTarget],
    phase: Phase,
    doing: str,
    *,
    max_steps: int = MAX_RAISE_STEPS,
    retry_failures: bool = False,
) -> Generator[Any, Any, ConvergeStep]:
    """Call converge_throughput until every target holds, waiting between steps (longer while Azure blocks)."""
    wait = config["pollIntervalSeconds"]
    payload = {"accountId": request["accountId"], "targets": targets}
    detail = "not started"
    for _ in range(max_steps):
        try:
            step: ConvergeStep = yield from call_arm(context, CONVERGE_THROUGHPUT, payload, config)
        except Exception as error:  # failed after its retries, or throttled through every wait
            refused = isinstance(error, ArmCallFailed) and error.kind == "refused"
            if refused or not retry_failures:  # Azure said no: asking again will not change it
                raise NotConverged(str(error) if isinstance(error, ArmCallFailed) else first_line(error)) from error
            # Restoring: not knowing, or Azure throttling (a scale-down soon after a scale-up can be, see
            # docs/azure-cmk-facts.md "Throughput changes"), is not a verdict; back off and ask again.
            step = {"state": "failed", "resourceId": None, "detail": first_line(error), "atTarget": [], "gone": []}
        if step["state"] == "done":
            return step
        detail = f"{step['state']}: {step['detail']}"
        next_step = context.current_utc_datetime + timedelta(seconds=wait)
        report(context, phase, request["accountId"], next_poll_at=iso(next_step), detail=f"{doing}: {detail}")
        yield context.create_timer(next_step)
        if step["state"] in ("blocked", "failed"):  # Azure's answer will not change soon: back off
            wait = doubled(wait, config["pollMaxIntervalSeconds"])
    raise NotConverged(f"not at its targets after {max_steps} steps; last: {detail}")


def _restore_summary(raised: ThroughputRaiseReport) -> str:
    if raised["status"] == "restored":
        return f"Throughput restored: {len(raised['changes'])} value(s) back as recorded."
    return f"Throughput NOT restored ({raised['reason']}); put back each change's fromRuPerSecond."
