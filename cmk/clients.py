"""The one place Azure SDK clients are made: endpoint, credential and retry behaviour come from app settings.

In Azure the credential is the app's managed identity through DefaultAzureCredential; AZURE_CLOUD (cmk.clouds)
chooses the ARM endpoint, the token audience every management client asks for, and the sign-in authority. Against
the local simulator nothing in this module changes: the simulator serves the same managed-identity endpoint App
Service does (IDENTITY_ENDPOINT / IDENTITY_HEADER), ARM_ENDPOINT points at it, and REQUESTS_CA_BUNDLE trusts its
certificate.
"""

from __future__ import annotations

import functools
import os
import threading
from typing import Any
from urllib.parse import urlsplit

import requests
from azure.core.credentials import TokenCredential
from azure.core.pipeline import PipelineResponse
from azure.core.pipeline.policies import RetryPolicy
from azure.core.pipeline.transport import HttpRequest, HttpResponse, RequestsTransport
from azure.identity import DefaultAzureCredential
from azure.mgmt.authorization import AuthorizationManagementClient
from azure.mgmt.cosmosdb import CosmosDBManagementClient
from azure.mgmt.keyvault import KeyVaultManagementClient
from azure.mgmt.msi import ManagedServiceIdentityClient
from azure.mgmt.resourcegraph import ResourceGraphClient
from requests.adapters import HTTPAdapter
from requests.sessions import merge_setting
from requests.utils import get_environ_proxies
from urllib3.util.retry import Retry

from cmk import clouds, settings
from cmk.arm_pacing import ArmPacingPolicy

# Preview api-version that still reports enableMaterializedViews and enableAllVersionsAndDeletesChangeFeed,
# which the stable api-version of azure-mgmt-cosmosdb 10 does not model.
COSMOS_PREVIEW_API_VERSION = "2025-11-01-preview"
AUTHORIZATION_API_VERSION = "2022-04-01"


RESOURCE_GRAPH_QUERY_PATH = "/providers/microsoft.resourcegraph/resources"


class ThrottleAwareRetryPolicy(RetryPolicy[HttpRequest, HttpResponse]):
    """The SDK's retry policy for transient faults (5xx, resets), except that it never sleeps on a 429.

    A throttled request goes back to the orchestrator, which waits out Retry-After on a durable timer instead
    of holding a worker; an activity sleeping on real time would also ignore the simulator's scaled clock.
    """

    def is_retry(self, settings: dict[str, Any], response: PipelineResponse[Any, Any]) -> bool:
        if response.http_response.status_code == 429:
            return False
        return bool(super().is_retry(settings, response))

    def _is_method_retryable(self, settings: dict[str, Any], request: Any, response: Any = None) -> bool:
        # azure-core sends a POST again only after a 500, 503 or 504, never after a reset connection. A Resource
        # Graph query is a POST that only reads: safe to send again. (make chaos: four resets of a rollout's
        # discovery query in a row ended it with no account.)
        if urlsplit(str(request.url)).path.lower().startswith(RESOURCE_GRAPH_QUERY_PATH):
            return True
        return bool(super()._is_method_retryable(settings, request, response))


def _retry_policy() -> ThrottleAwareRetryPolicy:
    return ThrottleAwareRetryPolicy(retry_total=3, retry_backoff_factor=0.4, retry_backoff_max=8)


_credential_lock = threading.Lock()
# (IDENTITY_ENDPOINT, AZURE_CLIENT_ID, the cloud's sign-in authority)
IdentityConfig = tuple[str | None, str, str]
# (ARM endpoint, credential scope): where management clients go and the token audience they ask for
ArmTarget = tuple[str, str]


@functools.lru_cache(maxsize=8)
def _credential_for(identity: IdentityConfig) -> TokenCredential:
    # The authority matters for the credentials that sign in (environment, workload identity, developer tools);
    # a managed identity gets its tokens from the platform's endpoint in every cloud.
    return DefaultAzureCredential(managed_identity_client_id=identity[1] or None, authority=identity[2])


def _identity_config() -> IdentityConfig:
    return os.environ.get("IDENTITY_ENDPOINT"), settings.get_str("AZURE_CLIENT_ID"), clouds.current().authority_host


def credential() -> TokenCredential:
    """The app's identity. Cached per configuration so tokens are reused across calls and threads."""
    with _credential_lock:
        return _credential_for(_identity_config())


def _arm() -> ArmTarget:
    return clouds.arm_endpoint(), clouds.current().arm_scope


# Connections kept per host. The threads of an activity process share each client (a rollout's estimate rounds read
# 8 metrics at once beside the activities running): with requests' default of 10, the rest were discarded
# ("Connection pool is full"), each one a new TLS handshake later.
POOL_CONNECTIONS_PER_HOST = 32


# The environment variables a host's proxies depend on (urllib's names, either case; urllib ignores HTTP_PROXY under
# REQUEST_METHOD). The CA bundle is two variables, read on every request as requests reads them.
_PROXY_SETTINGS = (
    *(name for scheme in ("http", "https", "all", "no") for name in (f"{scheme}_proxy", f"{scheme.upper()}_PROXY")),
    "REQUEST_METHOD",
)


class _BearerTokensOnly(requests.auth.AuthBase):
    """The clients authenticate with the pipeline's bearer tokens: requests must not look for a .netrc (a file read
    per request, and an entry for the host would put Basic credentials in the token's place)."""

    def __call__(self, request: requests.PreparedRequest) -> requests.PreparedRequest:
        return request


class _Session(requests.Session):
    """requests' session, with the environment's proxy settings read once per host and value. requests finds them
    by scanning every environment variable, twice a request: with an app's ~100 settings that was a tenth of a dry
    run's CPU in the worker processes. A changed setting is read again (its value is part of the key)."""

    def __init__(self) -> None:
        super().__init__()
        self.auth = _BearerTokensOnly()
        self._proxies: dict[tuple[Any, ...], dict[str, str]] = {}
        self._proxies_lock = threading.Lock()

    def merge_environment_settings(
        self, url: str, proxies: dict[str, str] | None, stream: Any, verify: Any, cert: Any
    ) -> dict[str, Any]:
        if self.trust_env:
            no_proxy = proxies.get("no_proxy") if proxies is not None else None
            if proxies is not None:
                for name, value in self._environ_proxies(url, no_proxy).items():
                    proxies.setdefault(name, value)
            if verify is True or verify is None:
                verify = os.environ.get("REQUESTS_CA_BUNDLE") or os.environ.get("CURL_CA_BUNDLE") or verify
        return {
            "proxies": merge_setting(proxies, self.proxies),
            "stream": merge_setting(stream, self.stream),
            "verify": merge_setting(verify, self.verify),
            "cert": merge_setting(cert, self.cert),
        }

    def _environ_proxies(self, url: str, no_proxy: str | None) -> dict[str, str]:
        parts = urlsplit(url)
        key = (parts.scheme, parts.netloc, no_proxy, *(os.environ.get(name) for name in _PROXY_SETTINGS))
        with self._proxies_lock:
            known = self._proxies.get(key)
        if known is None:
            known = dict(get_environ_proxies(url, no_proxy=no_proxy))
            with self._proxies_lock:
                if len(self._proxies) >= 256:
                    self._proxies.clear()
                self._proxies[key] = known
        return dict(known)


def new_session() -> requests.Session:
    """An HTTP session for Azure's clients: a connection pool per host with room for a process's threads, and no
    retries of its own, as azure-core sets them: the pipeline's RetryPolicy retries, never urllib3 underneath it."""
    session = _Session()
    adapter = HTTPAdapter(
        pool_maxsize=POOL_CONNECTIONS_PER_HOST, max_retries=Retry(total=False, redirect=False, raise_on_status=False)
    )
    for scheme in ("http://", "https://"):
        session.mount(scheme, adapter)
    return session


_shared_session: requests.Session | None = None
_shared_session_lock = threading.Lock()


def pooled_transport() -> RequestsTransport:
    """azure-core's requests transport on the process's one session. Every client shares its pools: a pool per client
    (one per subscription and service) kept about 110 TLS connections per worker process open to ARM in a
    10-subscription dry run (3,000 accounts, two worker processes: about 220 at the simulator, about 40 now), where
    the threads need a few (session_owner=False: closing a client leaves the session open)."""
    global _shared_session
    with _shared_session_lock:
        if _shared_session is None:
            _shared_session = new_session()
        session = _shared_session
    return RequestsTransport(session=session, session_owner=False)


def _client_kwargs(target: ArmTarget) -> dict[str, Any]:
    # credential_scopes: the SDKs default to the public cloud's audience; AZURE_CLOUD chooses the real one.
    # per_call_policies: every request is paced by ARM's budget (cmk.arm_pacing), once, before the SDK's retries.
    return {
        "base_url": target[0],
        "credential_scopes": [target[1]],
        "retry_policy": _retry_policy(),
        "per_call_policies": [ArmPacingPolicy()],
        "transport": pooled_transport(),
    }


# Clients are cached per subscription and configuration: they hold connection pools worth reusing, and a changed
# endpoint, cloud or identity (tests pointing at a new simulator) must not reuse a stale one.
@functools.lru_cache(maxsize=256)
def _cosmos(subscription_id: str, target: ArmTarget, api_version: str | None, identity: IdentityConfig) -> Any:
    kwargs = _client_kwargs(target)
    if api_version:
        kwargs["api_version"] = api_version
    return CosmosDBManagementClient(_credential_for(identity), subscription_id, **kwargs)


def cosmos(subscription_id: str, *, preview: bool = False) -> CosmosDBManagementClient:
    api_version = COSMOS_PREVIEW_API_VERSION if preview else None
    client: CosmosDBManagementClient = _cosmos(subscription_id, _arm(), api_version, _identity_config())
    return client


@functools.lru_cache(maxsize=256)
def _keyvault(subscription_id: str, target: ArmTarget, identity: IdentityConfig) -> KeyVaultManagementClient:
    return KeyVaultManagementClient(_credential_for(identity), subscription_id, **_client_kwargs(target))


def keyvault(subscription_id: str) -> KeyVaultManagementClient:
    return _keyvault(subscription_id, _arm(), _identity_config())


@functools.lru_cache(maxsize=256)
def _authorization(subscription_id: str, target: ArmTarget, identity: IdentityConfig) -> AuthorizationManagementClient:
    return AuthorizationManagementClient(
        _credential_for(identity), subscription_id, api_version=AUTHORIZATION_API_VERSION, **_client_kwargs(target)
    )


def authorization(subscription_id: str) -> AuthorizationManagementClient:
    return _authorization(subscription_id, _arm(), _identity_config())


@functools.lru_cache(maxsize=256)
def _msi(subscription_id: str, target: ArmTarget, identity: IdentityConfig) -> ManagedServiceIdentityClient:
    return ManagedServiceIdentityClient(_credential_for(identity), subscription_id, **_client_kwargs(target))


def msi(subscription_id: str) -> ManagedServiceIdentityClient:
    return _msi(subscription_id, _arm(), _identity_config())


@functools.lru_cache(maxsize=8)
def _resource_graph(target: ArmTarget, identity: IdentityConfig) -> ResourceGraphClient:
    return ResourceGraphClient(_credential_for(identity), **_client_kwargs(target))


def resource_graph() -> ResourceGraphClient:
    return _resource_graph(_arm(), _identity_config())
