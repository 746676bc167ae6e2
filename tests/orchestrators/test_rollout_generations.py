"""A rollout that runs for weeks bounds its history: its status-refresh loop continues as new, and the later
generations follow the lanes by reading them (their completions no longer reach it). Short rollouts never continue as
new. Either way the rows are collected once, when every lane has ended. Driven by the generator harness."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from orchestrators.rollout import REFRESHES_PER_GENERATION, RolloutInput, run_rollout
from tests.orchestrators.harness import START, FakeTask, Run, drive
from tests.orchestrators.test_account_branches import CONFIG, KEY, SUB

ROLLOUT_ID = "cmk-rollout-weeks"
MISSING = f"/subscriptions/{SUB}/resourceGroups/rg/providers/Microsoft.DocumentDB/databaseAccounts/gone"


def _id(index: int) -> str:
    return f"/subscriptions/{SUB}/resourceGroups/rg/providers/Microsoft.DocumentDB/databaseAccounts/a{index}"


def _input(accounts: int) -> RolloutInput:
    return {
        "request": {
            "accounts": [_id(i) for i in range(accounts)] + [MISSING],
            "keyUri": KEY,
            "maxConcurrency": 2,
            "maxConcurrencyPerSubscription": 2,
            "maxPreparing": 2,
            "dryRun": False,
        },
        "config": dict(CONFIG),  # type: ignore[typeddict-item]
    }


class Fleet:
    """Lanes that each end `lasting` after they start, each reporting its accounts Enabled."""

    def __init__(self, lasting: timedelta) -> None:
        self.lasting = lasting
        self.lanes: dict[str, tuple[datetime, list[str]]] = {}
        self.preparing: list[int] = []

    def rows(self, lane_id: str) -> list[dict[str, Any]]:
        return [
            {"accountId": account, "outcome": "Enabled", "reason": "confirmed", "instanceId": None}
            for account in self.lanes[lane_id][1]
        ]

    def sub_orchestrations(self, task: FakeTask, now: datetime) -> tuple[datetime, Any] | None:
        lane_id = task.details["instance_id"]
        if lane_id not in self.lanes:
            data = task.details["input"]
            self.lanes[lane_id] = (task.details["started_at"], [a["accountId"] for a in data["accounts"]])
            self.preparing.append(data["preparing"])
        return self.lanes[lane_id][0] + self.lasting, self.rows(lane_id)

    def activities(self) -> dict[str, Any]:
        def discover(payload: Any, now: datetime) -> Any:
            found = [a for a in payload["accounts"] if a != MISSING]
            accounts = [
                {
                    "accountId": account,
                    "subscriptionId": SUB,
                    "location": "eastus",
                    "tags": {},
                    "keyVaultKeyUri": None,
                    "expectedSeconds": 600.0,
                }
                for account in found
            ]
            return {"accounts": accounts, "missing": [MISSING], "resourceGraphPages": 1}

        def summarize(payload: Any, now: datetime) -> Any:
            running = sum(1 for lane in payload["lanes"] if now < self.lanes[lane][0] + self.lasting)
            done = sum(
                len(self.lanes[lane][1]) for lane in payload["lanes"] if now >= self.lanes[lane][0] + self.lasting
            )
            return {
                "byOutcome": {"Enabled": done},
                "byPhase": {"encrypting": running},
                "done": done,
                "runningLanes": running,
            }

        def collect(payload: Any, now: datetime) -> Any:
            assert all(now >= self.lanes[lane][0] + self.lasting for lane in payload["lanes"])
            return {"rows": [row for lane in payload["lanes"] for row in self.rows(lane)], "errors": []}

        return {"discover_accounts": discover, "summarize_rollout": summarize, "collect_lane_rows": collect}


def _drive(fleet: Fleet, accounts: int) -> Run:
    return drive(
        run_rollout,
        _input(accounts),
        fleet.activities(),
        instance_id=ROLLOUT_ID,
        sub_orchestrations=fleet.sub_orchestrations,
    )


def test_a_weeks_long_rollout_continues_as_new_and_still_reports_every_account() -> None:
    fleet = Fleet(lasting=timedelta(weeks=3))
    run = _drive(fleet, accounts=5)
    assert run.generations >= 3, "the refresh loop continued as new"
    assert run.output["total"] == 6 and run.output["totals"] == {"Enabled": 5, "Refused": 1}
    assert {row["accountId"] for row in run.output["accounts"]} == {_id(i) for i in range(5)} | {MISSING}
    assert run.output["timings"]["startedAt"] == START.isoformat().replace("+00:00", "Z")
    assert run.output["discovery"]["missing"] == 1
    noticed = run.now - (START + fleet.lasting)
    assert timedelta(0) <= noticed <= timedelta(minutes=10), "the lanes' end is read within a refresh"
    refreshes_per_generation = run.count("summarize_rollout") / run.generations
    assert refreshes_per_generation <= REFRESHES_PER_GENERATION + 1, "bounded history in every generation"
    assert all(status["phase"] in ("discovering", "running", "done") for status in run.statuses if status)
    assert all(len(str(status)) < 500 for status in run.statuses), "counts only"
    # Azure resets createdTime at each continue-as-new: every generation's status says when the rollout started.
    started = {status["startedAt"] for status in run.statuses if status}
    assert started == {run.output["timings"]["startedAt"]}
    assert fleet.preparing == [1, 1], "maxPreparing dealt over the lanes"


def test_a_rollout_of_hours_never_continues_as_new_and_notices_its_lanes_at_once() -> None:
    fleet = Fleet(lasting=timedelta(hours=8))
    run = _drive(fleet, accounts=4)
    assert run.generations == 1 and run.count("collect_lane_rows") == 1
    assert run.now == START + fleet.lasting
    assert run.output["totals"] == {"Enabled": 4, "Refused": 1}


def test_a_dry_run_prepares_nothing_ahead() -> None:
    fleet = Fleet(lasting=timedelta(minutes=5))
    data = _input(4)
    data["request"]["dryRun"] = True
    drive(run_rollout, data, fleet.activities(), instance_id=ROLLOUT_ID, sub_orchestrations=fleet.sub_orchestrations)
    assert fleet.preparing == [0, 0]


def test_a_lane_that_broke_reports_each_of_its_accounts_as_it_is_not_failed_wholesale() -> None:
    """A lane orchestration that fails (its own code, not an account's) had finished some accounts and handed others
    to orchestrations still encrypting: the report takes each from collect_lane_rows, never 'Failed' for all."""

    class BreakingFleet(Fleet):
        def sub_orchestrations(self, task: FakeTask, now: datetime) -> tuple[datetime, Any] | None:
            finish = super().sub_orchestrations(task, now)
            if finish is not None and task.details["instance_id"].endswith("-lane-1"):
                return finish[0], RuntimeError("lane code broke")
            return finish

    fleet = BreakingFleet(lasting=timedelta(hours=2))
    collected: list[Any] = []
    activities = fleet.activities()

    def collect(payload: Any, now: datetime) -> Any:
        collected.append(payload["lanes"])
        first, second = fleet.lanes[f"{ROLLOUT_ID}-lane-1"][1]
        return {
            "rows": [
                *fleet.rows(f"{ROLLOUT_ID}-lane-0"),
                {"accountId": first, "outcome": "Enabled", "reason": "confirmed", "instanceId": "cmk-a.1"},
                {"accountId": second, "outcome": "Encrypting", "reason": "lane ended", "instanceId": "cmk-b.1"},
            ],
            "errors": [],
        }

    activities["collect_lane_rows"] = collect
    run = drive(run_rollout, _input(4), activities, instance_id=ROLLOUT_ID, sub_orchestrations=fleet.sub_orchestrations)
    assert collected == [[f"{ROLLOUT_ID}-lane-0", f"{ROLLOUT_ID}-lane-1"]], "every lane read once, all ended"
    assert run.output["totals"] == {"Enabled": 3, "Encrypting": 1, "Refused": 1}
    assert {row["accountId"] for row in run.output["accounts"]} == {_id(i) for i in range(4)} | {MISSING}


def test_a_rollout_whose_rows_cannot_be_read_yet_reads_them_again_and_reports_no_outcome_it_does_not_know() -> None:
    """The lanes have ended but the read of their rows fails: the rollout neither ends nor reports its accounts
    Failed; it follows its lanes in a later generation and reads the rows again at the next refresh."""
    fleet = Fleet(lasting=timedelta(hours=2))
    activities = fleet.activities()
    collect = activities["collect_lane_rows"]
    failures = [RuntimeError("the task hub did not answer")]

    def flaky_collect(payload: Any, now: datetime) -> Any:
        if failures:
            raise failures.pop()
        return collect(payload, now)

    activities["collect_lane_rows"] = flaky_collect
    run = drive(run_rollout, _input(4), activities, instance_id=ROLLOUT_ID, sub_orchestrations=fleet.sub_orchestrations)
    assert run.generations == 2 and run.count("collect_lane_rows") == 2
    assert run.output["totals"] == {"Enabled": 4, "Refused": 1}
    assert run.output["error"] is None
    assert run.now - (START + fleet.lasting) <= timedelta(minutes=2), "read again at the next refresh"
