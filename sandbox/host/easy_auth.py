"""App Service Authentication (Easy Auth) with Microsoft Entra ID, as the local host emulates it (`--auth entra`).

On Azure the platform validates the caller's bearer token before the app runs, answers 401 without one (the
`Return401` unauthenticated action), drops any `X-MS-CLIENT-PRINCIPAL*` header a client sent, and passes the
token's claims as `X-MS-CLIENT-PRINCIPAL` (base64 JSON `{auth_typ, name_typ, role_typ, claims: [{typ, val}]}`)
with `-ID`, `-NAME` and `-IDP` beside it; paths excluded from authentication (`EXCLUDED_PATHS`: the Event Grid and
Durable webhooks, which keep their system keys, and the dashboard's page and files, which hold no data) are passed
through untouched. It also sets WEBSITE_AUTH_ENABLED=True in the app's environment.

Locally the tokens are unsigned (`alg: none`, like the simulator's, see sandbox/azure/tokens.py): the host reads
their claims (`oid`, `name` or `appid`, `roles`, `exp`) without a signature check. `mint_token` makes one.
"""

from __future__ import annotations

import base64
import json
import time
import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

PRINCIPAL_HEADERS = (
    "x-ms-client-principal",
    "x-ms-client-principal-id",
    "x-ms-client-principal-name",
    "x-ms-client-principal-idp",
)
OBJECT_ID_CLAIM = "http://schemas.microsoft.com/identity/claims/objectidentifier"
DEFAULT_AUDIENCE = "api://cmk-rollout-local"
DEFAULT_TENANT = "72f988bf-86f1-41af-91ab-2d7cd011db47"


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def mint_token(
    object_id: str | None = None,
    *,
    name: str | None = None,
    roles: Iterable[str] = (),
    app_id: str | None = None,
    audience: str = DEFAULT_AUDIENCE,
    tenant_id: str = DEFAULT_TENANT,
    lifetime_seconds: int = 3600,
) -> str:
    """An unsigned access token for the app, as Entra ID would issue it to a user (`name`) or to automation
    (a service principal or managed identity: `app_id`, no name), carrying app `roles`."""
    now = int(time.time())
    object_id = object_id or str(uuid.uuid4())
    claims: dict[str, Any] = {
        "aud": audience,
        "iss": f"https://login.microsoftonline.com/{tenant_id}/v2.0",
        "iat": now,
        "nbf": now,
        "exp": now + lifetime_seconds,
        "oid": object_id,
        "sub": object_id,
        "tid": tenant_id,
        "ver": "2.0",
        "roles": list(roles),
    }
    if name:
        claims["name"] = name
    if app_id:
        claims["azp"] = app_id
    header = {"alg": "none", "typ": "JWT"}
    return f"{_b64url(json.dumps(header).encode())}.{_b64url(json.dumps(claims).encode())}."


# authsettingsV2 `globalValidation.excludedPaths` as infra/app/api.bicep sets them (a test holds the two equal). An
# entry matches its exact path, or with a trailing `/*` every path below it: the product team's answer in
# MicrosoftDocs/azure-docs#86514 ("To use wildcard, you could as `/myfolder/subfolder/*`"). Case-insensitive, as
# the platform's IIS front end treats paths.
EXCLUDED_PATHS = (
    "/runtime/webhooks/eventgrid",
    "/runtime/webhooks/durabletask/*",
    "/api/cmk/dashboard",
    "/api/cmk/dashboard/*",
)


def is_excluded(path: str, excluded: Iterable[str] = EXCLUDED_PATHS) -> bool:
    """Whether App Service Authentication lets a request for `path` through without a token (and adds no
    principal): the page and files of the dashboard, which then call the API with the caller's credentials."""
    lowered = path.split("?", 1)[0].lower()
    for entry in excluded:
        entry = entry.lower()
        if entry.endswith("/*") and lowered.startswith(entry[:-1]):
            return True
        if lowered == entry:
            return True
    return False


class Unauthenticated(ValueError):
    """The platform's 401: no token, or one it does not accept."""


@dataclass(frozen=True)
class Principal:
    object_id: str
    name: str | None
    app_id: str | None
    roles: tuple[str, ...]

    def headers(self) -> dict[str, str]:
        """The headers App Service passes to the app for this caller."""
        claims = [{"typ": OBJECT_ID_CLAIM, "val": self.object_id}]
        if self.name:
            claims.append({"typ": "name", "val": self.name})
        if self.app_id:
            claims.append({"typ": "azp", "val": self.app_id})
        claims += [{"typ": "roles", "val": role} for role in self.roles]
        principal = {"auth_typ": "aad", "name_typ": "name", "role_typ": "roles", "claims": claims}
        return {
            "x-ms-client-principal": base64.b64encode(json.dumps(principal).encode()).decode(),
            "x-ms-client-principal-id": self.object_id,
            "x-ms-client-principal-name": self.name or self.app_id or self.object_id,
            "x-ms-client-principal-idp": "aad",
        }


def authenticate(headers: Mapping[str, str], *, audience: str | None = None) -> Principal:
    """The caller of a request from its `Authorization: Bearer` token; Unauthenticated when there is none or it
    is expired, not for this app (`audience`, when given), or names no object id."""
    authorization = next((v for k, v in headers.items() if k.lower() == "authorization"), "")
    scheme, _, token = authorization.strip().partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise Unauthenticated("no bearer token")
    parts = token.strip().split(".")
    if len(parts) < 2:
        raise Unauthenticated("the token is not a JWT")
    try:
        claims = json.loads(base64.urlsafe_b64decode(parts[1] + "=" * (-len(parts[1]) % 4)))
    except (ValueError, UnicodeDecodeError) as error:
        raise Unauthenticated("the token cannot be read") from error
    if not isinstance(claims, dict) or not isinstance(claims.get("oid"), str) or not claims["oid"]:
        raise Unauthenticated("the token names no object id")
    expires = claims.get("exp")
    if not isinstance(expires, int | float) or expires < time.time():
        raise Unauthenticated("the token has expired")
    if audience is not None and claims.get("aud") != audience:
        raise Unauthenticated(f"the token is not for this app ({audience})")
    listed = claims.get("roles")
    roles: list[Any] = listed if isinstance(listed, list) else []
    name = claims.get("name") if isinstance(claims.get("name"), str) else None
    app_id = claims.get("azp") or claims.get("appid")
    return Principal(
        object_id=claims["oid"],
        name=name,
        app_id=app_id if isinstance(app_id, str) else None,
        roles=tuple(str(role) for role in roles if isinstance(role, str)),
    )
