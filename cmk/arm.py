"""How ARM answers are interpreted: throttling, not-found, and the error text a human needs."""

from __future__ import annotations

import functools
import math
from collections.abc import Callable
from typing import Any, NotRequired, ParamSpec, TypedDict, TypeVar

from azure.core.exceptions import HttpResponseError, ResourceNotFoundError

from cmk.arm_pacing import PACER, ArmPaced

P = ParamSpec("P")
R = TypeVar("R")

DEFAULT_THROTTLE_WAIT_SECONDS = 10


class ThrottledResult(TypedDict):
    retryAfterSeconds: float
    message: str
    turn: NotRequired[str]  # paced, not refused: the bucket whose turn the next attempt has (PacingInfo.turn)


def retry_after_seconds(error: HttpResponseError, default: int = DEFAULT_THROTTLE_WAIT_SECONDS) -> int:
    """Retry-After of an ARM answer in whole seconds (ARM sends integer seconds; be lenient with decimals)."""
    headers = getattr(error.response, "headers", None) or {}
    value = headers.get("Retry-After")
    try:
        return max(1, math.ceil(float(value))) if value else default
    except ValueError:
        return default


def is_throttled(error: BaseException) -> bool:
    return isinstance(error, HttpResponseError) and error.status_code == 429


def is_not_found(error: BaseException) -> bool:
    return isinstance(error, ResourceNotFoundError) or (
        isinstance(error, HttpResponseError) and error.status_code == 404
    )


def is_forbidden(error: BaseException) -> bool:
    """ARM's 403: the caller lacks the action at that scope (AuthorizationFailed, LinkedAuthorizationFailed)."""
    return isinstance(error, HttpResponseError) and error.status_code == 403


def describe(error: HttpResponseError) -> str:
    """`<code>: <message>` from an ARM error body, falling back to the HTTP reason."""
    code = getattr(error.error, "code", None) if error.error is not None else None
    message = getattr(error.error, "message", None) if error.error is not None else None
    if code or message:
        return f"{code or error.status_code}: {message or error.reason}"
    return f"HTTP {error.status_code}: {error.reason or error.message}"


class ArmRefusal(TypedDict):
    httpStatus: int
    code: str
    message: str


def refusal(error: HttpResponseError) -> ArmRefusal:
    code = getattr(error.error, "code", None) if error.error is not None else None
    message = getattr(error.error, "message", None) if error.error is not None else None
    return {
        "httpStatus": int(error.status_code or 0),
        "code": str(code or error.reason or error.status_code),
        "message": str(message or error.message),
    }


def is_refusal(error: BaseException) -> bool:
    """A 4xx that retrying will not change (429 and 408 are transient; they are not refusals)."""
    return (
        isinstance(error, HttpResponseError)
        and error.status_code is not None
        and 400 <= error.status_code < 500
        and error.status_code not in (408, 429)
    )


def arm_outcomes(activity: Callable[P, R]) -> Callable[P, R | dict[str, Any]]:
    """Report ARM answers that are outcomes, not faults, as results of the activity instead of failures.

    - 429: `{"throttled": {"retryAfterSeconds", "message"}}`; the orchestrator waits Retry-After on a durable
      timer and calls again (the SDK's retry policy is told not to sleep on 429, see cmk.clients). The same when
      the app's own pacing held the request back (cmk.arm_pacing), with the wait for its turn.
    - other 4xx: `{"refused": {"httpStatus", "code", "message"}}`; Azure said no, and asking again will not help.
    Anything else (5xx and connection faults that outlived the SDK's own retries) is raised, so Durable
    RetryOptions retry the activity.
    """

    name = getattr(activity, "__name__", "activity")

    @functools.wraps(activity)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R | dict[str, Any]:
        payload = args[0] if args else None
        pacing = payload.get("armPacing") if isinstance(payload, dict) else None
        try:
            with PACER.activity(pacing, name):
                return activity(*args, **kwargs)
        except ArmPaced as paced:  # nothing was sent: wait the bucket's turn, as for a 429
            paced_result: ThrottledResult = {
                "retryAfterSeconds": paced.wait_seconds,
                "message": str(paced),
                "turn": paced.turn,
            }
            return {"throttled": paced_result}
        except HttpResponseError as error:
            if is_throttled(error):
                throttled: ThrottledResult = {
                    "retryAfterSeconds": retry_after_seconds(error),
                    "message": describe(error),
                }
                return {"throttled": throttled}
            if is_refusal(error):
                return {"refused": refusal(error)}
            raise

    return wrapper
