"""Activity: read the account, vault, key and identity, then judge them: findings and the plan. Changes nothing."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import azure.durable_functions as df

from activities import Payload
from cmk.arm import arm_outcomes
from cmk.inventory import SharedReads
from cmk.preflight import evaluate
from cmk.preflight_facts import gather
from cmk.requests import parse_enablement_request, without_records

PREFLIGHT = "preflight"

bp = df.Blueprint()


@arm_outcomes
def preflight_activity(payload: dict[str, Any]) -> Any:
    """payload: {"request": EnablementRequest, "asOf": ISO time (the orchestration's clock, for key expiry),
    "sharedReads": the rollout whose accounts share the key's vault and key reads (optional), "resourceGraph":
    what the rollout's discovery asked Resource Graph (GraphAnswers, optional, only with sharedReads)}."""
    request = parse_enablement_request(without_records(payload["request"]))
    as_of = datetime.fromisoformat(payload["asOf"])
    rollout = payload.get("sharedReads")
    shared = SharedReads(str(rollout), as_of.timestamp(), payload.get("resourceGraph")) if rollout else None
    return evaluate(gather(request, as_of, shared))


@bp.function_name(PREFLIGHT)
@bp.activity_trigger(input_name="payload", activity=PREFLIGHT)
def preflight(payload: Payload) -> Any:
    return preflight_activity(payload)
