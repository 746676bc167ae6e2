"""The throughput raise's planning (cmk.throughput): targets within the factor, the ceiling, Azure's steps and the
instant maximum; when it is not possible; the estimate with and without; the cost; the request's validation."""

from __future__ import annotations

from typing import Any

import pytest

from cmk.errors import InvalidRequest
from cmk.fleet import expected_encryption_seconds
from cmk.throughput import (
    ThroughputInventory,
    ThroughputSetting,
    parse_throughput_raise,
    plan_raise,
    raise_targets,
    restore_targets,
)

ACCOUNT = "/subscriptions/s/resourceGroups/g/providers/Microsoft.DocumentDB/databaseAccounts/a"
GIB = 2**30


def _setting(name: str, ru: int, mode: str = "manual", instant: int | None = None) -> ThroughputSetting:
    return {
        "resourceId": f"{ACCOUNT}/sqlDatabases/{name}",
        "mode": mode,  # type: ignore[typeddict-item]
        "ruPerSecond": ru,
        "minimumRuPerSecond": 400,
        "instantMaximumRuPerSecond": instant,
    }


def _inventory(*settings: ThroughputSetting, serverless: bool = False, **facts: Any) -> ThroughputInventory:
    return {
        "accountId": ACCOUNT,
        "serverless": serverless,
        "settings": list(settings),
        "dataSizeBytes": facts.get("size", 100 * GIB),
        "spareRuPerSecond": facts.get("spare", 1000.0),
    }


def test_each_resource_is_raised_by_the_factor_in_azures_steps() -> None:
    plan = plan_raise(
        _inventory(_setting("a", 400), _setting("b", 4000, "autoscale"), _setting("c", 1100)),
        {"factor": 2.5, "maxRuPerSecond": 50000},
    )
    assert plan["possible"] is True
    assert [(c["fromRuPerSecond"], c["toRuPerSecond"]) for c in plan["changes"]] == [
        (400, 1000),
        (4000, 10000),
        (1100, 2700),  # 2750 rounded down to a multiple of 100
    ]
    assert plan["totalRuPerSecond"] == 5500 and plan["raisedTotalRuPerSecond"] == 13700
    assert plan["extraRuPerSecond"] == 8200


def test_the_ceiling_lowers_the_factor_for_all() -> None:
    plan = plan_raise(_inventory(_setting("a", 4000), _setting("b", 6000)), {"factor": 2, "maxRuPerSecond": 15000})
    assert plan["factor"] == 1.5
    assert [c["toRuPerSecond"] for c in plan["changes"]] == [6000, 9000]
    assert plan["raisedTotalRuPerSecond"] <= 15000


def test_the_instant_maximum_is_not_passed() -> None:
    plan = plan_raise(_inventory(_setting("a", 8000, instant=10000)), {"factor": 2, "maxRuPerSecond": 50000})
    assert [c["toRuPerSecond"] for c in plan["changes"]] == [10000]


@pytest.mark.parametrize(
    ("inventory", "ceiling", "why"),
    [
        (_inventory(serverless=True), 50000, "serverless"),
        (_inventory(), 50000, "no database or container"),
        (_inventory(_setting("a", 60000)), 50000, "at or over the ceiling"),
        (_inventory(_setting("a", 400)), 450, "by a whole step"),
        (_inventory(_setting("a", 10000, instant=10000)), 50000, "instant maximum"),
    ],
)
def test_not_possible_says_why(inventory: ThroughputInventory, ceiling: int, why: str) -> None:
    plan = plan_raise(inventory, {"factor": 2, "maxRuPerSecond": ceiling})
    assert plan["possible"] is False
    assert why in plan["reason"]
    assert plan["changes"] == [] and plan["extraRuPerSecond"] == 0


def test_a_factor_of_one_is_well_formed_and_raises_nothing() -> None:
    plan = plan_raise(_inventory(_setting("a", 400)), parse_throughput_raise({"factor": 1, "maxRuPerSecond": 50000}))
    assert plan["possible"] is False and plan["reason"] == "a factor of 1 raises nothing"


def test_the_estimate_is_the_rollouts_with_the_added_spare() -> None:
    plan = plan_raise(_inventory(_setting("a", 1000), spare=1000.0), {"factor": 2, "maxRuPerSecond": 50000})
    assert plan["expectedSeconds"] == expected_encryption_seconds(100 * GIB, 1000.0)
    assert plan["expectedSecondsRaised"] == expected_encryption_seconds(100 * GIB, 2000.0)
    assert plan["expectedSecondsRaised"] == pytest.approx(plan["expectedSeconds"] / 2)
    # 1000 RU/s more for the raised encryption's hours
    assert plan["extraRuPerSecondHours"] == pytest.approx(1000 * plan["expectedSecondsRaised"] / 3600, abs=0.1)


def test_unknown_metrics_leave_the_estimate_unknown() -> None:
    plan = plan_raise(_inventory(_setting("a", 1000), spare=None), {"factor": 2, "maxRuPerSecond": 50000})
    assert plan["possible"] is True
    assert plan["expectedSeconds"] is None and plan["expectedSecondsRaised"] is None
    assert plan["extraRuPerSecondHours"] is None


def test_restore_puts_back_every_recorded_value_in_reverse() -> None:
    plan = plan_raise(
        _inventory(_setting("a", 400), _setting("b", 2000, "autoscale")), {"factor": 2, "maxRuPerSecond": 9000}
    )
    assert [t["ruPerSecond"] for t in raise_targets(plan)] == [800, 4000]
    assert restore_targets(plan["changes"]) == [
        {"resourceId": f"{ACCOUNT}/sqlDatabases/b", "mode": "autoscale", "ruPerSecond": 2000},
        {"resourceId": f"{ACCOUNT}/sqlDatabases/a", "mode": "manual", "ruPerSecond": 400},
    ]


@pytest.mark.parametrize(
    "value",
    [
        None,
        2,
        {"factor": 2},
        {"factor": 2, "maxRuPerSecond": 50000, "extra": 1},
        {"factor": 0.5, "maxRuPerSecond": 50000},
        {"factor": 11, "maxRuPerSecond": 50000},
        {"factor": True, "maxRuPerSecond": 50000},
        {"factor": "2", "maxRuPerSecond": 50000},
        {"factor": 2, "maxRuPerSecond": 399},
        {"factor": 2, "maxRuPerSecond": 5000.5},
    ],
)
def test_a_malformed_raise_is_a_clear_400(value: Any) -> None:
    with pytest.raises(InvalidRequest) as refused:
        parse_throughput_raise(value)
    assert refused.value.code == "InvalidThroughputRaise" and refused.value.status == 400
    assert "throughputRaise" in refused.value.message


def test_a_valid_raise_is_normalised() -> None:
    assert parse_throughput_raise({"factor": 2, "maxRuPerSecond": 50000}) == {"factor": 2.0, "maxRuPerSecond": 50000}
