"""Activity: give the account's identity get/wrapKey/unwrapKey on the key (access policy or RBAC role)."""

from __future__ import annotations

from typing import Any

import azure.durable_functions as df

from activities import Payload
from cmk.arm import arm_outcomes
from cmk.key_access import grant_key_access

GRANT_KEY_ACCESS = "grant_key_access"

bp = df.Blueprint()


@arm_outcomes
def grant_key_access_activity(payload: dict[str, Any]) -> Any:
    """payload: {"vault": PlannedVault, "principalId", "tenantId"}. Returns a GrantResult."""
    return grant_key_access(payload["vault"], payload["principalId"], payload.get("tenantId"))


@bp.function_name(GRANT_KEY_ACCESS)
@bp.activity_trigger(input_name="payload", activity=GRANT_KEY_ACCESS)
def grant_key_access_trigger(payload: Payload) -> Any:
    return grant_key_access_activity(payload)
