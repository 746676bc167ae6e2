"""ARM request throttling (token buckets) and Resource Graph's per-user quota, on simulated time.

ARM (since 2024): per subscription, per principal, per operation kind a bucket of 250 reads (refill 25/s),
200 writes (10/s), 200 deletes (10/s); plus a global per-subscription bucket 15× as large across all principals.
Exhaustion answers 429 with Retry-After in whole (simulated) seconds. Buckets live in memory: a restarted
simulator starts with full buckets, like a fresh ARM region instance.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from sandbox.azure.errors import ArmError
from sandbox.azure.world import ThrottleSettings


@dataclass
class TokenBucket:
    capacity: float
    refill_per_second: float
    tokens: float
    updated_at: float

    def refill(self, now: float) -> None:
        elapsed = max(0.0, now - self.updated_at)
        self.tokens = min(self.capacity, self.tokens + elapsed * self.refill_per_second)
        self.updated_at = now

    def seconds_until_token(self) -> int:
        missing = 1.0 - self.tokens
        if missing <= 0:
            return 0
        return max(1, math.ceil(missing / max(self.refill_per_second, 1e-9)))


OPERATION_KINDS = ("reads", "writes", "deletes")


def operation_kind(method: str) -> str:
    upper = method.upper()
    if upper in ("GET", "HEAD"):
        return "reads"
    if upper == "DELETE":
        return "deletes"
    return "writes"


class ArmThrottle:
    def __init__(self, settings: ThrottleSettings) -> None:
        self.settings = settings
        self._buckets: dict[tuple[str, str, str], TokenBucket] = {}

    def _limits(self, kind: str) -> tuple[float, float]:
        settings = self.settings
        if kind == "reads":
            return settings.read_bucket, settings.read_refill_per_second
        if kind == "deletes":
            return settings.delete_bucket, settings.delete_refill_per_second
        return settings.write_bucket, settings.write_refill_per_second

    def _bucket(self, key: tuple[str, str, str], capacity: float, refill: float, now: float) -> TokenBucket:
        bucket = self._buckets.get(key)
        if bucket is None:
            bucket = TokenBucket(capacity, refill, capacity, now)
            self._buckets[key] = bucket
        bucket.refill(now)
        return bucket

    def take(self, subscription_id: str, principal_id: str, method: str, now: float) -> dict[str, str]:
        """Consume one token or raise 429; returns the x-ms-ratelimit-remaining-* headers for the response."""
        kind = operation_kind(method)
        capacity, refill = self._limits(kind)
        multiplier = self.settings.global_multiplier
        subscription = subscription_id.lower()
        principal_bucket = self._bucket((subscription, principal_id.lower(), kind), capacity, refill, now)
        global_bucket = self._bucket((subscription, "*", kind), capacity * multiplier, refill * multiplier, now)
        if self.settings.enabled and (principal_bucket.tokens < 1 or global_bucket.tokens < 1):
            scope_bucket = principal_bucket if principal_bucket.tokens < 1 else global_bucket
            wait = scope_bucket.seconds_until_token()
            kind_word = {"reads": "read", "writes": "write", "deletes": "delete"}[kind]
            actor = f"actor '{principal_id}' " if scope_bucket is principal_bucket else ""
            raise ArmError(
                429,
                "SubscriptionRequestsThrottled",
                f"Number of '{kind_word}' requests for subscription '{subscription_id}' {actor}exceeded. "
                f"Please try again after '{wait}' seconds after additional tokens are available. "
                "Refer to https://aka.ms/arm-throttling",
                headers={"Retry-After": str(wait), **self._headers(kind, principal_bucket, global_bucket)},
            )
        if self.settings.enabled:
            principal_bucket.tokens -= 1
            global_bucket.tokens -= 1
        return self._headers(kind, principal_bucket, global_bucket)

    @staticmethod
    def _headers(kind: str, principal_bucket: TokenBucket, global_bucket: TokenBucket) -> dict[str, str]:
        return {
            f"x-ms-ratelimit-remaining-subscription-{kind}": str(max(0, int(principal_bucket.tokens))),
            f"x-ms-ratelimit-remaining-subscription-global-{kind}": str(max(0, int(global_bucket.tokens))),
        }


class ResourceGraphQuota:
    """15 queries per 5-second window per user; the window starts with the first query after the last one expired."""

    def __init__(self, settings: ThrottleSettings) -> None:
        self.settings = settings
        self._windows: dict[str, tuple[float, int]] = {}

    def take(self, principal_id: str, now: float) -> dict[str, str]:
        limit = self.settings.resource_graph_queries_per_window
        window = self.settings.resource_graph_window_seconds
        start, used = self._windows.get(principal_id.lower(), (now, 0))
        if now >= start + window:
            start, used = now, 0
        resets_after = max(0.0, start + window - now)
        if self.settings.enabled and used >= limit:
            raise ArmError(
                429,
                "RateLimiting",
                "Please provide below info when asking for support: timestamp, correlationId. "
                f"Too many requests: the user quota of {limit} queries per {window:g} seconds is exhausted.",
                headers={
                    "Retry-After": str(max(1, math.ceil(resets_after))),
                    "x-ms-user-quota-remaining": "0",
                    "x-ms-user-quota-resets-after": _hms(resets_after),
                },
            )
        used += 1
        self._windows[principal_id.lower()] = (start, used)
        return {
            "x-ms-user-quota-remaining": str(max(0, limit - used)),
            "x-ms-user-quota-resets-after": _hms(resets_after),
        }


def _hms(seconds: float) -> str:
    whole = math.ceil(seconds)
    return f"{whole // 3600:02d}:{whole % 3600 // 60:02d}:{whole % 60:02d}"
