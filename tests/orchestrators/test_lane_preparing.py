"""A rollout lane that prepares its next accounts ahead of its slot: each starts held, prepares while the slot's
encryption runs, and gets the slot the moment that encryption's orchestration ends, so the lane's encryptions run
back to back, never two at once. Driven by the generator harness against simulated account orchestrations."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from cmk.fleet import UNKNOWN_ENCRYPTION_SECONDS, PlannedAccount
from orchestrators.rollout_lane import ACCOUNTS_PER_GENERATION_PREPARING, WATCHDOG_FIRST_SECONDS, LaneInput, run_lane
from tests.orchestrators.harness import START, FakeTask, Run, drive
from tests.orchestrators.test_account_branches import CONFIG, KEY, SUB

PREPARATION = timedelta(minutes=12)  # preflight, two identity PATCHes, the RBAC propagation wait
ENCRYPTION = timedelta(minutes=10)
LANE_ID = "cmk-rollout-7-lane-0"


def _account(index: int, expected_seconds: float = 600.0) -> PlannedAccount:
    account_id = f"/subscriptions/{SUB}/resourceGroups/rg/providers/Microsoft.DocumentDB/databaseAccounts/a{index:03d}"
    return {"accountId": account_id, "subscriptionId": SUB, "keyUri": KEY, "expectedSeconds": expected_seconds}


def _lane(accounts: int, preparing: int, expected_seconds: float = 600.0) -> LaneInput:
    return {
        "rolloutId": "cmk-rollout-7",
        "lane": 0,
        "accounts": [_account(i, expected_seconds) for i in range(accounts)],
        "template": {"dryRun": False},
        "config": dict(CONFIG),  # type: ignore[typeddict-item]
        "position": 0,
        "rows": [],
        "preparing": preparing,
        "upcoming": [],
    }


class Accounts:
    """Simulated account orchestrations: prepared PREPARATION after their start, then (held ones once released)
    the key PATCH, ENCRYPTION, and the end. `lose` drops the first release of those accounts (an event lost)."""

    def __init__(self, lose: frozenset[str] = frozenset()) -> None:
        self.started: dict[str, tuple[datetime, Any]] = {}
        self.released: dict[str, list[datetime]] = {}
        self.release_estimates: dict[str, float | None] = {}
        self.lose = lose

    def _patch_at(self, instance_id: str) -> datetime | None:
        started, child_input = self.started[instance_id]
        prepared = started + PREPARATION
        if "hold" not in child_input:
            return prepared
        releases = self.released.get(instance_id, [])
        if any(name in instance_id for name in self.lose):
            releases = releases[1:]
        return max(prepared, releases[0]) if releases else None

    def finish(self, instance_id: str) -> datetime | None:
        patched = self._patch_at(instance_id)
        return None if patched is None else patched + ENCRYPTION

    def output(self, instance_id: str) -> dict[str, Any]:
        _, child_input = self.started[instance_id]
        patched = self._patch_at(instance_id)
        assert patched is not None
        return {
            "accountId": child_input["request"]["accountId"],
            "outcome": "Enabled",
            "reason": "confirmed",
            "findings": [],
            "keyUri": KEY,
            "identity": "SystemAssignedIdentity",
            "operation": None,
            "timings": {
                "enableRequestedAt": patched.isoformat(),
                "encryptionSeconds": ENCRYPTION.total_seconds(),
                # The monitor's last read that saw it running came 30 s before its end.
                "encryptionRunningSeconds": ENCRYPTION.total_seconds() - 30,
            },
        }

    def sub_orchestrations(self, task: FakeTask, now: datetime) -> tuple[datetime, Any] | None:
        instance_id = task.details["instance_id"]
        self.started.setdefault(instance_id, (task.details["started_at"], task.details["input"]))
        finish = self.finish(instance_id)
        return None if finish is None else (finish, self.output(instance_id))

    def activities(self) -> dict[str, Any]:
        def prepare(payload: Any, now: datetime) -> Any:
            return {"running": None, "input": payload["input"]}

        def release(payload: Any, now: datetime) -> Any:
            assert payload["laneId"] == LANE_ID
            self.released.setdefault(payload["instanceId"], []).append(now)
            self.release_estimates[payload["instanceId"]] = payload.get("expectedSeconds")
            return {"released": True, "runtimeStatus": None}

        def read(payload: Any, now: datetime) -> Any:
            instance_id = payload["instanceId"]
            if instance_id not in self.started:
                return {"exists": False, "runtimeStatus": None, "output": None, "phase": None, "nextPollAt": None}
            finish = self.finish(instance_id)
            if finish is not None and now >= finish:
                output = self.output(instance_id)
                return {
                    "exists": True,
                    "runtimeStatus": "Completed",
                    "output": output,
                    "phase": "done",
                    "nextPollAt": None,
                }
            patched = self._patch_at(instance_id)
            started, _ = self.started[instance_id]
            if patched is not None and now >= patched:
                phase = "encrypting"
            elif now >= started + PREPARATION:
                phase = "waitingForSlot"
            else:
                phase = "keyAccess"
            return {"exists": True, "runtimeStatus": "Running", "output": None, "phase": phase, "nextPollAt": None}

        return {"prepare_account_start": prepare, "release_account_slot": release, "read_account_instance": read}

    def encryptions(self) -> list[tuple[datetime, datetime]]:
        spans = []
        for instance_id in self.started:
            patched = self._patch_at(instance_id)
            if patched is not None:
                spans.append((patched, patched + ENCRYPTION))
        return sorted(spans)


def _drive(accounts: Accounts, lane: LaneInput) -> Run:
    return drive(
        run_lane,
        lane,
        accounts.activities(),
        instance_id=LANE_ID,
        sub_orchestrations=accounts.sub_orchestrations,
    )


def _finished(run: Run, outcome: str, count: int) -> None:
    """The lane finished every account with `outcome` (its counts), each by the orchestration it started at its
    first claim: the lane wrote no row of its own (the rollout reads those orchestrations' outputs)."""
    assert run.statuses[-1]["done"] == {outcome: count}
    assert run.output == []


def _back_to_back(spans: list[tuple[datetime, datetime]]) -> None:
    for (_, previous_end), (start, _) in zip(spans, spans[1:], strict=False):
        assert start >= previous_end, "two encryptions of one lane at once"


def test_preparing_ahead_runs_the_lanes_encryptions_back_to_back() -> None:
    accounts = Accounts()
    run = _drive(accounts, _lane(6, preparing=2))
    _finished(run, "Enabled", 6)
    spans = accounts.encryptions()
    _back_to_back(spans)
    for (_, previous_end), (start, _) in zip(spans, spans[1:], strict=False):
        assert start == previous_end, "the slot is refilled the moment the encryption's orchestration ends"
    assert run.now - START == PREPARATION + 6 * ENCRYPTION
    held = [entry for entry in run.statuses if entry and entry.get("upcoming")]
    assert held and len(held[0]["upcoming"]) == 2, "the lane names the accounts it prepares ahead"


def test_without_preparing_ahead_each_account_prepares_in_its_slot() -> None:
    accounts = Accounts()
    run = _drive(accounts, _lane(4, preparing=0))
    _finished(run, "Enabled", 4)
    assert run.now - START == 4 * (PREPARATION + ENCRYPTION)
    assert run.count("release_account_slot") == 0


def test_one_ahead_waits_only_for_what_preparation_takes_beyond_the_encryption() -> None:
    accounts = Accounts()
    run = _drive(accounts, _lane(4, preparing=1))
    spans = accounts.encryptions()
    _back_to_back(spans)
    prepared = sorted(started + PREPARATION for started, _ in accounts.started.values())
    for (_, previous_end), (start, _), ready in zip(spans, spans[1:], prepared[1:], strict=False):
        assert start == max(previous_end, ready), "the key PATCH goes when both the slot and the account are ready"
    assert run.now - START < 4 * (PREPARATION + ENCRYPTION)


def test_a_release_that_never_arrives_is_raised_again_by_the_watchdog() -> None:
    accounts = Accounts(lose=frozenset({"a001"}))
    run = _drive(accounts, _lane(3, preparing=1))
    _finished(run, "Enabled", 3)
    releases = {instance: times for instance, times in accounts.released.items() if "a001" in instance}
    assert len(next(iter(releases.values()))) == 2, "released again once a reading showed it still waiting"
    _back_to_back(accounts.encryptions())
    late = run.now - START - (PREPARATION + 3 * ENCRYPTION)
    assert timedelta(0) < late <= timedelta(seconds=WATCHDOG_FIRST_SECONDS)


def test_accounts_started_before_the_lane_continued_as_new_are_followed_to_their_end() -> None:
    accounts = Accounts()
    total = ACCOUNTS_PER_GENERATION_PREPARING + 5
    run = _drive(accounts, _lane(total, preparing=2))
    assert run.generations >= 2
    _finished(run, "Enabled", total)
    assert all(len(generation["rows"]) == 0 for generation in run.inputs), "no generation carries finished rows"
    assert len(accounts.started) == total, "no account started twice"
    _back_to_back(accounts.encryptions())


def test_the_lane_corrects_the_next_accounts_estimates_by_what_its_finished_encryptions_took() -> None:
    # Estimated at 300 s, the encryptions take 600 s and are last seen running at 570 s: the accounts after the
    # first that finished are given 570 s, with the slot (held ones) or in their input (claimed after it).
    accounts = Accounts()
    run = _drive(accounts, _lane(5, preparing=1, expected_seconds=300.0))
    _finished(run, "Enabled", 5)
    order = sorted(accounts.started, key=lambda instance: accounts.started[instance][1]["request"]["accountId"])
    given = [
        accounts.release_estimates.get(instance, accounts.started[instance][1]["expectedSeconds"]) for instance in order
    ]
    assert given[0] == 300.0, "nothing finished yet: the plan's estimate"
    assert given[2:] == [570.0] * 3, given
    inputs = [accounts.started[instance][1]["expectedSeconds"] for instance in order]
    assert inputs[:2] == [300.0, 300.0] and inputs[2:] == [570.0] * 3, "claimed ahead before or after learning"


def test_an_estimate_from_no_metrics_is_not_corrected() -> None:
    accounts = Accounts()
    run = _drive(accounts, _lane(3, preparing=0, expected_seconds=UNKNOWN_ENCRYPTION_SECONDS))
    _finished(run, "Enabled", 3)
    assert {child_input["expectedSeconds"] for _, child_input in accounts.started.values()} == {
        UNKNOWN_ENCRYPTION_SECONDS
    }


def test_the_lane_carries_only_the_rows_it_wrote_itself() -> None:
    """An account whose claim fails gets a row the lane wrote (Failed, saying why); it is the only row the lane
    carries and returns. The others are their orchestrations' outputs, read by the rollout at its end."""
    accounts = Accounts()
    activities = accounts.activities()
    prepare = activities["prepare_account_start"]

    def failing_prepare(payload: Any, now: datetime) -> Any:
        if payload["input"]["request"]["accountId"].endswith("/a002"):
            raise RuntimeError("the task hub did not answer")
        return prepare(payload, now)

    activities["prepare_account_start"] = failing_prepare
    total = ACCOUNTS_PER_GENERATION_PREPARING + 3
    run = drive(
        run_lane,
        _lane(total, preparing=1),
        activities,
        instance_id=LANE_ID,
        sub_orchestrations=accounts.sub_orchestrations,
    )
    assert run.statuses[-1]["done"] == {"Enabled": total - 1, "Failed": 1}
    assert [(row["accountId"].rsplit("/", 1)[1], row["outcome"]) for row in run.output] == [("a002", "Failed")]
    assert "the task hub did not answer" in run.output[0]["reason"]
    assert run.generations >= 2 and all(len(generation["rows"]) <= 1 for generation in run.inputs)
