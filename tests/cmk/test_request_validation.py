"""Bad input is refused with a code and a message before anything starts; good input is normalised."""

from __future__ import annotations

from typing import Any

import pytest

from cmk.errors import InvalidRequest
from cmk.requests import parse_enablement_request
from cmk.resource_ids import parse_key_uri, parse_scope, same_key_uri

SUBSCRIPTION = "/subscriptions/11111111-2222-3333-4444-555555555555"
ACCOUNT = f"{SUBSCRIPTION}/resourceGroups/rg-data/providers/Microsoft.DocumentDB/databaseAccounts/orders-db"
KEY = "https://kv-cmk-prod.vault.azure.net/keys/cosmos-cmk"
UAMI = f"{SUBSCRIPTION}/resourceGroups/rg-id/providers/Microsoft.ManagedIdentity/userAssignedIdentities/id-cosmos"


def test_a_valid_request_is_normalised() -> None:
    request = parse_enablement_request(
        {
            "accountId": ACCOUNT.replace("resourceGroups", "RESOURCEGROUPS"),
            "keyUri": "https://KV-CMK-PROD.vault.azure.net:443/keys/cosmos-cmk/",
        }
    )
    assert request["accountId"] == ACCOUNT
    assert request["keyUri"] == KEY


def test_identity_system_assigned_is_case_insensitive_and_uami_is_validated() -> None:
    assert (
        parse_enablement_request({"accountId": ACCOUNT, "keyUri": KEY, "identity": "systemassigned"})["identity"]
        == "SystemAssigned"
    )
    assert parse_enablement_request({"accountId": ACCOUNT, "keyUri": KEY, "identity": UAMI})["identity"] == UAMI


@pytest.mark.parametrize(
    ("body", "code"),
    [
        ([], "InvalidRequestBody"),
        ({"keyUri": KEY}, "InvalidAccountId"),
        ({"accountId": "orders-db", "keyUri": KEY}, "InvalidAccountId"),
        ({"accountId": ACCOUNT.replace("DocumentDB", "Storage"), "keyUri": KEY}, "InvalidAccountId"),
        ({"accountId": ACCOUNT}, "InvalidKeyUri"),
        ({"accountId": ACCOUNT, "keyUri": "http://kv.vault.azure.net/keys/k"}, "InvalidKeyUri"),
        ({"accountId": ACCOUNT, "keyUri": "https://example.com/keys/k"}, "InvalidKeyUri"),
        ({"accountId": ACCOUNT, "keyUri": "https://kv-x.vault.azure.net/secrets/k"}, "InvalidKeyUri"),
        ({"accountId": ACCOUNT, "keyUri": "https://kv-x.vault.azure.net/keys/k/notahexversion"}, "InvalidKeyUri"),
        ({"accountId": ACCOUNT, "keyUri": "https://kv-x.vault.azure.net:8443/keys/k"}, "InvalidKeyUri"),
        ({"accountId": ACCOUNT, "keyUri": "https://hsm-x.managedhsm.azure.net/keys/k"}, "ManagedHsmKeyNotSupported"),
        ({"accountId": ACCOUNT, "keyUri": KEY, "identity": "UserAssigned"}, "InvalidIdentity"),
        ({"accountId": ACCOUNT, "keyUri": KEY, "dryRun": "yes"}, "InvalidDryRun"),
        ({"accountId": ACCOUNT, "keyUri": KEY, "approval": "maybe"}, "InvalidApproval"),
        ({"accountId": ACCOUNT, "keyURI": KEY}, "UnknownField"),
    ],
)
def test_bad_input_gets_a_code_and_a_message(body: Any, code: str) -> None:
    with pytest.raises(InvalidRequest) as raised:
        parse_enablement_request(body)
    assert raised.value.code == code
    assert raised.value.to_json()["error"]["message"]


def test_key_uris_compare_equal_with_or_without_port_and_trailing_slash() -> None:
    assert same_key_uri(KEY, "https://KV-CMK-PROD.vault.azure.net:443/keys/cosmos-cmk/")
    assert not same_key_uri(KEY, "https://kv-cmk-prod.vault.azure.net/keys/other")
    versioned = KEY + "/0123456789abcdef0123456789abcdef"
    assert not same_key_uri(KEY, versioned)
    assert parse_key_uri(versioned).versionless == KEY


def test_scope_entries_are_subscriptions_or_resource_groups() -> None:
    assert parse_scope("/subscriptions/11111111-2222-3333-4444-555555555555") == (
        "11111111-2222-3333-4444-555555555555",
        None,
    )
    assert parse_scope("/subscriptions/11111111-2222-3333-4444-555555555555/resourceGroups/rg-a") == (
        "11111111-2222-3333-4444-555555555555",
        "rg-a",
    )
    with pytest.raises(InvalidRequest):
        parse_scope("/subscriptions/nope")
