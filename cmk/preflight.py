"""Preflight rules: is this account ready for the irreversible key PATCH, and what exactly would we do?

Every rule here is a pure function of a PreflightSnapshot, the facts cmk.preflight_facts read from Azure (a read
that Azure refused or found nothing for is a fact like any other), so each rule can be read on its own and tested
without Azure or the simulator. `evaluate` applies every rule, so one run reports everything a user has to fix, not
just the first problem. Nothing in this module does I/O.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Generic, Literal, NotRequired, TypedDict, TypeVar

from cmk.document_ids import MAX_DOCUMENT_ID_BYTES, DocumentIdScan
from cmk.findings import Code, Finding, blocking, has_blocking, warning
from cmk.inventory import (
    CASSANDRA_CAPABILITY,
    VECTOR_SEARCH_CAPABILITY,
    AccountFacts,
    IdentityFacts,
    KeyFacts,
    VaultLookup,
)
from cmk.requests import SYSTEM_ASSIGNED
from cmk.resource_ids import parse_key_uri, same_key_uri

SUPPORTED_KEY_TYPES = {"RSA", "RSA-HSM"}
MIN_RSA_KEY_SIZE = 2048
REQUIRED_KEY_OPERATIONS = {"wrapKey", "unwrapKey"}
USER_ASSIGNED_PREFIX = "UserAssignedIdentity="
SYSTEM_ASSIGNED_DEFAULT = "SystemAssignedIdentity"


class PlannedIdentity(TypedDict):
    type: Literal["SystemAssigned", "UserAssigned"]
    resourceId: NotRequired[str]
    principalId: NotRequired[str | None]


class PlannedVault(TypedDict):
    id: str
    permissionModel: Literal["rbac", "accessPolicy"]
    tenantId: str | None


class Plan(TypedDict):
    accountId: str
    keyUri: str
    identity: PlannedIdentity
    defaultIdentity: str
    vault: PlannedVault


class AccountSummary(TypedDict):
    kind: str
    location: str
    backupType: str | None
    provisioningState: str
    keyVaultKeyUri: str | None
    customerManagedKeyStatus: str | None


Facts = TypeVar("Facts")


class Read(TypedDict, Generic[Facts]):
    """What ARM answered to one read, as data: the facts, nothing there (404), or a refusal (403)."""

    outcome: Literal["found", "notFound", "forbidden"]
    facts: Facts | None
    # forbidden: Azure's "<code>: <message>", which names the action and the scope the app lacks (cmk.arm.describe)
    refusal: str | None


class PreflightSnapshot(TypedDict):
    """Everything the rules judge, read before any rule runs. JSON-serialisable, so it can be stored and replayed.

    A part is None when it was not read because its answer could not change the verdict: everything past the
    account when the account is missing, unreadable or already has a key; the key when its vault was not found;
    the identity unless a user-assigned one is planned; the document-id scan (which costs the account request
    units) when another finding already blocks or CMK_DOCUMENT_ID_SCAN is off.
    """

    accountId: str
    keyUri: str
    requestedIdentity: str | None  # the request's identity: a user-assigned identity id, "SystemAssigned" or None
    asOf: str  # ISO time the key's validity is judged at (the orchestration's clock)
    account: Read[AccountFacts]
    vault: VaultLookup | None
    key: Read[KeyFacts] | None
    identity: Read[IdentityFacts] | None
    documentIds: DocumentIdScan | None


class PreflightResult(TypedDict):
    accountId: str
    findings: list[Finding]
    blocked: bool
    plan: Plan | None
    account: AccountSummary | None
    documentIds: NotRequired[DocumentIdScan]


def check_account(account: AccountFacts) -> list[Finding]:
    findings: list[Finding] = []
    name = account["name"]
    if account["provisioningState"].lower() != "succeeded":
        findings.append(
            blocking(
                Code.ACCOUNT_BUSY,
                f"Account {name} is {account['provisioningState']}; wait until its current operation ends.",
            )
        )
    if account["backupMigrationInProgress"]:
        findings.append(
            blocking(
                Code.ACCOUNT_BUSY,
                f"Account {name} is migrating its backup policy; enable CMK after the migration completes.",
            )
        )
    capabilities = set(account["capabilities"])
    if CASSANDRA_CAPABILITY in capabilities:
        findings.append(
            blocking(
                Code.CASSANDRA_NOT_SUPPORTED,
                f"Account {name} uses the API for Apache Cassandra; Azure does not support enabling "
                "customer-managed keys on existing Cassandra accounts.",
            )
        )
    if VECTOR_SEARCH_CAPABILITY in capabilities:
        findings.append(
            blocking(
                Code.VECTOR_SEARCH_NOT_SUPPORTED,
                f"Account {name} has vector search enabled; Azure does not support enabling customer-managed "
                "keys on existing accounts with vector search.",
            )
        )
    if account["enableMaterializedViews"] or account["materializedViewsBuilder"]:
        findings.append(
            blocking(
                Code.MATERIALIZED_VIEWS_NOT_SUPPORTED,
                f"Account {name} uses materialized views; enabling customer-managed keys on existing accounts "
                "with materialized views is not supported.",
            )
        )
    unknown = [
        label
        for label, value in (
            ("materialized views (enableMaterializedViews)", account["enableMaterializedViews"]),
            (
                "all versions and deletes change feed (enableAllVersionsAndDeletesChangeFeed)",
                account["enableAllVersionsAndDeletesChangeFeed"],
            ),
        )
        if value is None
    ]
    if unknown:
        findings.append(
            warning(
                Code.ACCOUNT_FEATURES_UNKNOWN,
                f"Could not read whether account {name} uses {' or '.join(unknown)}: the preview api-version that "
                "reports them did not answer. Neither is supported with customer-managed keys on existing "
                "accounts; check them in the portal before approving.",
            )
        )
    if account["enableAllVersionsAndDeletesChangeFeed"]:
        findings.append(
            blocking(
                Code.ALL_VERSIONS_AND_DELETES_CHANGE_FEED_NOT_SUPPORTED,
                f"Account {name} has the all versions and deletes (full-fidelity) change feed enabled; enabling "
                "customer-managed keys on such existing accounts is not supported.",
            )
        )
    return findings


def check_existing_key(account: AccountFacts, key_uri: str) -> Finding | None:
    configured = account["keyVaultKeyUri"]
    if not configured:
        return None
    if same_key_uri(configured, key_uri) and account["provisioningState"].lower() != "succeeded":
        return blocking(
            Code.ENCRYPTION_IN_PROGRESS,
            f"Account {account['name']} already has this key and is {account['provisioningState']}: Azure is still "
            "encrypting it; the orchestration follows that encryption instead of sending the key again.",
        )
    if same_key_uri(configured, key_uri):
        return blocking(
            Code.ALREADY_ENABLED,
            f"Account {account['name']} already uses this key ({configured}); nothing to do.",
        )
    return blocking(
        Code.DIFFERENT_KEY_CONFIGURED,
        f"Account {account['name']} already uses another key ({configured}); changing keys is a key rotation, "
        "which this tool does not do.",
    )


CROSS_TENANT_DOC = "https://learn.microsoft.com/azure/cosmos-db/how-to-setup-cross-tenant-customer-managed-keys"


def check_vault(lookup: VaultLookup, key_uri: str, account: AccountFacts | None = None) -> list[Finding]:
    vault = lookup["vault"]
    vault_name = parse_key_uri(key_uri).vault_name
    if vault is None:
        where = (
            f"in the account's subscription or CMK_KEY_VAULT_SUBSCRIPTIONS ({', '.join(lookup['searched'])})"
            if lookup["searched"] is not None
            else "in any subscription this app can read (Resource Graph, every subscription of its tenant and any "
            "delegated to it)"
        )
        could_not = (
            f" Could not search subscription(s) {', '.join(lookup['unsearched'])}." if lookup["unsearched"] else ""
        )
        return [
            blocking(
                Code.VAULT_NOT_FOUND,
                f"Key Vault {vault_name} was not found {where}.{could_not} Grant this app read access (the operator "
                "role of infra/fleet-access) on the vault's subscription; a vault in another Microsoft Entra tenant "
                "needs cross-tenant customer-managed keys, which this tool does not set up.",
            )
        ]
    findings: list[Finding] = []
    foreign = _foreign_tenant(lookup, account)
    if foreign is not None:
        home, other, how = foreign
        findings.append(
            blocking(
                Code.KEY_IN_ANOTHER_TENANT,
                f"Key Vault {vault['name']} belongs to tenant {other} ({how}), not to the account's tenant {home}. "
                "Cosmos DB reaches a key in another tenant only with cross-tenant customer-managed keys (a "
                "multi-tenant app registration federated with a user-assigned identity, and defaultIdentity "
                "'UserAssignedIdentity=<id>&FederatedClientId=<app id>'), which this tool does not set up: use a key "
                f"of tenant {home}, or configure cross-tenant keys yourself ({CROSS_TENANT_DOC}).",
            )
        )
    if not vault["softDeleteEnabled"]:
        findings.append(
            blocking(
                Code.VAULT_SOFT_DELETE_DISABLED,
                f"Key Vault {vault['name']} does not have soft delete enabled; Cosmos DB requires it.",
            )
        )
    if not vault["purgeProtectionEnabled"]:
        findings.append(
            blocking(
                Code.VAULT_PURGE_PROTECTION_DISABLED,
                f"Key Vault {vault['name']} does not have purge protection enabled; Cosmos DB requires it "
                "(az keyvault update --enable-purge-protection true; it cannot be turned off again).",
            )
        )
    public_access = (vault["publicNetworkAccess"] or "Enabled").lower()
    denies = (vault["networkDefaultAction"] or "Allow").lower() == "deny"
    trusted_bypass = (vault["networkBypass"] or "").lower() == "azureservices"
    if public_access == "disabled" or (denies and not trusted_bypass):
        findings.append(
            blocking(
                Code.VAULT_NETWORK_BLOCKS_COSMOS,
                f"Key Vault {vault['name']} is not reachable by Cosmos DB: allow public access, or selected "
                "networks with 'Allow trusted Microsoft services to bypass this firewall'. Vaults reachable "
                "only through private endpoints cannot be used.",
            )
        )
    return findings


def _foreign_tenant(lookup: VaultLookup, account: AccountFacts | None) -> tuple[str, str, str] | None:
    """(account's tenant, vault's tenant, how we know) when the vault answers to another Entra tenant.

    The account's tenant: its managed identity's tenant, else its subscription's (Resource Graph). The vault's: the
    tenant Key Vault authenticates its callers against (properties.tenantId) and its subscription's tenant, which
    differ from ours for a vault of another tenant delegated to this app (Azure Lighthouse) or a vault whose
    subscription moved tenants without its tenantId being updated.
    """
    home = (account["identityTenantId"] if account else None) or lookup["accountSubscriptionTenantId"]
    vault = lookup["vault"]
    if not home or vault is None:
        return None
    candidates = (
        (lookup["vaultSubscriptionTenantId"], "the tenant of its subscription"),
        (vault["tenantId"], "the tenant its callers authenticate against, properties.tenantId"),
    )
    for tenant, how in candidates:
        if tenant and tenant.lower() != home.lower():
            return home, tenant, how
    return None


def check_key(key: KeyFacts | None, key_uri: str, as_of: datetime) -> list[Finding]:
    parsed = parse_key_uri(key_uri)
    findings: list[Finding] = []
    if parsed.version:
        findings.append(
            warning(
                Code.KEY_URI_VERSIONED,
                f"The key URI names version {parsed.version}: the account stays on that version and does not "
                f"follow key rotation. Microsoft recommends the versionless URI {parsed.versionless}.",
            )
        )
    if key is None:
        findings.append(blocking(Code.KEY_NOT_FOUND, f"Key {parsed} was not found in Key Vault {parsed.vault_name}."))
        return findings
    now = as_of.timestamp()
    if not key["enabled"]:
        findings.append(blocking(Code.KEY_DISABLED, f"Key {key['name']} is disabled."))
    if key["expires"] is not None and key["expires"] <= now:
        findings.append(blocking(Code.KEY_EXPIRED, f"Key {key['name']} expired at {_iso(key['expires'])}."))
    if key["notBefore"] is not None and key["notBefore"] > now:
        findings.append(
            blocking(Code.KEY_NOT_YET_VALID, f"Key {key['name']} is not valid before {_iso(key['notBefore'])}.")
        )
    kty = key["kty"] or "unknown"
    if kty not in SUPPORTED_KEY_TYPES or (key["keySize"] is not None and key["keySize"] < MIN_RSA_KEY_SIZE):
        findings.append(
            blocking(
                Code.KEY_TYPE_UNSUPPORTED,
                f"Key {key['name']} is {kty}{' ' + str(key['keySize']) if key['keySize'] else ''}; Cosmos DB "
                f"needs an RSA or RSA-HSM key of at least {MIN_RSA_KEY_SIZE} bits (3072 recommended).",
            )
        )
    missing = REQUIRED_KEY_OPERATIONS - set(key["keyOps"] or REQUIRED_KEY_OPERATIONS)
    if missing:
        findings.append(
            blocking(
                Code.KEY_OPERATIONS_MISSING,
                f"Key {key['name']} does not permit {', '.join(sorted(missing))}, which Cosmos DB needs.",
            )
        )
    return findings


def resolve_identity(account: AccountFacts, requested: str | None) -> tuple[PlannedIdentity | None, list[Finding]]:
    """Which managed identity the account should use for the key, from the request and the account.

    Continuous-backup accounts get a user-assigned identity, the only kind Azure documents as supported for
    enabling CMK on them; otherwise system-assigned unless the request or the account says otherwise.
    """
    continuous = (account["backupType"] or "").lower() == "continuous"
    if requested is not None and requested != SYSTEM_ASSIGNED:
        return {"type": "UserAssigned", "resourceId": requested}, []
    current_default = account["defaultIdentity"] or ""
    if continuous:
        if requested is None:
            if current_default.startswith(USER_ASSIGNED_PREFIX):
                return {"type": "UserAssigned", "resourceId": current_default[len(USER_ASSIGNED_PREFIX) :]}, []
            if len(account["userAssignedIdentities"]) == 1:
                return {"type": "UserAssigned", "resourceId": next(iter(account["userAssignedIdentities"]))}, []
        return None, [
            blocking(
                Code.CONTINUOUS_BACKUP_NEEDS_USER_ASSIGNED_IDENTITY,
                f"Account {account['name']} uses continuous backup; Azure supports enabling customer-managed "
                "keys on it only with a user-assigned identity. Pass identity=<user-assigned identity id>.",
            )
        ]
    if requested is None and current_default.startswith(USER_ASSIGNED_PREFIX):
        return {"type": "UserAssigned", "resourceId": current_default[len(USER_ASSIGNED_PREFIX) :]}, []
    return {"type": "SystemAssigned"}, []


def default_identity_for(identity: PlannedIdentity) -> str:
    if identity["type"] == "UserAssigned":
        return f"{USER_ASSIGNED_PREFIX}{identity['resourceId']}"
    return SYSTEM_ASSIGNED_DEFAULT


def check_document_ids(scan: DocumentIdScan) -> list[Finding]:
    if scan["status"] == "unavailable":
        return [
            warning(
                Code.DOCUMENT_ID_SCAN_UNAVAILABLE,
                f"Could not check document id lengths ({scan['detail']}); Azure checks them during encryption "
                "and fails the operation if any id is over 990 bytes.",
            )
        ]
    offender = scan["offendingId"]
    if scan["status"] == "found" and offender is not None:
        return [
            blocking(
                Code.DOCUMENT_ID_TOO_LONG,
                f"A document id in {offender['container']} is {offender['bytes']} bytes ({offender['characters']} "
                f"characters), over the {MAX_DOCUMENT_ID_BYTES} bytes CMK allows (the scan stops at the first such "
                "id); encryption would fail until such documents are deleted or re-keyed.",
            )
        ]
    return []


def evaluate(snapshot: PreflightSnapshot) -> PreflightResult:
    """Apply every rule to the snapshot: the findings in a stable order, and the plan when nothing blocks."""
    account_id = snapshot["accountId"]
    key_uri = snapshot["keyUri"]
    account_read = snapshot["account"]
    account = account_read["facts"]
    if account_read["outcome"] == "forbidden":
        # Azure's message names the action and the scope the app lacks: the grant to fix.
        unreadable = f"This app cannot read account {account_id}: {account_read['refusal']}"
        return _result(account_id, [blocking(Code.ACCOUNT_NOT_FOUND, unreadable)], None, None)
    if account is None:
        return _result(
            account_id,
            [blocking(Code.ACCOUNT_NOT_FOUND, f"Account {account_id} was not found (or this app cannot read it).")],
            None,
            None,
        )
    existing = check_existing_key(account, key_uri)
    if existing is not None:
        # Already on CMK: the other rules are about a change we will not make.
        return _result(account_id, [existing], None, account)

    findings = check_account(account)
    lookup = snapshot["vault"]
    if lookup is None:
        raise ValueError(f"the snapshot of {account_id} lacks the vault lookup the rules need")
    vault = lookup["vault"]
    findings += check_vault(lookup, key_uri, account)
    if vault is not None:
        key = snapshot["key"]
        if key is None:
            raise ValueError(f"the snapshot of {account_id} found vault {vault['name']} but lacks the read of its key")
        if key["outcome"] == "forbidden":
            # ARM refused the key's read (Microsoft.KeyVault/vaults/keys/read): nothing can be judged of the key,
            # and nothing was changed. Azure's refusal names the action and the scope to grant.
            findings.append(
                blocking(Code.KEY_NOT_FOUND, f"This app cannot read key {key_uri} through ARM: {key['refusal']}")
            )
        else:
            findings += check_key(key["facts"], key_uri, datetime.fromisoformat(snapshot["asOf"]))

    identity, identity_findings = resolve_identity(account, snapshot["requestedIdentity"])
    findings += identity_findings
    if identity is not None and identity["type"] == "UserAssigned":
        identity_read = snapshot["identity"]
        if identity_read is None:
            raise ValueError(f"the snapshot of {account_id} lacks the read of identity {identity['resourceId']}")
        finding, identity = check_user_assigned_identity(identity, identity_read)
        if finding is not None:
            findings.append(finding)

    scan = snapshot["documentIds"]
    if scan is not None:
        findings += check_document_ids(scan)

    plan: Plan | None = None
    if vault is not None and identity is not None:
        plan = {
            "accountId": account_id,
            "keyUri": key_uri,
            "identity": identity,
            "defaultIdentity": default_identity_for(identity),
            "vault": {"id": vault["id"], "permissionModel": vault["permissionModel"], "tenantId": vault["tenantId"]},
        }
    result = _result(account_id, findings, plan, account)
    if scan is not None:
        result["documentIds"] = scan
    return result


def reads_past_the_account(snapshot: PreflightSnapshot) -> bool:
    """Whether the vault, key and identity can change the verdict: not for an account missing, unreadable or
    already on a key, whose verdict the account alone decides."""
    account = snapshot["account"]["facts"]
    return account is not None and check_existing_key(account, snapshot["keyUri"]) is None


def worth_scanning(snapshot: PreflightSnapshot) -> bool:
    """The document-id scan costs request units on the account: run it only when nothing else blocks."""
    return reads_past_the_account(snapshot) and not evaluate(snapshot)["blocked"]


def check_user_assigned_identity(
    planned: PlannedIdentity, read: Read[IdentityFacts]
) -> tuple[Finding | None, PlannedIdentity]:
    """The planned user-assigned identity as ARM reported it (its canonical id and principal), or why it cannot be."""
    found = read["facts"]
    if read["outcome"] == "forbidden":
        return blocking(
            Code.IDENTITY_NOT_FOUND, f"This app cannot read identity {planned['resourceId']}: {read['refusal']}"
        ), planned
    if found is None:
        return blocking(
            Code.IDENTITY_NOT_FOUND, f"User-assigned identity {planned['resourceId']} was not found."
        ), planned
    return None, {**planned, "resourceId": found["id"], "principalId": found["principalId"]}


def _result(
    account_id: str, findings: list[Finding], plan: Plan | None, account: AccountFacts | None
) -> PreflightResult:
    summary: AccountSummary | None = None
    if account is not None:
        summary = {
            "kind": account["kind"],
            "location": account["location"],
            "backupType": account["backupType"],
            "provisioningState": account["provisioningState"],
            "keyVaultKeyUri": account["keyVaultKeyUri"],
            "customerManagedKeyStatus": account["customerManagedKeyStatus"],
        }
    blocked = has_blocking(findings)
    return {
        "accountId": account_id,
        "findings": findings,
        "blocked": blocked,
        "plan": None if blocked else plan,
        "account": summary,
    }


def _iso(epoch_seconds: int) -> str:
    return datetime.fromtimestamp(epoch_seconds, tz=UTC).isoformat()
