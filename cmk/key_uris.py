"""The key URIs this app accepts: well formed (cmk.resource_ids), and of a vault of the cloud it runs in.

Every entry that takes a key from outside calls `accepted_key_uri`: the enablement request, the key policy (request,
CMK_KEY_POLICY, and an account's policy tag), the rollout request and, through the policy, Event Grid enrolment. So a
key refused here is refused the same way, with the same code and message, wherever it comes from, and before
anything starts (HTTP 400).
"""

from __future__ import annotations

from cmk import clouds
from cmk.errors import InvalidRequest
from cmk.resource_ids import KeyUri, parse_key_uri

KEY_URI_OF_ANOTHER_CLOUD = "KeyUriOfAnotherCloud"
MANAGED_HSM_KEY_NOT_SUPPORTED = "ManagedHsmKeyNotSupported"
# Whether Cosmos DB accepts a Managed HSM key on an EXISTING account could not be confirmed, so this tool, which
# only ever changes existing accounts, refuses them. What Microsoft publishes:
# - "Configure customer-managed keys for your Azure Cosmos DB account with Azure Managed HSM Key Vault"
#   (learn.microsoft.com/azure/cosmos-db/how-to-setup-customer-managed-keys-mhsm) says "Currently, customer-managed
#   keys are available only for new Azure Cosmos DB accounts. You should configure them during account creation.",
#   and every step ends in `az cosmosdb create --key-uri https://<hsm>.managedhsm.azure.net/keys/<name>`.
# - "Configure customer-managed keys for your existing Azure Cosmos DB account with Azure Key Vault"
#   (learn.microsoft.com/azure/cosmos-db/how-to-setup-customer-managed-keys-existing-accounts) covers Key Vault
#   only: vault access policies and `https://<vault>.vault.azure.net/keys/<name>` URIs; Managed HSM is not named.
# - The REST spec (azure-rest-api-specs, cosmos-db DatabaseAccountUpdateProperties.keyVaultKeyUri) says only
#   "The URI of the key vault"; terraform-provider-azurerm's azurerm_cosmosdb_account has managed_hsm_key_id
#   ForceNew (as its key_vault_key_id), so no SDK or tool shows it set on an existing account.
MANAGED_HSM_MESSAGE = (
    "Managed HSM keys (https://<hsm>.managedhsm.azure.net/keys/<name>) are not supported: Microsoft documents them "
    'for Azure Cosmos DB only when an account is created ("Configure customer-managed keys for your Azure Cosmos DB '
    'account with Azure Managed HSM Key Vault": customer-managed keys "are available only for new Azure Cosmos DB '
    'accounts"), and enabling customer-managed keys on an existing account only with Azure Key Vault '
    "(learn.microsoft.com/azure/cosmos-db/how-to-setup-customer-managed-keys-existing-accounts). This tool changes "
    "existing accounts only: use a key of an Azure Key Vault vault."
)
# Refusals that are about the key itself, not the shape of what names it: reported with the same code and message
# wherever the key comes from (a key policy does not wrap them in InvalidKeyPolicy).
KEY_REFUSALS = frozenset({KEY_URI_OF_ANOTHER_CLOUD, MANAGED_HSM_KEY_NOT_SUPPORTED})


def accepted_key_uri(value: object) -> KeyUri:
    """Parse a key URI and refuse one this app cannot use in its cloud (InvalidRequest, HTTP 400)."""
    key = parse_key_uri(value)
    if key.is_managed_hsm:
        raise InvalidRequest(MANAGED_HSM_KEY_NOT_SUPPORTED, MANAGED_HSM_MESSAGE)
    cloud = clouds.current()
    if not cloud.owns_key_host(key.vault_host):
        other = clouds.cloud_of_key_host(key.vault_host)
        of = f"a key of {other.name}" if other is not None else "not a key of any cloud this app knows"
        raise InvalidRequest(
            KEY_URI_OF_ANOTHER_CLOUD,
            f"keyUri {key} is {of}, but this app runs in {cloud.name} (AZURE_CLOUD), whose keys are "
            f"{cloud.key_vault_example}: Cosmos DB accounts use keys of their own cloud only.",
        )
    return key
