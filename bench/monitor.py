"""The encryption monitor's replay cost, with continue_as_new (the product) and without (a naive loop).

The naive loop is the same orchestrator with CMK_MONITOR_POLLS_PER_GENERATION set beyond the run's polls, so it
never continues as new: the only difference measured is the one the design is about. For each run we report the
largest history the SDK had to replay and the SDK's CPU per poll over the last polls of the run (the steady
state: what one more poll costs after that many polls).
"""

from __future__ import annotations

import time
from collections import defaultdict
from typing import Any

import requests

from sandbox.azure.testing import single_account_world
from sandbox.stack import LocalAzureStack

SUB = "9c8b7a6d-5e4f-4a3b-9c2d-1e0f9a8b7c6d"
RG = "rg-bench-monitor"
KEY_URI = "https://kv-bench-monitor.vault.azure.net/keys/cosmos-cmk"
TAIL_POLLS = 20
EPISODES_PER_POLL = 2  # the poll's completion, then its timer's


def run_monitor(polls: int, polls_per_generation: int) -> dict[str, Any]:
    # An encryption longer than any run; the run ends it by moving simulated time.
    world, account_id = single_account_world(
        SUB, RG, "kv-bench-monitor", "bench-monitor", data_size_gib=10_000, spare_ru_per_second=100
    )
    settings = {
        "CMK_POLL_INTERVAL_SECONDS": "60",
        "CMK_POLL_MAX_INTERVAL_SECONDS": "60",
        "CMK_MONITOR_DEADLINE_HOURS": "10000000",
        "CMK_MONITOR_POLLS_PER_GENERATION": str(polls_per_generation),
        "CMK_DOCUMENT_ID_SCAN": "false",
    }
    started = time.perf_counter()
    with LocalAzureStack(
        world, time_scale=30_000, settings=settings, simulator_overrides={"throttling": {"enabled": False}}
    ) as stack:
        host = stack.host
        assert host is not None
        response = requests.post(
            f"{stack.host_url}/api/cmk/accounts", json={"accountId": account_id, "keyUri": KEY_URI}, timeout=30
        )
        instance_id = response.json()["id"]
        while ((host.instance(instance_id) or {}).get("customStatus") or {}).get("polls", 0) < polls:
            time.sleep(0.2)
        episodes = host.episodes(instance_id)
        tail = episodes[-TAIL_POLLS * EPISODES_PER_POLL :]
        stats = host.stats(instance_id)
        monitoring = monitoring_generation_history(episodes)
        if polls_per_generation < polls:
            # The property tests/orchestrations/test_monitor_history.py checks at 300 polls, here at this many.
            assert len(set(monitoring)) == 1, f"history per generation grows: {monitoring}"
        stack.simulator.advance(2 * 10**9)
        final = host.wait_for(instance_id, timeout=600)
        assert final["output"]["outcome"] == "Enabled", final["output"]
    return {
        "polls": polls,
        "maxHistoryEvents": stats["maxHistoryEvents"],
        "replayCpuMsPerPoll": round(sum(e["orchestratorCpuSeconds"] for e in tail) * 1000 / TAIL_POLLS, 3),
        "executions": stats["executions"],
        # Largest history replayed in the generations that only monitor (all but the first and the last).
        "monitoringGenerationMaxHistory": sorted(set(monitoring)),
        "episodes": stats["episodes"],
        "orchestratorCpuSeconds": round(stats["orchestratorCpuSeconds"], 3),
        "wallSeconds": round(time.perf_counter() - started, 1),
    }


def monitoring_generation_history(episodes: list[dict[str, Any]]) -> list[int]:
    """Per generation (execution) between the first (preflight, the key PATCH) and the last (verification): the
    largest history the SDK replayed in it."""
    generations: dict[str, int] = defaultdict(int)
    for episode in episodes:
        generations[episode["executionId"]] = max(generations[episode["executionId"]], episode["historyEvents"])
    return list(generations.values())[1:-1]


def run(quick: bool = False) -> dict[str, Any]:
    from cmk.settings import SETTINGS

    generation = int(SETTINGS["CMK_MONITOR_POLLS_PER_GENERATION"].default)
    sizes = [10, 1000] if quick else [10, 1000, 10_000]
    naive_sizes = [10, 100] if quick else [10, 500]
    return {
        "pollsPerGeneration": generation,
        "monitor": [run_monitor(n, generation) for n in sizes],
        "naive": [run_monitor(n, 10**9) for n in naive_sizes],
    }
