"""Parsing and normalising the identifiers users give us: ARM resource ids and Key Vault key URIs.

ARM ids are case-insensitive; we keep the user's spelling for display and compare on a folded form.
Key Vault writes key URIs both with and without ":443" and a trailing slash, so key URIs compare on a
canonical form (lower-case host without default port, no trailing slash).
"""

from __future__ import annotations

import re
import uuid
from dataclasses import dataclass
from urllib.parse import urlsplit

from cmk.errors import InvalidRequest, shown

_GUID = r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}"
# 1 to 90 letters, digits, '_', '-', '(', ')' or '.', not ending in '.' (so never '.' or '..').
_RG_NAME = r"[-\w._()]{0,89}[-\w()]"
_ACCOUNT_NAME = r"[a-z0-9][a-z0-9-]{1,48}[a-z0-9]"
_IDENTITY_NAME = r"[a-zA-Z0-9][-\w]{2,127}"
_VAULT_NAME = r"[a-zA-Z][a-zA-Z0-9-]{1,22}[a-zA-Z0-9]"

_ACCOUNT_ID = re.compile(
    rf"^/subscriptions/(?P<subscription>{_GUID})/resourceGroups/(?P<group>{_RG_NAME})"
    rf"/providers/Microsoft\.DocumentDB/databaseAccounts/(?P<name>{_ACCOUNT_NAME})/?$",
    re.IGNORECASE,
)
_IDENTITY_ID = re.compile(
    rf"^/subscriptions/(?P<subscription>{_GUID})/resourceGroups/(?P<group>{_RG_NAME})"
    rf"/providers/Microsoft\.ManagedIdentity/userAssignedIdentities/(?P<name>{_IDENTITY_NAME})/?$",
    re.IGNORECASE,
)
_VAULT_ID = re.compile(
    rf"^/subscriptions/(?P<subscription>{_GUID})/resourceGroups/(?P<group>{_RG_NAME})"
    rf"/providers/Microsoft\.KeyVault/vaults/(?P<name>{_VAULT_NAME})/?$",
    re.IGNORECASE,
)
_SUBSCRIPTION_ID = re.compile(rf"^/subscriptions/(?P<subscription>{_GUID})/?$", re.IGNORECASE)
_RESOURCE_GROUP_ID = re.compile(
    rf"^/subscriptions/(?P<subscription>{_GUID})/resourceGroups/(?P<group>{_RG_NAME})/?$", re.IGNORECASE
)

# Key Vault (and Managed HSM) DNS suffixes of the public and sovereign clouds.
_KEY_VAULT_SUFFIXES = (
    ".vault.azure.net",
    ".vault.azure.cn",
    ".vault.usgovcloudapi.net",
    ".vault.microsoftazure.de",
    ".managedhsm.azure.net",
    ".managedhsm.azure.cn",
    ".managedhsm.usgovcloudapi.net",
)
_KEY_NAME = re.compile(r"^[a-zA-Z0-9-]{1,127}$")
_KEY_VERSION = re.compile(r"^[0-9a-fA-F]{32}$")


@dataclass(frozen=True)
class ResourceId:
    """A resource in a resource group: `/subscriptions/{s}/resourceGroups/{g}/providers/{type}/{name}`."""

    subscription_id: str
    resource_group: str
    name: str
    provider_type: str

    def __str__(self) -> str:
        return (
            f"/subscriptions/{self.subscription_id}/resourceGroups/{self.resource_group}"
            f"/providers/{self.provider_type}/{self.name}"
        )

    @property
    def key(self) -> str:
        """Case-folded form for comparisons and dictionary keys (ARM ids are case-insensitive)."""
        return str(self).lower()

    def same_as(self, other: str | ResourceId) -> bool:
        return self.key == str(other).rstrip("/").lower()


def _parse(pattern: re.Pattern[str], value: object, provider_type: str, code: str, what: str) -> ResourceId:
    if not isinstance(value, str) or not value.strip():
        raise InvalidRequest(code, f"{what} is required and must be an ARM resource id string.")
    match = pattern.match(value.strip())
    if match is None:
        example = f"/subscriptions/<guid>/resourceGroups/<group>/providers/{provider_type}/<name>"
        raise InvalidRequest(code, f"{what} {shown(value)} is not a valid resource id; expected {example}.")
    return ResourceId(
        subscription_id=match["subscription"].lower(),
        resource_group=match["group"],
        name=match["name"],
        provider_type=provider_type,
    )


def parse_account_id(value: object) -> ResourceId:
    return _parse(_ACCOUNT_ID, value, "Microsoft.DocumentDB/databaseAccounts", "InvalidAccountId", "accountId")


def parse_identity_id(value: object) -> ResourceId:
    return _parse(
        _IDENTITY_ID,
        value,
        "Microsoft.ManagedIdentity/userAssignedIdentities",
        "InvalidIdentity",
        "The user-assigned identity",
    )


def parse_vault_id(value: object) -> ResourceId:
    return _parse(_VAULT_ID, value, "Microsoft.KeyVault/vaults", "InvalidVaultId", "The Key Vault id")


def parse_scope(value: object) -> tuple[str, str | None]:
    """A rollout scope entry: a subscription id or resource-group id -> (subscription, group or None)."""
    if isinstance(value, str):
        text = value.strip()
        if match := _SUBSCRIPTION_ID.match(text):
            return match["subscription"].lower(), None
        if match := _RESOURCE_GROUP_ID.match(text):
            return match["subscription"].lower(), match["group"]
        if re.fullmatch(_GUID, text):
            return text.lower(), None
    raise InvalidRequest(
        "InvalidScope",
        f"Scope entry {shown(value)} must be a subscription id (/subscriptions/<guid>) "
        "or a resource group id (/subscriptions/<guid>/resourceGroups/<name>).",
    )


def parse_subscription_id(value: object, where: str) -> str:
    """A subscription: its GUID, or `/subscriptions/<guid>`; returns the lower-case GUID."""
    if isinstance(value, str):
        text = value.strip()
        if match := _SUBSCRIPTION_ID.match(text):
            return match["subscription"].lower()
        if re.fullmatch(_GUID, text):
            return text.lower()
    raise InvalidRequest(
        "InvalidSubscriptionId", f"{where}: {shown(value)} is not a subscription id (a GUID, or /subscriptions/<guid>)."
    )


def parse_resource_group_name(value: object, where: str) -> str:
    """A resource group's name (or its id, whose last segment is taken); ARM's naming rules."""
    if isinstance(value, str):
        text = value.strip().rstrip("/")
        if match := _RESOURCE_GROUP_ID.match(text):
            return match["group"]
        if re.fullmatch(_RG_NAME, text):
            return text
    raise InvalidRequest(
        "InvalidResourceGroup",
        f"{where}: {shown(value)} is not a resource group name (1 to 90 letters, digits, '_', '-', '(', ')' "
        "or '.', not ending in '.').",
    )


@dataclass(frozen=True)
class KeyUri:
    """A Key Vault key identifier: `https://{vault}.vault.azure.net/keys/{name}[/{version}]`."""

    vault_host: str
    key_name: str
    version: str | None

    @property
    def vault_name(self) -> str:
        return self.vault_host.split(".", 1)[0]

    @property
    def vault_uri(self) -> str:
        return f"https://{self.vault_host}/"

    @property
    def versionless(self) -> str:
        return f"https://{self.vault_host}/keys/{self.key_name}"

    @property
    def is_managed_hsm(self) -> bool:
        return ".managedhsm." in self.vault_host

    def __str__(self) -> str:
        return self.versionless if self.version is None else f"{self.versionless}/{self.version}"

    def same_key_as(self, other: KeyUri) -> bool:
        """Same vault and key name, whatever the version (how CMK treats versionless vs versioned URIs)."""
        return (self.vault_host, self.key_name.lower()) == (other.vault_host, other.key_name.lower())


def parse_key_uri(value: object) -> KeyUri:
    if not isinstance(value, str) or not value.strip():
        raise InvalidRequest("InvalidKeyUri", "keyUri is required: https://<vault>.vault.azure.net/keys/<name>.")
    text = value.strip()
    try:
        parts = urlsplit(text)
        port = parts.port  # raises for a port that is not a number from 0 to 65535
        host = (parts.hostname or "").lower()
    except ValueError as error:
        raise InvalidRequest("InvalidKeyUri", f"keyUri {shown(text)} is not a URL: {error}.") from error
    problem: str | None = None
    if any(character.isspace() or not character.isprintable() for character in text):
        problem = "it must not hold spaces or control characters"  # urlsplit would silently drop some of them
    elif parts.scheme.lower() != "https":
        problem = "it must use https"
    elif port not in (None, 443) or parts.netloc.endswith(":"):
        problem = "Key Vault listens on port 443 only"
    elif not host.endswith(_KEY_VAULT_SUFFIXES) or not re.fullmatch(_VAULT_NAME, host.split(".", 1)[0]):
        problem = "its host is not a Key Vault or Managed HSM name (<vault>.vault.azure.net)"
    elif parts.query or parts.fragment or parts.username or parts.password:
        problem = "it must not carry a query, fragment or credentials"
    # /keys/<name>[/<version>], one trailing slash allowed and nothing else non-canonical (no empty segments).
    path = parts.path[:-1] if parts.path.endswith("/") else parts.path
    segments = path.split("/")[1:] if path.startswith("/") else [path]
    if problem is None and (len(segments) not in (2, 3) or segments[0].lower() != "keys"):
        problem = "its path must be /keys/<name> or /keys/<name>/<version>"
    if problem is None and not _KEY_NAME.fullmatch(segments[1]):
        problem = "the key name may hold only letters, digits and dashes"
    if problem is None and len(segments) == 3 and not _KEY_VERSION.fullmatch(segments[2]):
        problem = "the key version must be 32 hexadecimal characters"
    if problem is not None:
        raise InvalidRequest("InvalidKeyUri", f"keyUri {shown(text)} is not a Key Vault key URI: {problem}.")
    return KeyUri(vault_host=host, key_name=segments[1], version=segments[2] if len(segments) == 3 else None)


def same_key_uri(first: str | None, second: str | None) -> bool:
    """Whether two key URIs name the same key and version, ignoring ':443', case of the host, trailing '/'."""
    if not first or not second:
        return False
    try:
        a, b = parse_key_uri(first), parse_key_uri(second)
    except InvalidRequest:
        return first.rstrip("/") == second.rstrip("/")
    return a.same_key_as(b) and (a.version or "").lower() == (b.version or "").lower()


def role_assignment_name(scope: str, principal_id: str, role_definition_guid: str) -> str:
    """A deterministic role-assignment name, so a re-run finds the assignment it made instead of adding one."""
    return str(uuid.uuid5(uuid.NAMESPACE_URL, f"{scope.lower()}|{principal_id.lower()}|{role_definition_guid}"))
