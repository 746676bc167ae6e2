"""ARM resource ids: parsing, case-insensitive keys and the few URL shapes the simulator serves.

ARM treats resource ids, resource group names and provider namespaces case-insensitively but returns the casing
it stored. The simulator does the same: every lookup goes through `id_key()`, bodies keep their own casing.
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass
from typing import Any

JsonDict = dict[str, Any]

ACCOUNT_TYPE = "microsoft.documentdb/databaseaccounts"
ACCOUNT_SERVICE_TYPE = "microsoft.documentdb/databaseaccounts/services"
SQL_ROLE_ASSIGNMENT_TYPE = "microsoft.documentdb/databaseaccounts/sqlroleassignments"
VAULT_TYPE = "microsoft.keyvault/vaults"
KEY_TYPE = "microsoft.keyvault/vaults/keys"
KEY_VERSION_TYPE = "microsoft.keyvault/vaults/keys/versions"
IDENTITY_TYPE = "microsoft.managedidentity/userassignedidentities"
ROLE_ASSIGNMENT_TYPE = "microsoft.authorization/roleassignments"
ROLE_DEFINITION_TYPE = "microsoft.authorization/roledefinitions"

ROLE_ASSIGNMENTS_MARKER = "/providers/microsoft.authorization/roleassignments"
ROLE_DEFINITIONS_MARKER = "/providers/microsoft.authorization/roledefinitions"


def id_key(resource_id: str) -> str:
    """The lookup key of a resource id: lowercase, one leading slash, no trailing slash."""
    return "/" + resource_id.strip().strip("/").lower()


def normalize_id(resource_id: str) -> str:
    """The id as given, with exactly one leading slash and no trailing slash (casing preserved)."""
    return "/" + resource_id.strip().strip("/")


@dataclass(frozen=True)
class ParsedId:
    """The parts of an ARM resource id: `/subscriptions/{s}/resourceGroups/{rg}/providers/{ns}/{type}/{name}/...`."""

    subscription_id: str
    resource_group: str | None
    namespace: str | None
    type_segments: tuple[str, ...]
    name_segments: tuple[str, ...]

    @property
    def full_type(self) -> str:
        """`Microsoft.X/type/childType` with the casing of the id."""
        if self.namespace is None:
            return ""
        return "/".join((self.namespace, *self.type_segments))

    @property
    def type_key(self) -> str:
        return self.full_type.lower()

    @property
    def name(self) -> str:
        return self.name_segments[-1] if self.name_segments else ""


# Remembered: every request, authorization and Resource Graph row parses the same ids again (a query parses every
# resource's), and ParsedId is immutable.
@functools.lru_cache(maxsize=1 << 16)
def parse_resource_id(resource_id: str) -> ParsedId | None:
    """Parse a subscription-rooted ARM id; None if it is not one (tenant-level ids, garbage)."""
    parts = [part for part in resource_id.strip().split("/") if part]
    if len(parts) < 2 or parts[0].lower() != "subscriptions":
        return None
    subscription_id = parts[1]
    rest = parts[2:]
    resource_group: str | None = None
    if len(rest) >= 2 and rest[0].lower() == "resourcegroups":
        resource_group = rest[1]
        rest = rest[2:]
    if not rest:
        return ParsedId(subscription_id, resource_group, None, (), ())
    if rest[0].lower() != "providers" or len(rest) < 2:
        return None
    namespace = rest[1]
    pairs = rest[2:]
    types = tuple(pairs[0::2])
    names = tuple(pairs[1::2])
    return ParsedId(subscription_id, resource_group, namespace, types, names)


def resource_type_of(resource_id: str) -> str:
    """Lowercased full type of a resource id (`microsoft.keyvault/vaults/keys`), '' if not a resource id."""
    if key_is_role_assignment(id_key(resource_id)):
        return ROLE_ASSIGNMENT_TYPE  # at any scope, including management groups and the tenant root
    if ROLE_DEFINITIONS_MARKER + "/" in id_key(resource_id):
        return ROLE_DEFINITION_TYPE  # custom roles live at a subscription, a management group or the tenant root
    parsed = parse_resource_id(resource_id)
    if parsed is None or not parsed.type_segments or len(parsed.name_segments) != len(parsed.type_segments):
        return ""
    return parsed.type_key


def key_is_role_assignment(key: str) -> bool:
    return ROLE_ASSIGNMENTS_MARKER + "/" in key


def split_role_assignment_id(resource_id: str) -> tuple[str, str]:
    """`{scope}/providers/Microsoft.Authorization/roleAssignments/{name}` → (scope, name)."""
    lowered = resource_id.lower()
    index = lowered.rfind(ROLE_ASSIGNMENTS_MARKER + "/")
    if index < 0:
        raise ValueError(f"not a role assignment id: {resource_id}")
    scope = resource_id[:index] or "/"
    name = resource_id[index + len(ROLE_ASSIGNMENTS_MARKER) + 1 :].strip("/")
    return normalize_id(scope) if scope != "/" else "/", name


def is_scope_at_or_above(candidate_scope: str, target_scope: str) -> bool:
    """True if `candidate_scope` contains `target_scope` (ARM scope inheritance: /, subscription, RG, resource)."""
    candidate = id_key(candidate_scope) if candidate_scope.strip("/") else "/"
    target = id_key(target_scope) if target_scope.strip("/") else "/"
    if candidate == "/":
        return True
    return target == candidate or target.startswith(candidate + "/")


def region_slug(location: str) -> str:
    """ARM region name from a display name: 'West US 2' → 'westus2'."""
    return re.sub(r"\s+", "", location).lower()


_VAULT_HOST = re.compile(
    r"^(?P<vault>[A-Za-z0-9-]+)\.vault\.(?P<suffix>[A-Za-z0-9.-]+?)(?::(?P<port>\d+))?$", re.IGNORECASE
)


@dataclass(frozen=True)
class KeyUri:
    """A Key Vault key identifier `https://{vault}.vault.azure.net[:443]/keys/{name}[/{version}]`."""

    vault_name: str
    key_name: str
    version: str | None


def parse_key_uri(uri: str) -> KeyUri | None:
    match = re.match(
        r"^https://(?P<host>[^/]+)/keys/(?P<name>[A-Za-z0-9-]+)(?:/(?P<version>[A-Za-z0-9]*))?/?$", uri, re.IGNORECASE
    )
    if match is None:
        return None
    host = _VAULT_HOST.match(match.group("host"))
    if host is None:
        return None
    version = match.group("version") or None
    return KeyUri(host.group("vault"), match.group("name"), version)


def same_key_uri(left: str, right: str) -> bool:
    """Compare two key URIs the way Key Vault does: case-insensitive, ignoring :443 and a trailing slash."""
    parsed_left, parsed_right = parse_key_uri(left), parse_key_uri(right)
    if parsed_left is None or parsed_right is None:
        return left.strip().rstrip("/").lower() == right.strip().rstrip("/").lower()
    return (
        parsed_left.vault_name.lower() == parsed_right.vault_name.lower()
        and parsed_left.key_name.lower() == parsed_right.key_name.lower()
        and (parsed_left.version or "").lower() == (parsed_right.version or "").lower()
    )
