"""Planning a fleet rollout under concurrency caps: lanes, longest expected encryption first.

A lane is a sub-orchestration that works through its accounts one at a time, so at most `lanes` accounts are in
flight. The Durable out-of-process protocol degrades a `task_any` sliding window to near-sequential (see
docs/durable-protocol.md §2.5), so concurrency is capped with lanes instead. Accounts are dealt longest first to
the least loaded lane (LPT scheduling: makespan within 4/3 of optimal for the estimates), and a subscription's
accounts are kept on at most `max_per_subscription` lanes, which bounds its concurrency by construction.

What the caps bound is the encryption: an account holds its lane's slot from its key PATCH to the end of its
encryption. Preparation (preflight, identity, key access) runs ahead of the slot, for up to `maxPreparing` accounts
of the rollout at once, dealt over the lanes (`preparing_per_lane`), so a slot is refilled the moment an
encryption ends.
"""

from __future__ import annotations

from collections import defaultdict
from typing import TypedDict

# Time an account spends outside the encryption itself: preflight, two identity operations, RBAC propagation.
DEFAULT_OVERHEAD_SECONDS = 900.0
# Used when Azure Monitor could not tell us an account's size or spare throughput.
UNKNOWN_ENCRYPTION_SECONDS = 3600.0
# Azure encrypts with spare RU/s and publishes no rate ("a direct function of data size" and unused RU/s). The
# working assumption: each KiB is read (about 1 RU per KB) and written back (about 5 RUs per KB), the costs
# Microsoft's "Optimize request cost in Azure Cosmos DB" gives; the simulator's model (world.py) makes the same one.
RU_PER_KIB = 6.0
# Accounts one lane prepares ahead of its slot at most: the lane names each in its custom status, which must stay
# small (16 KB), and a deeper lead only makes prepared accounts wait longer.
MAX_PREPARING_PER_LANE = 16


class PlannedAccount(TypedDict):
    accountId: str
    subscriptionId: str
    keyUri: str
    expectedSeconds: float


def expected_encryption_seconds(data_size_bytes: float | None, spare_ru_per_second: float | None) -> float:
    """Expected duration of the background encryption from the account's data size and spare throughput."""
    if data_size_bytes is None or spare_ru_per_second is None or spare_ru_per_second <= 0:
        return UNKNOWN_ENCRYPTION_SECONDS
    return data_size_bytes / 1024 * RU_PER_KIB / spare_ru_per_second


# How far one finished encryption may rescale the estimates of the accounts after it.
MIN_ESTIMATE_SCALE = 0.125
MAX_ESTIMATE_SCALE = 8.0


def estimate_scale(expected_seconds: float | None, running_seconds: float | None) -> float | None:
    """How far this rollout's estimates are off, learned from one encryption that ended: the longest it was seen
    running over its estimate. That is a lower bound of its length, so an estimate scaled by it errs short, and the
    monitor's reads past the expected end (cmk.polling) find the end soon after it. None when there is nothing to
    learn from: no estimate from Azure Monitor (the UNKNOWN_ENCRYPTION_SECONDS stand-in), or no read saw it run."""
    if expected_seconds is None or expected_seconds <= 0 or expected_seconds == UNKNOWN_ENCRYPTION_SECONDS:
        return None
    if running_seconds is None or running_seconds <= 0:
        return None
    return min(MAX_ESTIMATE_SCALE, max(MIN_ESTIMATE_SCALE, running_seconds / expected_seconds))


def scaled_estimate(expected_seconds: float, scale: float | None) -> float:
    """An account's estimate corrected by what the rollout learned (estimate_scale); a stand-in stays as it is."""
    if scale is None or expected_seconds == UNKNOWN_ENCRYPTION_SECONDS:
        return expected_seconds
    return expected_seconds * scale


def plan_lanes(
    accounts: list[PlannedAccount], max_concurrency: int, max_per_subscription: int
) -> list[list[PlannedAccount]]:
    """Deal accounts to lanes, longest first, respecting both caps. Deterministic for the same input."""
    if max_concurrency < 1 or max_per_subscription < 1:
        raise ValueError("concurrency caps must be at least 1")
    lane_count = min(max_concurrency, len(accounts))
    lanes: list[list[PlannedAccount]] = [[] for _ in range(lane_count)]
    loads = [0.0] * lane_count
    lanes_of_subscription: dict[str, list[int]] = defaultdict(list)
    ordered = sorted(accounts, key=lambda a: (-a["expectedSeconds"], a["accountId"].lower()))
    for account in ordered:
        subscription = account["subscriptionId"].lower()
        owned = lanes_of_subscription[subscription]
        candidates = owned if len(owned) >= max_per_subscription else range(lane_count)
        lane = min(candidates, key=lambda index: (loads[index], index))
        if lane not in owned:
            owned.append(lane)
        lanes[lane].append(account)
        loads[lane] += account["expectedSeconds"] + DEFAULT_OVERHEAD_SECONDS
    return [lane for lane in lanes if lane]


def preparing_per_lane(lanes: int, max_preparing: int) -> list[int]:
    """How many accounts each lane prepares ahead of its slot: `max_preparing` dealt evenly, the first lanes (the
    longest, by LPT) taking the remainder, at most MAX_PREPARING_PER_LANE each."""
    if lanes < 1:
        return []
    share, extra = divmod(max(0, max_preparing), lanes)
    return [min(MAX_PREPARING_PER_LANE, share + (1 if index < extra else 0)) for index in range(lanes)]
