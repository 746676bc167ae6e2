"""Every preflight rule judged from a snapshot of facts, without Azure or the simulator.

RULES holds, for each finding code of cmk.findings, at least one snapshot that triggers it and what the finding
must tell the user; `test_every_finding_code_has_a_rule_test` fails when a code is added without one. The
simulator tests (tests/activities/test_preflight.py) check that the facts are read right; these check the verdicts.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import pytest

from cmk.document_ids import DocumentIdScan
from cmk.findings import Code
from cmk.inventory import AccountFacts, IdentityFacts, KeyFacts, VaultFacts, VaultLookup
from cmk.preflight import PreflightSnapshot, Read, evaluate, reads_past_the_account, worth_scanning

SUB = "3c9e1f7a-52d4-4b8e-9a16-0e2d4c6f8b31"
KEYS_SUB = "8a4b2c6d-1e3f-4a5b-9c7d-2e4f6a8b0c1d"
TENANT = "72f988bf-86f1-41af-91ab-2d7cd011db47"
OTHER_TENANT = "9a8b7c6d-5e4f-4a3b-8c2d-1e0f9a8b7c6d"
ACCOUNT_ID = f"/subscriptions/{SUB}/resourceGroups/rg-data/providers/Microsoft.DocumentDB/databaseAccounts/orders"
VAULT_ID = f"/subscriptions/{SUB}/resourceGroups/rg-keys/providers/Microsoft.KeyVault/vaults/kv-cmk"
IDENTITY_ID = (
    f"/subscriptions/{SUB}/resourceGroups/rg-data/providers/Microsoft.ManagedIdentity/userAssignedIdentities/id-cmk"
)
KEY_URI = "https://kv-cmk.vault.azure.net/keys/cosmos-cmk"
KEY_VERSION = "0123456789abcdef0123456789abcdef"
AS_OF = "2026-06-01T00:00:00+00:00"
AS_OF_EPOCH = 1_780_272_000  # AS_OF in seconds
REFUSAL = (
    "AuthorizationFailed: The client '11111111-0000-0000-0000-000000000001' with object id "
    "'11111111-0000-0000-0000-000000000001' does not have authorization to perform action '{action}' over scope "
    "'{scope}' or the scope is invalid."
)


def account(**changes: Any) -> AccountFacts:
    facts: AccountFacts = {
        "id": ACCOUNT_ID,
        "name": "orders",
        "location": "westeurope",
        "tags": {},
        "kind": "GlobalDocumentDB",
        "provisioningState": "Succeeded",
        "capabilities": [],
        "backupType": "Periodic",
        "backupMigrationInProgress": False,
        "keyVaultKeyUri": None,
        "keyVaultKeyUriVersion": None,
        "customerManagedKeyStatus": None,
        "defaultIdentity": "FirstPartyIdentity",
        "identityType": "None",
        "systemPrincipalId": None,
        "identityTenantId": None,
        "userAssignedIdentities": {},
        "documentEndpoint": "https://orders.documents.azure.com:443/",
        "enableAnalyticalStorage": False,
        "enableMaterializedViews": False,
        "enableAllVersionsAndDeletesChangeFeed": False,
        "materializedViewsBuilder": False,
    }
    return {**facts, **changes}  # type: ignore[typeddict-item]


def vault(**changes: Any) -> VaultFacts:
    facts: VaultFacts = {
        "id": VAULT_ID,
        "name": "kv-cmk",
        "tenantId": TENANT,
        "permissionModel": "accessPolicy",
        "softDeleteEnabled": True,
        "purgeProtectionEnabled": True,
        "publicNetworkAccess": "Enabled",
        "networkDefaultAction": "Allow",
        "networkBypass": "AzureServices",
        "accessPolicies": [],
    }
    return {**facts, **changes}  # type: ignore[typeddict-item]


def lookup(found: VaultFacts | None, **changes: Any) -> VaultLookup:
    facts: VaultLookup = {
        "vault": found,
        "vaultSubscriptionTenantId": TENANT if found is not None else None,
        "accountSubscriptionTenantId": TENANT,
        "searched": None,
        "unsearched": [],
    }
    return {**facts, **changes}  # type: ignore[typeddict-item]


def key(**changes: Any) -> KeyFacts:
    facts: KeyFacts = {
        "name": "cosmos-cmk",
        "kty": "RSA",
        "keySize": 3072,
        "keyOps": ["encrypt", "decrypt", "wrapKey", "unwrapKey"],
        "enabled": True,
        "notBefore": None,
        "expires": None,
        "keyUri": KEY_URI,
        "keyUriWithVersion": f"{KEY_URI}/{KEY_VERSION}",
        "version": KEY_VERSION,
    }
    return {**facts, **changes}  # type: ignore[typeddict-item]


def uami(**changes: Any) -> IdentityFacts:
    facts: IdentityFacts = {"id": IDENTITY_ID, "principalId": "p-1", "clientId": "c-1", "tenantId": TENANT}
    return {**facts, **changes}  # type: ignore[typeddict-item]


def found(facts: Any) -> Read[Any]:
    return {"outcome": "found", "facts": facts, "refusal": None}


NOT_FOUND: Read[Any] = {"outcome": "notFound", "facts": None, "refusal": None}


def forbidden(action: str, scope: str) -> Read[Any]:
    return {"outcome": "forbidden", "facts": None, "refusal": REFUSAL.format(action=action, scope=scope)}


def scan(status: str = "scanned", **changes: Any) -> DocumentIdScan:
    facts: DocumentIdScan = {
        "status": "scanned",
        "offendingId": None,
        "containersTotal": 2,
        "containersScanned": 2,
        "requestCharge": 14.8,
        "elapsedSeconds": 0.4,
        "throttledResponses": 0,
        "detail": "2 container(s) scanned, 15 RU in 0 s",
    }
    return {**facts, "status": status, **changes}  # type: ignore[typeddict-item]


def snapshot(**changes: Any) -> PreflightSnapshot:
    """A ready account (periodic backup, system-assigned identity planned) unless `changes` say otherwise."""
    facts: PreflightSnapshot = {
        "accountId": ACCOUNT_ID,
        "keyUri": KEY_URI,
        "requestedIdentity": None,
        "asOf": AS_OF,
        "account": found(account()),
        "vault": lookup(vault()),
        "key": found(key()),
        "identity": None,
        "documentIds": scan(),
    }
    return {**facts, **changes}  # type: ignore[typeddict-item]


def only_account(read: Read[AccountFacts]) -> PreflightSnapshot:
    """What is read of an account that alone decides the verdict: nothing else."""
    return snapshot(account=read, vault=None, key=None, identity=None, documentIds=None)


@dataclass(frozen=True)
class Rule:
    code: Code
    case: str
    facts: PreflightSnapshot
    says: tuple[str, ...]  # what the finding's message must tell the user
    blocks: bool = True


CONTINUOUS_WITH_IDENTITY = account(
    backupType="Continuous",
    identityType="UserAssigned",
    userAssignedIdentities={IDENTITY_ID: {"principalId": "p-1", "clientId": "c-1"}},
)
ACCOUNT_SCOPE = "Microsoft.DocumentDB/databaseAccounts/read"
IDENTITY_SCOPE = "Microsoft.ManagedIdentity/userAssignedIdentities/read"
KEY_READ = "Microsoft.KeyVault/vaults/keys/read"

RULES = [
    Rule(Code.ACCOUNT_NOT_FOUND, "missing", only_account(NOT_FOUND), (ACCOUNT_ID, "was not found")),
    Rule(
        Code.ACCOUNT_NOT_FOUND,
        "unreadable",
        only_account(forbidden(ACCOUNT_SCOPE, ACCOUNT_ID)),
        (f"This app cannot read account {ACCOUNT_ID}", ACCOUNT_SCOPE, "AuthorizationFailed"),
    ),
    Rule(
        Code.ACCOUNT_BUSY,
        "updating",
        snapshot(account=found(account(provisioningState="Updating"))),
        ("orders is Updating", "wait until its current operation ends"),
    ),
    Rule(
        Code.ACCOUNT_BUSY,
        "backup migration",
        snapshot(account=found(account(backupMigrationInProgress=True))),
        ("orders is migrating its backup policy",),
    ),
    Rule(
        Code.CASSANDRA_NOT_SUPPORTED,
        "cassandra",
        snapshot(account=found(account(capabilities=["EnableCassandra"]))),
        ("Apache Cassandra",),
    ),
    Rule(
        Code.VECTOR_SEARCH_NOT_SUPPORTED,
        "vector search",
        snapshot(account=found(account(capabilities=["EnableNoSQLVectorSearch"]))),
        ("vector search",),
    ),
    Rule(
        Code.MATERIALIZED_VIEWS_NOT_SUPPORTED,
        "flag",
        snapshot(account=found(account(enableMaterializedViews=True))),
        ("materialized views",),
    ),
    Rule(
        Code.MATERIALIZED_VIEWS_NOT_SUPPORTED,
        "builder service",
        snapshot(account=found(account(materializedViewsBuilder=True))),
        ("materialized views",),
    ),
    Rule(
        Code.ALL_VERSIONS_AND_DELETES_CHANGE_FEED_NOT_SUPPORTED,
        "full fidelity",
        snapshot(account=found(account(enableAllVersionsAndDeletesChangeFeed=True))),
        ("all versions and deletes",),
    ),
    Rule(
        Code.ACCOUNT_FEATURES_UNKNOWN,
        "preview unanswered",
        snapshot(account=found(account(enableMaterializedViews=None, enableAllVersionsAndDeletesChangeFeed=None))),
        ("enableMaterializedViews) or all versions", "enableAllVersionsAndDeletesChangeFeed", "portal"),
        blocks=False,
    ),
    Rule(
        Code.DOCUMENT_ID_TOO_LONG,
        "offender",
        snapshot(
            documentIds=scan(
                "found", offendingId={"container": "appdb/orders", "bytes": 1004, "characters": 1001}, detail="x"
            )
        ),
        ("appdb/orders", "1004 bytes", "1001 characters", "990 bytes"),
    ),
    Rule(
        Code.DOCUMENT_ID_SCAN_UNAVAILABLE,
        "throttled",
        snapshot(documentIds=scan("unavailable", detail="throttled (429) by the account 11 time(s)")),
        ("throttled (429) by the account 11 time(s)", "990 bytes"),
        blocks=False,
    ),
    Rule(
        Code.CONTINUOUS_BACKUP_NEEDS_USER_ASSIGNED_IDENTITY,
        "no user-assigned identity",
        snapshot(account=found(account(backupType="Continuous"))),
        ("continuous backup", "identity=<user-assigned identity id>"),
    ),
    Rule(
        Code.ALREADY_ENABLED,
        "same key, other spelling",
        only_account(found(account(keyVaultKeyUri="https://KV-CMK.vault.azure.net:443/keys/cosmos-cmk/"))),
        ("already uses this key", "nothing to do"),
    ),
    Rule(
        Code.DIFFERENT_KEY_CONFIGURED,
        "another key",
        only_account(found(account(keyVaultKeyUri="https://kv-old.vault.azure.net/keys/cosmos-cmk"))),
        ("https://kv-old.vault.azure.net/keys/cosmos-cmk", "key rotation"),
    ),
    Rule(
        Code.ENCRYPTION_IN_PROGRESS,
        "this key, still encrypting",
        only_account(found(account(keyVaultKeyUri=KEY_URI, provisioningState="Updating"))),
        ("already has this key and is Updating", "follows that encryption"),
    ),
    Rule(
        Code.VAULT_NOT_FOUND,
        "anywhere readable",
        snapshot(vault=lookup(None), key=None),
        ("Key Vault kv-cmk was not found in any subscription this app can read", "infra/fleet-access"),
    ),
    Rule(
        Code.VAULT_NOT_FOUND,
        "narrowed, one subscription unreadable",
        snapshot(vault=lookup(None, searched=[SUB, KEYS_SUB], unsearched=[KEYS_SUB]), key=None),
        (f"CMK_KEY_VAULT_SUBSCRIPTIONS ({SUB}, {KEYS_SUB})", f"Could not search subscription(s) {KEYS_SUB}."),
    ),
    Rule(
        Code.KEY_IN_ANOTHER_TENANT,
        "delegated subscription",
        snapshot(vault=lookup(vault(tenantId=OTHER_TENANT), vaultSubscriptionTenantId=OTHER_TENANT)),
        (f"belongs to tenant {OTHER_TENANT} (the tenant of its subscription)", f"account's tenant {TENANT}"),
    ),
    Rule(
        Code.KEY_IN_ANOTHER_TENANT,
        "vault moved tenants",
        snapshot(vault=lookup(vault(tenantId=OTHER_TENANT))),
        (f"belongs to tenant {OTHER_TENANT} (the tenant its callers authenticate against, properties.tenantId)",),
    ),
    Rule(
        Code.VAULT_SOFT_DELETE_DISABLED,
        "soft delete off",
        snapshot(vault=lookup(vault(softDeleteEnabled=False))),
        ("kv-cmk does not have soft delete enabled",),
    ),
    Rule(
        Code.VAULT_PURGE_PROTECTION_DISABLED,
        "purge protection off",
        snapshot(vault=lookup(vault(purgeProtectionEnabled=False))),
        ("purge protection", "--enable-purge-protection true"),
    ),
    Rule(
        Code.VAULT_NETWORK_BLOCKS_COSMOS,
        "public access disabled",
        snapshot(vault=lookup(vault(publicNetworkAccess="Disabled"))),
        ("kv-cmk is not reachable by Cosmos DB", "private endpoints"),
    ),
    Rule(
        Code.VAULT_NETWORK_BLOCKS_COSMOS,
        "firewall without the trusted-services bypass",
        snapshot(vault=lookup(vault(networkDefaultAction="Deny", networkBypass="None"))),
        ("Allow trusted Microsoft services to bypass this firewall",),
    ),
    Rule(
        Code.KEY_NOT_FOUND,
        "no such key",
        snapshot(key=NOT_FOUND),
        (f"Key {KEY_URI} was not found in Key Vault kv-cmk.",),
    ),
    Rule(
        Code.KEY_NOT_FOUND,
        "key unreadable",
        snapshot(key=forbidden(KEY_READ, KEY_URI)),
        (f"This app cannot read key {KEY_URI} through ARM", KEY_READ),
    ),
    Rule(Code.KEY_DISABLED, "disabled", snapshot(key=found(key(enabled=False))), ("cosmos-cmk is disabled",)),
    Rule(
        Code.KEY_EXPIRED,
        "expired at the moment judged",
        snapshot(key=found(key(expires=AS_OF_EPOCH))),
        ("cosmos-cmk expired at 2026-06-01T00:00:00+00:00",),
    ),
    Rule(
        Code.KEY_NOT_YET_VALID,
        "valid from a second later",
        snapshot(key=found(key(notBefore=AS_OF_EPOCH + 1))),
        ("not valid before 2026-06-01T00:00:01+00:00",),
    ),
    Rule(
        Code.KEY_TYPE_UNSUPPORTED,
        "elliptic curve",
        snapshot(key=found(key(kty="EC", keySize=None))),
        ("cosmos-cmk is EC;", "RSA or RSA-HSM key of at least 2048 bits"),
    ),
    Rule(
        Code.KEY_TYPE_UNSUPPORTED,
        "RSA too small",
        snapshot(key=found(key(kty="RSA", keySize=1024))),
        ("cosmos-cmk is RSA 1024;",),
    ),
    Rule(
        Code.KEY_OPERATIONS_MISSING,
        "sign only",
        snapshot(key=found(key(keyOps=["sign", "verify"]))),
        ("does not permit unwrapKey, wrapKey",),
    ),
    Rule(
        Code.KEY_URI_VERSIONED,
        "versioned URI",
        snapshot(keyUri=f"{KEY_URI}/{KEY_VERSION}"),
        (f"names version {KEY_VERSION}", f"versionless URI {KEY_URI}"),
        blocks=False,
    ),
    Rule(
        Code.IDENTITY_NOT_FOUND,
        "requested identity missing",
        snapshot(requestedIdentity=IDENTITY_ID, identity=NOT_FOUND),
        (f"User-assigned identity {IDENTITY_ID} was not found.",),
    ),
    Rule(
        Code.IDENTITY_NOT_FOUND,
        "account's identity unreadable",
        snapshot(account=found(CONTINUOUS_WITH_IDENTITY), identity=forbidden(IDENTITY_SCOPE, IDENTITY_ID)),
        (f"This app cannot read identity {IDENTITY_ID}", IDENTITY_SCOPE),
    ),
]


# Findings the account orchestration adds after preflight, tested where they arise.
NOT_PREFLIGHT = {Code.THROUGHPUT_RAISE_NOT_POSSIBLE}  # tests/cmk/test_throughput_planning.py, test_throughput_raise.py


def test_every_finding_code_has_a_rule_test() -> None:
    untested = sorted(set(Code) - {rule.code for rule in RULES} - NOT_PREFLIGHT)
    assert untested == [], f"finding codes without a rule test in RULES: {', '.join(untested)}"


@pytest.mark.parametrize("rule", RULES, ids=[f"{rule.code.value}-{rule.case}" for rule in RULES])
def test_each_rule_reports_its_finding_alone(rule: Rule) -> None:
    result = evaluate(rule.facts)
    # Each snapshot differs from a ready account by one fact, so the finding it triggers is the only one.
    assert [(f["code"], f["severity"]) for f in result["findings"]] == [
        (rule.code.value, "blocking" if rule.blocks else "warning")
    ]
    message = result["findings"][0]["message"]
    for told in rule.says:
        assert told in message
    assert result["blocked"] is rule.blocks
    assert (result["plan"] is None) is rule.blocks


def test_a_ready_account_gets_the_plan_and_no_finding() -> None:
    result = evaluate(snapshot())
    assert result == {
        "accountId": ACCOUNT_ID,
        "findings": [],
        "blocked": False,
        "plan": {
            "accountId": ACCOUNT_ID,
            "keyUri": KEY_URI,
            "identity": {"type": "SystemAssigned"},
            "defaultIdentity": "SystemAssignedIdentity",
            "vault": {"id": VAULT_ID, "permissionModel": "accessPolicy", "tenantId": TENANT},
        },
        "account": {
            "kind": "GlobalDocumentDB",
            "location": "westeurope",
            "backupType": "Periodic",
            "provisioningState": "Succeeded",
            "keyVaultKeyUri": None,
            "customerManagedKeyStatus": None,
        },
        "documentIds": scan(),
    }


def test_the_plan_names_the_identity_as_arm_reported_it() -> None:
    lower_cased = IDENTITY_ID.lower()
    result = evaluate(snapshot(requestedIdentity=lower_cased, identity=found(uami())))
    assert result["plan"] is not None
    assert result["plan"]["identity"] == {"type": "UserAssigned", "resourceId": IDENTITY_ID, "principalId": "p-1"}
    assert result["plan"]["defaultIdentity"] == f"UserAssignedIdentity={IDENTITY_ID}"


@pytest.mark.parametrize(
    ("facts", "planned"),
    [
        (CONTINUOUS_WITH_IDENTITY, IDENTITY_ID),  # its only user-assigned identity
        (account(defaultIdentity=f"UserAssignedIdentity={IDENTITY_ID}"), IDENTITY_ID),  # the default it already has
    ],
)
def test_the_account_s_own_user_assigned_identity_is_planned(facts: AccountFacts, planned: str) -> None:
    result = evaluate(snapshot(account=found(facts), identity=found(uami())))
    assert result["findings"] == []
    assert result["plan"] is not None and result["plan"]["identity"]["resourceId"] == planned


def test_several_problems_are_reported_together_in_rule_order() -> None:
    result = evaluate(
        snapshot(
            keyUri=f"{KEY_URI}/{KEY_VERSION}",
            account=found(
                account(
                    provisioningState="Updating",
                    capabilities=["EnableCassandra"],
                    backupType="Continuous",
                    enableMaterializedViews=None,
                )
            ),
            vault=lookup(vault(purgeProtectionEnabled=False, publicNetworkAccess="Disabled")),
            key=found(key(enabled=False, kty="EC", keySize=256)),
            documentIds=None,
        )
    )
    assert [(f["code"], f["severity"]) for f in result["findings"]] == [
        ("ACCOUNT_BUSY", "blocking"),
        ("CASSANDRA_NOT_SUPPORTED", "blocking"),
        ("ACCOUNT_FEATURES_UNKNOWN", "warning"),
        ("VAULT_PURGE_PROTECTION_DISABLED", "blocking"),
        ("VAULT_NETWORK_BLOCKS_COSMOS", "blocking"),
        ("KEY_URI_VERSIONED", "warning"),
        ("KEY_DISABLED", "blocking"),
        ("KEY_TYPE_UNSUPPORTED", "blocking"),
        ("CONTINUOUS_BACKUP_NEEDS_USER_ASSIGNED_IDENTITY", "blocking"),
    ]
    assert result["blocked"] and result["plan"] is None


@pytest.mark.parametrize(
    "ready",
    [
        key(expires=AS_OF_EPOCH + 1),  # still valid at the moment judged
        key(notBefore=AS_OF_EPOCH),  # valid from that very second
        key(kty="RSA-HSM", keySize=2048),  # the smallest size Cosmos DB takes
        key(keyOps=None),  # no restriction: every operation permitted
        key(keySize=None),  # a size Key Vault did not report is not a refusal
    ],
)
def test_keys_on_the_right_side_of_each_limit_pass(ready: KeyFacts) -> None:
    assert evaluate(snapshot(key=found(ready)))["findings"] == []


@pytest.mark.parametrize(
    "reachable",
    [
        vault(networkDefaultAction="Deny", networkBypass="AzureServices"),
        vault(publicNetworkAccess=None, networkDefaultAction=None, networkBypass=None),  # older api-versions
    ],
)
def test_vaults_cosmos_db_can_reach_pass(reachable: VaultFacts) -> None:
    assert evaluate(snapshot(vault=lookup(reachable)))["findings"] == []


def test_the_account_s_identity_tenant_decides_the_home_tenant() -> None:
    """An identity of the vault's tenant is at home there, whatever the graph said of the account's subscription."""
    facts = snapshot(
        account=found(account(identityTenantId=OTHER_TENANT)),
        vault=lookup(vault(tenantId=OTHER_TENANT), vaultSubscriptionTenantId=OTHER_TENANT),
    )
    assert evaluate(facts)["findings"] == []


def test_an_account_on_a_key_needs_nothing_else_read() -> None:
    on_a_key = only_account(found(account(keyVaultKeyUri=KEY_URI)))
    assert not reads_past_the_account(on_a_key)
    assert not reads_past_the_account(only_account(NOT_FOUND))
    assert not reads_past_the_account(only_account(forbidden(ACCOUNT_SCOPE, ACCOUNT_ID)))
    assert reads_past_the_account(only_account(found(account())))


def test_the_document_id_scan_is_worth_its_request_units_only_when_nothing_else_blocks() -> None:
    assert worth_scanning(snapshot(documentIds=None))
    assert worth_scanning(snapshot(documentIds=None, keyUri=f"{KEY_URI}/{KEY_VERSION}"))  # a warning only
    assert not worth_scanning(snapshot(documentIds=None, key=found(key(enabled=False))))
    assert not worth_scanning(only_account(found(account(keyVaultKeyUri=KEY_URI))))


def test_a_snapshot_without_the_facts_its_verdict_needs_is_refused() -> None:
    with pytest.raises(ValueError, match="vault lookup"):
        evaluate(snapshot(vault=None))
    with pytest.raises(ValueError, match="read of its key"):
        evaluate(snapshot(key=None))
    with pytest.raises(ValueError, match="read of identity"):
        evaluate(snapshot(requestedIdentity=IDENTITY_ID, identity=None))


def test_a_snapshot_survives_json_with_the_same_verdict() -> None:
    for rule in RULES:
        stored = json.loads(json.dumps(rule.facts))
        assert stored == rule.facts
        assert evaluate(stored) == evaluate(rule.facts)
