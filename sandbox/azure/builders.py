"""Resource bodies shaped like real ARM GET responses, for building worlds in code (tests, benchmarks, demo).

Every builder returns exactly what a GET of that resource returns at the SDKs' api-versions, with ids and GUIDs
derived deterministically from the names so that a generated world is stable from run to run.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from typing import Any

from sandbox.azure.fleet_access import grants as fleet_access_grants
from sandbox.azure.ids import JsonDict, id_key, region_slug
from sandbox.azure.world import DEFAULT_SYSTEM_PRINCIPAL_ID

_MASTER_KEYS = ("primaryMasterKey", "secondaryMasterKey", "primaryReadonlyMasterKey", "secondaryReadonlyMasterKey")
_NAMESPACE = uuid.UUID("0f9b3c1e-7a52-4d7e-a4f1-3c5b2e8d9a60")


def stable_guid(*parts: str) -> str:
    return str(uuid.uuid5(_NAMESPACE, "|".join(parts).lower()))


def resource_group_id(subscription_id: str, resource_group: str) -> str:
    return f"/subscriptions/{subscription_id}/resourceGroups/{resource_group}"


def _display_region(location: str) -> str:
    names = {
        "eastus": "East US",
        "eastus2": "East US 2",
        "westus": "West US",
        "westus2": "West US 2",
        "westeurope": "West Europe",
        "northeurope": "North Europe",
        "southcentralus": "South Central US",
        "uksouth": "UK South",
    }
    return names.get(region_slug(location), location)


def cosmos_account(
    subscription_id: str,
    resource_group: str,
    name: str,
    *,
    location: str = "East US",
    kind: str = "GlobalDocumentDB",
    capabilities: Iterable[str] = (),
    backup: str = "Periodic",
    identity: JsonDict | None = None,
    default_identity: str = "FirstPartyIdentity",
    key_vault_key_uri: str | None = None,
    key_vault_key_uri_version: str | None = None,
    tags: dict[str, str] | None = None,
    public_network_access: str = "Enabled",
    ip_rules: Iterable[str] = (),
    extra_properties: JsonDict | None = None,
) -> JsonDict:
    """A Microsoft.DocumentDB/databaseAccounts body as GET returns it (api-version 2026-03-15)."""
    group_id = resource_group_id(subscription_id, resource_group)
    account_id = f"{group_id}/providers/Microsoft.DocumentDB/databaseAccounts/{name}"
    region = _display_region(location)
    slug = region_slug(region)
    regional = {
        "id": f"{name}-{slug}",
        "locationName": region,
        "documentEndpoint": f"https://{name}-{slug}.documents.azure.com:443/",
        "provisioningState": "Succeeded",
        "failoverPriority": 0,
        "isZoneRedundant": False,
    }
    backup_policy: JsonDict
    if backup.lower() == "continuous":
        backup_policy = {"type": "Continuous", "continuousModeProperties": {"tier": "Continuous7Days"}}
    else:
        backup_policy = {
            "type": "Periodic",
            "periodicModeProperties": {
                "backupIntervalInMinutes": 240,
                "backupRetentionIntervalInHours": 8,
                "backupStorageRedundancy": "Geo",
            },
        }
    properties: JsonDict = {
        "provisioningState": "Succeeded",
        "documentEndpoint": f"https://{name}.documents.azure.com:443/",
        "publicNetworkAccess": public_network_access,
        "enableAutomaticFailover": False,
        "enableMultipleWriteLocations": False,
        "isVirtualNetworkFilterEnabled": False,
        "virtualNetworkRules": [],
        "disableKeyBasedMetadataWriteAccess": False,
        "enableFreeTier": False,
        "enableAnalyticalStorage": False,
        "analyticalStorageConfiguration": {"schemaType": "WellDefined"},
        "instanceId": stable_guid("instance", account_id),
        "createMode": "Default",
        "databaseAccountOfferType": "Standard",
        "defaultIdentity": default_identity,
        "networkAclBypass": "None",
        "disableLocalAuth": False,
        "enablePartitionMerge": False,
        "enableBurstCapacity": False,
        "minimalTlsVersion": "Tls12",
        "consistencyPolicy": {
            "defaultConsistencyLevel": "Session",
            "maxIntervalInSeconds": 5,
            "maxStalenessPrefix": 100,
        },
        "apiProperties": {"serverVersion": "4.2"} if kind == "MongoDB" else {},
        "writeLocations": [dict(regional)],
        "readLocations": [dict(regional)],
        "locations": [dict(regional)],
        "failoverPolicies": [{"id": f"{name}-{slug}", "locationName": region, "failoverPriority": 0}],
        "cors": [],
        "capabilities": [{"name": capability} for capability in capabilities],
        "ipRules": [{"ipAddressOrRange": rule} for rule in ip_rules],
        "backupPolicy": backup_policy,
        "networkAclBypassResourceIds": [],
        "keysMetadata": {key: {"generationTime": "2025-01-14T09:12:40Z"} for key in _MASTER_KEYS},
    }
    if key_vault_key_uri is not None:
        properties["keyVaultKeyUri"] = key_vault_key_uri
        properties["keyVaultKeyUriVersion"] = key_vault_key_uri_version
        properties["customerManagedKeyStatus"] = "Access to the configured customer managed key confirmed."
    properties.update(extra_properties or {})
    return {
        "id": account_id,
        "name": name,
        "location": region,
        "type": "Microsoft.DocumentDB/databaseAccounts",
        "kind": kind,
        "tags": dict(tags or {}),
        "systemData": {"createdAt": "2025-01-14T09:05:11.2398112Z"},
        "identity": identity if identity is not None else {"type": "None"},
        "properties": properties,
    }


def account_identity(
    *,
    system_principal_id: str | None = None,
    tenant_id: str | None = None,
    user_assigned: Iterable[JsonDict] = (),
) -> JsonDict:
    """The `identity` block of an account; `user_assigned` takes UAMI bodies from `user_assigned_identity()`."""
    users = {
        str(uami["id"]): {
            "principalId": uami["properties"]["principalId"],
            "clientId": uami["properties"]["clientId"],
        }
        for uami in user_assigned
    }
    types = []
    identity: JsonDict = {}
    if system_principal_id is not None:
        types.append("SystemAssigned")
        identity["principalId"] = system_principal_id
        identity["tenantId"] = tenant_id
    if users:
        types.append("UserAssigned")
        identity["userAssignedIdentities"] = users
    return {"type": ",".join(types) or "None", **identity}


def key_vault(
    subscription_id: str,
    resource_group: str,
    name: str,
    *,
    tenant_id: str,
    location: str = "eastus",
    access_policies: Iterable[JsonDict] = (),
    rbac: bool = False,
    soft_delete: bool = True,
    purge_protection: bool = True,
    public_network_access: str = "Enabled",
    network_acls: JsonDict | None = None,
) -> JsonDict:
    """A Microsoft.KeyVault/vaults body as GET returns it (api-version 2026-05-15)."""
    properties: JsonDict = {
        "sku": {"family": "A", "name": "standard"},
        "tenantId": tenant_id,
        "accessPolicies": list(access_policies),
        "enabledForDeployment": False,
        "enabledForDiskEncryption": False,
        "enabledForTemplateDeployment": False,
        "enableSoftDelete": soft_delete,
        "softDeleteRetentionInDays": 90,
        "enableRbacAuthorization": rbac,
        "vaultUri": f"https://{name}.vault.azure.net/",
        "provisioningState": "Succeeded",
        "publicNetworkAccess": public_network_access,
    }
    if purge_protection:
        properties["enablePurgeProtection"] = True
    if network_acls is not None:
        properties["networkAcls"] = network_acls
    return {
        "id": f"{resource_group_id(subscription_id, resource_group)}/providers/Microsoft.KeyVault/vaults/{name}",
        "name": name,
        "type": "Microsoft.KeyVault/vaults",
        "location": location,
        "tags": {},
        "properties": properties,
    }


def access_policy(tenant_id: str, object_id: str, keys: Iterable[str] = ("get", "wrapKey", "unwrapKey")) -> JsonDict:
    return {"tenantId": tenant_id, "objectId": object_id, "permissions": {"keys": list(keys)}}


def vault_key(
    vault: JsonDict,
    name: str,
    *,
    version: str | None = None,
    kty: str = "RSA",
    key_size: int = 3072,
    enabled: bool = True,
    expires: int | None = None,
    not_before: int | None = None,
    created: int = 1736845960,
) -> JsonDict:
    """A Microsoft.KeyVault/vaults/keys body as GET returns it (the current version is `version`)."""
    vault_name = str(vault["name"])
    version = version or uuid.UUID(stable_guid("key-version", vault_name, name)).hex
    attributes: JsonDict = {"created": created, "enabled": enabled, "recoveryLevel": "Recoverable", "updated": created}
    if expires is not None:
        attributes["exp"] = expires
    if not_before is not None:
        attributes["nbf"] = not_before
    key_uri = f"https://{vault_name}.vault.azure.net:443/keys/{name}"
    return {
        "id": f"{vault['id']}/keys/{name}",
        "name": name,
        "type": "Microsoft.KeyVault/vaults/keys",
        "location": vault.get("location", "eastus"),
        "properties": {
            "attributes": attributes,
            "keyOps": ["encrypt", "decrypt", "sign", "verify", "wrapKey", "unwrapKey"],
            "keySize": key_size,
            "keyUri": key_uri,
            "keyUriWithVersion": f"{key_uri}/{version}",
            "kty": kty,
        },
    }


def versionless_key_uri(key: JsonDict) -> str:
    """The key URI Cosmos DB should be given: https://<vault>.vault.azure.net/keys/<name> (no version, no port)."""
    uri = str(key["properties"]["keyUri"])
    return uri.replace(".vault.azure.net:443/", ".vault.azure.net/")


def user_assigned_identity(
    subscription_id: str,
    resource_group: str,
    name: str,
    *,
    tenant_id: str,
    location: str = "eastus",
    principal_id: str | None = None,
    client_id: str | None = None,
) -> JsonDict:
    """A Microsoft.ManagedIdentity/userAssignedIdentities body as GET returns it (api-version 2023-01-31)."""
    identity_id = (
        f"{resource_group_id(subscription_id, resource_group)}/providers/Microsoft.ManagedIdentity/"
        f"userAssignedIdentities/{name}"
    )
    return {
        "id": identity_id,
        "name": name,
        "type": "Microsoft.ManagedIdentity/userAssignedIdentities",
        "location": location,
        "tags": {},
        "properties": {
            "tenantId": tenant_id,
            "principalId": principal_id or stable_guid("principal", identity_id),
            "clientId": client_id or stable_guid("client", identity_id),
        },
    }


def role_assignment(
    scope: str,
    role_definition_guid: str,
    principal_id: str,
    *,
    name: str | None = None,
    principal_type: str = "ServicePrincipal",
) -> JsonDict:
    """A Microsoft.Authorization/roleAssignments body (already propagated when it comes from a world file)."""
    name = name or stable_guid("role-assignment", scope, role_definition_guid, principal_id)
    return {
        "properties": {
            "roleDefinitionId": f"/providers/Microsoft.Authorization/roleDefinitions/{role_definition_guid}",
            "principalId": principal_id,
            "principalType": principal_type,
            "scope": scope,
        },
        "id": f"{scope}/providers/Microsoft.Authorization/roleAssignments/{name}",
        "type": "Microsoft.Authorization/roleAssignments",
        "name": name,
    }


COSMOS_DATA_READER = "00000000-0000-0000-0000-000000000001"
COSMOS_DATA_CONTRIBUTOR = "00000000-0000-0000-0000-000000000002"


def sql_role_assignment(account: JsonDict, principal_id: str, role: str = COSMOS_DATA_READER) -> JsonDict:
    """A Cosmos DB data-plane role assignment (Microsoft.DocumentDB/databaseAccounts/sqlRoleAssignments)."""
    account_id = str(account["id"])
    name = stable_guid("sql-role-assignment", account_id, principal_id, role)
    return {
        "id": f"{account_id}/sqlRoleAssignments/{name}",
        "name": name,
        "type": "Microsoft.DocumentDB/databaseAccounts/sqlRoleAssignments",
        "properties": {
            "roleDefinitionId": f"{account_id}/sqlRoleDefinitions/{role}",
            "scope": account_id,
            "principalId": principal_id,
        },
    }


def account_service(account: JsonDict, service_type: str, name: str | None = None) -> JsonDict:
    """A child `services` resource, e.g. serviceType MaterializedViewsBuilder."""
    name = name or service_type[:1].lower() + service_type[1:]
    return {
        "id": f"{account['id']}/services/{name}",
        "name": name,
        "type": "Microsoft.DocumentDB/databaseAccounts/services",
        "properties": {
            "serviceType": service_type,
            "instanceSize": "Cosmos.D4s",
            "instanceCount": 1,
            "status": "Running",
            "creationTime": "2025-02-03T10:15:00Z",
        },
    }


# A database's or container's type under its account, and its children's (the APIs with provisioned throughput).
DATABASE_CHILD_TYPES = {"sqlDatabases": "containers", "mongodbDatabases": "collections", "gremlinDatabases": "graphs"}


def cosmos_database(account: JsonDict, name: str, api_type: str = "sqlDatabases") -> JsonDict:
    """A database (`sqlDatabases`, `mongodbDatabases`, `gremlinDatabases`) or a table (`tables`) of an account."""
    return {
        "id": f"{account['id']}/{api_type}/{name}",
        "name": name,
        "type": f"Microsoft.DocumentDB/databaseAccounts/{api_type}",
        "location": str(account.get("location", "")),
        "tags": {},
        "properties": {"resource": {"id": name, "_rid": stable_guid(str(account["id"]), name)[:8]}},
    }


def cosmos_container(database: JsonDict, name: str) -> JsonDict:
    """A container, collection or graph of a database (`cosmos_database`)."""
    database_type = str(database["type"]).rsplit("/", 1)[1]
    child = DATABASE_CHILD_TYPES[database_type]
    return {
        "id": f"{database['id']}/{child}/{name}",
        "name": name,
        "type": f"{database['type']}/{child}",
        "location": str(database.get("location", "")),
        "tags": {},
        "properties": {"resource": {"id": name, "partitionKey": {"paths": ["/id"], "kind": "Hash"}}},
    }


def throughput_settings(
    parent: JsonDict, *, throughput: int | None = None, autoscale_max: int | None = None
) -> JsonDict:
    """`{parent}/throughputSettings/default`: manual `throughput` RU/s, or autoscale up to `autoscale_max`."""
    resource: JsonDict = {"minimumThroughput": "400", "instantMaximumThroughput": "10000"}
    if autoscale_max is not None:
        resource.update(throughput=autoscale_max // 10, autoscaleSettings={"maxThroughput": autoscale_max})
        resource["minimumThroughput"] = "1000"
    else:
        resource["throughput"] = throughput if throughput is not None else 400
    return {
        "id": f"{parent['id']}/throughputSettings/default",
        "name": "default",
        "type": f"{parent['type']}/throughputSettings",
        "location": str(parent.get("location", "")),
        "tags": {},
        "properties": {"resource": resource},
    }


def world(
    resources: Iterable[JsonDict],
    *,
    tenant_id: str,
    account_data: dict[str, Any] | None = None,
    simulator: JsonDict | None = None,
    grants: bool | Iterable[str] = True,
) -> JsonDict:
    """A world object. Unless `grants` is False, the app's principal (`simulator.systemPrincipalId`, else the
    simulator's default) holds exactly what infra/fleet-access grants it (`fleet_access.grants`: the custom roles
    from the Bicep, the operator role at every subscription of the world, the key-vault role assigner with its
    condition on every RBAC-model vault), already propagated; pass principal ids to grant those instead."""
    bodies = list(resources)
    if grants is True:
        principals: list[str] = [str((simulator or {}).get("systemPrincipalId") or DEFAULT_SYSTEM_PRINCIPAL_ID)]
    else:
        principals = [] if grants is False else list(grants)
    present = {id_key(str(body["id"])) for body in bodies}
    extra = [body for body in fleet_access_grants(bodies, principals) if id_key(str(body["id"])) not in present]
    return {
        "tenantId": tenant_id,
        "resources": bodies + extra,
        "accountData": dict(account_data or {}),
        "simulator": dict(simulator or {}),
    }
