"""A small client of the app's HTTP API: an Entra ID access token (--token, CMK_API_TOKEN) or a function key
(--key, CMK_FUNCTION_KEY), as the app's CMK_AUTH_MODE asks."""

from __future__ import annotations

import json
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass
from typing import Any


class ApiError(Exception):
    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(f"HTTP {status} {code}: {message}")
        self.status = status
        self.code = code
        self.message = message


@dataclass(frozen=True)
class Api:
    base_url: str
    function_key: str | None = None
    token: str | None = None
    timeout_seconds: float = 30.0

    def request(
        self, method: str, path: str, body: Any = None, query: dict[str, str] | None = None
    ) -> tuple[int, dict[str, str], bytes]:
        url = f"{self.base_url.rstrip('/')}/api/{path.lstrip('/')}"
        if query:
            url += "?" + urllib.parse.urlencode({k: v for k, v in query.items() if v is not None})
        headers = {"Accept": "application/json"}
        data = None
        if body is not None:
            data = json.dumps(body).encode()
            headers["Content-Type"] = "application/json"
        if self.function_key:
            headers["x-functions-key"] = self.function_key
        if self.token:
            headers["Authorization"] = f"Bearer {self.token}"
        request = urllib.request.Request(url, data=data, method=method, headers=headers)
        try:
            with urllib.request.urlopen(request, timeout=self.timeout_seconds) as response:
                return response.status, dict(response.headers), response.read()
        except urllib.error.HTTPError as error:
            payload = error.read()
            try:
                problem = json.loads(payload).get("error") or {}
            except ValueError:
                problem = {}
            raise ApiError(
                error.code, str(problem.get("code") or error.reason), str(problem.get("message") or payload[:200])
            ) from error

    def json(self, method: str, path: str, body: Any = None, query: dict[str, str] | None = None) -> Any:
        _, _, payload = self.request(method, path, body, query)
        return json.loads(payload) if payload else None
