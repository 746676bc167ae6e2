"""AZURE_CLOUD chooses the ARM endpoint, the token audience of every management client, and the key URIs accepted;
a key of another cloud is refused with one code and message wherever it comes from."""

from __future__ import annotations

from typing import Any

import pytest

from cmk import clients, clouds
from cmk.errors import InvalidRequest
from cmk.key_policy import choose_key, parse_key_policy
from cmk.key_uris import KEY_URI_OF_ANOTHER_CLOUD, accepted_key_uri
from cmk.requests import parse_enablement_request
from cmk.rollouts import parse_rollout_request

SUBSCRIPTION = "11111111-2222-3333-4444-555555555555"
ACCOUNT = f"/subscriptions/{SUBSCRIPTION}/resourceGroups/rg/providers/Microsoft.DocumentDB/databaseAccounts/orders-db"
KEYS = {
    "AzureCloud": "https://kv-cmk.vault.azure.net/keys/cosmos-cmk",
    "AzureUSGovernment": "https://kv-cmk.vault.usgovcloudapi.net/keys/cosmos-cmk",
    "AzureChinaCloud": "https://kv-cmk.vault.azure.cn/keys/cosmos-cmk",
}


@pytest.fixture(autouse=True)
def _no_overrides(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("AZURE_CLOUD", "ARM_ENDPOINT", "CMK_KEY_POLICY"):
        monkeypatch.delenv(name, raising=False)


@pytest.mark.parametrize(
    ("cloud", "endpoint", "scope"),
    [
        ("AzureCloud", "https://management.azure.com", "https://management.azure.com/.default"),
        (
            "AzureUSGovernment",
            "https://management.usgovcloudapi.net",
            "https://management.core.usgovcloudapi.net/.default",
        ),
        ("azurechinacloud", "https://management.chinacloudapi.cn", "https://management.chinacloudapi.cn/.default"),
    ],
)
def test_the_cloud_chooses_the_arm_endpoint_and_every_client_s_token_audience(
    monkeypatch: pytest.MonkeyPatch, cloud: str, endpoint: str, scope: str
) -> None:
    monkeypatch.setenv("AZURE_CLOUD", cloud)
    assert clouds.arm_endpoint() == endpoint
    for client in (
        clients.cosmos(SUBSCRIPTION),
        clients.cosmos(SUBSCRIPTION, preview=True),
        clients.keyvault(SUBSCRIPTION),
        clients.authorization(SUBSCRIPTION),
        clients.msi(SUBSCRIPTION),
        clients.resource_graph(),
    ):
        configuration: Any = client._config  # noqa: SLF001 - what the SDK's bearer-token policy asks for
        assert configuration.credential_scopes == [scope], type(client).__name__
        base_url = getattr(configuration, "base_url", None) or client._client._base_url  # noqa: SLF001
        assert base_url == endpoint, type(client).__name__
    # ARM_ENDPOINT overrides the endpoint (the simulator), never the audience.
    monkeypatch.setenv("ARM_ENDPOINT", "https://127.0.0.1:8443/")
    assert clouds.arm_endpoint() == "https://127.0.0.1:8443"
    assert clients.keyvault(SUBSCRIPTION)._config.credential_scopes == [scope]  # noqa: SLF001


def test_an_unknown_cloud_is_a_configuration_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AZURE_CLOUD", "AzureGermanCloud")
    with pytest.raises(ValueError, match="AZURE_CLOUD"):
        clouds.current()


@pytest.mark.parametrize("cloud", sorted(KEYS))
def test_each_cloud_accepts_its_own_keys_and_refuses_the_others(monkeypatch: pytest.MonkeyPatch, cloud: str) -> None:
    monkeypatch.setenv("AZURE_CLOUD", cloud)
    assert str(accepted_key_uri(KEYS[cloud])) == KEYS[cloud]
    for other, key in KEYS.items():
        if other == cloud:
            continue
        with pytest.raises(InvalidRequest) as refused:
            accepted_key_uri(key)
        assert refused.value.code == KEY_URI_OF_ANOTHER_CLOUD and refused.value.status == 400
        assert f"a key of {other}" in refused.value.message and cloud in refused.value.message


def test_a_key_of_another_cloud_is_refused_alike_at_every_entry(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AZURE_CLOUD", "AzureUSGovernment")
    public = KEYS["AzureCloud"]
    refusals: list[InvalidRequest] = []
    for attempt in (
        lambda: parse_enablement_request({"accountId": ACCOUNT, "keyUri": public}),
        lambda: parse_rollout_request({"accounts": [ACCOUNT], "keyUri": public}),
        lambda: parse_rollout_request({"accounts": [ACCOUNT], "keyPolicy": {"default": public}}),
        lambda: parse_key_policy({"bySubscription": {SUBSCRIPTION: public}}),
    ):
        with pytest.raises(InvalidRequest) as refused:
            attempt()
        refusals.append(refused.value)
    assert {(r.code, r.message) for r in refusals} == {(refusals[0].code, refusals[0].message)}
    assert refusals[0].code == KEY_URI_OF_ANOTHER_CLOUD
    # CMK_KEY_POLICY (rollouts and Event Grid enrolment) is checked the same way when it is read.
    monkeypatch.setenv("CMK_KEY_POLICY", f'{{"default": "{public}"}}')
    with pytest.raises(InvalidRequest) as refused:
        parse_rollout_request({"accounts": [ACCOUNT]})
    assert (refused.value.code, refused.value.message) == (refusals[0].code, refusals[0].message)
    # An account tag naming such a key leaves that account without a key, saying why.
    policy = parse_key_policy({"accountTag": "cmk-key-uri", "default": KEYS["AzureUSGovernment"]})
    choice = choose_key(policy, SUBSCRIPTION, "usgovvirginia", {"cmk-key-uri": public})
    assert choice["keyUri"] is None and KEY_URI_OF_ANOTHER_CLOUD in choice["source"]


@pytest.mark.parametrize(
    ("cloud", "endpoint", "in_cloud"),
    [
        ("AzureUSGovernment", "https://orders.documents.azure.us:443/", True),
        ("AzureUSGovernment", "https://orders.documents.azure.com:443/", False),
        ("AzureChinaCloud", "https://orders.documents.azure.cn:443/", True),
        ("AzureCloud", "https://orders.documents.azure.com:443/", True),
        ("AzureCloud", "https://127.0.0.1:8443/cosmos/orders/", False),
    ],
)
def test_the_document_id_scan_sends_its_token_only_into_the_cloud_s_cosmos_domain(
    monkeypatch: pytest.MonkeyPatch, cloud: str, endpoint: str, in_cloud: bool
) -> None:
    monkeypatch.setenv("AZURE_CLOUD", cloud)
    assert clouds.data_plane_in_cloud(endpoint) is in_cloud
    # The simulator serves the data plane from ARM_ENDPOINT's own host.
    monkeypatch.setenv("ARM_ENDPOINT", "https://127.0.0.1:8443")
    assert clouds.data_plane_in_cloud("https://127.0.0.1:8443/cosmos/orders/")
