"""The irreversible step and its confirmation.

The key PATCH carries `keyVaultKeyUri` and nothing else: Azure refuses a PATCH that changes the key together
with any other property. It returns at once with the async operation to follow; the encryption of existing data
then runs in Azure for minutes to hours.
"""

from __future__ import annotations

from typing import TypedDict

from azure.mgmt.cosmosdb import models

from cmk import inventory
from cmk.identity import patch_account
from cmk.operations import OperationRef
from cmk.resource_ids import parse_account_id, same_key_uri

KEY_ACCESS_CONFIRMED = "Access to the configured customer managed key confirmed."


class Verification(TypedDict):
    verified: bool
    keyVaultKeyUri: str | None
    keyVaultKeyUriVersion: str | None
    customerManagedKeyStatus: str | None
    provisioningState: str | None
    detail: str


def enable_cmk(account_id: str, key_uri: str) -> OperationRef:
    parameters = models.DatabaseAccountUpdateParameters(
        properties=models.DatabaseAccountUpdateProperties(key_vault_key_uri=key_uri)
    )
    return patch_account(account_id, "enableCmk", parameters, expected_key_uri=key_uri)


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
