"""Activity: the key-only PATCH, sent only after reading the account. Returns where to follow the encryption."""

from __future__ import annotations

from typing import Any

import azure.durable_functions as df

from activities import Payload
from cmk.arm import arm_outcomes
from cmk.enablement import enable_cmk

ENABLE_CMK = "enable_cmk"

bp = df.Blueprint()


@arm_outcomes
def enable_cmk_activity(payload: dict[str, Any]) -> Any:
    """payload: {"accountId", "keyUri"}. Returns an EnableResult: the PATCH is sent only when the account, read
    first, has neither the key nor an operation in flight, so a retried attempt never sends it twice."""
    return enable_cmk(payload["accountId"], payload["keyUri"])


@bp.function_name(ENABLE_CMK)
@bp.activity_trigger(input_name="payload", activity=ENABLE_CMK)
def enable_cmk_trigger(payload: Payload) -> Any:
    return enable_cmk_activity(payload)
