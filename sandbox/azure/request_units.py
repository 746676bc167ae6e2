"""Request units charged per Cosmos DB account on the simulated clock: what the data plane throttles on (dataplane.py).

In memory only: like ARM's token buckets, a restarted simulator starts with idle accounts.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field

from sandbox.azure.ids import JsonDict, id_key

THROTTLE_WINDOW_SECONDS = 1.0


@dataclass
class AccountWindow:
    charges: deque[tuple[float, float]] = field(default_factory=deque)
    total: float = 0.0

    def consumed(self, now: float) -> float:
        while self.charges and self.charges[0][0] <= now - THROTTLE_WINDOW_SECONDS:
            _at, charge = self.charges.popleft()
            self.total -= charge
        if not self.charges:
            self.total = 0.0
        return self.total

    def seconds_until_below(self, limit: float, now: float) -> float:
        remaining = self.consumed(now)
        for at, charge in self.charges:
            remaining -= charge
            if remaining < limit:
                return max(0.001, at + THROTTLE_WINDOW_SECONDS - now)
        return 0.001


class RequestUnitLedger:
    """Request units charged per account on the simulated clock: the last second of each account's charges (for
    throttling) and a bounded history of charged and throttled requests (for tests). In memory only: like ARM's
    token buckets, a restarted simulator starts with idle accounts."""

    HISTORY = 200_000

    def __init__(self) -> None:
        self._windows: dict[str, AccountWindow] = {}
        self.history: deque[JsonDict] = deque(maxlen=self.HISTORY)

    def window(self, account_id: str) -> AccountWindow:
        return self._windows.setdefault(id_key(account_id), AccountWindow())
