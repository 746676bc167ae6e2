"""Activity: move the account one PATCH closer to using the planned managed identity as its default identity."""

from __future__ import annotations

from typing import Any

import azure.durable_functions as df

from activities import Payload
from cmk.arm import arm_outcomes
from cmk.identity import ensure_identity

ENSURE_IDENTITY = "ensure_identity"

bp = df.Blueprint()


@arm_outcomes
def ensure_identity_activity(payload: dict[str, Any]) -> Any:
    """payload: {"accountId", "identity": PlannedIdentity}. Returns an IdentityStep."""
    return ensure_identity(payload["accountId"], payload["identity"])


@bp.function_name(ENSURE_IDENTITY)
@bp.activity_trigger(input_name="payload", activity=ENSURE_IDENTITY)
def ensure_identity_trigger(payload: Payload) -> Any:
    return ensure_identity_activity(payload)
