"""A 10,000-poll encryption monitor: continue_as_new keeps each generation's history, and so the replay cost of a
poll, the same at the last poll as at the first."""

from __future__ import annotations

import time

import pytest
import requests

from sandbox.azure.testing import IDENTITY_ENV, single_account_world
from sandbox.stack import LocalStack

SUB = "6a1b2c3d-4e5f-4a6b-8c7d-9e0f1a2b3c4d"
RG = "rg-monitor"
POLLS = 10_000
POLLS_PER_GENERATION = 10


@pytest.mark.timeout(1200)
def test_a_ten_thousand_poll_monitor_keeps_its_history_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    # Encryption that outlasts any test: the test ends it by moving simulated time once 10,000 polls were made.
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
    with LocalStack(world, time_scale=30_000, settings=settings, simulator_overrides=overrides) as stack:
        host = stack.host
        assert host is not None
        response = requests.post(
            f"{stack.host_url}/api/cmk/accounts",
            json={"accountId": account_id, "keyUri": "https://kv-monitor.vault.azure.net/keys/cosmos-cmk"},
            timeout=30,
        )
        instance_id = response.json()["id"]
        deadline = time.monotonic() + 1000
        while ((host.instance(instance_id) or {}).get("customStatus") or {}).get("polls", 0) < POLLS:
            assert time.monotonic() < deadline, "the monitor is too slow"
            time.sleep(1)
        stack.simulator.advance(2 * 10**9)  # far past the encryption's end
        final = host.wait_for(instance_id, timeout=120)
        assert final["output"]["outcome"] == "Enabled"
        assert final["output"]["operation"]["polls"] > POLLS

        stats = host.stats(instance_id)
        assert stats["executions"] > POLLS // POLLS_PER_GENERATION
        # Bounded: a generation holds its 10 polls (about 8 events each) plus its start, whatever the total.
        assert stats["maxHistoryEvents"] < 150
        episodes = host.episodes(instance_id)
        early = [e["historyEvents"] for e in episodes[100:1100]]
        late = [e["historyEvents"] for e in episodes[-1100:-100]]
        # What each wake-up replays (and so its cost) does not grow with the number of polls made so far.
        assert max(late) <= max(early) and sum(late) / len(late) <= 1.05 * sum(early) / len(early)
