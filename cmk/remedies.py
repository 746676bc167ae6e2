"""What an admin does about each preflight finding: the API returns it beside the finding's message, and the
dashboard shows it. Keyed by the stable finding codes (cmk.findings.Code); a code without an entry gets GENERIC."""

from __future__ import annotations

from typing import Any

GENERIC = "Read the message, correct what it names, then start the account again: preflight checks everything anew."

REMEDIES: dict[str, str] = {
    "ACCOUNT_NOT_FOUND": (
        "Check the account id (subscription, resource group, name) and that the app's identity has Reader on the "
        "account, then start it again."
    ),
    "ACCOUNT_BUSY": (
        "Another operation (a failover, a backup-policy migration, a scale change) was running on the account. "
        "Let it finish, then start the account again; raise CMK_BUSY_WAIT_HOURS to wait longer by itself."
    ),
    "CASSANDRA_NOT_SUPPORTED": (
        "Azure cannot add a customer-managed key to an existing API for Cassandra account: create a new account "
        "with the key and migrate the data to it."
    ),
    "MATERIALIZED_VIEWS_NOT_SUPPORTED": (
        "Remove the materialized views and the MaterializedViewsBuilder service (or wait until Azure supports "
        "them with CMK), then start the account again."
    ),
    "ALL_VERSIONS_AND_DELETES_CHANGE_FEED_NOT_SUPPORTED": (
        "Turn off the all-versions-and-deletes change feed on the account, then start it again."
    ),
    "VECTOR_SEARCH_NOT_SUPPORTED": (
        "Azure cannot enable CMK on an existing account with vector search: create a new account with the key "
        "and migrate the data, or wait until Azure supports it."
    ),
    "DOCUMENT_ID_TOO_LONG": (
        "Rewrite or delete the documents whose id is over 990 bytes (the message names the container); Azure's "
        "encryption fails on them. Then start the account again."
    ),
    "DOCUMENT_ID_SCAN_UNAVAILABLE": (
        "Nothing blocks the key, but long ids were not ruled out: give the app Cosmos DB Built-in Data Reader, "
        "open the account's firewall to it, or raise CMK_DOCUMENT_ID_SCAN_SECONDS; Azure's own scan still guards."
    ),
    "CONTINUOUS_BACKUP_NEEDS_USER_ASSIGNED_IDENTITY": (
        "Continuous-backup accounts need a user-assigned identity: start again with "
        '"identity": the identity\'s resource id (it needs get, wrapKey and unwrapKey on the key).'
    ),
    "ALREADY_ENABLED": "Nothing to do: the account already uses this key.",
    "DIFFERENT_KEY_CONFIGURED": (
        "The account already uses another key. Changing keys is key rotation, which this tool does not do: "
        "rotate it in the account's settings, or start again with the key it has."
    ),
    "VAULT_NOT_FOUND": (
        "Check the key URI's vault name; a vault in another subscription must be listed in "
        "CMK_KEY_VAULT_SUBSCRIPTIONS and readable by the app."
    ),
    "KEY_IN_ANOTHER_TENANT": (
        "The key's vault is in another Microsoft Entra tenant: use a key from a vault in the account's tenant."
    ),
    "VAULT_SOFT_DELETE_DISABLED": "Turn soft delete on for the vault (Cosmos DB requires it), then start again.",
    "VAULT_PURGE_PROTECTION_DISABLED": (
        "Turn purge protection on for the vault (it cannot be turned off again; Cosmos DB requires it), then "
        "start the account again."
    ),
    "VAULT_NETWORK_BLOCKS_COSMOS": (
        "Let Azure Cosmos DB reach the vault: allow trusted Microsoft services through the vault's firewall, or "
        "enable public access, then start again."
    ),
    "KEY_NOT_FOUND": "Check the key name in the URI, or create the key in the vault, then start again.",
    "KEY_DISABLED": "Enable the key in the vault (or choose an enabled one), then start again.",
    "KEY_EXPIRED": "Set a later expiry on the key or create a new version, then start again.",
    "KEY_NOT_YET_VALID": "Wait until the key's activation date, or change it, then start again.",
    "KEY_TYPE_UNSUPPORTED": "Use an RSA or RSA-HSM key of 2048 bits or more.",
    "KEY_OPERATIONS_MISSING": "Allow the wrapKey and unwrapKey operations on the key, then start again.",
    "KEY_URI_VERSIONED": (
        "Nothing blocks the key, but a versioned URI pins the account to that version: prefer the versionless "
        "URI so the key can rotate."
    ),
    "IDENTITY_NOT_FOUND": "Check the user-assigned identity's resource id, or create it, then start again.",
    "THROUGHPUT_RAISE_NOT_POSSIBLE": (
        "Start again without throughputRaise, or with a higher maxRuPerSecond or a factor the account's throughput "
        "allows (the message says which); a serverless account has no throughput to raise."
    ),
    "ENCRYPTION_IN_PROGRESS": "Nothing to do: Azure is already encrypting with this key, and the app follows it.",
    "ACCOUNT_FEATURES_UNKNOWN": (
        "Nothing blocks the key, but some features could not be checked (the message says which): check them in "
        "the portal before approving."
    ),
}


def remedy(code: str) -> str:
    return REMEDIES.get(code, GENERIC)


def with_remedies(findings: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The findings, each with `remedy`: what to do about it."""
    return [{**finding, "remedy": remedy(str(finding.get("code")))} for finding in findings]
