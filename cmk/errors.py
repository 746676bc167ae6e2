"""Errors that mean "the request is wrong", reported to the caller as HTTP 400 before anything starts."""

from __future__ import annotations

MAX_SHOWN = 120
MAX_MESSAGE = 1000


def shown(value: object) -> str:
    """A caller's value quoted in a message: its repr, cut short, so an error never echoes a megabyte back."""
    try:
        text = repr(value)
    except RecursionError:  # a structure too deep to print
        text = f"<{type(value).__name__}>"
    return text if len(text) <= MAX_SHOWN else f"{text[: MAX_SHOWN - 3]}..."


class InvalidRequest(ValueError):
    """A caller mistake with a stable code and a message a human can act on; `status` is the HTTP answer (a 4xx)."""

    def __init__(self, code: str, message: str, *, status: int = 400) -> None:
        if len(message) > MAX_MESSAGE:
            message = f"{message[: MAX_MESSAGE - 3]}..."
        super().__init__(message)
        self.code = code
        self.message = message
        self.status = status

    def to_json(self) -> dict[str, dict[str, str]]:
        return {"error": {"code": self.code, "message": self.message}}
