"""An app that may not read an account or an identity is told so, with Azure's message naming the action and the
scope to grant: a blocking finding (nothing changed), not a failed orchestration."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime

import pytest

from activities.preflight import preflight_activity
from sandbox.azure import AzureSimulator
from sandbox.azure import builders as b
from sandbox.azure.testing import IDENTITY_ENV, TENANT

SUB = "6a7b8c9d-0e1f-4a2b-8c3d-4e5f6a7b8c9d"
KEY_URI = "https://kv-forbidden.vault.azure.net/keys/cosmos-cmk"


@pytest.fixture(scope="module")
def ungranted() -> Iterator[tuple[str, str]]:
    """Authorization enforced and no grant for the app at all."""
    vault = b.key_vault(SUB, "rg-keys", "kv-forbidden", tenant_id=TENANT)
    account = b.cosmos_account(SUB, "rg-data", "unreadable", backup="Continuous")
    identity = b.user_assigned_identity(SUB, "rg-data", "cmk-identity", tenant_id=TENANT)
    world = b.world([vault, b.vault_key(vault, "cosmos-cmk"), account, identity], tenant_id=TENANT, grants=False)
    with pytest.MonkeyPatch.context() as patch, AzureSimulator(world, time_scale=1.0) as simulator:
        for name in IDENTITY_ENV:
            patch.delenv(name, raising=False)
        for name, value in simulator.app_settings().items():
            patch.setenv(name, value)
        yield str(account["id"]), str(identity["id"])


def test_an_account_the_app_may_not_read_is_a_finding_that_names_the_missing_grant(ungranted: tuple[str, str]) -> None:
    account_id, _ = ungranted
    result = preflight_activity({"request": {"accountId": account_id, "keyUri": KEY_URI}, "asOf": _now()})
    assert result["blocked"] and result["plan"] is None
    [finding] = result["findings"]
    assert finding["code"] == "ACCOUNT_NOT_FOUND"
    assert "cannot read" in finding["message"] and "Microsoft.DocumentDB/databaseAccounts/read" in finding["message"]


def _now() -> str:
    return datetime.now(UTC).isoformat()
