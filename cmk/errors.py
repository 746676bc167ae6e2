"""Errors that mean "the request is wrong", reported to the caller as HTTP 400 before anything starts."""

from __future__ import annotations


class InvalidRequest(ValueError):
    """A caller mistake with a stable code and a message a human can act on."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message

    def to_json(self) -> dict[str, dict[str, str]]:
        return {"error": {"code": self.code, "message": self.message}}
