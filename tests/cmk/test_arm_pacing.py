"""Pacing ARM by its budget (cmk.arm_pacing): an activity whose bucket is empty is told when its turn comes instead
of sending; one under way is never cut; ARM's own answers correct the bucket; the wait reaches the orchestrator as
a throttled result (cmk.arm.arm_outcomes)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from cmk.arm import arm_outcomes
from cmk.arm_pacing import (
    MAX_RESERVATIONS,
    UNCLAIMED_TURN_SECONDS,
    ArmPaced,
    ArmPacer,
    Budget,
    PacingInfo,
    bucket_of,
    request_kind,
    subscription_of,
    wake_delay_seconds,
)

SUB = "00000001-bbbb-4ccc-8ddd-eeeeeeeeeeee"
READS = f"{SUB}|reads"  # the bucket a turn is for (PacingInfo.turn)
START = datetime(2026, 1, 1, tzinfo=UTC)


def _info(key: str, seconds: float = 0.0, turn: str = "") -> PacingInfo:
    info: PacingInfo = {"at": (START + timedelta(seconds=seconds)).isoformat(), "key": key}
    if turn:
        info["turn"] = turn
    return info


def _pacer(reads: float = 20.0, instances: int = 1) -> ArmPacer:
    return ArmPacer(Budget({"reads": reads, "writes": 8.0, "deletes": 8.0}, instances))


def _run(pacer: ArmPacer, key: str, requests: int, at: float = 0.0, turn: str = "") -> float | None:
    """An activity sending `requests` reads in SUB; the wait it was told, or None when it ran."""
    try:
        with pacer.activity(_info(key, at, turn), "preflight_activity"):
            for _ in range(requests):
                pacer.before_send(SUB, "reads")
    except ArmPaced as paced:
        return paced.wait_seconds
    return None


def test_requests_are_classified_as_arm_counts_them() -> None:
    assert [request_kind(m) for m in ("GET", "head", "PATCH", "PUT", "POST", "DELETE")] == [
        "reads",
        "reads",
        "writes",
        "writes",
        "writes",
        "deletes",
    ]
    assert subscription_of(f"https://management.azure.com/subscriptions/{SUB.upper()}/resourceGroups/x?a=1") == SUB
    assert subscription_of("https://management.azure.com/providers/Microsoft.ResourceGraph/resources") is None
    graph = "https://management.azure.com/providers/Microsoft.ResourceGraph/resources?api-version=2021-03-01"
    assert bucket_of(graph, "POST") == ("tenant", "resourceGraph")
    assert bucket_of(f"https://management.azure.com/subscriptions/{SUB}/providers/x", "PATCH") == (SUB, "writes")
    assert bucket_of("https://management.azure.com/providers/Microsoft.Authorization/operations", "GET") is None


def test_resource_graph_queries_stay_within_its_quota_of_15_in_5_seconds() -> None:
    pacer = _pacer()
    sent: list[float] = []
    # Five callers query one after another for 20 s; a paced one comes back when it was told to.
    due = {f"caller{i}": (0.0, 0) for i in range(5)}
    while (name := min(due, key=lambda caller: due[caller][0])) and due[name][0] < 20:
        at, query = due[name]
        try:
            with pacer.activity(_info(f"{name}/{query}", at), "discover_accounts_activity"):
                pacer.before_send("tenant", "resourceGraph")
            sent.append(at)
            due[name] = (at + 0.05, query + 1)
        except ArmPaced as paced:
            due[name] = (at + paced.wait_seconds, query)
    assert max(sum(1 for t in sent if start <= t < start + 5) for start in sent) <= 15
    assert len(sent) >= 35  # and it does not starve: about 2 a second


def test_a_burst_of_ten_seconds_goes_then_activities_wait_their_turn_one_after_another() -> None:
    pacer = _pacer()
    # 200 tokens: 50 activities of 4 reads run at once.
    assert [_run(pacer, f"a{i}", 4) for i in range(50)] == [None] * 50
    told = [_run(pacer, f"b{i}", 4) for i in range(5)]
    waits = [wait for wait in told if wait is not None]
    assert len(waits) == 5
    assert waits == sorted(waits) and len(set(waits)) == 5, waits  # a queue, not a herd
    # Each waits for what those before it will send: 4 reads at 20/s is 0.2 s apiece.
    assert waits[1] - waits[0] == pytest.approx(0.2, abs=0.01)
    # Each turn comes on the orchestrations' clock: then its caller runs, whatever the bucket holds.
    for index, wait in enumerate(waits):
        assert _run(pacer, f"b{index}", 4, at=wait, turn=READS) is None
    # One that came after them, at the last turn's instant, is told to wait: they took what the bucket refilled.
    assert _run(pacer, "c0", 4, at=waits[4]) is not None


def test_a_turn_one_process_gave_is_honoured_by_another_and_given_back_by_the_first() -> None:
    # The Functions host spreads invocations over worker processes and instances, each with its own buckets.
    first, second = _pacer(instances=2), _pacer(instances=2)
    for name, pacer in (("first", first), ("second", second)):
        assert [_run(pacer, f"{name}-{i}", 4) for i in range(25)] == [None] * 25  # each bucket's 100 tokens
    wait = _run(first, "x", 4)
    assert wait is not None
    # x's next attempt lands on the second process, which never queued it: on its turn it runs there.
    assert _run(second, "x", 4, at=wait, turn=READS) is None
    assert _run(second, "y", 4, at=wait) is not None  # another caller without a turn queues
    # Nine more queue in the first after x, a turn every 0.4 s (4 reads at 10/s).
    assert [_run(first, f"r{i}", 4) for i in range(9)] == pytest.approx([0.8 + 0.4 * i for i in range(9)])
    # x never came back there: its reservation is given back UNCLAIMED_TURN_SECONDS after its turn (the later ones
    # are still in their grace), so a newcomer then waits for the nine alone, not for x as well.
    later = wait + UNCLAIMED_TURN_SECONDS
    refilled = later * 10
    assert _run(first, "z", 4, at=later) == pytest.approx((36 + 4 - refilled) / 10)  # the nine, then its own


def test_a_turn_taken_on_time_is_not_spent_twice() -> None:
    pacer = _pacer()
    assert [_run(pacer, f"a{i}", 4) for i in range(50)] == [None] * 50  # the burst: the bucket is empty
    wait = _run(pacer, "x", 4)
    assert wait is not None and wait == pytest.approx(0.2)
    # At x's turn a newcomer comes first: what refilled is x's, so the newcomer waits, and x runs.
    assert _run(pacer, "y", 4, at=wait) is not None
    assert _run(pacer, "x", 4, at=wait, turn=READS) is None


def test_an_activity_under_way_is_never_cut() -> None:
    pacer = _pacer()
    assert _run(pacer, "big", 500) is None  # admitted with a full bucket, then sends into debt
    wait = _run(pacer, "next", 4)
    assert wait is not None and wait > 300 / 20  # the debt is repaid before the next activity starts


def test_the_rate_is_shared_by_the_instances() -> None:
    alone, shared = _pacer(instances=1), _pacer(instances=4)
    assert sum(_run(alone, f"a{i}", 1) is None for i in range(300)) == 200
    assert sum(_run(shared, f"a{i}", 1) is None for i in range(300)) == 50


def test_what_arm_says_wins() -> None:
    pacer = _pacer()
    # ARM reports 60 reads left for this principal (other instances or callers used the rest): keep its headroom
    # of 50 (ten seconds of 25 - 20) and use what is left.
    pacer.after_response(SUB, "reads", 200, {"x-ms-ratelimit-remaining-subscription-reads": "60"})
    assert sum(_run(pacer, f"a{i}", 1) is None for i in range(20)) == 10
    # A 429 with Retry-After: 30 s without a request.
    pacer = _pacer()
    pacer.after_response(SUB, "reads", 429, {"Retry-After": "30"})
    wait = _run(pacer, "x", 1)
    assert wait is not None and wait >= 30


def test_without_pacing_info_requests_are_counted_not_held() -> None:
    pacer = _pacer()
    for _ in range(300):
        pacer.before_send(SUB, "reads")  # e.g. discovery's metric reads in helper threads
    assert _run(pacer, "after", 4) is not None


def test_a_paced_activity_returns_throttled_with_its_wait(monkeypatch: pytest.MonkeyPatch) -> None:
    import cmk.arm as arm

    pacer = _pacer(reads=1.0)
    monkeypatch.setattr(arm, "PACER", pacer)
    sent: list[int] = []

    @arm_outcomes
    def reads_three(payload: dict[str, Any]) -> str:
        for _ in range(3):
            pacer.before_send(SUB, "reads")
            sent.append(1)
        return "done"

    payloads = [{"armPacing": _info(f"k{i}")} for i in range(6)]
    results = [reads_three(p) for p in payloads]
    assert results[:4] == ["done"] * 4  # 10 tokens: three activities of three reads, and one admitted on the last
    assert isinstance(results[4], dict) and results[4]["throttled"]["retryAfterSeconds"] > 0
    assert "paced" in results[4]["throttled"]["message"]
    assert len(sent) == 12  # the fourth sent its three reads into debt; the two after it sent nothing


def test_each_worker_process_of_each_instance_paces_itself_to_its_share(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CMK_ARM_READS_PER_SECOND", "20")
    monkeypatch.setenv("CMK_ARM_PACING_INSTANCES", "2")
    monkeypatch.setenv("FUNCTIONS_WORKER_PROCESS_COUNT", "2")
    assert Budget.from_settings().per_second["reads"] == 5.0
    monkeypatch.delenv("FUNCTIONS_WORKER_PROCESS_COUNT")
    assert Budget.from_settings().per_second["reads"] == 10.0


@pytest.mark.parametrize(
    ("now", "wait", "slept"),
    [
        (100.0, 0.3, 1.0),  # the turn at 100.3 s: woken at 101 s
        (100.25, 0.5, 0.75),  # 100.75 s: 101 s
        (100.0, 1.0, 1.0),  # on the grid already: not a second later
        (100.5, 0.0, 0.5),  # no wait still ends on the grid
        (100.0, 7.2, 8.0),  # a 429's Retry-After is never shortened
    ],
)
def test_a_throttled_caller_wakes_on_the_next_whole_second(now: float, wait: float, slept: float) -> None:
    assert wake_delay_seconds(now, wait) == pytest.approx(slept)
    assert wake_delay_seconds(now, wait) >= wait


def test_turns_in_the_same_second_wake_together() -> None:
    pacer = _pacer(reads=4.0)  # a burst of 40 reads, then a turn every half second for two-read activities
    waits = [_run(pacer, f"a{index}", 2) for index in range(24)]
    turns = [wait for wait in waits if wait is not None]
    assert len(turns) == 4 and len(set(turns)) == 4  # four turns, each a different instant
    wakes = [wake_delay_seconds(0.0, wait) for wait in turns]
    assert wakes == pytest.approx([1.0, 1.0, 2.0, 2.0])  # two wake-ups, each running two activities side by side


def test_a_caller_beyond_the_queue_waits_without_a_turn() -> None:
    pacer = _pacer()
    assert [_run(pacer, f"a{i}", 4) for i in range(50)] == [None] * 50

    def told(key: str) -> ArmPaced:
        with pytest.raises(ArmPaced) as paced, pacer.activity(_info(key), "preflight_activity"):
            pacer.before_send(SUB, "reads")
        return paced.value

    assert told("first").turn == READS  # a place in the queue is a turn, named in the next attempt
    assert all(_run(pacer, f"q{i}", 4) is not None for i in range(MAX_RESERVATIONS - 1))  # the queue is full
    assert told("beyond").turn == ""  # no place, no turn: it queues again when it comes back
