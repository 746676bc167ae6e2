"""Unsigned JWT access tokens naming a principal, and a TokenCredential that mints them.

Real Entra tokens are signed; the simulator only needs to know *who* is calling (for throttling, the operation
owner check, Key Vault/RBAC evaluation and the request log), so it issues `alg: none` tokens
`base64url(header).base64url(payload).` and reads the claims back without verification. Expiry is real wall-clock
time, because azure-identity and azure-core compare it with `time.time()`.
"""

from __future__ import annotations

import base64
import json
import time
import uuid
from dataclasses import dataclass
from typing import Any

from azure.core.credentials import AccessToken, AccessTokenInfo, TokenRequestOptions

DEFAULT_TOKEN_LIFETIME_SECONDS = 24 * 3600  # managed identity tokens live about a day

# Fixed namespace so principals derived from a client id or resource id are stable across runs.
PRINCIPAL_NAMESPACE = uuid.UUID("5d0f3f5e-3b83-4a57-9d36-6b1a0cbb7a51")


def derived_guid(*parts: str) -> str:
    """A deterministic GUID for a value that has no principal in the world (e.g. an unknown client id)."""
    return str(uuid.uuid5(PRINCIPAL_NAMESPACE, "|".join(part.lower() for part in parts)))


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _b64url_decode(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def mint_token(
    principal_id: str,
    *,
    tenant_id: str = "72f988bf-86f1-41af-91ab-2d7cd011db47",
    app_id: str | None = None,
    audience: str = "https://management.azure.com/",
    lifetime_seconds: int = DEFAULT_TOKEN_LIFETIME_SECONDS,
    resource_id: str | None = None,
    issued_at: int | None = None,
) -> str:
    """An unsigned JWT for `principal_id` (the principal's object id, claim `oid`)."""
    now = int(time.time()) if issued_at is None else issued_at
    payload: dict[str, Any] = {
        "aud": audience,
        "iss": f"https://sts.windows.net/{tenant_id}/",
        "iat": now,
        "nbf": now,
        "exp": now + lifetime_seconds,
        "oid": principal_id,
        "sub": principal_id,
        "tid": tenant_id,
        "appid": app_id or principal_id,
        "appidacr": "2",
        "idtyp": "app",
        "uti": uuid.uuid4().hex[:22],
        "ver": "1.0",
    }
    if resource_id:
        payload["xms_mirid"] = resource_id
    header = {"alg": "none", "typ": "JWT"}
    return (
        _b64url(json.dumps(header, separators=(",", ":")).encode())
        + "."
        + _b64url(json.dumps(payload, separators=(",", ":")).encode())
        + "."
    )


@dataclass(frozen=True)
class TokenClaims:
    principal_id: str
    tenant_id: str
    app_id: str
    audience: str
    expires_on: int
    raw: dict[str, Any]


class InvalidToken(ValueError):
    pass


def read_token(token: str) -> TokenClaims:
    """Decode the claims of a token minted by `mint_token` (or any JWT: the signature is not checked)."""
    parts = token.strip().split(".")
    if len(parts) < 2:
        raise InvalidToken("the access token is not a JWT")
    try:
        payload = json.loads(_b64url_decode(parts[1]))
    except (ValueError, UnicodeDecodeError) as error:
        raise InvalidToken(f"the access token payload cannot be decoded: {error}") from error
    if not isinstance(payload, dict) or not isinstance(payload.get("oid"), str):
        raise InvalidToken("the access token has no 'oid' claim")
    return TokenClaims(
        principal_id=payload["oid"],
        tenant_id=str(payload.get("tid", "")),
        app_id=str(payload.get("appid", payload["oid"])),
        audience=str(payload.get("aud", "")),
        expires_on=int(payload.get("exp", 0)),
        raw=payload,
    )


def resource_from_scopes(scopes: tuple[str, ...]) -> str:
    """`https://management.azure.com/.default` → `https://management.azure.com/` (what an MI endpoint gets)."""
    if not scopes:
        raise ValueError("at least one scope is required")
    scope = scopes[0]
    return scope[: -len(".default")] if scope.endswith("/.default") else scope


class PrincipalCredential:
    """A TokenCredential for tests that need to act as several principals against the simulator."""

    def __init__(self, principal_id: str, *, tenant_id: str, app_id: str | None = None) -> None:
        self.principal_id = principal_id
        self.tenant_id = tenant_id
        self.app_id = app_id

    def _mint(self, scopes: tuple[str, ...]) -> tuple[str, int]:
        token = mint_token(
            self.principal_id,
            tenant_id=self.tenant_id,
            app_id=self.app_id,
            audience=resource_from_scopes(scopes),
        )
        return token, read_token(token).expires_on

    def get_token(
        self,
        *scopes: str,
        claims: str | None = None,
        tenant_id: str | None = None,
        enable_cae: bool = False,
        **kwargs: Any,
    ) -> AccessToken:
        token, expires_on = self._mint(scopes)
        return AccessToken(token, expires_on)

    def get_token_info(self, *scopes: str, options: TokenRequestOptions | None = None) -> AccessTokenInfo:
        token, expires_on = self._mint(scopes)
        return AccessTokenInfo(token, expires_on)

    def close(self) -> None:
        """Nothing to release; present so the credential can be used as a context manager by SDK clients."""

    def __enter__(self) -> PrincipalCredential:
        return self

    def __exit__(self, *args: object) -> None:
        self.close()
