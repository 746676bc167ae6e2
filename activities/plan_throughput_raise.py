"""Activity: read an account's provisioned throughput and plan the temporary raise a request asked for."""

from __future__ import annotations

from typing import Any

import azure.durable_functions as df

from activities import Payload
from cmk.arm import arm_outcomes
from cmk.throughput import plan_raise
from cmk.throughput_arm import read_inventory

PLAN_THROUGHPUT_RAISE = "plan_throughput_raise"

bp = df.Blueprint()


@arm_outcomes
def plan_throughput_raise_activity(payload: dict[str, Any]) -> Any:
    """payload: {"accountId", "throughputRaise": {"factor", "maxRuPerSecond"}}. Returns a RaisePlan (read-only)."""
    return plan_raise(read_inventory(payload["accountId"]), payload["throughputRaise"])


@bp.function_name(PLAN_THROUGHPUT_RAISE)
@bp.activity_trigger(input_name="payload", activity=PLAN_THROUGHPUT_RAISE)
def plan_throughput_raise_trigger(payload: Payload) -> Any:
    return plan_throughput_raise_activity(payload)
