"""The irreversible step and its confirmation.

The key PATCH carries `keyVaultKeyUri` and nothing else: Azure refuses a PATCH that changes the key together
with any other property. It returns at once with the async operation to follow; the encryption of existing data
then runs in Azure for minutes to days.

The PATCH is safe to retry because it is never sent blind: every attempt reads the account first, and sends
nothing when the key is already there or an operation is in flight (perhaps this PATCH, sent by an attempt whose
reply was lost: Azure shows the old body, `Updating`, until the encryption ends). An answer that leaves open
whether it applied (no reply, 5xx, 409/412) is answered by reading the account again, never by a bare failure.
"""

from __future__ import annotations

from typing import Literal, TypedDict

from azure.core.exceptions import HttpResponseError, ServiceResponseError
from azure.mgmt.cosmosdb import models

from cmk import inventory
from cmk.identity import is_lost_or_busy, patch_account
from cmk.inventory import AccountFacts
from cmk.operations import OperationRef
from cmk.resource_ids import parse_account_id, same_key_uri

EnableStatus = Literal["accepted", "applied", "busy", "differentKey", "missing", "uncertain"]

KEY_ACCESS_CONFIRMED = "Access to the configured customer managed key confirmed."


class Verification(TypedDict):
    verified: bool
    keyVaultKeyUri: str | None
    keyVaultKeyUriVersion: str | None
    customerManagedKeyStatus: str | None
    provisioningState: str | None
    detail: str


class EnableResult(TypedDict):
    """What one attempt of the enable step found or did.

    accepted: this attempt sent the PATCH and Azure accepted it (follow `operation`); applied: the account already
    has the key and is idle (verify); busy: an operation is in flight, ours or another (follow the account, then
    decide again); uncertain: the PATCH's answer left open whether it applied and the account looks untouched
    (decide again shortly); differentKey: someone configured another key meanwhile; missing: the account is gone.
    """

    status: EnableStatus
    operation: OperationRef | None
    provisioningState: str | None
    detail: str


def enable_cmk(account_id: str, key_uri: str) -> EnableResult:
    """Read the account, and send the key-only PATCH only when nothing is in flight and the key is not there."""
    account_ref = parse_account_id(account_id)
    seen = _already(inventory.read_account(account_ref), key_uri)
    if seen is not None:
        return seen
    parameters = models.DatabaseAccountUpdateParameters(
        properties=models.DatabaseAccountUpdateProperties(key_vault_key_uri=key_uri)
    )
    try:
        operation = patch_account(account_id, "enableCmk", parameters, expected_key_uri=key_uri)
    except (HttpResponseError, ServiceResponseError) as error:
        if not is_lost_or_busy(error):
            raise
        after = _already(inventory.read_account(account_ref), key_uri)
        if after is not None:
            return after
        return _result("uncertain", None, None, f"the key PATCH got no usable answer ({type(error).__name__})")
    return _result("accepted", operation, "Updating", "the key PATCH was accepted")


def _already(account: AccountFacts | None, key_uri: str) -> EnableResult | None:
    """The result when the account itself settles it (no PATCH to send), else None."""
    if account is None:
        return _result("missing", None, None, "the account no longer exists")
    state = account["provisioningState"]
    configured = account["keyVaultKeyUri"]
    if configured and not same_key_uri(configured, key_uri):
        return _result("differentKey", None, state, f"the account now uses another key ({configured})")
    if state.lower() != "succeeded":
        return _result("busy", None, state, f"the account is {state}: an operation is in progress")
    if configured:
        return _result("applied", None, state, "the account already has the key")
    return None


def _result(status: EnableStatus, operation: OperationRef | None, state: str | None, detail: str) -> EnableResult:
    return {"status": status, "operation": operation, "provisioningState": state, "detail": detail}


def verify_cmk(account_id: str, key_uri: str) -> Verification:
    """The account reports the key, and customerManagedKeyStatus confirms Cosmos DB can reach it."""
    account = inventory.read_account(parse_account_id(account_id))
    if account is None:
        return {
            "verified": False,
            "keyVaultKeyUri": None,
            "keyVaultKeyUriVersion": None,
            "customerManagedKeyStatus": None,
            "provisioningState": None,
            "detail": "the account no longer exists",
        }
    status = account["customerManagedKeyStatus"]
    has_key = same_key_uri(account["keyVaultKeyUri"], key_uri)
    confirmed = status is not None and (status == KEY_ACCESS_CONFIRMED or status.strip().upper() == "OK")
    if not has_key:
        detail = f"the account reports key {account['keyVaultKeyUri']!r}, not {key_uri}"
    elif not confirmed:
        detail = f"customerManagedKeyStatus is {status!r}"
    else:
        detail = "key configured and access confirmed"
    return {
        "verified": has_key and confirmed,
        "keyVaultKeyUri": account["keyVaultKeyUri"],
        "keyVaultKeyUriVersion": account["keyVaultKeyUriVersion"],
        "customerManagedKeyStatus": status,
        "provisioningState": account["provisioningState"],
        "detail": detail,
    }
