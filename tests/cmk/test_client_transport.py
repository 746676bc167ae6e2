"""The management clients' HTTP session (cmk.clients.new_session): requests' own behaviour with the environment
(proxies, no_proxy, the CA bundle), read once per host and value instead of by scanning the environment twice a
request, and never a .netrc in place of the bearer token."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import requests

from cmk import clients

URL = "https://management.azure.com/subscriptions?api-version=2022-12-01"


def _settings(session: requests.Session, url: str = URL) -> dict[str, Any]:
    return session.merge_environment_settings(url, {}, None, None, None)


@pytest.fixture
def session(monkeypatch: pytest.MonkeyPatch) -> requests.Session:
    for name in ("http_proxy", "https_proxy", "all_proxy", "no_proxy", "REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE"):
        monkeypatch.delenv(name, raising=False)
        monkeypatch.delenv(name.upper(), raising=False)
    return clients.new_session()


def test_the_environments_proxy_and_ca_bundle_apply_as_requests_applies_them(
    session: requests.Session, monkeypatch: pytest.MonkeyPatch
) -> None:
    plain = requests.Session()
    monkeypatch.setenv("HTTPS_PROXY", "http://proxy.corp:3128")
    monkeypatch.setenv("NO_PROXY", "vault.azure.net,localhost")
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", "/etc/ssl/corp.pem")
    for url in (URL, "https://kv-1.vault.azure.net/keys/k", "https://localhost:8443/x"):
        assert _settings(session, url) == plain.merge_environment_settings(url, {}, None, None, None)
    assert _settings(session)["proxies"]["https"] == "http://proxy.corp:3128"
    assert "https" not in _settings(session, "https://kv-1.vault.azure.net/keys/k")["proxies"]
    assert _settings(session)["verify"] == "/etc/ssl/corp.pem"
    # A setting changed while the process runs is read again.
    monkeypatch.setenv("HTTPS_PROXY", "http://other.corp:8080")
    assert _settings(session)["proxies"]["https"] == "http://other.corp:8080"
    monkeypatch.delenv("HTTPS_PROXY")
    assert "https" not in _settings(session)["proxies"]


def test_the_environment_is_read_once_per_host_not_per_request(
    session: requests.Session, monkeypatch: pytest.MonkeyPatch
) -> None:
    reads: list[str] = []
    real = requests.utils.get_environ_proxies

    def counted(url: str, no_proxy: str | None = None) -> dict[str, str]:
        reads.append(url)
        return real(url, no_proxy=no_proxy)

    monkeypatch.setattr(clients, "get_environ_proxies", counted)
    for index in range(50):
        _settings(session, f"https://management.azure.com/subscriptions/{index}")
        _settings(session, f"https://kv-1.vault.azure.net/keys/{index}")
    assert len(reads) == 2


def test_a_netrc_entry_never_replaces_the_bearer_token(session: requests.Session, tmp_path: Path) -> None:
    netrc = tmp_path / "netrc"
    netrc.write_text("machine management.azure.com login someone password secret\n")
    netrc.chmod(0o600)
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("NETRC", str(netrc))
        bearer = {"Authorization": "Bearer token-from-the-pipeline"}
        prepared = session.prepare_request(requests.Request("GET", URL, headers=bearer))
        assert prepared.headers["Authorization"] == "Bearer token-from-the-pipeline"
        # What requests alone does with that file: Basic credentials instead of the token.
        plain = requests.Session().prepare_request(requests.Request("GET", URL, headers=bearer))
        assert str(plain.headers["Authorization"]).startswith("Basic ")


def test_every_client_shares_the_processs_one_session_so_one_connection_pool_per_host() -> None:
    """A pool per client (per subscription and service) kept about a hundred idle TLS connections per worker process
    open in a 10-subscription rollout; the threads need a few."""
    subscriptions = [f"{index:08d}-bbbb-4ccc-8ddd-eeeeeeeeeeee" for index in (1, 2)]
    management: list[Any] = [
        *(clients.cosmos(subscription) for subscription in subscriptions),
        clients.cosmos(subscriptions[0], preview=True),
        clients.keyvault(subscriptions[0]),
        clients.authorization(subscriptions[1]),
        clients.msi(subscriptions[0]),
        clients.resource_graph(),
    ]
    sessions = {id(client._client._pipeline._transport.session) for client in management}
    assert len(sessions) == 1
    # A client closed (as `with client:` does) leaves the shared session to the others.
    transport = clients.pooled_transport()
    transport.close()
    assert id(clients.pooled_transport().session) in sessions
    assert transport.session is not None  # an owning transport drops (and closes) its session on close
