"""Managed HSM keys: whether Cosmos DB takes one on an existing account is not documented (cmk/key_uris.py cites
what is), so every entry refuses them before anything starts, with one code and one message that cites the source."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any, cast

import pytest

from cmk import inventory
from cmk.errors import InvalidRequest
from cmk.key_policy import choose_key, parse_key_policy
from cmk.key_uris import MANAGED_HSM_KEY_NOT_SUPPORTED, MANAGED_HSM_MESSAGE
from cmk.requests import parse_enablement_request
from cmk.rollouts import parse_rollout_request
from triggers import enrolment

SUBSCRIPTION = "11111111-2222-3333-4444-555555555555"
ACCOUNT = f"/subscriptions/{SUBSCRIPTION}/resourceGroups/rg/providers/Microsoft.DocumentDB/databaseAccounts/orders-db"
HSM_KEYS = {
    "AzureCloud": "https://hsm-cmk.managedhsm.azure.net/keys/cosmos-cmk",
    "AzureUSGovernment": "https://hsm-cmk.managedhsm.usgovcloudapi.net/keys/cosmos-cmk",
    "AzureChinaCloud": "https://hsm-cmk.managedhsm.azure.cn/keys/cosmos-cmk/0123456789abcdef0123456789abcdef",
}


@pytest.fixture(autouse=True)
def _no_overrides(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("AZURE_CLOUD", "ARM_ENDPOINT", "CMK_KEY_POLICY"):
        monkeypatch.delenv(name, raising=False)


def _refusal(attempt: Callable[[], Any]) -> tuple[str, str, int]:
    with pytest.raises(InvalidRequest) as refused:
        attempt()
    return refused.value.code, refused.value.message, refused.value.status


@pytest.mark.parametrize("cloud", sorted(HSM_KEYS))
def test_a_managed_hsm_key_gets_one_400_at_every_entry(monkeypatch: pytest.MonkeyPatch, cloud: str) -> None:
    monkeypatch.setenv("AZURE_CLOUD", cloud)
    key = HSM_KEYS[cloud]
    answers = {
        _refusal(lambda: parse_enablement_request({"accountId": ACCOUNT, "keyUri": key})),
        _refusal(lambda: parse_rollout_request({"accounts": [ACCOUNT], "keyUri": key})),
        _refusal(lambda: parse_rollout_request({"accounts": [ACCOUNT], "keyPolicy": {"default": key}})),
        _refusal(lambda: parse_key_policy({"byRegion": {"westeurope": key}})),
    }
    monkeypatch.setenv("CMK_KEY_POLICY", f'{{"bySubscription": {{"{SUBSCRIPTION}": "{key}"}}}}')
    answers.add(_refusal(lambda: parse_rollout_request({"accounts": [ACCOUNT]})))
    assert answers == {(MANAGED_HSM_KEY_NOT_SUPPORTED, MANAGED_HSM_MESSAGE, 400)}
    # Even a Managed HSM key of another cloud gets this answer, not the other-cloud one.
    other = HSM_KEYS["AzureCloud" if cloud != "AzureCloud" else "AzureUSGovernment"]
    assert _refusal(lambda: parse_enablement_request({"accountId": ACCOUNT, "keyUri": other}))[0] == (
        MANAGED_HSM_KEY_NOT_SUPPORTED
    )


def test_the_message_cites_microsoft_s_documentation() -> None:
    assert "how-to-setup-customer-managed-keys-existing-accounts" in MANAGED_HSM_MESSAGE
    assert "Configure customer-managed keys for your Azure Cosmos DB account with Azure Managed HSM Key Vault" in (
        MANAGED_HSM_MESSAGE
    )
    assert len(MANAGED_HSM_MESSAGE) < 1000  # InvalidRequest would cut it


def test_an_account_tag_naming_a_managed_hsm_key_leaves_the_account_without_a_key() -> None:
    policy = parse_key_policy({"accountTag": "cmk-key-uri", "default": "https://kv-cmk.vault.azure.net/keys/k"})
    choice = choose_key(policy, SUBSCRIPTION, "westeurope", {"cmk-key-uri": HSM_KEYS["AzureCloud"]})
    assert choice["keyUri"] is None
    assert choice["source"] == f"tag cmk-key-uri: {MANAGED_HSM_KEY_NOT_SUPPORTED}: {MANAGED_HSM_MESSAGE}"


def test_enrolment_with_a_managed_hsm_key_policy_starts_nothing_and_says_why(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setenv("CMK_KEY_POLICY", f'{{"default": "{HSM_KEYS["AzureCloud"]}"}}')
    claimed: list[Any] = []

    async def no_active(client: Any, account_id: str) -> None:
        return None

    async def claim(client: Any, orchestration_input: Any, instance_id: str) -> dict[str, Any]:
        claimed.append(orchestration_input)
        return {"started": True, "instanceId": instance_id}

    facts: dict[str, Any] = {"keyVaultKeyUri": None, "location": "westeurope", "tags": {}}
    monkeypatch.setattr(enrolment, "find_active", no_active)
    monkeypatch.setattr(enrolment, "claim_account", claim)
    monkeypatch.setattr(inventory, "read_account", lambda account: facts)
    with caplog.at_level(logging.ERROR, logger=enrolment.logger.name):
        asyncio.run(enrolment._enrol(cast(Any, object()), "event-1", ACCOUNT))  # noqa: SLF001
    assert claimed == []
    assert MANAGED_HSM_KEY_NOT_SUPPORTED in caplog.text
