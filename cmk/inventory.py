"""Reading the facts preflight needs from Azure: the account, its vault and key, and identities.

Everything returned is plain JSON-serialisable data (TypedDicts), ready to cross an activity boundary.
"""

from __future__ import annotations

import copy
import functools
import threading
import time
from collections.abc import Callable, Collection
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal, TypedDict, TypeVar

from azure.core.exceptions import (
    ClientAuthenticationError,
    HttpResponseError,
    ResourceExistsError,
    ResourceNotFoundError,
    ResourceNotModifiedError,
    map_error,
)
from azure.core.rest import HttpRequest
from azure.mgmt.core.exceptions import ARMErrorFormat
from azure.mgmt.cosmosdb import CosmosDBManagementClient

from cmk import clients, clouds, settings
from cmk.arm import is_not_found
from cmk.resource_graph import kql_string, query_all
from cmk.resource_ids import KeyUri, ResourceId, parse_key_uri, parse_vault_id

CASSANDRA_CAPABILITY = "EnableCassandra"
VECTOR_SEARCH_CAPABILITY = "EnableNoSQLVectorSearch"
NON_NOSQL_CAPABILITIES = {"EnableCassandra", "EnableGremlin", "EnableTable", "EnableMongo"}
MATERIALIZED_VIEWS_BUILDER = "MaterializedViewsBuilder"


class UserAssignedIdentityFacts(TypedDict):
    principalId: str | None
    clientId: str | None


class AccountFacts(TypedDict):
    id: str
    name: str
    location: str
    tags: dict[str, str]
    kind: str
    provisioningState: str
    capabilities: list[str]
    backupType: str | None
    backupMigrationInProgress: bool
    keyVaultKeyUri: str | None
    keyVaultKeyUriVersion: str | None
    customerManagedKeyStatus: str | None
    defaultIdentity: str | None
    identityType: str
    systemPrincipalId: str | None
    identityTenantId: str | None
    userAssignedIdentities: dict[str, UserAssignedIdentityFacts]
    documentEndpoint: str | None
    enableAnalyticalStorage: bool
    # Preview-only properties: None when the preview api-version could not be read.
    enableMaterializedViews: bool | None
    enableAllVersionsAndDeletesChangeFeed: bool | None
    materializedViewsBuilder: bool


class VaultFacts(TypedDict):
    id: str
    name: str
    tenantId: str | None
    permissionModel: Literal["rbac", "accessPolicy"]
    softDeleteEnabled: bool
    purgeProtectionEnabled: bool
    publicNetworkAccess: str | None
    networkDefaultAction: str | None
    networkBypass: str | None
    accessPolicies: list[dict[str, Any]]


class KeyFacts(TypedDict):
    name: str
    kty: str | None
    keySize: int | None
    keyOps: list[str] | None
    enabled: bool
    notBefore: int | None
    expires: int | None
    keyUri: str | None
    keyUriWithVersion: str | None
    version: str | None


class IdentityFacts(TypedDict):
    id: str
    principalId: str | None
    clientId: str | None
    tenantId: str | None


def _account_facts(body: dict[str, Any]) -> AccountFacts:
    properties: dict[str, Any] = body.get("properties") or {}
    identity: dict[str, Any] = body.get("identity") or {}
    backup: dict[str, Any] = properties.get("backupPolicy") or {}
    migration: dict[str, Any] = backup.get("migrationState") or {}
    user_assigned = identity.get("userAssignedIdentities") or {}
    return {
        "id": body["id"],
        "name": body.get("name") or body["id"].rsplit("/", 1)[-1],
        "location": body.get("location") or "",
        "tags": {str(k): str(v) for k, v in (body.get("tags") or {}).items()},
        "kind": body.get("kind") or "GlobalDocumentDB",
        "provisioningState": properties.get("provisioningState") or "Succeeded",
        "capabilities": [c.get("name", "") for c in properties.get("capabilities") or []],
        "backupType": backup.get("type"),
        "backupMigrationInProgress": str(migration.get("status", "")).lower() == "inprogress",
        "keyVaultKeyUri": properties.get("keyVaultKeyUri") or None,
        "keyVaultKeyUriVersion": properties.get("keyVaultKeyUriVersion"),
        "customerManagedKeyStatus": properties.get("customerManagedKeyStatus"),
        "defaultIdentity": properties.get("defaultIdentity"),
        "identityType": identity.get("type") or "None",
        "systemPrincipalId": identity.get("principalId"),
        "identityTenantId": identity.get("tenantId"),
        "userAssignedIdentities": {
            resource_id: {"principalId": value.get("principalId"), "clientId": value.get("clientId")}
            for resource_id, value in user_assigned.items()
        },
        "documentEndpoint": properties.get("documentEndpoint"),
        "enableAnalyticalStorage": bool(properties.get("enableAnalyticalStorage")),
        "enableMaterializedViews": None,
        "enableAllVersionsAndDeletesChangeFeed": None,
        "materializedViewsBuilder": False,
    }


def read_account(account: ResourceId, *, include_preview: bool = False) -> AccountFacts | None:
    """The account as ARM reports it, or None when it does not exist.

    With include_preview, also the preview-only feature flags (materialized views, all-versions-and-deletes change
    feed) and the MaterializedViewsBuilder service, which the stable api-version does not report. The account is
    then read once, at the preview api-version, which reports all the stable one does; the stable read is the
    fallback when that api-version is refused (retired, or not offered in this cloud) and the flags stay unknown.
    """
    facts = _read_preview_account(account) if include_preview else None
    if facts is None:
        client = clients.cosmos(account.subscription_id)
        try:
            body = client.database_accounts.get(account.resource_group, account.name).as_dict()
        except HttpResponseError as error:
            if is_not_found(error):
                return None
            raise
        facts = _account_facts(body)
    if include_preview and _is_nosql(facts):
        services = clients.cosmos(account.subscription_id).service.list(account.resource_group, account.name)
        facts["materializedViewsBuilder"] = any(
            str((service.as_dict().get("properties") or {}).get("serviceType", "")).lower()
            == MATERIALIZED_VIEWS_BUILDER.lower()
            for service in services
        )
    return facts


def _is_nosql(facts: AccountFacts) -> bool:
    return facts["kind"] == "GlobalDocumentDB" and not NON_NOSQL_CAPABILITIES & set(facts["capabilities"])


def _read_preview_account(account: ResourceId) -> AccountFacts | None:
    """The account at the preview api-version, with its preview-only flags; None when that read was refused with
    400 or 404 (the api-version retired or not offered; or no account, which the stable read then says)."""
    try:
        preview = clients.cosmos(account.subscription_id, preview=True)
        body = _arm_get_json(preview, str(account), clients.COSMOS_PREVIEW_API_VERSION)
    except HttpResponseError as error:
        if error.status_code not in (400, 404):
            raise
        return None
    facts = _account_facts(body)
    properties = body.get("properties") or {}
    facts["enableMaterializedViews"] = bool(properties.get("enableMaterializedViews"))
    facts["enableAllVersionsAndDeletesChangeFeed"] = bool(properties.get("enableAllVersionsAndDeletesChangeFeed"))
    return facts


_SDK_ERROR_MAP = {
    401: ClientAuthenticationError,
    404: ResourceNotFoundError,
    409: ResourceExistsError,
    304: ResourceNotModifiedError,
}


def _arm_get_json(client: CosmosDBManagementClient, resource_id: str, api_version: str) -> dict[str, Any]:
    """GET a resource as the SDK's generated operations do, errors included, but keep ARM's JSON: deserializing
    the typed model was a third of what reading an account cost this app's CPU."""
    response = client.send_request(HttpRequest("GET", f"{resource_id}?api-version={api_version}"))
    if response.status_code != 200:
        map_error(status_code=response.status_code, response=response, error_map=_SDK_ERROR_MAP)
        raise HttpResponseError(response=response, error_format=ARMErrorFormat)
    body: dict[str, Any] = response.json()
    return body


class VaultLookup(TypedDict):
    """Where the key's vault was found, and what a "not found" or another tenant needs to say."""

    vault: VaultFacts | None
    # The tenant of the vault's subscription, as Resource Graph reports it (None when the vault was not found).
    vaultSubscriptionTenantId: str | None
    # The tenant of the account's subscription, as Resource Graph reports it (None when the graph did not say).
    accountSubscriptionTenantId: str | None
    # "every readable subscription", or the subscriptions CMK_KEY_VAULT_SUBSCRIPTIONS narrows the search to.
    searched: list[str] | None
    unsearched: list[str]


# What Resource Graph told us, per ARM endpoint: vault name -> (when, vault id, its subscription's tenant), and
# subscription -> tenant. Vault names are globally unique and a vault moves rarely, so one query serves a whole
# fleet, whatever subscriptions each search was narrowed to (a vault found is reused for a search whose
# subscriptions hold it); the facts are always re-read through ARM, and a vault gone from its id is searched again.
_FOUND_TTL_SECONDS = 600.0
_found: dict[tuple[str, str], tuple[float, str, str | None]] = {}
_tenants: dict[tuple[str, str], str] = {}
_cache_lock = threading.Lock()


# The accounts of one rollout share a key, so its vault's and key's facts are the same for all of them: within a
# rollout they are read at most once per SHARED_READ_SECONDS of the orchestrations' time per process, not once per
# account. One central vault serves a whole fleet (the common layout), and every read of it counts against its
# subscription's ARM read budget: read per account, that one subscription bounded a 1,000-account dry run. A
# preflight alone (no rollout), and the check after an approval, always read afresh.
SHARED_READ_SECONDS = 30.0
_MAX_SHARED_READS = 1_000
_shared_reads: dict[tuple[str, str, str, str], tuple[float, Any]] = {}
Facts = TypeVar("Facts")


class VaultPlacement(TypedDict):
    """Where Resource Graph places a vault: its id and its subscription's tenant."""

    id: str
    tenantId: str | None


class GraphAnswers(TypedDict):
    """What a rollout's discovery asked Resource Graph once for all its accounts, so that their preflights need not
    ask it each (cmk.rollouts.discover_accounts): each subscription's tenant, and where each key's vault is (by
    vault name, lower case). `at`: the orchestration's time of the answers (ISO 8601); they serve preflights for
    _FOUND_TTL_SECONDS after it, as this process's own answers do."""

    at: str
    tenants: dict[str, str]
    vaults: dict[str, VaultPlacement]


class KeyedAccount(TypedDict):
    subscriptionId: str
    keyUri: str


def graph_answers_about(graph: GraphAnswers, accounts: Collection[KeyedAccount]) -> GraphAnswers:
    """What of a rollout's graph answers concerns these accounts: their subscriptions' tenants, their keys' vaults."""
    subscriptions = {account["subscriptionId"].lower() for account in accounts}
    vault_names = {parse_key_uri(account["keyUri"]).vault_name.lower() for account in accounts}
    return {
        "at": graph["at"],
        "tenants": {s: tenant for s, tenant in graph["tenants"].items() if s in subscriptions},
        "vaults": {name: vault for name, vault in graph["vaults"].items() if name in vault_names},
    }


@dataclass(frozen=True)
class SharedReads:
    """The rollout whose accounts share these reads, the orchestration's time of this one (POSIX seconds), and what
    the rollout's discovery learned from Resource Graph (None: nothing; ask it)."""

    rollout: str
    at: float
    graph: GraphAnswers | None = None

    def recent_graph(self) -> GraphAnswers | None:
        """The rollout's graph answers, if they are recent enough to use for this preflight."""
        if self.graph is None:
            return None
        answered = datetime.fromisoformat(self.graph["at"].replace("Z", "+00:00")).timestamp()
        return self.graph if 0.0 <= self.at - answered <= _FOUND_TTL_SECONDS else None


def _shared(shared: SharedReads | None, what: str, name: str, read: Callable[[], Facts | None]) -> Facts | None:
    """`read()`, or what it returned to another account of the rollout at most SHARED_READ_SECONDS before. Only
    facts are shared: a 404 or a refusal is asked again."""
    if shared is None:
        return read()
    key = (clouds.arm_endpoint(), shared.rollout, what, name.lower())
    # No lock held across the read: threads that miss together each read (a few, once), where waiting on one
    # another would queue each behind the pacing turn of the one before (cmk.arm_pacing).
    with _cache_lock:
        recent = _shared_reads.get(key)
    if recent is not None and 0.0 <= shared.at - recent[0] <= SHARED_READ_SECONDS:
        facts: Facts = copy.deepcopy(recent[1])
        return facts
    fresh = read()
    if fresh is not None:
        with _cache_lock:
            if len(_shared_reads) >= _MAX_SHARED_READS:
                _shared_reads.clear()  # a few per rollout and vault: only ever full of expired entries
            _shared_reads[key] = (shared.at, copy.deepcopy(fresh))
    return fresh


# The tenant of every subscription that holds a Cosmos DB account, in one query: asked per subscription (with the
# vault's lookup), a fleet over many subscriptions spent its first minute on Resource Graph's quota of 15 queries
# per 5 s per user. Asked again at most every _FOUND_TTL_SECONDS, for subscriptions that gained an account.
_TENANTS_QUERY = "\n".join(
    ["resources", "| where type =~ 'microsoft.documentdb/databaseaccounts'", "| distinct subscriptionId, tenantId"]
)
_tenants_asked_at: dict[str, float] = {}


def _subscription_tenant(endpoint: str, subscription_id: str) -> str | None:
    """The tenant of an account's subscription, as Resource Graph reports it (None: not among its rows). Like the
    shared reads, asked without a lock: threads that miss together each ask, once."""
    key = (endpoint, subscription_id.lower())
    with _cache_lock:
        tenant = _tenants.get(key)
        asked_at = _tenants_asked_at.get(endpoint)
    if tenant is not None or (asked_at is not None and time.monotonic() - asked_at < _FOUND_TTL_SECONDS):
        return tenant
    rows, _ = query_all(_TENANTS_QUERY, None)
    with _cache_lock:
        for row in rows:
            if row.get("tenantId") and row.get("subscriptionId"):
                _tenants[(endpoint, str(row["subscriptionId"]).lower())] = str(row["tenantId"])
        _tenants_asked_at[endpoint] = time.monotonic()
        return _tenants.get(key)


def _vault_query(vault_name: str, account_id: str | None) -> str:
    where = f"(type =~ 'microsoft.keyvault/vaults' and name =~ {kql_string(vault_name)})"
    if account_id is not None:
        # The account's row tells its subscription's tenant (its identity may not exist yet).
        where += f" or (type =~ 'microsoft.documentdb/databaseaccounts' and id =~ {kql_string(account_id)})"
    return "\n".join(["resources", f"| where {where}", "| project id, name, type, subscriptionId, tenantId"])


# Vault names per graph query of locate_vaults: a query's text stays far under Resource Graph's limit.
_VAULT_NAMES_PER_QUERY = 200


def locate_vaults(vault_names: Collection[str]) -> dict[str, VaultPlacement]:
    """Where Resource Graph places each named vault, by lower-case name (a name it does not know is left out),
    over every subscription the app can read: vault names are globally unique. One query per
    _VAULT_NAMES_PER_QUERY names."""
    names = sorted({name.lower() for name in vault_names})
    placements: dict[str, VaultPlacement] = {}
    for start in range(0, len(names), _VAULT_NAMES_PER_QUERY):
        batch = names[start : start + _VAULT_NAMES_PER_QUERY]
        query = "\n".join(
            [
                "resources",
                "| where type =~ 'microsoft.keyvault/vaults'",
                f"| where name in~ ({', '.join(kql_string(name) for name in batch)})",
                "| project id, name, subscriptionId, tenantId",
            ]
        )
        rows, _ = query_all(query, None)
        for row in rows:
            if row.get("id") and row.get("name"):
                tenant = str(row["tenantId"]) if row.get("tenantId") else None
                placements[str(row["name"]).lower()] = {"id": str(row["id"]), "tenantId": tenant}
    return placements


def find_vault(key_uri: KeyUri, account: ResourceId, shared: SharedReads | None = None) -> VaultLookup:
    """The vault that holds the key, found by name through Resource Graph in every subscription the app can read.

    A key URI names the vault's DNS name, not its resource id; vault names are globally unique, so the one vault of
    that name is the one (a central security subscription is the common layout). CMK_KEY_VAULT_SUBSCRIPTIONS, when
    set, narrows the search to the account's subscription and those. The graph can lag ARM by minutes, so a vault
    it does not know yet is also looked for by listing the vaults of the account's (and the named) subscriptions.
    The facts always come from ARM (`shared`: read for another account of the rollout moments ago). Also says where
    it could not look, so a "not found" says why.
    """
    endpoint = clouds.arm_endpoint()
    extra = [str(s).lower() for s in settings.get_json("CMK_KEY_VAULT_SUBSCRIPTIONS") or []]
    narrowed = list(dict.fromkeys([account.subscription_id.lower(), *extra])) if extra else None
    found_key = (endpoint, key_uri.vault_name.lower())
    lookup: VaultLookup = {
        "vault": None,
        "vaultSubscriptionTenantId": None,
        "accountSubscriptionTenantId": None,
        "searched": narrowed,
        "unsearched": [],
    }
    # The rollout's discovery asked the graph for every account at once; else this process's answers, else ask.
    graph = shared.recent_graph() if shared is not None else None
    account_tenant = (graph["tenants"].get(account.subscription_id.lower()) if graph else None) or _subscription_tenant(
        endpoint, account.subscription_id
    )
    known: tuple[str, str | None] | None = None
    placement = graph["vaults"].get(key_uri.vault_name.lower()) if graph else None
    if placement is not None:
        known = (placement["id"], placement["tenantId"])
    else:
        with _cache_lock:
            cached = _found.get(found_key)
        if cached is not None and time.monotonic() - cached[0] < _FOUND_TTL_SECONDS:
            known = (cached[1], cached[2])
    if known is not None and narrowed and parse_vault_id(known[0]).subscription_id.lower() not in narrowed:
        known = None  # found in a subscription this search does not cover: it must not find it there
    if known is not None and account_tenant is not None:
        vault_id = known[0]
        lookup["vaultSubscriptionTenantId"], lookup["accountSubscriptionTenantId"] = known[1], account_tenant
        lookup["vault"] = _shared(shared, "vault", vault_id, functools.partial(read_vault, vault_id))
        if lookup["vault"] is not None:
            return lookup
    query = _vault_query(key_uri.vault_name, str(account) if account_tenant is None else None)
    rows, _ = query_all(query, narrowed)
    with _cache_lock:
        for row in rows:
            if row.get("tenantId") and row.get("subscriptionId"):
                _tenants[(endpoint, str(row["subscriptionId"]).lower())] = str(row["tenantId"])
        lookup["accountSubscriptionTenantId"] = _tenants.get((endpoint, account.subscription_id.lower()))
    for row in rows:
        is_vault = str(row.get("type", "")).lower() == "microsoft.keyvault/vaults"
        if not is_vault or str(row.get("name", "")).lower() != key_uri.vault_name.lower():
            continue
        lookup["vaultSubscriptionTenantId"] = str(row["tenantId"]) if row.get("tenantId") else None
        try:
            lookup["vault"] = _shared(shared, "vault", str(row["id"]), functools.partial(read_vault, str(row["id"])))
        except HttpResponseError as error:
            # Listed by the graph, yet ARM will not show it (a deny assignment, a lost delegation).
            if error.status_code != 403:
                raise
            lookup["unsearched"].append(str(row.get("subscriptionId") or row["id"]).lower())
    if lookup["vault"] is not None:
        with _cache_lock:
            _found[found_key] = (time.monotonic(), lookup["vault"]["id"], lookup["vaultSubscriptionTenantId"])
        return lookup
    # Not in the graph (yet): ARM is authoritative for the subscriptions we can name.
    for subscription in narrowed or [account.subscription_id.lower()]:
        try:
            for vault in clients.keyvault(subscription).vaults.list_by_subscription():
                body = vault.as_dict()
                if str(body.get("name", "")).lower() == key_uri.vault_name.lower():
                    lookup["vault"] = _vault_facts(body)
                    return lookup
        except HttpResponseError as error:
            if error.status_code not in (403, 404):
                raise
            lookup["unsearched"].append(subscription)
    return lookup


def read_vault(vault_id: str) -> VaultFacts | None:
    vault = parse_vault_id(vault_id)
    try:
        body = clients.keyvault(vault.subscription_id).vaults.get(vault.resource_group, vault.name).as_dict()
    except HttpResponseError as error:
        if is_not_found(error):
            return None
        raise
    return _vault_facts(body)


def _vault_facts(body: dict[str, Any]) -> VaultFacts:
    properties: dict[str, Any] = body.get("properties") or {}
    acls: dict[str, Any] = properties.get("networkAcls") or {}
    return {
        "id": body["id"],
        "name": body.get("name") or body["id"].rsplit("/", 1)[-1],
        "tenantId": properties.get("tenantId"),
        "permissionModel": "rbac" if properties.get("enableRbacAuthorization") else "accessPolicy",
        # Both flags may be absent on old vaults; absent means off, as Key Vault documents for purge protection.
        # Key Vault enforces soft delete on every vault (it cannot be turned off); older api-versions may omit the
        # property, so only an explicit false means off.
        "softDeleteEnabled": properties.get("enableSoftDelete") is not False,
        "purgeProtectionEnabled": properties.get("enablePurgeProtection") is True,
        "publicNetworkAccess": properties.get("publicNetworkAccess"),
        "networkDefaultAction": acls.get("defaultAction"),
        "networkBypass": acls.get("bypass"),
        "accessPolicies": list(properties.get("accessPolicies") or []),
    }


def read_key(vault: VaultFacts, key_uri: KeyUri, shared: SharedReads | None = None) -> KeyFacts | None:
    """The key's facts (`shared`: as read for another account of the rollout moments ago)."""
    return _shared(shared, "key", f"{vault['id']}|{key_uri}", lambda: _read_key(vault, key_uri))


def _read_key(vault: VaultFacts, key_uri: KeyUri) -> KeyFacts | None:
    vault_id = parse_vault_id(vault["id"])
    operations = clients.keyvault(vault_id.subscription_id).keys
    try:
        if key_uri.version:
            key = operations.get_version(vault_id.resource_group, vault_id.name, key_uri.key_name, key_uri.version)
        else:
            key = operations.get(vault_id.resource_group, vault_id.name, key_uri.key_name)
    except HttpResponseError as error:
        if is_not_found(error):
            return None
        raise
    body = key.as_dict()
    properties: dict[str, Any] = body.get("properties") or {}
    attributes: dict[str, Any] = properties.get("attributes") or {}
    with_version = properties.get("keyUriWithVersion")
    return {
        "name": body.get("name") or key_uri.key_name,
        "kty": properties.get("kty"),
        "keySize": properties.get("keySize"),
        "keyOps": properties.get("keyOps"),
        "enabled": attributes.get("enabled", True) is not False,
        "notBefore": attributes.get("nbf"),
        "expires": attributes.get("exp"),
        "keyUri": properties.get("keyUri"),
        "keyUriWithVersion": with_version,
        "version": with_version.rstrip("/").rsplit("/", 1)[-1] if with_version else key_uri.version,
    }


def read_user_assigned_identity(identity: ResourceId) -> IdentityFacts | None:
    client = clients.msi(identity.subscription_id)
    try:
        found = client.user_assigned_identities.get(identity.resource_group, identity.name)
    except HttpResponseError as error:
        if is_not_found(error):
            return None
        raise
    return {
        "id": found.id or str(identity),
        "principalId": found.principal_id,
        "clientId": found.client_id,
        "tenantId": found.tenant_id,
    }
