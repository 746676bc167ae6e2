"""The key URIs this app accepts: well formed (cmk.resource_ids), and of a vault of the cloud it runs in.

Every entry that takes a key from outside calls `accepted_key_uri`: the enablement request, the key policy (request,
CMK_KEY_POLICY, and an account's policy tag), the rollout request and, through the policy, Event Grid enrolment. So a
key refused here is refused the same way, with the same code and message, wherever it comes from, and before
anything starts (HTTP 400).
"""

from __future__ import annotations

from cmk import clouds
from cmk.errors import InvalidRequest
from cmk.resource_ids import KeyUri, parse_key_uri

KEY_URI_OF_ANOTHER_CLOUD = "KeyUriOfAnotherCloud"
# Refusals that are about the key itself, not the shape of what names it: reported with the same code and message
# wherever the key comes from (a key policy does not wrap them in InvalidKeyPolicy).
KEY_REFUSALS = frozenset({KEY_URI_OF_ANOTHER_CLOUD})


def accepted_key_uri(value: object) -> KeyUri:
    """Parse a key URI and refuse one this app cannot use in its cloud (InvalidRequest, HTTP 400)."""
    key = parse_key_uri(value)
    cloud = clouds.current()
    if not cloud.owns_key_host(key.vault_host):
        other = clouds.cloud_of_key_host(key.vault_host)
        of = f"a key of {other.name}" if other is not None else "not a key of any cloud this app knows"
        raise InvalidRequest(
            KEY_URI_OF_ANOTHER_CLOUD,
            f"keyUri {key} is {of}, but this app runs in {cloud.name} (AZURE_CLOUD), whose keys are "
            f"{cloud.key_vault_example}: Cosmos DB accounts use keys of their own cloud only.",
        )
    return key
