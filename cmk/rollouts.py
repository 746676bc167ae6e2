"""Fleet rollouts: the request, discovering the accounts in scope, and the compact per-account report rows.

Discovery goes through Azure Resource Graph (one paged query across subscriptions, not a GET per account). The
graph is a cached snapshot: nothing is decided from it but which accounts to look at and in which order; each
account's own orchestration re-reads the account through ARM before acting.

The order comes from each account's expected encryption time, estimated from its Azure Monitor metrics: one ARM
read per account, thousands in a large rollout. They are read in rounds (`estimate_within_budget`), each taking what
the app's ARM read budget holds in each subscription, the orchestrator sleeping between rounds, so a large fleet's
estimates neither draw 429s nor starve the principal's other callers.
"""

from __future__ import annotations

import contextlib
import csv
import io
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Literal, NotRequired, TypedDict

from azure.core.exceptions import AzureError, HttpResponseError
from azure.core.rest import HttpRequest

from cmk import clients, clouds, inventory, settings
from cmk.arm import describe, is_forbidden, is_not_found, is_throttled
from cmk.arm_pacing import ARM_PER_SECOND, BURST_SECONDS, PACER, request_kind
from cmk.auth import Actor
from cmk.errors import InvalidRequest, shown
from cmk.fleet import UNKNOWN_ENCRYPTION_SECONDS, PlannedAccount, expected_encryption_seconds
from cmk.inventory import VaultPlacement
from cmk.key_policy import KeyPolicy, choose_key, parse_key_policy
from cmk.key_uris import accepted_key_uri
from cmk.orchestration import AccountOutput, Outcome
from cmk.requests import SYSTEM_ASSIGNED
from cmk.resource_graph import kql_string, query_all
from cmk.resource_ids import (
    parse_account_id,
    parse_identity_id,
    parse_key_uri,
    parse_resource_group_name,
    parse_scope,
)
from cmk.throughput import ThroughputRaiseRequest, parse_throughput_raise

MAX_ACCOUNTS_PER_REQUEST = 10_000
MAX_CONCURRENCY = 500
ID_BATCH = 200
METRICS_API_VERSION = "2023-10-01"
METRICS_READERS = 8
# One estimate round reads at most this many accounts of a subscription (ARM's read burst: more cannot be read at
# once) and this many in all (the round's payload stays small in the orchestration's history).
ESTIMATES_PER_SUBSCRIPTION = int(ARM_PER_SECOND["reads"] * BURST_SECONDS)
MAX_ESTIMATE_BATCH = 2_500


class RolloutScope(TypedDict):
    subscriptions: list[str]
    resourceGroups: NotRequired[list[str]]
    tags: NotRequired[dict[str, str]]


class RolloutRequest(TypedDict):
    accounts: NotRequired[list[str]]
    scope: NotRequired[RolloutScope]
    keyUri: NotRequired[str]
    keyPolicy: NotRequired[KeyPolicy]
    identity: NotRequired[str]
    maxConcurrency: int
    maxConcurrencyPerSubscription: int
    # Accounts prepared (preflight, identity, key access) ahead of their slot at once; absent in rollouts started
    # before it existed (then none).
    maxPreparing: NotRequired[int]
    dryRun: bool
    # Opt-in, for every account of the rollout: a temporary throughput raise around its encryption (cmk.throughput).
    throughputRaise: NotRequired[ThroughputRaiseRequest]
    # Set by the app, never taken from the body: who asked for the rollout, and when.
    requestedBy: NotRequired[Actor]


_FIELDS = {
    "accounts",
    "scope",
    "keyUri",
    "keyPolicy",
    "identity",
    "maxConcurrency",
    "maxConcurrencyPerSubscription",
    "maxPreparing",
    "dryRun",
    "throughputRaise",
}


def parse_rollout_request(body: Any) -> RolloutRequest:
    """Validate a rollout request; the key policy falls back to CMK_KEY_POLICY when the body names no key."""
    if not isinstance(body, dict):
        raise InvalidRequest("InvalidRequestBody", "The request body must be a JSON object.")
    unknown = sorted(set(body) - _FIELDS)
    if unknown:
        raise InvalidRequest(
            "UnknownField", f"Unknown field(s) {', '.join(unknown)}; accepted: {', '.join(sorted(_FIELDS))}."
        )
    if "accounts" not in body and "scope" not in body:
        raise InvalidRequest("NoAccounts", "Name the accounts (accounts) or where to find them (scope), or both.")
    request: RolloutRequest = {
        "maxConcurrency": _cap(body, "maxConcurrency", settings.get_int("CMK_ROLLOUT_MAX_CONCURRENCY")),
        "maxConcurrencyPerSubscription": 0,
        "dryRun": _flag(body, "dryRun"),
    }
    request["maxConcurrencyPerSubscription"] = min(
        _cap(body, "maxConcurrencyPerSubscription", settings.get_int("CMK_ROLLOUT_MAX_CONCURRENCY_PER_SUBSCRIPTION")),
        request["maxConcurrency"],
    )
    request["maxPreparing"] = _preparing(body, min(2 * request["maxConcurrency"], MAX_CONCURRENCY))
    if "accounts" in body:
        accounts = body["accounts"]
        if not isinstance(accounts, list) or not accounts:
            raise InvalidRequest("InvalidAccounts", "accounts must be a non-empty list of account ids.")
        if len(accounts) > MAX_ACCOUNTS_PER_REQUEST:
            raise InvalidRequest("TooManyAccounts", f"At most {MAX_ACCOUNTS_PER_REQUEST} accounts per request.")
        parsed_accounts = (parse_account_id(account) for account in accounts)
        unique = {account.key: str(account) for account in parsed_accounts}
        request["accounts"] = list(unique.values())
    if "scope" in body:
        request["scope"] = _parse_scope(body["scope"])
    if "keyUri" in body and "keyPolicy" in body:
        raise InvalidRequest("AmbiguousKey", "Give keyUri or keyPolicy, not both.")
    if "keyUri" in body:
        key = accepted_key_uri(body["keyUri"])
        request["keyUri"] = str(key)
    elif "keyPolicy" in body:
        request["keyPolicy"] = parse_key_policy(body["keyPolicy"])
    else:
        configured = settings.get_str("CMK_KEY_POLICY")
        if not configured:
            raise InvalidRequest("NoKey", "Give keyUri or keyPolicy, or set the app setting CMK_KEY_POLICY.")
        request["keyPolicy"] = parse_key_policy(settings.get_json("CMK_KEY_POLICY"))
    if "identity" in body:
        identity = body["identity"]
        is_system = isinstance(identity, str) and identity.lower() == SYSTEM_ASSIGNED.lower()
        request["identity"] = SYSTEM_ASSIGNED if is_system else str(parse_identity_id(identity))
    if "throughputRaise" in body:
        request["throughputRaise"] = parse_throughput_raise(body["throughputRaise"])
    return request


def _cap(body: dict[str, Any], name: str, default: int) -> int:
    """A present field is checked, null included (null is not "absent")."""
    if name not in body:
        return default
    value = body[name]
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= MAX_CONCURRENCY:
        raise InvalidRequest("InvalidConcurrency", f"{name} must be a whole number from 1 to {MAX_CONCURRENCY}.")
    return value


def _preparing(body: dict[str, Any], default: int) -> int:
    """maxPreparing: 0 (prepare each account only when its slot is free) to MAX_CONCURRENCY. By default twice
    maxConcurrency, two accounts ahead per lane: a preparation with an RBAC vault's propagation wait (10 minutes)
    outlasts the shortest encryption (10 minutes), so one account ahead would leave the slot waiting for it."""
    if "maxPreparing" not in body:
        return default
    value = body["maxPreparing"]
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= MAX_CONCURRENCY:
        raise InvalidRequest("InvalidPreparing", f"maxPreparing must be a whole number from 0 to {MAX_CONCURRENCY}.")
    return value


def _flag(body: dict[str, Any], name: str) -> bool:
    if name not in body:
        return False
    value = body[name]
    if not isinstance(value, bool):
        raise InvalidRequest("InvalidFlag", f"{name} must be true or false.")
    return value


def _parse_scope(value: Any) -> RolloutScope:
    if not isinstance(value, dict) or set(value) - {"subscriptions", "resourceGroups", "tags"}:
        raise InvalidRequest("InvalidScope", "scope is {subscriptions: [...], resourceGroups?: [...], tags?: {...}}.")
    subscriptions = value.get("subscriptions")
    if not isinstance(subscriptions, list) or not subscriptions:
        raise InvalidRequest("InvalidScope", "scope.subscriptions must be a non-empty list of subscription ids.")
    parsed: list[str] = []
    for entry in subscriptions:
        subscription, group = parse_scope(entry)
        if group is not None:
            raise InvalidRequest(
                "InvalidScope", f"{shown(entry)} is a resource group; list it under scope.resourceGroups."
            )
        parsed.append(subscription)
    scope: RolloutScope = {"subscriptions": list(dict.fromkeys(parsed))}
    if "resourceGroups" in value:
        groups = value["resourceGroups"]
        if not isinstance(groups, list) or not groups:
            raise InvalidRequest(
                "InvalidScope", "scope.resourceGroups must be a non-empty list of resource group names."
            )
        scope["resourceGroups"] = [parse_resource_group_name(g, "scope.resourceGroups") for g in groups]
    if "tags" in value:
        tags = value["tags"]
        if not isinstance(tags, dict) or not tags or not all(isinstance(v, str) for v in tags.values()):
            raise InvalidRequest("InvalidScope", "scope.tags must map tag names to string values.")
        scope["tags"] = {str(k): v for k, v in tags.items()}
    return scope


class DiscoveredAccount(TypedDict):
    accountId: str
    subscriptionId: str
    location: str
    tags: dict[str, str]
    keyVaultKeyUri: str | None
    # Seconds from Azure Monitor's metrics (estimate_within_budget); absent until estimated. Discovery before
    # estimates were read in rounds carried it.
    expectedSeconds: NotRequired[float]


class EncryptionEstimates(TypedDict):
    """One round of estimates: the accounts read (or unreadable: the default estimate), and when to come back for
    the rest; an account left out was not read this round (its subscription's budget is spent, or ARM said 429)."""

    estimates: dict[str, float]
    retryAfterSeconds: float


class ScopeFinding(TypedDict):
    """A subscription of the rollout's scope where Resource Graph found no account, and why, as far as ARM says."""

    subscriptionId: str
    code: Literal["SUBSCRIPTION_NOT_READABLE", "SUBSCRIPTION_NOT_FOUND", "NO_ACCOUNTS_IN_SCOPE"]
    message: str


class Discovery(TypedDict):
    accounts: list[DiscoveredAccount]
    missing: list[str]
    resourceGraphPages: int
    # Resource Graph leaves out, without an error, subscriptions the caller may not read: each subscription of
    # the scope with no account found is checked through ARM, so "nothing there" is told from "cannot see there".
    scopeFindings: NotRequired[list[ScopeFinding]]
    # What each account's preflight would ask Resource Graph, asked once (cmk.inventory.GraphAnswers, without its
    # time, which the orchestration adds): the accounts' subscriptions' tenants and where their keys' vaults are.
    # Absent in discoveries from before it, or when asking for the vaults failed.
    tenants: NotRequired[dict[str, str]]
    vaults: NotRequired[dict[str, VaultPlacement]]


def account_query(scope: RolloutScope | None, ids: list[str] | None = None) -> str:
    """The Resource Graph query for Cosmos DB accounts in a scope (or with given ids)."""
    lines = ["resources", "| where type =~ 'microsoft.documentdb/databaseaccounts'"]
    if ids:
        lines.append(f"| where id in~ ({', '.join(kql_string(i) for i in ids)})")
    if scope and scope.get("resourceGroups"):
        lines.append(f"| where resourceGroup in~ ({', '.join(kql_string(g) for g in scope['resourceGroups'])})")
    tags: dict[str, str] = scope.get("tags", {}) if scope else {}
    for name, value in tags.items():
        lines.append(f"| where tags[{kql_string(name)}] =~ {kql_string(value)}")
    lines.append(
        "| project id, name, subscriptionId, tenantId, resourceGroup, location, tags, "
        "keyVaultKeyUri = tostring(properties.keyVaultKeyUri)"
    )
    lines.append("| order by id asc")
    return "\n".join(lines)


def discover_accounts(
    accounts: list[str] | None, scope: RolloutScope | None, key: RolloutKey | None = None
) -> Discovery:
    """Every account named or in scope, with what key choice needs (its estimate comes from estimate_within_budget)
    and, given the rollout's `key`, what their preflights would ask Resource Graph (Discovery.tenants, .vaults).
    Read-only."""
    found: dict[str, dict[str, Any]] = {}
    pages = 0
    scope_findings: list[ScopeFinding] = []
    if scope:
        rows, count = query_all(account_query(scope), scope["subscriptions"])
        pages += count
        found.update({str(row["id"]).lower(): row for row in rows})
        seen = {str(row.get("subscriptionId") or parse_account_id(row["id"]).subscription_id).lower() for row in rows}
        scope_findings = [
            _unseen_subscription(subscription)
            for subscription in scope["subscriptions"]
            if subscription.lower() not in seen
        ]
    named = [parse_account_id(a) for a in accounts or []]
    wanted = [a for a in named if a.key not in found]
    for start in range(0, len(wanted), ID_BATCH):
        batch = wanted[start : start + ID_BATCH]
        subscriptions = sorted({a.subscription_id for a in batch})
        rows, count = query_all(account_query(None, [str(a) for a in batch]), subscriptions)
        pages += count
        found.update({str(row["id"]).lower(): row for row in rows})
    missing = [str(a) for a in named if a.key not in found]
    rows = sorted(found.values(), key=lambda row: str(row["id"]).lower())
    discovered: list[DiscoveredAccount] = [
        {
            "accountId": str(parse_account_id(row["id"])),
            "subscriptionId": str(row.get("subscriptionId") or parse_account_id(row["id"]).subscription_id),
            "location": str(row.get("location") or ""),
            "tags": {str(k): str(v) for k, v in (row.get("tags") or {}).items()},
            "keyVaultKeyUri": row.get("keyVaultKeyUri") or None,
        }
        for row in rows
    ]
    discovery: Discovery = {
        "accounts": discovered,
        "missing": missing,
        "resourceGraphPages": pages,
        "scopeFindings": scope_findings,
    }
    if key is not None:
        discovery["tenants"] = {
            str(row["subscriptionId"]).lower(): str(row["tenantId"])
            for row in rows
            if row.get("subscriptionId") and row.get("tenantId")
        }
        vault_names: set[str] = set()
        for account in discovered:
            key_uri, _ = account_key(key, account)
            if key_uri is not None:
                with contextlib.suppress(InvalidRequest):  # a key no preflight reads: plan_accounts refuses it
                    vault_names.add(parse_key_uri(key_uri).vault_name)
        # Only saves each preflight its own queries: without it they ask Resource Graph themselves.
        with contextlib.suppress(HttpResponseError):
            discovery["vaults"] = inventory.locate_vaults(vault_names)
    return discovery


def _unseen_subscription(subscription: str) -> ScopeFinding:
    """Why Resource Graph found no account of the scope in a subscription: one page of ARM's own list of the
    subscription's accounts answers 403 when the app may read none there (a list answers with what the caller may
    read, and 403 only when that is nothing), 404 when ARM knows no such subscription, else the scope matched none.
    Resource groups the app may not read inside a readable subscription stay invisible: ARM does not say."""
    client = clients.cosmos(subscription)
    try:
        next(iter(client.database_accounts.list().by_page()), None)
    except HttpResponseError as error:
        if is_forbidden(error):
            return {
                "subscriptionId": subscription,
                "code": "SUBSCRIPTION_NOT_READABLE",
                "message": f"The app may not read Cosmos DB accounts in subscription {subscription}, so Resource "
                f"Graph left it out of the rollout without an error; grant the app its fleet-access role there "
                f"(docs/deploy.md). Azure said: {describe(error)}",
            }
        if is_not_found(error):
            return {
                "subscriptionId": subscription,
                "code": "SUBSCRIPTION_NOT_FOUND",
                "message": f"ARM knows no subscription {subscription} in the app's tenant: {describe(error)}",
            }
        raise
    return {
        "subscriptionId": subscription,
        "code": "NO_ACCOUNTS_IN_SCOPE",
        "message": f"No Cosmos DB account the app may read in subscription {subscription} matches the scope.",
    }


def next_estimate_batch(pending: list[str]) -> list[str]:
    """The accounts one estimate round asks for: the first ESTIMATES_PER_SUBSCRIPTION still pending of each
    subscription, MAX_ESTIMATE_BATCH in all, so every subscription's budget is used in the same round."""
    per_subscription: dict[str, int] = {}
    batch: list[str] = []
    for account_id in pending:
        subscription = parse_account_id(account_id).subscription_id.lower()
        taken = per_subscription.get(subscription, 0)
        if taken < ESTIMATES_PER_SUBSCRIPTION:
            per_subscription[subscription] = taken + 1
            batch.append(account_id)
            if len(batch) == MAX_ESTIMATE_BATCH:
                break
    return batch


def estimate_within_budget(account_ids: list[str]) -> EncryptionEstimates:
    """Expected encryption times from Azure Monitor for as many of `account_ids` as each subscription's ARM read
    budget allows now (cmk.arm_pacing; the caller's pacing info has set the clock), and when the rest may be read.

    Best effort: an account whose metrics cannot be read (not permitted, not found, a fault that outlived the SDK's
    retries) gets the default estimate, which only affects the order accounts are started in. A 429 leaves the
    account for a later round."""
    by_subscription: dict[str, list[str]] = {}
    for account_id in account_ids:
        by_subscription.setdefault(parse_account_id(account_id).subscription_id.lower(), []).append(account_id)
    reads = request_kind("GET")
    chosen: list[str] = []
    for subscription, accounts in by_subscription.items():
        chosen += accounts[: PACER.allowance(subscription, reads)]
    with ThreadPoolExecutor(max_workers=METRICS_READERS) as pool:
        read = list(pool.map(_estimate_unless_throttled, chosen))
    estimates = {account_id: seconds for account_id, seconds in zip(chosen, read, strict=True) if seconds is not None}
    # Back when the soonest subscription with accounts left has refilled half its bucket (or all it needs): rounds a
    # few seconds apart, each reading many accounts, not one round per token.
    waits = [
        PACER.seconds_until(subscription, reads, min(left, PACER.budget().capacity(reads) / 2))
        for subscription, accounts in by_subscription.items()
        if (left := sum(1 for account_id in accounts if account_id not in estimates))
    ]
    return {"estimates": estimates, "retryAfterSeconds": round(min(waits), 3) if waits else 0.0}


def _estimate_unless_throttled(account_id: str) -> float | None:
    try:
        return expected_encryption_seconds(*_read_encryption_inputs(account_id))
    except HttpResponseError as error:
        if is_throttled(error):
            return None
        return UNKNOWN_ENCRYPTION_SECONDS
    except (AzureError, ValueError):
        return UNKNOWN_ENCRYPTION_SECONDS


def encryption_inputs(account_id: str) -> tuple[float | None, float | None]:
    """(data size in bytes, spare RU/s) from Azure Monitor: the inputs of cmk.fleet.expected_encryption_seconds,
    spare being the provisioned throughput less its busiest use in the last hour; (None, None) when unreadable."""
    try:
        return _read_encryption_inputs(account_id)
    except (AzureError, HttpResponseError, ValueError):
        return None, None


def _read_encryption_inputs(account_id: str) -> tuple[float | None, float | None]:
    account = parse_account_id(account_id)
    url = (
        f"{clouds.arm_endpoint()}{account}/providers/Microsoft.Insights/metrics"
        f"?api-version={METRICS_API_VERSION}&metricnames=DataUsage,ProvisionedThroughput,NormalizedRUConsumption"
        "&aggregation=Maximum&interval=PT1H&timespan=PT1H"
    )
    response = clients.cosmos(account.subscription_id).send_request(HttpRequest("GET", url))
    response.raise_for_status()
    maxima = _metric_maxima(response.json())
    provisioned = maxima.get("ProvisionedThroughput")
    busy_percent = maxima.get("NormalizedRUConsumption", 0.0)
    spare = provisioned * max(0.0, 1 - busy_percent / 100) if provisioned is not None else None
    return maxima.get("DataUsage"), spare


def _metric_maxima(body: dict[str, Any]) -> dict[str, float]:
    maxima: dict[str, float] = {}
    for metric in body.get("value") or []:
        name = str((metric.get("name") or {}).get("value") or "")
        points = [
            point["maximum"]
            for series in metric.get("timeseries") or []
            for point in series.get("data") or []
            if point.get("maximum") is not None
        ]
        if points:
            maxima[name] = float(max(points))
    return maxima


class ReportRow(TypedDict):
    accountId: str
    outcome: Outcome
    reason: str
    keyUri: str | None
    identity: str | None
    findings: list[str]
    operationStatus: str | None
    encryptionSeconds: float | None
    instanceId: str | None
    # Who asked for the account's orchestration and who decided on its approval (object id, name, time).
    requestedBy: Actor | None
    approvedBy: Actor | None
    rejectedBy: Actor | None


def report_row(output: AccountOutput, instance_id: str | None) -> ReportRow:
    operation = output.get("operation")
    return {
        "accountId": output["accountId"],
        "outcome": output["outcome"],
        "reason": output["reason"],
        "keyUri": output.get("keyUri"),
        "identity": output.get("identity"),
        "findings": [f["code"] for f in output.get("findings") or []],
        "operationStatus": operation.get("status") if operation else None,
        "encryptionSeconds": (output.get("timings") or {}).get("encryptionSeconds"),
        "instanceId": instance_id,
        "requestedBy": output.get("requestedBy"),
        "approvedBy": output.get("approvedBy"),
        "rejectedBy": output.get("rejectedBy"),
    }


def plan_accounts(request: RolloutRequest, discovery: Discovery) -> tuple[list[PlannedAccount], list[ReportRow]]:
    """Which discovered accounts the rollout works on, each with its key, and a report row for every account it
    cannot: not found by Resource Graph, or no key in the policy. Pure: the rollout orchestrator calls it."""
    rows = [
        unplanned_row(account, "Refused", "ACCOUNT_NOT_FOUND: not found by Resource Graph in its subscription")
        for account in discovery["missing"]
    ]
    planned: list[PlannedAccount] = []
    for account in discovery["accounts"]:
        key_uri, source = account_key(request, account)
        if key_uri is None:
            rows.append(unplanned_row(account["accountId"], "Refused", f"KEY_POLICY_NO_MATCH: {source}"))
            continue
        planned.append(
            {
                "accountId": account["accountId"],
                "subscriptionId": account["subscriptionId"],
                "keyUri": key_uri,
                "expectedSeconds": account.get("expectedSeconds", UNKNOWN_ENCRYPTION_SECONDS),
            }
        )
    return planned, rows


class RolloutKey(TypedDict):
    """How a rollout chooses each account's key: one for all, or a policy (RolloutRequest has one of them)."""

    keyUri: NotRequired[str]
    keyPolicy: NotRequired[KeyPolicy]


def account_key(key: RolloutKey, account: DiscoveredAccount) -> tuple[str | None, str]:
    """The account's key (None: the policy has none for it) and where the choice came from."""
    if "keyUri" in key:
        return key["keyUri"], "request"
    choice = choose_key(key["keyPolicy"], account["subscriptionId"], account["location"], account["tags"])
    return choice["keyUri"], choice["source"]


def unplanned_row(account_id: str, outcome: Outcome, reason: str, key_uri: str | None = None) -> ReportRow:
    return {
        "accountId": account_id,
        "outcome": outcome,
        "reason": reason,
        "keyUri": key_uri,
        "identity": None,
        "findings": [],
        "operationStatus": None,
        "encryptionSeconds": None,
        "instanceId": None,
        "requestedBy": None,
        "approvedBy": None,
        "rejectedBy": None,
    }


REPORT_COLUMNS = [
    "accountId",
    "outcome",
    "reason",
    "keyUri",
    "identity",
    "findings",
    "operationStatus",
    "encryptionSeconds",
    "instanceId",
    "requestedBy",
    "approvedBy",
    "rejectedBy",
]


def report_csv(rows: list[ReportRow]) -> str:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=REPORT_COLUMNS, lineterminator="\n")
    writer.writeheader()
    for row in rows:
        actors = {name: _actor_cell(row.get(name)) for name in ("requestedBy", "approvedBy", "rejectedBy")}
        writer.writerow({**row, "findings": " ".join(row["findings"]), **actors})
    return buffer.getvalue()


def _actor_cell(actor: Any) -> str:
    """`name (object id) at time` in one CSV cell; empty when nobody."""
    if not isinstance(actor, dict):
        return ""
    object_id = f" ({actor['objectId']})" if actor.get("objectId") else ""
    at = f" at {actor['at']}" if actor.get("at") else ""
    return f"{actor.get('displayName') or ''}{object_id}{at}"


RolloutPhase = Literal["discovering", "running", "done"]
