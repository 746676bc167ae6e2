"""The Azure cloud the app runs in (AZURE_CLOUD): its endpoints, token audience and DNS suffixes.

One setting chooses them all, so an app deployed in Azure Government or Azure China talks to that cloud's ARM with
that cloud's token audience and accepts only that cloud's key URIs. Sources, per value:

- ARM endpoint and credential scope: azure-mgmt-core 1.6 `azure.mgmt.core.tools.get_arm_endpoints` (the SDK's own
  table of `resource_manager` and `credential_scopes` per AzureClouds value).
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


AZURE_CLOUD = Cloud(
    name="AzureCloud",
    arm_endpoint="https://management.azure.com",
    arm_scope="https://management.azure.com/.default",
    key_vault_suffix="vault.azure.net",
    managed_hsm_suffix="managedhsm.azure.net",
    cosmos_suffix="documents.azure.com",
    authority_host="login.microsoftonline.com",
)
AZURE_US_GOVERNMENT = Cloud(
    name="AzureUSGovernment",
    arm_endpoint="https://management.usgovcloudapi.net",
    arm_scope="https://management.core.usgovcloudapi.net/.default",
    key_vault_suffix="vault.usgovcloudapi.net",
    managed_hsm_suffix="managedhsm.usgovcloudapi.net",
    cosmos_suffix="documents.azure.us",
    authority_host="login.microsoftonline.us",
)
AZURE_CHINA_CLOUD = Cloud(
    name="AzureChinaCloud",
    arm_endpoint="https://management.chinacloudapi.cn",
    arm_scope="https://management.chinacloudapi.cn/.default",
    key_vault_suffix="vault.azure.cn",
    managed_hsm_suffix="managedhsm.azure.cn",
    cosmos_suffix="documents.azure.cn",
    authority_host="login.chinacloudapi.cn",
)
CLOUDS: dict[str, Cloud] = {
    cloud.name.lower(): cloud for cloud in (AZURE_CLOUD, AZURE_US_GOVERNMENT, AZURE_CHINA_CLOUD)
}


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
