"""The Azure Resource Manager actions this app performs, each with the reason it needs it.

The custom role in infra/ must grant exactly these (a contract test checks it both ways), and the tests check
against the simulator's request log that the code performs exactly these and nothing else.
"""

from __future__ import annotations

# The opt-in throughput raise (cmk.throughput): each API's databases and containers, and their throughput.
_THROUGHPUT_LIST = "list databases and containers for a throughput raise (opt-in)"
_THROUGHPUT_READ = "record throughput before a raise, check it before each write"
_THROUGHPUT_WRITE = "raise throughput before the key PATCH and restore it after (opt-in)"

REQUIRED_ARM_ACTIONS: dict[str, str] = {
    "Microsoft.DocumentDB/databaseAccounts/read": "read accounts for preflight, monitoring and verification",
    "Microsoft.DocumentDB/databaseAccounts/write": "PATCH identity, defaultIdentity and keyVaultKeyUri",
    "Microsoft.DocumentDB/databaseAccounts/services/read": "detect the materialized views builder service",
    "Microsoft.DocumentDB/locations/operationsStatus/read": "follow the Azure-AsyncOperation of each PATCH",
    "Microsoft.KeyVault/vaults/read": "find the key's vault and check soft delete, purge protection and network",
    "Microsoft.KeyVault/vaults/keys/read": "check the key's type, size, state and operations",
    "Microsoft.KeyVault/vaults/keys/versions/read": "check a versioned key URI's version",
    "Microsoft.KeyVault/vaults/accessPolicies/write": "grant the account's identity get/wrapKey/unwrapKey",
    "Microsoft.Authorization/roleAssignments/read": "find an existing Key Vault role assignment before adding one",
    "Microsoft.Authorization/roleAssignments/write": "assign Key Vault Crypto Service Encryption User (RBAC vaults)",
    "Microsoft.ManagedIdentity/userAssignedIdentities/read": "check a user-assigned identity exists",
    "Microsoft.ManagedIdentity/userAssignedIdentities/assign/action": "attach a user-assigned identity to an account",
    "Microsoft.ResourceGraph/resources/read": (
        "discover the accounts of a rollout scope; find a key's vault by name in every readable subscription"
    ),
    "Microsoft.Insights/metrics/read": "estimate each account's encryption time (data size, spare throughput)",
    "Microsoft.DocumentDB/databaseAccounts/sqlDatabases/read": _THROUGHPUT_LIST,
    "Microsoft.DocumentDB/databaseAccounts/sqlDatabases/containers/read": _THROUGHPUT_LIST,
    "Microsoft.DocumentDB/databaseAccounts/sqlDatabases/throughputSettings/read": _THROUGHPUT_READ,
    "Microsoft.DocumentDB/databaseAccounts/sqlDatabases/throughputSettings/write": _THROUGHPUT_WRITE,
    "Microsoft.DocumentDB/databaseAccounts/sqlDatabases/containers/throughputSettings/read": _THROUGHPUT_READ,
    "Microsoft.DocumentDB/databaseAccounts/sqlDatabases/containers/throughputSettings/write": _THROUGHPUT_WRITE,
    "Microsoft.DocumentDB/databaseAccounts/mongodbDatabases/read": _THROUGHPUT_LIST,
    "Microsoft.DocumentDB/databaseAccounts/mongodbDatabases/collections/read": _THROUGHPUT_LIST,
    "Microsoft.DocumentDB/databaseAccounts/mongodbDatabases/throughputSettings/read": _THROUGHPUT_READ,
    "Microsoft.DocumentDB/databaseAccounts/mongodbDatabases/throughputSettings/write": _THROUGHPUT_WRITE,
    "Microsoft.DocumentDB/databaseAccounts/mongodbDatabases/collections/throughputSettings/read": _THROUGHPUT_READ,
    "Microsoft.DocumentDB/databaseAccounts/mongodbDatabases/collections/throughputSettings/write": _THROUGHPUT_WRITE,
    "Microsoft.DocumentDB/databaseAccounts/gremlinDatabases/read": _THROUGHPUT_LIST,
    "Microsoft.DocumentDB/databaseAccounts/gremlinDatabases/graphs/read": _THROUGHPUT_LIST,
    "Microsoft.DocumentDB/databaseAccounts/gremlinDatabases/throughputSettings/read": _THROUGHPUT_READ,
    "Microsoft.DocumentDB/databaseAccounts/gremlinDatabases/throughputSettings/write": _THROUGHPUT_WRITE,
    "Microsoft.DocumentDB/databaseAccounts/gremlinDatabases/graphs/throughputSettings/read": _THROUGHPUT_READ,
    "Microsoft.DocumentDB/databaseAccounts/gremlinDatabases/graphs/throughputSettings/write": _THROUGHPUT_WRITE,
    "Microsoft.DocumentDB/databaseAccounts/tables/read": _THROUGHPUT_LIST,
    "Microsoft.DocumentDB/databaseAccounts/tables/throughputSettings/read": _THROUGHPUT_READ,
    "Microsoft.DocumentDB/databaseAccounts/tables/throughputSettings/write": _THROUGHPUT_WRITE,
}

# Role assignments are only ever written on key vaults, so that action is granted at vault scope only.
ROLE_ASSIGNMENT_WRITE_SCOPE = "Microsoft.KeyVault/vaults"
