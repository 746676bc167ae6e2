"""Key Vault's resources in the resource table: vaults, keys and key versions, and how a key URI finds them."""

from __future__ import annotations

from sandbox.azure.ids import KEY_TYPE, VAULT_TYPE, JsonDict, id_key
from sandbox.azure.resource_store import WORLD_EPOCH, ResourceStore


def find_vault(resources: ResourceStore, vault_name: str) -> JsonDict | None:
    """Vault names are globally unique, so a key URI names exactly one vault."""
    wanted = vault_name.lower()
    for vault in resources.of_type(VAULT_TYPE):
        if str(vault.get("name", "")).lower() == wanted:
            return vault
        uri = str((vault.get("properties") or {}).get("vaultUri", ""))
        if uri.lower().startswith(f"https://{wanted}.vault."):
            return vault
    return None


def find_key(resources: ResourceStore, vault: JsonDict, key_name: str) -> JsonDict | None:
    return resources.get(f"{vault['id']}/keys/{key_name}")


def key_version_properties(resources: ResourceStore, key: JsonDict, version: str | None) -> JsonDict | None:
    """Properties of the requested version, or of the current one when `version` is None."""
    if version is None:
        properties = key.get("properties")
        return properties if isinstance(properties, dict) else None
    found = resources.get(f"{key['id']}/versions/{version}")
    if found is None:
        return None
    properties = found.get("properties")
    return properties if isinstance(properties, dict) else None


def current_key_version(key: JsonDict) -> str | None:
    uri = (key.get("properties") or {}).get("keyUriWithVersion")
    if not isinstance(uri, str) or "/keys/" not in uri:
        return None
    tail = uri.rstrip("/").split("/keys/", 1)[1]
    return tail.split("/", 1)[1] if "/" in tail else None


def synthesize_key_versions(resources: ResourceStore) -> None:
    """A key of the world without any version resource gets one built from its `keyUriWithVersion`."""
    existing = resources.ids()
    for key_body in resources.of_type(KEY_TYPE):
        key_id = str(key_body["id"])
        prefix = id_key(key_id) + "/versions/"
        if any(other.startswith(prefix) for other in existing):
            continue
        properties = key_body.get("properties") or {}
        uri_with_version = properties.get("keyUriWithVersion")
        if not isinstance(uri_with_version, str) or "/" not in uri_with_version.rstrip("/"):
            continue
        version = uri_with_version.rstrip("/").rsplit("/", 1)[1]
        version_body = {
            "id": f"{key_id}/versions/{version}",
            "name": version,
            "type": "Microsoft.KeyVault/vaults/keys/versions",
            **({"location": key_body["location"]} if "location" in key_body else {}),
            **({"tags": key_body["tags"]} if "tags" in key_body else {}),
            "properties": properties,
        }
        resources.put(version_body, created_at=WORLD_EPOCH)
