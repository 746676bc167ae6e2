"""A temporary throughput raise for the encryption (opt-in): what to raise each database and container to, what it
costs, and how much sooner the encryption is expected to end. Pure: the reads and writes are cmk.throughput_arm's.

Cosmos DB encrypts existing data with spare RU/s only, and once the key PATCH is accepted it blocks the control-plane
changes that would raise them (docs/azure-cmk-facts.md §1.1: "raise RUs BEFORE triggering"). So a request may ask
for `"throughputRaise": {"factor": 2, "maxRuPerSecond": 50000}`: every database and container with throughput of its
own is raised before the key PATCH by at most `factor`, with the account's total kept at or under `maxRuPerSecond`,
and each is put back to exactly its recorded value once the encryption has ended.

The planning rules:
- The value of a resource is its manual RU/s, or its autoscale maximum (what autoscale may scale up to).
- One factor for all: min(`factor`, `maxRuPerSecond` / the account's total), each target rounded down to the step
  Azure accepts (100 RU/s manual, 1000 autoscale) and kept under the resource's `instantMaximumThroughput` where
  Azure reports one: above it Azure splits partitions, which takes hours and cannot be undone by lowering.
- Not possible (finding THROUGHPUT_RAISE_NOT_POSSIBLE, blocking when the request asked for a raise): a serverless
  account (no provisioned throughput), an account without any, a total already at or over the ceiling, or targets
  that round to no raise at all.
- The estimate is the rollout's (cmk.fleet.expected_encryption_seconds: data size over spare RU/s); with the raise
  the spare grows by exactly the RU/s added (the workload does not grow with it). The cost is the RU/s added for
  the expected encryption time with the raise, in RU/s-hours (what Azure bills provisioned throughput by).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any, Literal, TypedDict

from cmk.errors import InvalidRequest
from cmk.fleet import expected_encryption_seconds

ThroughputMode = Literal["manual", "autoscale"]

MAX_FACTOR = 10.0  # Azure's minimum RU/s after a raise is a hundredth of the highest ever set: 10x keeps restores exact
MAX_CEILING_RU_PER_SECOND = 100_000_000
MANUAL_STEP = 100
AUTOSCALE_STEP = 1000
RAISE_FIELDS = ("factor", "maxRuPerSecond")


class ThroughputRaiseRequest(TypedDict):
    factor: float
    maxRuPerSecond: int


class ThroughputSetting(TypedDict):
    """Dedicated throughput of one database, container or table (`resourceId`, its throughput being
    `{resourceId}/throughputSettings/default`)."""

    resourceId: str
    mode: ThroughputMode
    ruPerSecond: int  # manual RU/s, or the autoscale maximum
    minimumRuPerSecond: int
    instantMaximumRuPerSecond: int | None


class ThroughputInventory(TypedDict):
    """What the app read of an account: its throughput and the inputs of the encryption estimate."""

    accountId: str
    serverless: bool
    settings: list[ThroughputSetting]
    dataSizeBytes: float | None
    spareRuPerSecond: float | None


class ThroughputChange(TypedDict):
    resourceId: str
    mode: ThroughputMode
    fromRuPerSecond: int
    toRuPerSecond: int


class ThroughputTarget(TypedDict):
    resourceId: str
    mode: ThroughputMode
    ruPerSecond: int


class RaisePlan(TypedDict):
    possible: bool
    reason: str
    factor: float  # the factor applied (the requested one, lowered to fit the ceiling)
    changes: list[ThroughputChange]
    totalRuPerSecond: int
    raisedTotalRuPerSecond: int
    extraRuPerSecond: int
    expectedSeconds: float | None  # the encryption's estimate without the raise (None: metrics unknown)
    expectedSecondsRaised: float | None
    extraRuPerSecondHours: float | None


RaiseStatus = Literal["planned", "notPossible", "restored", "notRestored", "restoreAfterEncryption"]


class RaisedChange(ThroughputChange):
    raisedAt: str | None
    restoredAt: str | None


class ThroughputRaiseReport(TypedDict):
    """What the account's output says of a raise it was asked for (and what the orchestration carries, durably,
    from the raise to the restore: the recorded values are `changes[].fromRuPerSecond`)."""

    requested: ThroughputRaiseRequest
    status: RaiseStatus
    plan: RaisePlan
    changes: list[RaisedChange]
    reason: str | None


def parse_throughput_raise(value: Any) -> ThroughputRaiseRequest:
    """`{"factor": number from 1 to 10, "maxRuPerSecond": whole number >= 400}`; raises InvalidRequest. A factor
    of 1 is well formed and raises nothing: its plan is not possible (the finding), as any plan that raises nothing."""
    if not isinstance(value, dict):
        raise InvalidRequest(
            "InvalidThroughputRaise", 'throughputRaise must be an object: {"factor": 2, "maxRuPerSecond": 50000}.'
        )
    unknown = sorted(set(value) - set(RAISE_FIELDS))
    missing = [name for name in RAISE_FIELDS if name not in value]
    if unknown or missing:
        problems = [f"unknown: {', '.join(unknown)}"] if unknown else []
        problems += [f"missing: {', '.join(missing)}"] if missing else []
        raise InvalidRequest(
            "InvalidThroughputRaise",
            f"throughputRaise takes exactly factor and maxRuPerSecond ({'; '.join(problems)}).",
        )
    factor, ceiling = value["factor"], value["maxRuPerSecond"]
    if isinstance(factor, bool) or not isinstance(factor, int | float) or not 1 <= factor <= MAX_FACTOR:
        raise InvalidRequest(
            "InvalidThroughputRaise", f"throughputRaise.factor must be a number from 1 to {MAX_FACTOR:g}."
        )
    if isinstance(ceiling, bool) or not isinstance(ceiling, int) or not 400 <= ceiling <= MAX_CEILING_RU_PER_SECOND:
        raise InvalidRequest(
            "InvalidThroughputRaise",
            f"throughputRaise.maxRuPerSecond must be a whole number from 400 to {MAX_CEILING_RU_PER_SECOND}.",
        )
    return {"factor": float(factor), "maxRuPerSecond": ceiling}


def plan_raise(inventory: ThroughputInventory, request: ThroughputRaiseRequest) -> RaisePlan:
    """The raise for one account: each target, the totals, the estimate with and without, the cost."""
    settings = inventory["settings"]
    total = sum(setting["ruPerSecond"] for setting in settings)
    ceiling = request["maxRuPerSecond"]
    factor = min(request["factor"], ceiling / total) if total else 0.0
    changes: list[ThroughputChange] = []
    for setting in settings:
        target = raised_value(setting, factor)
        if target > setting["ruPerSecond"]:
            changes.append(
                {
                    "resourceId": setting["resourceId"],
                    "mode": setting["mode"],
                    "fromRuPerSecond": setting["ruPerSecond"],
                    "toRuPerSecond": target,
                }
            )
    extra = sum(change["toRuPerSecond"] - change["fromRuPerSecond"] for change in changes)
    reason = _not_possible(inventory, total, ceiling, changes, request["factor"])
    spare, size = inventory["spareRuPerSecond"], inventory["dataSizeBytes"]
    known = spare is not None and size is not None and spare > 0
    without = expected_encryption_seconds(size, spare) if known else None
    raised = expected_encryption_seconds(size, (spare or 0.0) + extra) if known else None
    possible = reason is None
    return {
        "possible": possible,
        "reason": reason or _summary(len(changes), total, total + extra, factor),
        "factor": round(factor, 4) if possible else 1.0,
        "changes": changes if possible else [],
        "totalRuPerSecond": total,
        "raisedTotalRuPerSecond": total + extra if possible else total,
        "extraRuPerSecond": extra if possible else 0,
        "expectedSeconds": without,
        "expectedSecondsRaised": raised if possible else without,
        "extraRuPerSecondHours": round(extra * raised / 3600, 1) if possible and raised is not None else None,
    }


def raised_value(setting: ThroughputSetting, factor: float) -> int:
    """`factor` times the setting, rounded down to Azure's step and kept under the instant maximum; never lower."""
    step = AUTOSCALE_STEP if setting["mode"] == "autoscale" else MANUAL_STEP
    current = setting["ruPerSecond"]
    target = math.floor(current * factor / step + 1e-9) * step
    instant = setting["instantMaximumRuPerSecond"]
    if instant is not None and target > instant:
        target = instant // step * step
    return max(current, target)


def raise_targets(plan: RaisePlan) -> list[ThroughputTarget]:
    return [
        {"resourceId": change["resourceId"], "mode": change["mode"], "ruPerSecond": change["toRuPerSecond"]}
        for change in plan["changes"]
    ]


def restore_targets(changes: Sequence[ThroughputChange]) -> list[ThroughputTarget]:
    """Every recorded value back exactly, in reverse order of the raise."""
    return [
        {"resourceId": change["resourceId"], "mode": change["mode"], "ruPerSecond": change["fromRuPerSecond"]}
        for change in reversed(changes)
    ]


def _not_possible(
    inventory: ThroughputInventory, total: int, ceiling: int, changes: list[ThroughputChange], requested_factor: float
) -> str | None:
    if inventory["serverless"]:
        return "the account is serverless: it has no provisioned throughput to raise"
    if not inventory["settings"]:
        return "no database or container of the account has provisioned throughput of its own"
    if requested_factor <= 1:
        return "a factor of 1 raises nothing"
    if total >= ceiling:
        return (
            f"the account already has {total} RU/s provisioned, at or over the ceiling maxRuPerSecond={ceiling}: "
            "any raise would exceed it"
        )
    if not changes:
        return (
            f"within the factor and the ceiling ({ceiling} RU/s for {total} RU/s now) no database or container "
            "can be raised by a whole step (100 RU/s manual, 1000 autoscale) without passing its instant maximum"
        )
    return None


def _summary(count: int, total: int, raised: int, factor: float) -> str:
    return f"raise {count} database(s)/container(s) from {total} to {raised} RU/s in all (x{factor:.2f})"
