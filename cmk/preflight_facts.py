"""Reading what preflight judges: the account, the key's vault and the key, the identity, the document ids.

`gather` makes every read preflight needs, before any rule runs, into one PreflightSnapshot (cmk.preflight judges
it). A read that Azure answers with 404 or refuses with 403 is a fact and goes into the snapshot as data, with
Azure's message. What is not a fact about the account raises as before, for the activity to report (cmk.arm
.arm_outcomes): throttling (429), server faults, and the refusals no finding judges (reading the key, the
preview api-version, the account's services, Resource Graph).

The rules also decide what is worth reading (cmk.preflight.reads_past_the_account, worth_scanning): nothing past
an account whose verdict it alone decides, and the document-id scan, which costs the account request units, only
when nothing else blocks.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import TypeVar

from azure.core.exceptions import HttpResponseError

from cmk import inventory, settings
from cmk.arm import describe, is_forbidden
from cmk.document_ids import scan_document_ids
from cmk.preflight import PreflightSnapshot, Read, reads_past_the_account, resolve_identity, worth_scanning
from cmk.requests import EnablementRequest
from cmk.resource_ids import parse_account_id, parse_identity_id, parse_key_uri

Facts = TypeVar("Facts")


def gather(
    request: EnablementRequest, as_of: datetime, shared: inventory.SharedReads | None = None
) -> PreflightSnapshot:
    """Read everything the rules need for this request. Read-only: changes nothing in Azure. `shared`: what the
    accounts of a rollout share (cmk.inventory.SharedReads)."""
    account_id = parse_account_id(request["accountId"])
    key_uri = parse_key_uri(request["keyUri"])
    snapshot: PreflightSnapshot = {
        "accountId": str(account_id),
        "keyUri": request["keyUri"],
        "requestedIdentity": request.get("identity"),
        "asOf": as_of.isoformat(),
        "account": _read(lambda: inventory.read_account(account_id, include_preview=True)),
        "vault": None,
        "key": None,
        "identity": None,
        "documentIds": None,
    }
    account = snapshot["account"]["facts"]
    if account is None or not reads_past_the_account(snapshot):
        return snapshot
    lookup = inventory.find_vault(key_uri, account_id, shared)
    snapshot["vault"] = lookup
    vault = lookup["vault"]
    if vault is not None:
        snapshot["key"] = _read(lambda: inventory.read_key(vault, key_uri, shared))
    identity, _ = resolve_identity(account, snapshot["requestedIdentity"])
    if identity is not None and identity["type"] == "UserAssigned":
        identity_id = parse_identity_id(identity["resourceId"])
        snapshot["identity"] = _read(lambda: inventory.read_user_assigned_identity(identity_id))
    if settings.get_bool("CMK_DOCUMENT_ID_SCAN") and worth_scanning(snapshot):
        snapshot["documentIds"] = scan_document_ids(account["documentEndpoint"])
    return snapshot


def _read(read: Callable[[], Facts | None], *, refusal_is_a_fact: bool = True) -> Read[Facts]:
    """One read as data: its facts, notFound (the reader's None for a 404), or forbidden with Azure's message."""
    try:
        facts = read()
    except HttpResponseError as error:
        if not (refusal_is_a_fact and is_forbidden(error)):
            raise
        return {"outcome": "forbidden", "facts": None, "refusal": describe(error)}
    return {"outcome": "notFound" if facts is None else "found", "facts": facts, "refusal": None}
