"""Activity: the key-only PATCH. Returns where to follow the encryption; never waits for it."""

from __future__ import annotations

from typing import Any

import azure.durable_functions as df

from cmk.arm import arm_outcomes
from cmk.enablement import enable_cmk

ENABLE_CMK = "enable_cmk"

bp = df.Blueprint()


@arm_outcomes
def enable_cmk_activity(payload: dict[str, Any]) -> Any:
    """payload: {"accountId", "keyUri"}. Returns {"operation": OperationRef}."""
    return {"operation": enable_cmk(payload["accountId"], payload["keyUri"])}


@bp.function_name(ENABLE_CMK)
@bp.activity_trigger(input_name="payload", activity=ENABLE_CMK)
def enable_cmk_trigger(payload: dict[str, Any]) -> Any:
    return enable_cmk_activity(payload)
