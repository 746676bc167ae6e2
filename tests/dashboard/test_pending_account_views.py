"""An account orchestration that has not run its first episode yet (Pending) has no custom status and no output:
the views find its account in its input, which the Durable API hands back as the JSON text the client posted."""

from __future__ import annotations

import json

from coordination import fleet_status

ACCOUNT = (
    "/subscriptions/00000000-0000-0000-0000-000000000001/resourceGroups/rg/providers/Microsoft.DocumentDB"
    "/databaseAccounts/pending"
)


def test_a_pending_orchestration_is_listed_under_its_account() -> None:
    request = {"request": {"accountId": ACCOUNT, "keyUri": "https://kv.vault.azure.net/keys/k"}}
    pending = {
        "instanceId": "cmk-pending-0123456789ab.feedbeef",
        "runtimeStatus": "Pending",
        "customStatus": None,
        "output": None,
        "input": json.dumps(request),
    }
    assert fleet_status.account_id_of(pending) == ACCOUNT
    assert fleet_status.account_id_of({**pending, "input": request}) == ACCOUNT
    assert fleet_status.account_id_of({**pending, "input": "not JSON"}) is None
