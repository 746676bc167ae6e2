"""The Azure cloud the app runs in (AZURE_CLOUD): its endpoints, token audience and DNS suffixes.

One setting chooses them all, so an app deployed in Azure Government or Azure China talks to that cloud's ARM with
that cloud's token audience and accepts only that cloud's key URIs. Sources, per value:

- ARM endpoint and credential scope: azure-mgmt-core 1.6 `azure.mgmt.core.tools.get_arm_endpoints` (the SDK's own
  table of `resource_manager` and `credential_scopes` per AzureClouds value), read from it.
- Sign-in authority: azure-identity's `AzureAuthorityHosts`.
- Key Vault and Managed HSM DNS suffixes: azure-cli `azure/cli/core/cloud.py` (`keyvault_dns`, `mhsm_dns` of
  AzureCloud, AzureUSGovernment, AzureChinaCloud), which are the hosts Key Vault documents per cloud.
- Cosmos DB data-plane suffix: "Azure Government: compare to global Azure" (documents.azure.com ->
  documents.azure.us) and "Azure China developer guide" (documents.azure.cn); the same values as go-autorest's
  `CosmosDBDNSSuffix` per environment.
- Resource Graph and Azure Monitor metrics are ARM extensions (`{arm}/providers/Microsoft.ResourceGraph/resources`,
  `{arm}{resourceId}/providers/Microsoft.Insights/metrics`), so they follow the ARM endpoint in every cloud.

ARM_ENDPOINT, when set, overrides the cloud's ARM endpoint (the local simulator); the cloud still chooses the token
audience and the suffixes, so the simulator can answer as any cloud.
"""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import urlsplit

from azure.core import AzureClouds
from azure.identity import AzureAuthorityHosts
from azure.mgmt.core.tools import get_arm_endpoints

from cmk import settings


@dataclass(frozen=True)
class Cloud:
    name: str
    arm_endpoint: str
    arm_scope: str  # what management clients ask the credential for: the ARM token audience + "/.default"
    key_vault_suffix: str  # <vault>.<suffix>
    managed_hsm_suffix: str  # <hsm>.<suffix>
    cosmos_suffix: str  # <account>.<suffix>, the data plane
    authority_host: str  # Microsoft Entra sign-in (azure.identity.AzureAuthorityHosts)

    @property
    def key_vault_example(self) -> str:
        return f"https://<vault>.{self.key_vault_suffix}/keys/<name>"

    def owns_key_host(self, host: str) -> bool:
        host = host.lower()
        return host.endswith("." + self.key_vault_suffix) or host.endswith("." + self.managed_hsm_suffix)


# The SDKs' own tables give the ARM endpoint and token audience (azure-mgmt-core) and the sign-in authority
# (azure-identity) of each cloud; the suffixes are Key Vault's, Managed HSM's (azure-cli) and Cosmos DB's.
_SDK_CLOUDS = {
    "AzureCloud": (AzureClouds.AZURE_PUBLIC_CLOUD, AzureAuthorityHosts.AZURE_PUBLIC_CLOUD),
    "AzureUSGovernment": (AzureClouds.AZURE_US_GOVERNMENT, AzureAuthorityHosts.AZURE_GOVERNMENT),
    "AzureChinaCloud": (AzureClouds.AZURE_CHINA_CLOUD, AzureAuthorityHosts.AZURE_CHINA),
}
_SUFFIXES = {
    "AzureCloud": ("vault.azure.net", "managedhsm.azure.net", "documents.azure.com"),
    "AzureUSGovernment": ("vault.usgovcloudapi.net", "managedhsm.usgovcloudapi.net", "documents.azure.us"),
    "AzureChinaCloud": ("vault.azure.cn", "managedhsm.azure.cn", "documents.azure.cn"),
}


def _cloud(name: str) -> Cloud:
    sdk_cloud, authority_host = _SDK_CLOUDS[name]
    arm = get_arm_endpoints(sdk_cloud)
    key_vault_suffix, managed_hsm_suffix, cosmos_suffix = _SUFFIXES[name]
    return Cloud(
        name=name,
        arm_endpoint=str(arm["resource_manager"]).rstrip("/"),
        arm_scope=str(arm["credential_scopes"][0]),
        key_vault_suffix=key_vault_suffix,
        managed_hsm_suffix=managed_hsm_suffix,
        cosmos_suffix=cosmos_suffix,
        authority_host=authority_host,
    )


CLOUDS: dict[str, Cloud] = {name.lower(): _cloud(name) for name in _SDK_CLOUDS}


def current() -> Cloud:
    """The cloud AZURE_CLOUD names (case-insensitive). Bicep's environment().name gives exactly these names."""
    name = settings.get_str("AZURE_CLOUD")
    cloud = CLOUDS.get(name.lower())
    if cloud is None:
        known = ", ".join(c.name for c in CLOUDS.values())
        raise ValueError(f"App setting AZURE_CLOUD={name!r} is not a cloud this app knows: {known}.")
    return cloud


def arm_endpoint() -> str:
    """Where ARM (and so Resource Graph and metrics) is: ARM_ENDPOINT when set, else the cloud's."""
    return (settings.get_str("ARM_ENDPOINT") or current().arm_endpoint).rstrip("/")


def cloud_of_key_host(host: str) -> Cloud | None:
    """The cloud whose Key Vault or Managed HSM domain holds `host`, if any."""
    return next((cloud for cloud in CLOUDS.values() if cloud.owns_key_host(host)), None)


def data_plane_in_cloud(endpoint: str | None) -> bool:
    """Whether a Cosmos DB data-plane endpoint belongs to this cloud, so the app may send it its token.

    Its host is in the cloud's Cosmos DB domain, or it is served by the ARM endpoint's own host (ARM_ENDPOINT's
    override: the local simulator serves both).
    """
    if not endpoint:
        return False
    host = (urlsplit(endpoint).hostname or "").lower()
    if host.endswith("." + current().cosmos_suffix):
        return True
    return host == (urlsplit(arm_endpoint()).hostname or "").lower() and bool(settings.get_str("ARM_ENDPOINT"))
