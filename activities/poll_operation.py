"""Activity: one read of an async operation's status URL, falling back to the account when it is unreadable."""

from __future__ import annotations

from typing import Any

import azure.durable_functions as df

from activities import Payload
from cmk.arm import arm_outcomes
from cmk.operations import read_operation

POLL_OPERATION = "poll_operation"

bp = df.Blueprint()


@arm_outcomes
def poll_operation_activity(payload: dict[str, Any]) -> Any:
    """payload: {"operation": OperationRef, "fallbackToAccount"?: bool}. Returns an OperationReading."""
    return read_operation(payload["operation"], fallback_to_account=payload.get("fallbackToAccount", True))


@bp.function_name(POLL_OPERATION)
@bp.activity_trigger(input_name="payload", activity=POLL_OPERATION)
def poll_operation_trigger(payload: Payload) -> Any:
    return poll_operation_activity(payload)
