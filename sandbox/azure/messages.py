"""What an ARM handler gets (`RequestContext`) and gives back (`Reply`), and ARM's timestamp format."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from sandbox.azure.tokens import TokenClaims


def iso(epoch_seconds: float) -> str:
    """ARM-style UTC timestamp with 7 fractional digits, e.g. 2021-05-12T20:40:28.2398112Z."""
    moment = datetime.fromtimestamp(epoch_seconds, tz=UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond:06d}0Z"


@dataclass
class RequestContext:
    """What a handler needs to know about the request it serves."""

    method: str
    path: str
    query: dict[str, str]
    api_version: str
    claims: TokenClaims | None
    base_url: str
    body: Any
    url: str = ""
    headers: dict[str, str] = field(default_factory=dict)
    authorization: Any = None  # the authorizer.Decision once authorization has run (logged with the request)

    @property
    def principal_id(self) -> str:
        return self.claims.principal_id if self.claims is not None else ""


@dataclass
class Reply:
    status: int
    body: Any = None
    headers: dict[str, str] = field(default_factory=dict)
    empty: bool = False  # no body at all (202 on operationResults), as opposed to a JSON null
