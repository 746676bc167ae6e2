"""Activity: confirm the account reports the key and that Cosmos DB can reach it (customerManagedKeyStatus)."""

from __future__ import annotations

from typing import Any

import azure.durable_functions as df

from activities import Payload
from cmk.arm import arm_outcomes
from cmk.enablement import verify_cmk

VERIFY_CMK = "verify_cmk"

bp = df.Blueprint()


@arm_outcomes
def verify_cmk_activity(payload: dict[str, Any]) -> Any:
    """payload: {"accountId", "keyUri"}. Returns a Verification."""
    return verify_cmk(payload["accountId"], payload["keyUri"])


@bp.function_name(VERIFY_CMK)
@bp.activity_trigger(input_name="payload", activity=VERIFY_CMK)
def verify_cmk_trigger(payload: Payload) -> Any:
    return verify_cmk_activity(payload)
