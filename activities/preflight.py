"""Activity: read the account, vault, key and identity, then judge them: findings and the plan. Changes nothing."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import azure.durable_functions as df

from activities import Payload
from cmk.arm import arm_outcomes
from cmk.preflight import evaluate
from cmk.preflight_facts import gather
from cmk.requests import parse_enablement_request, without_records

PREFLIGHT = "preflight"

bp = df.Blueprint()


@arm_outcomes
def preflight_activity(payload: dict[str, Any]) -> Any:
    """payload: {"request": EnablementRequest, "asOf": ISO time (the orchestration's clock, for key expiry),
    "sharedReads": the rollout whose accounts share the key's vault and key reads (optional)}."""
    request = parse_enablement_request(without_records(payload["request"]))
    as_of = datetime.fromisoformat(payload["asOf"])
    rollout = payload.get("sharedReads")
    return evaluate(gather(request, as_of, str(rollout) if rollout else None))


@bp.function_name(PREFLIGHT)
@bp.activity_trigger(input_name="payload", activity=PREFLIGHT)
def preflight(payload: Payload) -> Any:
    return preflight_activity(payload)
