"""Replay-safe building blocks the orchestrators share.

Everything here runs inside an orchestrator generator: no I/O, no wall clock, no randomness. Time comes from
`context.current_utc_datetime`, configuration from the orchestration's input.
"""

from __future__ import annotations

from collections.abc import Generator
from datetime import datetime, timedelta
from typing import Any

import azure.durable_functions as df

from cmk.arm_pacing import PacingInfo, wake_delay_seconds
from cmk.orchestration import CustomStatus, OrchestrationConfig, Phase

# How many of Azure's Retry-After waits (429s) one activity call may sit through before the throttling is reported
# as the account's failure. Throttling passes, and a rollout runs for days: with 20, `make chaos` (429 storms that
# throttle 80 % of a subscription's reads or writes for up to 150 simulated minutes, Retry-After 1 to 10 s) reported
# an account Failed, throttled through them, in 1 of 6 runs in December 2026; waiting longer would have enabled it.
MAX_THROTTLED_WAITS = 60
# How many waits the app's own pacing (cmk.arm_pacing) may hold one call back: nothing was sent, the wait is a place
# in the app's queue, and a caller that comes back late for its turn (a host restarted, a backlog of timers firing
# at once) queues again. Counted apart from Azure's 429s: `make chaos` once reported an account Failed, "throttled"
# through 20 waits, the last of them the app's own, in a run with five restarts of the stack and 429 storms.
MAX_PACED_WAITS = 100

Step = Generator[Any, Any, Any]


def retry_options(config: OrchestrationConfig) -> df.RetryOptions:
    return df.RetryOptions(
        first_retry_interval_in_milliseconds=config["activityRetrySeconds"] * 1000,
        max_number_of_attempts=config["activityMaxAttempts"],
    )


# What each ARM activity does, for the reason a human reads when Azure refuses it.
ACTIVITY_PURPOSE = {
    "preflight": "a preflight read",
    "ensure_identity": "an identity change",
    "grant_key_access": "the Key Vault permission change",
    "enable_cmk": "the key PATCH",
    "poll_operation": "a status read",
    "verify_cmk": "the account read that verifies the key",
    "discover_accounts": "discovery",
    "estimate_encryption": "an Azure Monitor metrics read",
}


class ArmCallFailed(Exception):
    """An ARM activity ended without a result: Azure refused it (a 4xx that asking again will not change), or
    throttled it through every wait. The one error orchestrators handle instead of inspecting result shapes."""

    def __init__(self, activity: str, kind: str, http_status: int, code: str, message: str) -> None:
        self.activity = activity
        self.kind = kind
        self.http_status = http_status
        self.code = code
        self.message = message
        purpose = ACTIVITY_PURPOSE.get(activity, activity)
        if kind == "throttled":
            text = f"Azure throttled {purpose} through {MAX_THROTTLED_WAITS} waits ({message})"
        elif kind == "paced":
            text = (
                f"The app's own ARM budget held back {purpose} through {MAX_PACED_WAITS} waits; nothing was sent "
                f"({message})"
            )
        else:
            text = f"Azure refused {purpose}: HTTP {http_status} {code}: {message}"
        super().__init__(text)


def call_arm(context: df.DurableOrchestrationContext, activity: str, payload: Any, config: OrchestrationConfig) -> Step:
    """Call an ARM activity: transient faults retried by RetryOptions, 429s and the app's own pacing waited out on a
    durable timer. Azure's refusals, its throttling past MAX_THROTTLED_WAITS and the pacing past MAX_PACED_WAITS
    raise ArmCallFailed (see cmk.arm.arm_outcomes). A dict payload
    carries `armPacing` (cmk.arm_pacing): the orchestration's time and who calls, so the activity's requests are
    paced on the orchestrations' clock and a paced call keeps its place in the queue when it comes back."""
    turn = ""
    throttled_waits = paced_waits = 0
    while True:
        if isinstance(payload, dict):
            pacing: PacingInfo = {"at": now_iso(context), "key": f"{context.instance_id}/{activity}"}
            if turn:
                pacing["turn"] = turn
            payload = {**payload, "armPacing": pacing}
        result = yield context.call_activity_with_retry(activity, retry_options(config), payload)
        if isinstance(result, dict) and "refused" in result:
            refused = result["refused"]
            raise ArmCallFailed(activity, "refused", refused["httpStatus"], refused["code"], refused["message"])
        if not (isinstance(result, dict) and "throttled" in result):
            return result
        throttled = result["throttled"]
        if "turn" in throttled:  # the app's pacing held it back (its turn; "" when the queue had no place)
            paced_waits += 1
            if paced_waits > MAX_PACED_WAITS:
                raise ArmCallFailed(activity, "paced", 429, "Paced", throttled["message"])
        else:
            throttled_waits += 1
            if throttled_waits > MAX_THROTTLED_WAITS:
                raise ArmCallFailed(activity, "throttled", 429, "TooManyRequests", throttled["message"])
        turn = throttled.get("turn", "")
        now = context.current_utc_datetime.timestamp()
        yield sleep(context, wake_delay_seconds(now, throttled["retryAfterSeconds"]))


def sleep(context: df.DurableOrchestrationContext, seconds: float) -> Any:
    """A durable timer `seconds` from the orchestration's current time (yield the returned task)."""
    return context.create_timer(context.current_utc_datetime + timedelta(seconds=max(0.0, seconds)))


def now_iso(context: df.DurableOrchestrationContext) -> str:
    return iso(context.current_utc_datetime)


def iso(moment: datetime) -> str:
    return moment.isoformat().replace("+00:00", "Z")


def report(
    context: df.DurableOrchestrationContext,
    phase: Phase,
    account_id: str,
    *,
    operation_status: str | None = None,
    next_poll_at: str | None = None,
    polls: int = 0,
    percent_complete: float | None = None,
    detail: str | None = None,
    status_url: str | None = None,
) -> None:
    """custom_status always says the phase, the account, the last operation status and the next poll."""
    status: CustomStatus = {
        "phase": phase,
        "accountId": account_id,
        "operationStatus": operation_status,
        "nextPollAt": next_poll_at,
        "polls": polls,
        "percentComplete": percent_complete,
        "detail": detail,
    }
    if status_url is not None:
        # Kept in the status so that a later orchestration can follow the encryption again should an admin
        # terminate this one (a terminated orchestration has no output).
        status["statusUrl"] = status_url
    context.set_custom_status(status)


def first_line(error: BaseException) -> str:
    """A failed activity surfaces as `Activity function 'x' failed: <Type>: <message>\n<details>`."""
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__
