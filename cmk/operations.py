"""ARM asynchronous operations: what a PATCH hands back, and one reading of where the operation stands.

Cosmos DB answers a PATCH with 200 (not 202) plus `Azure-AsyncOperation` and `Location` headers; the status URL
reports `Dequeued`, `InProgress` and other values until it says Succeeded, Failed or Canceled (ARM RPC: every
other value means "still running"). A 4xx/5xx on the status URL is a failure to read, not a failed operation;
when the URL is unreadable we can fall back to the account's own state.
"""

from __future__ import annotations

from typing import Any, Literal, NotRequired, TypedDict

from azure.core.exceptions import HttpResponseError, ServiceRequestError, ServiceResponseError
from azure.core.rest import HttpRequest

from cmk import clients
from cmk.arm import is_not_found
from cmk.resource_ids import parse_account_id, same_key_uri

TERMINAL_STATUSES = {"succeeded", "failed", "canceled"}
OperationKind = Literal["identity", "defaultIdentity", "enableCmk"]


class OperationRef(TypedDict):
    accountId: str
    kind: OperationKind
    statusUrl: str | None
    locationUrl: str | None
    retryAfterSeconds: int | None
    expectedKeyUri: NotRequired[str]


class OperationError(TypedDict):
    code: str
    message: str


class OperationReading(TypedDict):
    status: str
    terminal: bool
    succeeded: bool
    error: OperationError | None
    source: Literal["statusUrl", "account"]
    readError: str | None
    retryAfterSeconds: int | None
    percentComplete: float | None


def operation_from_headers(
    account_id: str, kind: OperationKind, headers: Any, expected_key_uri: str | None = None
) -> OperationRef:
    retry_after = headers.get("Retry-After")
    reference: OperationRef = {
        "accountId": account_id,
        "kind": kind,
        "statusUrl": headers.get("Azure-AsyncOperation"),
        "locationUrl": headers.get("Location"),
        "retryAfterSeconds": int(float(retry_after)) if retry_after else None,
    }
    if expected_key_uri is not None:
        reference["expectedKeyUri"] = expected_key_uri
    return reference


def is_terminal(status: str) -> bool:
    return status.lower() in TERMINAL_STATUSES


def read_operation(operation: OperationRef, *, fallback_to_account: bool = True) -> OperationReading:
    """One GET of the status URL (with the identity that started the operation, as ARM requires)."""
    account = parse_account_id(operation["accountId"])
    client = clients.cosmos(account.subscription_id)
    url = operation["statusUrl"] or operation["locationUrl"]
    read_error: str
    if url is None:
        read_error = "the PATCH returned no status URL"
    else:
        try:
            response = client.send_request(HttpRequest("GET", url))
        except (ServiceRequestError, ServiceResponseError) as error:
            read_error = f"{type(error).__name__}: {error}"
        else:
            retry_after = response.headers.get("Retry-After")
            if response.status_code == 429:
                response.raise_for_status()  # throttling is the orchestrator's to wait out
            if response.status_code == 200 and url == operation["statusUrl"]:
                return _from_status_body(response.json(), retry_after)
            if url == operation["locationUrl"] and response.status_code in (200, 202):
                # Location semantics: 202 while running, 200 with the resource once done.
                status = "InProgress" if response.status_code == 202 else "Succeeded"
                return _reading(status, None, "statusUrl", None, retry_after, None)
            read_error = f"HTTP {response.status_code} reading the status URL{_azure_error(response)}"
    if not fallback_to_account:
        return _reading("Unknown", None, "statusUrl", read_error, None, None)
    return _from_account(operation, read_error)


def _azure_error(response: Any) -> str:
    """`: <code>: <message>` from ARM's error body, so a refused read says which action and scope to grant."""
    try:
        body = response.json()
    except ValueError:
        return ""
    error = body.get("error") if isinstance(body, dict) else None
    if not isinstance(error, dict) or not (error.get("code") or error.get("message")):
        return ""
    parts = [str(error.get("code") or response.status_code), str(error.get("message") or "")]
    return "".join(f": {part}" for part in parts if part)


def _from_status_body(body: dict[str, Any], retry_after: str | None) -> OperationReading:
    status = str(body.get("status") or "Unknown")
    error: OperationError | None = None
    if status.lower() in ("failed", "canceled"):
        raw = body.get("error") or {}
        error = {
            "code": str(raw.get("code") or status),
            "message": str(raw.get("message") or "The operation ended without an error message."),
        }
    percent = body.get("percentComplete")
    return _reading(status, error, "statusUrl", None, retry_after, float(percent) if percent is not None else None)


def _from_account(operation: OperationRef, read_error: str) -> OperationReading:
    account_id = parse_account_id(operation["accountId"])
    client = clients.cosmos(account_id.subscription_id)
    try:
        body = client.database_accounts.get(account_id.resource_group, account_id.name).as_dict()
    except HttpResponseError as error:
        if is_not_found(error):
            return _reading(
                "Failed",
                {"code": "AccountNotFound", "message": "The account no longer exists."},
                "account",
                read_error,
                None,
                None,
            )
        raise
    properties = body.get("properties") or {}
    state = str(properties.get("provisioningState") or "Succeeded")
    if state.lower() != "succeeded":
        return _reading(state, None, "account", read_error, None, None)
    expected = operation.get("expectedKeyUri")
    if operation["kind"] == "enableCmk" and not same_key_uri(properties.get("keyVaultKeyUri"), expected):
        return _reading(
            "Failed",
            {
                "code": "NotApplied",
                "message": f"The status URL could not be read ({read_error}) and the account is idle without "
                "the key: the operation did not complete.",
            },
            "account",
            read_error,
            None,
            None,
        )
    return _reading("Succeeded", None, "account", read_error, None, None)


def _reading(
    status: str,
    error: OperationError | None,
    source: Literal["statusUrl", "account"],
    read_error: str | None,
    retry_after: str | None,
    percent: float | None,
) -> OperationReading:
    return {
        "status": status,
        "terminal": is_terminal(status),
        "succeeded": status.lower() == "succeeded",
        "error": error,
        "source": source,
        "readError": read_error,
        "retryAfterSeconds": int(float(retry_after)) if retry_after else None,
        "percentComplete": percent,
    }
