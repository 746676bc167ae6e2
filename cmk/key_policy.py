"""Which key an account gets in a rollout: the most specific rule of the key policy wins.

Policy JSON (request `keyPolicy`, or the app setting CMK_KEY_POLICY):
`{"default": keyUri, "bySubscription": {subId: keyUri}, "byRegion": {region: keyUri}, "accountTag": "cmk-key-uri"}`
Order: the account's tag (named by accountTag), then its subscription, then its region, then the default.
"""

from __future__ import annotations

import re
from typing import Any, NotRequired, TypedDict

from cmk.errors import InvalidRequest, shown
from cmk.key_uris import KEY_REFUSALS, accepted_key_uri
from cmk.resource_ids import parse_subscription_id


class KeyPolicy(TypedDict):
    default: NotRequired[str]
    bySubscription: NotRequired[dict[str, str]]
    byRegion: NotRequired[dict[str, str]]
    accountTag: NotRequired[str]


class KeyChoice(TypedDict):
    keyUri: str | None
    source: str


_FIELDS = {"default", "bySubscription", "byRegion", "accountTag"}
_REGION = re.compile(r"[A-Za-z][A-Za-z0-9 ]{1,63}")


def normalise_region(region: str) -> str:
    """ARM writes regions both as "West Europe" and "westeurope"."""
    return region.replace(" ", "").lower()


def parse_key_policy(value: Any) -> KeyPolicy:
    if not isinstance(value, dict):
        raise InvalidRequest("InvalidKeyPolicy", "keyPolicy must be a JSON object.")
    unknown = sorted(set(value) - _FIELDS)
    if unknown:
        raise InvalidRequest("InvalidKeyPolicy", f"Unknown keyPolicy field(s) {', '.join(unknown)}.")
    policy: KeyPolicy = {}
    if "default" in value:
        policy["default"] = _key(value["default"], "keyPolicy.default")
    for field, normalise in (("bySubscription", _subscription), ("byRegion", _region)):
        if field in value:
            mapping = value[field]
            if not isinstance(mapping, dict):
                raise InvalidRequest("InvalidKeyPolicy", f"keyPolicy.{field} must map names to key URIs.")
            policy[field] = {  # type: ignore[literal-required]
                normalise(name): _key(uri, f"keyPolicy.{field}.{name}") for name, uri in mapping.items()
            }
    if "accountTag" in value:
        tag = value["accountTag"]
        if not isinstance(tag, str) or not tag.strip():
            raise InvalidRequest("InvalidKeyPolicy", "keyPolicy.accountTag must be a tag name.")
        policy["accountTag"] = tag.strip()
    if not any(field in policy for field in ("default", "bySubscription", "byRegion", "accountTag")):
        raise InvalidRequest(
            "InvalidKeyPolicy", "keyPolicy names no key: give default, bySubscription, byRegion or accountTag."
        )
    return policy


def _subscription(name: str) -> str:
    try:
        return parse_subscription_id(name, "keyPolicy.bySubscription")
    except InvalidRequest as error:
        raise InvalidRequest("InvalidKeyPolicy", error.message) from error


def _region(name: str) -> str:
    if not _REGION.fullmatch(name):
        raise InvalidRequest(
            "InvalidKeyPolicy", f"keyPolicy.byRegion: {shown(name)} is not a region name (westeurope, West Europe)."
        )
    return normalise_region(name)


def _key(value: Any, where: str) -> str:
    try:
        return str(accepted_key_uri(value))
    except InvalidRequest as error:
        if error.code in KEY_REFUSALS:
            raise
        raise InvalidRequest("InvalidKeyPolicy", f"{where}: {error.message}") from error


def choose_key(policy: KeyPolicy, subscription_id: str, region: str, tags: dict[str, str] | None) -> KeyChoice:
    tag_name = policy.get("accountTag")
    if tag_name and tags:
        tagged = next((v for k, v in tags.items() if k.lower() == tag_name.lower()), None)
        if tagged:
            try:
                return {"keyUri": str(accepted_key_uri(tagged)), "source": f"tag {tag_name}"}
            except InvalidRequest as error:
                if error.code in KEY_REFUSALS:
                    return {"keyUri": None, "source": f"tag {tag_name}: {error.code}: {error.message}"}
                return {"keyUri": None, "source": f"tag {tag_name} holds an invalid key URI {shown(tagged)}"}
    by_subscription = policy.get("bySubscription", {})
    if subscription_id.lower() in by_subscription:
        return {"keyUri": by_subscription[subscription_id.lower()], "source": f"subscription {subscription_id}"}
    by_region = policy.get("byRegion", {})
    if normalise_region(region) in by_region:
        return {"keyUri": by_region[normalise_region(region)], "source": f"region {region}"}
    if "default" in policy:
        return {"keyUri": policy["default"], "source": "default"}
    return {"keyUri": None, "source": "no rule of the key policy matches"}
