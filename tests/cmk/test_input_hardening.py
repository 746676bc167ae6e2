"""The parsers refuse what issue 12 found accepted or crashing, with a code, a bounded message and no other error."""

from __future__ import annotations

from typing import Any

import pytest

from cmk import settings
from cmk.errors import MAX_MESSAGE, InvalidRequest, shown
from cmk.key_policy import parse_key_policy
from cmk.requests import parse_enablement_request
from cmk.resource_ids import (
    parse_account_id,
    parse_identity_id,
    parse_key_uri,
    parse_resource_group_name,
    parse_subscription_id,
    same_key_uri,
)
from cmk.rollouts import MAX_ACCOUNTS_PER_REQUEST, parse_rollout_request

SUB = "11111111-2222-3333-4444-555555555555"
ACCOUNT = f"/subscriptions/{SUB}/resourceGroups/rg-data/providers/Microsoft.DocumentDB/databaseAccounts/orders-db"
KEY = "https://kv-cmk-prod.vault.azure.net/keys/cosmos-cmk"
BAD_PORTS = [
    "https://kv-cmk-prod.vault.azure.net:abc/keys/k",
    "https://kv-cmk-prod.vault.azure.net:99999/keys/k",
    "https://kv-cmk-prod.vault.azure.net:-1/keys/k",
    "https://kv-cmk-prod.vault.azure.net:/keys/k",
    "https://[::1/keys/k",
    "https://[::1]:443/keys/k",
]


@pytest.fixture(autouse=True)
def _no_configured_policy(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CMK_KEY_POLICY", raising=False)
    assert not settings.get_str("CMK_KEY_POLICY")


def _code(call: Any, *args: Any) -> str:
    with pytest.raises(InvalidRequest) as raised:
        call(*args)
    assert raised.value.status == 400
    return raised.value.code


@pytest.mark.parametrize("uri", BAD_PORTS)
def test_a_port_that_is_not_a_number_is_an_invalid_key_uri(uri: str) -> None:
    assert _code(parse_key_uri, uri) == "InvalidKeyUri"
    assert _code(parse_enablement_request, {"accountId": ACCOUNT, "keyUri": uri}) == "InvalidKeyUri"
    assert _code(parse_rollout_request, {"accounts": [ACCOUNT], "keyUri": uri}) == "InvalidKeyUri"
    assert not same_key_uri(uri, KEY)


@pytest.mark.parametrize("uri", BAD_PORTS)
@pytest.mark.parametrize("where", ["default", "bySubscription", "byRegion"])
def test_a_port_that_is_not_a_number_is_an_invalid_key_policy(uri: str, where: str) -> None:
    policies: dict[str, dict[str, Any]] = {
        "default": {"default": uri},
        "bySubscription": {"bySubscription": {SUB: uri}},
        "byRegion": {"byRegion": {"West Europe": uri}},
    }
    policy = policies[where]
    assert _code(parse_key_policy, policy) == "InvalidKeyPolicy"
    assert _code(parse_rollout_request, {"accounts": [ACCOUNT], "keyPolicy": policy}) == "InvalidKeyPolicy"


@pytest.mark.parametrize("group", ["..", ".", "rg.", "rg..", "a/b", "", " ", "x" * 91, "%2E%2E"])
def test_resource_group_names_follow_arm_rules(group: str) -> None:
    account = f"/subscriptions/{SUB}/resourceGroups/{group}/providers/Microsoft.DocumentDB/databaseAccounts/orders-db"
    assert _code(parse_account_id, account) == "InvalidAccountId"
    identity = (
        f"/subscriptions/{SUB}/resourceGroups/{group}/providers/Microsoft.ManagedIdentity/userAssignedIdentities/id-x"
    )
    assert _code(parse_identity_id, identity) == "InvalidIdentity"
    assert _code(parse_resource_group_name, group, "scope.resourceGroups") == "InvalidResourceGroup"


@pytest.mark.parametrize("group", ["rg", "rg.data", "RG_(1)-x", "a" * 90, "données"])
def test_valid_resource_group_names_are_kept(group: str) -> None:
    account = f"/subscriptions/{SUB}/resourceGroups/{group}/providers/Microsoft.DocumentDB/databaseAccounts/orders-db"
    assert parse_account_id(account).resource_group == group
    assert parse_resource_group_name(group, "x") == group
    assert parse_resource_group_name(f"/subscriptions/{SUB}/resourceGroups/{group}", "x") == group


def test_dot_segments_never_make_a_second_id_for_one_account() -> None:
    sneaky = f"/subscriptions/{SUB}/resourceGroups/../providers/Microsoft.DocumentDB/databaseAccounts/orders-db"
    assert _code(parse_account_id, sneaky) == "InvalidAccountId"
    assert _code(parse_rollout_request, {"accounts": [ACCOUNT, sneaky], "keyUri": KEY}) == "InvalidAccountId"


@pytest.mark.parametrize("name", ["orders-db", "..", "", "11111111-2222-3333-4444", f"/subscriptions/{SUB}/x"])
def test_key_policy_by_subscription_takes_subscription_ids_only(name: str) -> None:
    assert _code(parse_key_policy, {"bySubscription": {name: KEY}}) == "InvalidKeyPolicy"


def test_key_policy_by_subscription_accepts_a_guid_or_its_id_and_folds_case() -> None:
    policy = parse_key_policy({"bySubscription": {SUB.upper(): KEY, f"/subscriptions/{SUB[:-1]}6": KEY}})
    assert policy["bySubscription"] == {SUB: KEY, f"{SUB[:-1]}6": KEY}
    assert parse_subscription_id(f"/subscriptions/{SUB}/", "x") == SUB


@pytest.mark.parametrize("region", ["", "..", "west/europe", "x" * 100])
def test_key_policy_by_region_takes_region_names(region: str) -> None:
    assert _code(parse_key_policy, {"byRegion": {region: KEY}}) == "InvalidKeyPolicy"


def test_more_than_10000_accounts_is_too_many_and_10000_is_not() -> None:
    accounts = [ACCOUNT.replace("orders-db", f"a{index:05d}") for index in range(MAX_ACCOUNTS_PER_REQUEST + 1)]
    assert _code(parse_rollout_request, {"accounts": accounts, "keyUri": KEY}) == "TooManyAccounts"
    assert len(parse_rollout_request({"accounts": accounts[:-1], "keyUri": KEY})["accounts"]) == 10_000


def test_messages_quote_values_briefly() -> None:
    huge = "x" * 100_000
    with pytest.raises(InvalidRequest) as raised:
        parse_enablement_request({"accountId": huge, "keyUri": KEY})
    assert len(raised.value.message) < 400
    with pytest.raises(InvalidRequest) as raised:
        parse_enablement_request({**{f"field{index}": 1 for index in range(10_000)}, "accountId": ACCOUNT})
    assert len(raised.value.message) <= MAX_MESSAGE
    deep: list[Any] = []
    for _ in range(100_000):
        deep = [deep]
    assert len(shown(deep)) <= 120
    assert _code(parse_rollout_request, {"scope": {"subscriptions": [deep]}, "keyUri": KEY}) == "InvalidScope"


@pytest.mark.parametrize(
    "uri",
    [
        "https://kv-cmk-prod.vault.azure.net//keys/k",
        "https://kv-cmk-prod.vault.azure.net/keys//k",
        "https://kv-cmk-prod.vault.azure.net/keys/k//",
        "https://kv-cmk-prod.vault.azure.net/ke\nys/k",
        "https://kv-cmk-prod.vault.azure.net/keys/k x",
    ],
)
def test_a_key_uri_path_is_canonical(uri: str) -> None:
    assert _code(parse_key_uri, uri) == "InvalidKeyUri"


def test_one_trailing_slash_is_canonical_enough() -> None:
    assert str(parse_key_uri(KEY + "/")) == KEY


@pytest.mark.parametrize("field", ["identity", "dryRun", "approval"])
def test_null_is_not_absent_in_an_enablement_request(field: str) -> None:
    with pytest.raises(InvalidRequest):
        parse_enablement_request({"accountId": ACCOUNT, "keyUri": KEY, field: None})


@pytest.mark.parametrize(
    "field", ["maxConcurrency", "maxConcurrencyPerSubscription", "maxPreparing", "dryRun", "identity"]
)
def test_null_is_not_absent_in_a_rollout_request(field: str) -> None:
    with pytest.raises(InvalidRequest):
        parse_rollout_request({"accounts": [ACCOUNT], "keyUri": KEY, field: None})
    scope = {"subscriptions": [SUB], "resourceGroups": None}
    assert _code(parse_rollout_request, {"scope": scope, "keyUri": KEY}) == "InvalidScope"


@pytest.mark.parametrize("value", [-1, 501, 2.0, True, "2"])
def test_max_preparing_is_a_whole_number_from_0_to_500(value: object) -> None:
    assert _code(parse_rollout_request, {"accounts": [ACCOUNT], "keyUri": KEY, "maxPreparing": value}) == (
        "InvalidPreparing"
    )


def test_max_preparing_defaults_to_twice_max_concurrency_and_0_prepares_nothing_ahead() -> None:
    assert parse_rollout_request({"accounts": [ACCOUNT], "keyUri": KEY, "maxConcurrency": 7})["maxPreparing"] == 14
    assert parse_rollout_request({"accounts": [ACCOUNT], "keyUri": KEY, "maxConcurrency": 400})["maxPreparing"] == 500
    assert parse_rollout_request({"accounts": [ACCOUNT], "keyUri": KEY, "maxPreparing": 0})["maxPreparing"] == 0


@pytest.mark.parametrize("region", [" westeurope", "west\teurope"])
def test_a_region_is_taken_as_written(region: str) -> None:
    assert _code(parse_key_policy, {"byRegion": {region: KEY}}) == "InvalidKeyPolicy"
