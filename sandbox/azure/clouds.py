"""The Azure clouds the simulator can answer as (`simulator.cloud`): ARM token audiences and DNS suffixes.

Answering as a cloud means what a client of that cloud meets: ARM accepts only tokens issued for that cloud's
management audience (401 `InvalidAuthenticationTokenAudience` otherwise, as ARM answers a public-cloud token in
Azure Government), and the world's key URIs, vault URIs and document endpoints carry that cloud's suffixes
(`as_cloud` rewrites a world written for the public cloud). The values are the ones cmk/clouds.py cites: ARM
audiences from azure-mgmt-core `get_arm_endpoints` and azure-cli's cloud table (`management`, `resource_manager`),
Key Vault and Managed HSM suffixes from azure-cli (`keyvault_dns`, `mhsm_dns`), Cosmos DB from Azure Government's
and Azure China's endpoint tables.
"""

from __future__ import annotations

import copy
import json
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class SimulatedCloud:
    name: str
    arm_audiences: frozenset[str]  # without a trailing slash
    key_vault_suffix: str
    managed_hsm_suffix: str
    cosmos_suffix: str


PUBLIC = SimulatedCloud(
    "AzureCloud",
    frozenset({"https://management.azure.com", "https://management.core.windows.net"}),
    "vault.azure.net",
    "managedhsm.azure.net",
    "documents.azure.com",
)
US_GOVERNMENT = SimulatedCloud(
    "AzureUSGovernment",
    frozenset({"https://management.usgovcloudapi.net", "https://management.core.usgovcloudapi.net"}),
    "vault.usgovcloudapi.net",
    "managedhsm.usgovcloudapi.net",
    "documents.azure.us",
)
CHINA = SimulatedCloud(
    "AzureChinaCloud",
    frozenset({"https://management.chinacloudapi.cn", "https://management.core.chinacloudapi.cn"}),
    "vault.azure.cn",
    "managedhsm.azure.cn",
    "documents.azure.cn",
)
CLOUDS = {cloud.name.lower(): cloud for cloud in (PUBLIC, US_GOVERNMENT, CHINA)}


def cloud_named(name: str) -> SimulatedCloud:
    cloud = CLOUDS.get(name.lower())
    if cloud is None:
        raise ValueError(f"unknown cloud {name!r}; known: {', '.join(c.name for c in CLOUDS.values())}")
    return cloud


def audience_error(cloud: SimulatedCloud, audience: str) -> str | None:
    """ARM's refusal message when `audience` is not one of the cloud's management audiences, else None."""
    if audience.rstrip("/") in cloud.arm_audiences:
        return None
    allowed = ",".join(f"'{a}/','{a}'" for a in sorted(cloud.arm_audiences))
    return (
        f"The access token has been obtained for wrong audience or resource '{audience}'. It should exactly match "
        f"with one of the allowed audiences {allowed}."
    )


def as_cloud(world: dict[str, Any], name: str) -> dict[str, Any]:
    """A copy of a public-cloud world as the same resources look in cloud `name`, answered as that cloud.

    Key Vault, Managed HSM and Cosmos DB hosts get the cloud's suffixes everywhere they appear (vault URIs, key
    URIs, configured keys, document endpoints, expectations), and `simulator.cloud` is set.
    """
    cloud = cloud_named(name)
    text = json.dumps(world)
    for public, sovereign in (
        ("." + PUBLIC.key_vault_suffix, "." + cloud.key_vault_suffix),
        ("." + PUBLIC.managed_hsm_suffix, "." + cloud.managed_hsm_suffix),
        ("." + PUBLIC.cosmos_suffix, "." + cloud.cosmos_suffix),
    ):
        text = text.replace(public, sovereign)
    converted: dict[str, Any] = json.loads(text)
    converted["simulator"] = {**copy.deepcopy(converted.get("simulator") or {}), "cloud": cloud.name}
    return converted
