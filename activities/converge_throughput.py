"""Activity: one step of setting an account's throughput to its targets (the raise, or the restore)."""

from __future__ import annotations

from typing import Any

import azure.durable_functions as df

from activities import Payload
from cmk.arm import arm_outcomes
from cmk.throughput_arm import converge

CONVERGE_THROUGHPUT = "converge_throughput"

bp = df.Blueprint()


@arm_outcomes
def converge_throughput_activity(payload: dict[str, Any]) -> Any:
    """payload: {"accountId", "targets": [{"resourceId", "mode", "ruPerSecond"}]}. Reads every target first and
    sends at most one PUT, so a retried or repeated call never writes blind. Returns a ConvergeStep."""
    return converge(payload["accountId"], payload["targets"])


@bp.function_name(CONVERGE_THROUGHPUT)
@bp.activity_trigger(input_name="payload", activity=CONVERGE_THROUGHPUT)
def converge_throughput_trigger(payload: Payload) -> Any:
    return converge_throughput_activity(payload)
