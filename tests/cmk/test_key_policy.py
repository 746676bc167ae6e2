"""The most specific rule of a key policy wins; a policy that names no usable key is refused up front."""

from __future__ import annotations

import pytest

from cmk.errors import InvalidRequest
from cmk.key_policy import choose_key, parse_key_policy

SUB_A = "11111111-1111-1111-1111-111111111111"
SUB_B = "22222222-2222-2222-2222-222222222222"
POLICY = parse_key_policy(
    {
        "default": "https://kv-default.vault.azure.net/keys/cmk",
        "bySubscription": {SUB_A.upper(): "https://kv-sub-a.vault.azure.net/keys/cmk"},
        "byRegion": {"West Europe": "https://kv-weu.vault.azure.net/keys/cmk"},
        "accountTag": "cmk-key-uri",
    }
)


def test_tag_beats_subscription_beats_region_beats_default() -> None:
    tagged = {"CMK-Key-Uri": "https://kv-tag.vault.azure.net/keys/cmk"}
    assert choose_key(POLICY, SUB_A, "westeurope", tagged)["keyUri"] == "https://kv-tag.vault.azure.net/keys/cmk"
    assert choose_key(POLICY, SUB_A, "westeurope", {})["keyUri"] == "https://kv-sub-a.vault.azure.net/keys/cmk"
    assert choose_key(POLICY, SUB_B, "westeurope", None)["keyUri"] == "https://kv-weu.vault.azure.net/keys/cmk"
    assert choose_key(POLICY, SUB_B, "eastus", None) == {
        "keyUri": "https://kv-default.vault.azure.net/keys/cmk",
        "source": "default",
    }


def test_no_match_and_a_bad_tag_are_reported_not_guessed() -> None:
    policy = parse_key_policy({"bySubscription": {SUB_A: "https://kv-a.vault.azure.net/keys/cmk"}, "accountTag": "k"})
    assert choose_key(policy, SUB_B, "eastus", None)["keyUri"] is None
    bad_tag = choose_key(policy, SUB_A, "eastus", {"k": "not a uri"})
    assert bad_tag["keyUri"] is None and "invalid key URI" in bad_tag["source"]


@pytest.mark.parametrize(
    "policy",
    [
        "https://kv.vault.azure.net/keys/cmk",
        {},
        {"default": "http://kv.vault.azure.net/keys/cmk"},
        {"byRegion": ["westeurope"]},
        {"defualt": "https://kv.vault.azure.net/keys/cmk"},
    ],
)
def test_bad_policies_are_refused(policy: object) -> None:
    with pytest.raises(InvalidRequest) as raised:
        parse_key_policy(policy)
    assert raised.value.code == "InvalidKeyPolicy"
