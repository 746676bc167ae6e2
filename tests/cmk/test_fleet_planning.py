"""Lane planning keeps both concurrency caps by construction and finishes close to the lower bound."""

from __future__ import annotations

import random

import pytest

from cmk.fleet import (
    DEFAULT_OVERHEAD_SECONDS,
    MAX_PREPARING_PER_LANE,
    UNKNOWN_ENCRYPTION_SECONDS,
    PlannedAccount,
    estimate_scale,
    expected_encryption_seconds,
    plan_lanes,
    preparing_per_lane,
    scaled_estimate,
)


def _fleet(seed: int, size: int, subscriptions: int) -> list[PlannedAccount]:
    rng = random.Random(seed)
    return [
        {
            "accountId": f"/subscriptions/s{index % subscriptions}/resourceGroups/rg/providers/Microsoft.DocumentDB/"
            f"databaseAccounts/a{index}",
            "subscriptionId": f"s{index % subscriptions}",
            "keyUri": "https://kv.vault.azure.net/keys/k",
            "expectedSeconds": rng.choice([60.0, 600.0, 3600.0, 6 * 3600.0]) * rng.uniform(0.5, 1.5),
        }
        for index in range(size)
    ]


@pytest.mark.parametrize(
    ("seed", "size", "subscriptions", "cap", "per_sub"), [(1, 200, 7, 20, 5), (2, 50, 1, 10, 3), (3, 9, 3, 20, 10)]
)
def test_every_account_is_planned_once_and_caps_hold(
    seed: int, size: int, subscriptions: int, cap: int, per_sub: int
) -> None:
    accounts = _fleet(seed, size, subscriptions)
    lanes = plan_lanes(accounts, cap, per_sub)
    planned = [account["accountId"] for lane in lanes for account in lane]
    assert sorted(planned) == sorted(a["accountId"] for a in accounts)
    assert len(lanes) <= cap
    for subscription in {a["subscriptionId"] for a in accounts}:
        lanes_with_it = [lane for lane in lanes if any(a["subscriptionId"] == subscription for a in lane)]
        # One account at a time per lane: the number of lanes holding a subscription bounds its concurrency.
        assert len(lanes_with_it) <= per_sub
    for lane in lanes:
        durations = [a["expectedSeconds"] for a in lane]
        assert durations == sorted(durations, reverse=True), "each lane starts with its longest account"


def test_makespan_is_close_to_the_lower_bound_without_subscription_pressure() -> None:
    accounts = _fleet(4, 200, 20)
    cap = 20
    lanes = plan_lanes(accounts, cap, cap)
    work = [a["expectedSeconds"] + DEFAULT_OVERHEAD_SECONDS for a in accounts]
    lower_bound = max(max(work), sum(work) / cap)
    makespan = max(sum(a["expectedSeconds"] + DEFAULT_OVERHEAD_SECONDS for a in lane) for lane in lanes)
    assert makespan <= lower_bound * 4 / 3


def test_expected_encryption_grows_with_size_and_shrinks_with_throughput() -> None:
    small = expected_encryption_seconds(10 * 2**30, 1000)
    assert expected_encryption_seconds(100 * 2**30, 1000) == pytest.approx(10 * small)
    assert expected_encryption_seconds(10 * 2**30, 10_000) == pytest.approx(small / 10)
    assert expected_encryption_seconds(None, 1000) == expected_encryption_seconds(10, 0)


def test_caps_below_one_are_refused() -> None:
    with pytest.raises(ValueError):
        plan_lanes(_fleet(5, 3, 1), 0, 1)


def test_preparation_ahead_is_dealt_over_the_lanes_longest_first_and_bounded_per_lane() -> None:
    assert preparing_per_lane(4, 4) == [1, 1, 1, 1], "the default: every lane prepares its next account"
    assert preparing_per_lane(4, 6) == [2, 2, 1, 1]
    assert preparing_per_lane(4, 2) == [1, 1, 0, 0]
    assert preparing_per_lane(3, 0) == [0, 0, 0]
    assert preparing_per_lane(2, 500) == [MAX_PREPARING_PER_LANE] * 2
    assert preparing_per_lane(0, 5) == []


def test_a_finished_encryption_rescales_the_estimates_within_bounds() -> None:
    assert estimate_scale(300.0, 570.0) == 1.9
    assert estimate_scale(3600.5, 100.0) == 0.125  # never below an eighth
    assert estimate_scale(10.0, 1000.0) == 8.0  # nor above eight times
    # Nothing to learn: no estimate from metrics, or no read saw it running.
    assert estimate_scale(UNKNOWN_ENCRYPTION_SECONDS, 500.0) is None
    assert estimate_scale(300.0, None) is None and estimate_scale(300.0, 0.0) is None and estimate_scale(0.0, 5) is None
    assert scaled_estimate(300.0, 1.9) == 570.0
    assert scaled_estimate(300.0, None) == 300.0
    assert scaled_estimate(UNKNOWN_ENCRYPTION_SECONDS, 1.9) == UNKNOWN_ENCRYPTION_SECONDS
