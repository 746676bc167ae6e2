"""Who is calling, and what they may do: Entra ID app roles read from the principal App Service Authentication
passes to the app, or the function key, as CMK_AUTH_MODE says.

In `entra` mode App Service Authentication (authsettingsV2, Microsoft Entra ID) sits in front of the app: it
validates the caller's token and passes its claims as `X-MS-CLIENT-PRINCIPAL` (base64 JSON: `auth_typ`,
`name_typ`, `role_typ`, `claims: [{typ, val}]`), a header the platform strips from what clients send, so it can
be trusted, but only while the platform's authentication is on. The platform says so with WEBSITE_AUTH_ENABLED=True
in the app's environment; without it the header could come from anyone, and the app refuses every request.

App roles (the app registration defines them, docs/deploy.md assigns them):

| role | may |
|---|---|
| CMK.Reader | read: instances, rollouts, reports, the OpenAPI document, the dashboard |
| CMK.Operator | start accounts and rollouts, terminate |
| CMK.Approver | approve or reject the irreversible step |

In `functionKey` mode the Functions platform checks a function key before the app runs; a key names nobody, so
every caller is "a function key holder" with every role, and separation of duties cannot be enforced.
"""

from __future__ import annotations

import base64
import binascii
import json
import os
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, NotRequired, TypedDict

from cmk import settings

PRINCIPAL_HEADER = "x-ms-client-principal"
PRINCIPAL_NAME_HEADER = "x-ms-client-principal-name"
# Set by App Service in the app's environment while its authentication module is on (Microsoft.Identity.Web reads
# it too); a platform variable, not an app setting.
PLATFORM_AUTH_ENABLED = "WEBSITE_AUTH_ENABLED"
ENTRA = "entra"
FUNCTION_KEY = "functionKey"
MODES = (ENTRA, FUNCTION_KEY)

OBJECT_ID_CLAIMS = ("http://schemas.microsoft.com/identity/claims/objectidentifier", "oid")
ROLE_CLAIMS = ("roles", "http://schemas.microsoft.com/ws/2008/06/identity/claims/role")
NAME_CLAIMS = ("name", "preferred_username", "upn", "http://schemas.xmlsoap.org/ws/2005/05/identity/claims/upn")
APP_ID_CLAIMS = ("azp", "appid")
MAX_PRINCIPAL_BYTES = 64 * 1024


class Role(StrEnum):
    READER = "CMK.Reader"
    OPERATOR = "CMK.Operator"
    APPROVER = "CMK.Approver"


class Actor(TypedDict):
    """Who did something, as recorded in orchestration inputs, outputs and report rows."""

    objectId: str
    displayName: str
    at: NotRequired[str]


@dataclass(frozen=True)
class Caller:
    object_id: str
    display_name: str
    roles: frozenset[str]
    via: str  # ENTRA or FUNCTION_KEY

    def actor(self, at: str) -> Actor:
        return {"objectId": self.object_id, "displayName": self.display_name, "at": at}

    def may(self, role: Role) -> bool:
        return role.value in self.roles


class Unauthenticated(Exception):
    """No caller the app can trust (HTTP 401)."""


FUNCTION_KEY_CALLER = Caller(
    object_id="",
    display_name="a function key holder",
    roles=frozenset(role.value for role in Role),
    via=FUNCTION_KEY,
)


def auth_mode() -> str:
    mode = settings.get_str("CMK_AUTH_MODE")
    if mode not in MODES:
        raise ValueError(f"App setting CMK_AUTH_MODE={mode!r} must be one of {', '.join(MODES)}.")
    return mode


def approval_separation() -> bool:
    return settings.get_bool("CMK_APPROVAL_SEPARATION")


def caller_from_headers(headers: Any) -> Caller:
    """The caller of a request (headers: a case-insensitive mapping). Raises Unauthenticated."""
    if auth_mode() == FUNCTION_KEY:
        return FUNCTION_KEY_CALLER
    if os.environ.get(PLATFORM_AUTH_ENABLED, "").strip().lower() != "true":
        raise Unauthenticated(
            "App Service Authentication is off (WEBSITE_AUTH_ENABLED is not True), so no caller can be trusted: "
            "turn it on (infra/app/api.bicep does) or set CMK_AUTH_MODE=functionKey."
        )
    encoded = headers.get(PRINCIPAL_HEADER)
    if not encoded:
        raise Unauthenticated("No authenticated caller: call with an Entra ID access token for this app.")
    return parse_principal(str(encoded), fallback_name=headers.get(PRINCIPAL_NAME_HEADER))


def parse_principal(encoded: str, *, fallback_name: str | None = None) -> Caller:
    """An `X-MS-CLIENT-PRINCIPAL` value: base64 JSON with `claims`; `role_typ` names the claim type of roles."""
    if len(encoded) > MAX_PRINCIPAL_BYTES:
        raise Unauthenticated("The client principal is too large.")
    try:
        principal = json.loads(base64.b64decode(encoded + "=" * (-len(encoded) % 4), validate=False))
    except (ValueError, binascii.Error, RecursionError) as error:
        raise Unauthenticated("The client principal cannot be read.") from error
    claims = principal.get("claims") if isinstance(principal, dict) else None
    if not isinstance(claims, list):
        raise Unauthenticated("The client principal has no claims.")
    values: dict[str, list[str]] = {}
    for claim in claims:
        if isinstance(claim, dict) and isinstance(claim.get("typ"), str) and isinstance(claim.get("val"), str):
            values.setdefault(claim["typ"], []).append(claim["val"])
    object_id = _first(values, OBJECT_ID_CLAIMS)
    if not object_id:
        raise Unauthenticated("The client principal names no object id (oid).")
    role_types = (str(principal.get("role_typ") or ""), *ROLE_CLAIMS)
    roles = frozenset(role for typ in role_types if typ for role in values.get(typ, []))
    name_types = (str(principal.get("name_typ") or ""), *NAME_CLAIMS)
    name = _first(values, tuple(t for t in name_types if t)) or fallback_name or _first(values, APP_ID_CLAIMS)
    return Caller(object_id=object_id, display_name=name or object_id, roles=roles, via=ENTRA)


def encode_principal(
    object_id: str, *, name: str | None = None, roles: tuple[str, ...] | list[str] = (), app_id: str | None = None
) -> str:
    """An `X-MS-CLIENT-PRINCIPAL` value as App Service builds it from a token's claims (the local host uses it)."""
    claims = [{"typ": OBJECT_ID_CLAIMS[0], "val": object_id}]
    if name:
        claims.append({"typ": "name", "val": name})
    if app_id:
        claims.append({"typ": "appid", "val": app_id})
    claims += [{"typ": "roles", "val": role} for role in roles]
    principal = {"auth_typ": "aad", "name_typ": "name", "role_typ": "roles", "claims": claims}
    return base64.b64encode(json.dumps(principal, separators=(",", ":")).encode()).decode()


def _first(values: dict[str, list[str]], types: tuple[str, ...]) -> str | None:
    for typ in types:
        for value in values.get(typ, []):
            if value.strip():
                return value.strip()
    return None


def same_principal(first: Actor | None, second: Caller) -> bool:
    """Whether an actor recorded earlier is this caller (by object id; a function key names nobody)."""
    if first is None or not second.object_id:
        return False
    return str(first.get("objectId") or "").lower() == second.object_id.lower()
