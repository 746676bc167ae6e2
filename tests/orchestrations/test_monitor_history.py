"""A long encryption monitor: continue_as_new keeps each generation's history, and so the replay cost of a poll,
the same at the last poll as at the first. The suite runs 300 polls (30 generations); `make bench` runs the same
monitor to 10,000 polls, and a naive loop beside it, with figures (bench/monitor.py)."""

from __future__ import annotations

import time
from collections import defaultdict

import pytest
import requests

from sandbox.azure.testing import IDENTITY_ENV, single_account_world
from sandbox.stack import LocalAzureStack

SUB = "6a1b2c3d-4e5f-4a6b-8c7d-9e0f1a2b3c4d"
RG = "rg-monitor"
POLLS = 300
POLLS_PER_GENERATION = 10
# A generation's history: its start, then per poll the activity's scheduling and result and the timer's creation
# and firing, and its end. About 116 events at 10 polls; a loop without continue_as_new holds ~8 per poll made.
MAX_GENERATION_HISTORY = 150


@pytest.mark.timeout(300)
def test_a_long_monitor_keeps_its_history_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    # Encryption that outlasts any test: the test ends it by moving simulated time once POLLS polls were made.
    world, account_id = single_account_world(
        SUB, RG, "kv-monitor", "very-large", data_size_gib=10_000, spare_ru_per_second=100
    )
    settings = {
        "CMK_POLL_INTERVAL_SECONDS": "60",
        "CMK_POLL_MAX_INTERVAL_SECONDS": "60",
        "CMK_MONITOR_DEADLINE_HOURS": "10000000",
        "CMK_MONITOR_POLLS_PER_GENERATION": str(POLLS_PER_GENERATION),
    }
    for name in IDENTITY_ENV:
        monkeypatch.delenv(name, raising=False)
    overrides = {"throttling": {"enabled": False}}
    with LocalAzureStack(world, time_scale=30_000, settings=settings, simulator_overrides=overrides) as stack:
        host = stack.host
        assert host is not None
        response = requests.post(
            f"{stack.host_url}/api/cmk/accounts",
            json={"accountId": account_id, "keyUri": "https://kv-monitor.vault.azure.net/keys/cosmos-cmk"},
            timeout=30,
        )
        instance_id = response.json()["id"]
        deadline = time.monotonic() + 240
        while ((host.instance(instance_id) or {}).get("customStatus") or {}).get("polls", 0) < POLLS:
            assert time.monotonic() < deadline, "the monitor is too slow"
            time.sleep(0.5)
        stack.simulator.advance(2 * 10**9)  # far past the encryption's end
        final = host.wait_for(instance_id, timeout=120)
        assert final["output"]["outcome"] == "Enabled"
        assert final["output"]["operation"]["polls"] > POLLS

        stats = host.stats(instance_id)
        assert stats["executions"] > POLLS // POLLS_PER_GENERATION
        # Bounded: a generation holds its 10 polls plus its start, whatever the total.
        assert stats["maxHistoryEvents"] < MAX_GENERATION_HISTORY
        episodes = host.episodes(instance_id)

    # Per generation (execution), the largest history the SDK replayed. The first generation also holds preflight
    # and the key PATCH, the last one the verification: every generation between them only monitors, and each of
    # those replays the same history at its 10th poll whether it is the 2nd generation or the 30th.
    generations: dict[str, list[int]] = defaultdict(list)
    for episode in episodes:
        generations[episode["executionId"]].append(episode["historyEvents"])
    monitoring = list(generations.values())[1:-1]
    assert len(monitoring) >= POLLS // POLLS_PER_GENERATION - 2
    largest = [max(events) for events in monitoring]
    assert max(largest) == min(largest), f"history per generation grows: {largest}"
    # What each wake-up replays (and so its cost) does not grow with the number of polls made so far.
    half = len(monitoring) // 2
    early = [events for generation in monitoring[:half] for events in generation]
    late = [events for generation in monitoring[half:] for events in generation]
    assert max(late) <= max(early) and sum(late) / len(late) <= 1.05 * sum(early) / len(early)
