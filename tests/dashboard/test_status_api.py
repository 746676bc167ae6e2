"""The status routes the dashboard reads, through the HTTP API of the local host running the demo world: the paged
rollout list, each account of a rollout with its phase, outcome and step times (paged, filtered), the timeline, the
fleet overview, the standalone orchestrations and one account's details.

One stack for the module: an approval-gated request, then a rollout of the demo world (less its 17-hour account,
plus one account that does not exist) that claims it, then a dry run.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Iterator
from typing import Any

import pytest
import requests

from cmk.progress import PHASES, TIMING_FIELDS, parse_time, timings_from_history
from sandbox.azure.testing import IDENTITY_ENV
from sandbox.host.durable_api import history_for_status
from sandbox.stack import LocalAzureStack
from tests.dashboard.world import APP_SETTINGS, GATED, KEY_POLICY, PROD_KEY, Api, account_ids, demo_world

TIME_SCALE = 1500
SLOW = "cosmos-clickstream"  # 17 simulated hours of encryption
MISSING = (
    "/subscriptions/2f8c5d4e-1a3b-4c6d-9e7f-5a1b2c3d4e6f/resourceGroups/rg-orders-prod/providers/"
    "Microsoft.DocumentDB/databaseAccounts/cosmos-does-not-exist"
)
FINAL = {"Completed", "Failed", "Terminated"}


class Scenario:
    def __init__(self, stack: LocalAzureStack) -> None:
        self.stack = stack
        self.api = Api(stack)
        world = demo_world()
        self.accounts = [a for a in account_ids(world) if not a.endswith("/" + SLOW)]
        gated_id = next(a for a in self.accounts if a.endswith("/" + GATED))
        self.gated = self.api.post("cmk/accounts", {"accountId": gated_id, "keyUri": PROD_KEY, "approval": "required"})[
            "id"
        ]
        self.api.until(
            f"cmk/instances/{self.gated}", lambda s: (s.get("customStatus") or {}).get("phase") == "awaitingApproval"
        )
        body = {"accounts": [*self.accounts, MISSING], "keyPolicy": KEY_POLICY, "maxConcurrency": 3}
        self.rollout = self.api.post("cmk/rollouts", body)["id"]
        self.running_views: list[dict[str, Any]] = []

    def accounts_page(self, **params: str) -> dict[str, Any]:
        page: dict[str, Any] = self.api.get(f"cmk/rollouts/{self.rollout}/accounts", **params)
        return page

    def wait_until_finished(self, rollout_id: str, timeout: float = 180) -> dict[str, Any]:
        status: dict[str, Any] = self.api.until(
            f"cmk/rollouts/{rollout_id}", lambda s: s["runtimeStatus"] in FINAL, timeout=timeout
        )
        return status


@pytest.fixture(scope="module")
def scenario() -> Iterator[Scenario]:
    with pytest.MonkeyPatch.context() as patch:
        for name in IDENTITY_ENV:
            patch.delenv(name, raising=False)
        # The step-time test reads an account's first generation after the monitor continued as new.
        with LocalAzureStack(
            demo_world(), time_scale=TIME_SCALE, settings=APP_SETTINGS, keep_history_generations=True
        ) as stack:
            yield Scenario(stack)


def _all_pages(scenario: Scenario, **params: str) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = []
    token = None
    for _ in range(20):
        page = scenario.accounts_page(**params, **({"continuationToken": token} if token else {}))
        found += page["accounts"]
        token = page["continuationToken"]
        if not token:
            return found
    raise AssertionError("too many pages")


def test_a_running_rollout_lists_every_account_with_its_live_phase_and_filters_narrow_it(scenario: Scenario) -> None:
    page = scenario.api.until(
        f"cmk/rollouts/{scenario.rollout}/accounts",
        lambda p: p["rollout"]["phase"] == "running" and p["matched"] == len(scenario.accounts) + 1,
        top="100",
    )
    accounts = page["accounts"]
    assert {a["accountId"].lower() for a in accounts} == {a.lower() for a in [*scenario.accounts, MISSING]}
    assert all(a["phase"] in PHASES for a in accounts)
    missing = next(a for a in accounts if a["accountId"] == MISSING)
    assert (missing["phase"], missing["outcome"], missing["lane"]) == ("done", "Refused", None)
    planned = [a for a in accounts if a["lane"] is not None]
    assert len(planned) == len(scenario.accounts)
    assert {a["lane"] for a in planned} == {0, 1, 2}
    summary = page["rollout"]
    assert summary["total"] == len(accounts)
    assert sum(summary["byPhase"].values()) == len(accounts)
    assert summary["byPhase"] == dict(Counter(a["phase"] for a in accounts))
    assert summary["request"]["maxConcurrency"] == 3
    # The cap: at most three accounts of this rollout between their key PATCH and the end of their orchestration
    # (the gated one counts once claimed); preparation runs ahead of the slots, up to maxPreparing (6 by default).
    holding = [a for a in planned if a["phase"] in ("enabling", "encrypting", "verifying")]
    assert len(holding) <= 3 + 1
    active = [a for a in planned if a["phase"] not in ("queued", "done")]
    assert len(active) <= 3 + 6 + 1
    # Filters narrow, and say what they matched.
    queued = scenario.accounts_page(phase="queued", top="100")
    assert queued["matched"] == len(queued["accounts"]) == summary["byPhase"].get("queued", 0)
    assert all(a["phase"] == "queued" for a in queued["accounts"])
    subscription = planned[0]["subscriptionId"]
    by_subscription = scenario.accounts_page(subscription=subscription, top="100")
    assert {a["subscriptionId"] for a in by_subscription["accounts"]} == {subscription}
    assert by_subscription["matched"] == summary["bySubscription"][subscription]
    found = scenario.accounts_page(search="LEDGER")
    assert [a["name"] for a in found["accounts"]] == ["cosmos-ledger-pitr"]
    assert found["filters"]["search"] == "ledger"
    several = scenario.accounts_page(phase="queued,done", top="100")
    assert {a["phase"] for a in several["accounts"]} <= {"queued", "done"}
    # Queued accounts wait from the rollout's start; an account in flight has step times.
    for account in queued["accounts"]:
        assert account["segments"] == [{"phase": "queued", "start": page["rollout"]["createdTime"], "end": None}]
    scenario.running_views.append(page)


def test_the_accounts_page_and_the_filters_refuse_what_they_do_not_know(scenario: Scenario) -> None:
    base = f"{scenario.stack.host_url}/api/cmk/rollouts/{scenario.rollout}/accounts"
    for params, code in (
        ({"phase": "sleeping"}, "InvalidPhase"),
        ({"outcome": "Maybe"}, "InvalidOutcome"),
        ({"top": "0"}, "InvalidTop"),
        ({"top": "501"}, "InvalidTop"),
        ({"continuationToken": "bm90LWEtdG9rZW4"}, "InvalidContinuationToken"),
    ):
        response = requests.get(base, params=params, timeout=30)
        assert response.status_code == 400, (params, response.text)
        assert response.json()["error"]["code"] == code
    response = requests.get(f"{scenario.stack.host_url}/api/cmk/rollouts/cmk-rollout-nope/accounts", timeout=30)
    assert response.status_code == 404
    assert response.json()["error"]["code"] == "RolloutNotFound"
    response = requests.get(f"{scenario.stack.host_url}/api/cmk/rollouts/cmk-rollout-nope/timeline", timeout=30)
    assert response.status_code == 404


def test_the_accounts_of_a_rollout_page_without_gaps_or_repeats(scenario: Scenario) -> None:
    first = scenario.accounts_page(top="5")
    assert len(first["accounts"]) == 5 and first["continuationToken"]
    everything = _all_pages(scenario, top="5")
    names = [a["accountId"] for a in everything]
    assert len(names) == len(set(names)) == len(scenario.accounts) + 1
    assert names == sorted(names, key=lambda n: (n.rsplit("/", 1)[-1].lower(), n.lower()))


def test_the_overview_counts_each_account_once_by_its_newest_orchestration(scenario: Scenario) -> None:
    for _ in range(20):  # lanes start orchestrations between the two reads now and then: read both again
        overview = scenario.api.get("cmk/overview")
        instances = scenario.api.get("cmk/instances", prefix="cmk-", top="500")["instances"]
        accounts = [i for i in instances if i["name"] == "cmk_account"]
        newest: dict[str, dict[str, Any]] = {}
        for instance in sorted(accounts, key=lambda i: i["createdTime"]):
            newest[instance["instanceId"].split(".")[0]] = instance
        if overview["accounts"]["orchestrations"] == len(accounts):
            break
        time.sleep(1.1)
    assert overview["accounts"]["total"] == len(newest)
    assert overview["accounts"]["orchestrations"] == len(accounts)
    assert overview["rollouts"]["total"] == len([i for i in instances if i["name"] == "cmk_rollout"])
    assert sum(overview["accounts"]["byPhase"].values()) == len(newest)
    assert overview["accounts"]["awaitingApproval"] == overview["accounts"]["byPhase"].get("awaitingApproval", 0)


def test_standalone_orchestrations_leave_out_those_a_rollout_started(scenario: Scenario) -> None:
    standalone = scenario.api.get("cmk/accounts", standalone="true")
    assert [a["instanceId"] for a in standalone["accounts"]] == [scenario.gated]
    assert standalone["accounts"][0]["rolloutId"] is None
    everything = scenario.api.get("cmk/accounts", top="100")
    started_by_rollout = [a for a in everything["accounts"] if a["rolloutId"] == scenario.rollout]
    assert started_by_rollout and len(started_by_rollout) == everything["matched"] - 1
    times = [a["createdTime"] for a in everything["accounts"]]
    assert times == sorted(times, reverse=True), "newest first"


def test_an_awaiting_account_has_its_plan_steps_and_the_actions_an_admin_can_take(scenario: Scenario) -> None:
    details = scenario.api.get(f"cmk/instances/{scenario.gated}/details")
    assert details["phase"] == "awaitingApproval"
    assert details["actions"] == {"approve": True, "reject": True, "terminate": True}
    assert details["approval"]["awaiting"] and details["approval"]["required"]
    assert details["plan"]["keyUri"] == PROD_KEY
    assert details["plan"]["vault"]["permissionModel"] == "accessPolicy"
    assert details["plan"]["defaultIdentity"] == "SystemAssignedIdentity"
    assert [s["phase"] for s in details["segments"]] == ["preflight", "identity", "keyAccess", "awaitingApproval"]
    assert details["segments"][-1]["end"] is None
    assert set(details["timings"]) == {"startedAt", "preflightDoneAt", "identityReadyAt", "keyAccessReadyAt"}
    assert details["operation"]["nextPollAt"] is None  # the approval's deadline is not a status read
    assert parse_time(details["approval"]["deadline"]) is not None
    response = requests.get(f"{scenario.stack.host_url}/api/cmk/instances/{scenario.rollout}/details", timeout=30)
    assert response.status_code == 404, "a rollout is not an account orchestration"
    # Approve it, as the dashboard's button does.
    scenario.api.post(f"cmk/instances/{scenario.gated}/approve", {"comment": "change 4711"})


def test_a_finished_rollout_reports_every_account_with_the_step_times_its_orchestration_wrote(
    scenario: Scenario,
) -> None:
    status = scenario.wait_until_finished(scenario.rollout)
    assert status["runtimeStatus"] == "Completed"
    accounts = _all_pages(scenario, top="100")
    rows = {row["accountId"].lower(): row for row in status["output"]["accounts"]}
    assert {a["accountId"].lower() for a in accounts} == set(rows)
    for account in accounts:
        row = rows[account["accountId"].lower()]
        assert (account["phase"], account["outcome"]) == ("done", row["outcome"]), account["name"]
        assert account["instanceId"] == row["instanceId"]
    # The lane found the gated account's orchestration still waiting (and reports what it reached), or already
    # ended (and started its own, which found the key in place).
    row = next(a for a in accounts if a["name"] == GATED)
    assert (row["outcome"], row["instanceId"] == scenario.gated) in (("Enabled", True), ("AlreadyEnabled", False))
    gated = scenario.api.get(f"cmk/instances/{scenario.gated}/details")
    assert gated["outcome"] == "Enabled"
    decision = gated["approval"]["decision"]
    assert (decision["approved"], decision["comment"]) == (True, "change 4711")
    assert [s["phase"] for s in gated["segments"]] == [
        "preflight",
        "identity",
        "keyAccess",
        "awaitingApproval",
        "enabling",
        "encrypting",
        "verifying",
    ]
    refused = next(a for a in accounts if a["name"] == "cosmos-telemetry-cassandra")
    assert [f["code"] for f in refused["findings"]] == ["CASSANDRA_NOT_SUPPORTED"]
    assert refused["blocking"] == 1 and refused["findings"][0]["message"]
    enabled = [a for a in accounts if a["outcome"] == "Enabled"]
    assert enabled and all(a["encryption"]["elapsedSeconds"] > 0 for a in enabled)
    assert all(a["encryption"]["expectedSeconds"] for a in enabled)
    # The report links the dashboard offers work now.
    assert scenario.api.get(f"cmk/rollouts/{scenario.rollout}/report", format="json")["accounts"]
    # Filters by outcome agree with the report.
    for outcome, count in Counter(row["outcome"] for row in rows.values()).items():
        assert scenario.accounts_page(outcome=outcome, top="100")["matched"] == count


def test_step_times_read_from_the_history_are_the_ones_the_orchestration_wrote(scenario: Scenario) -> None:
    """While an account's first generation runs, its step times come from its history: they must be the ones its
    output will carry (RBAC propagation, approval, refusals, encryption alike). An encryption's first generation
    ends at its key PATCH (the monitor continues as new, its input carrying the step times so far): that history
    is read from the host."""
    scenario.wait_until_finished(scenario.rollout)
    host = scenario.stack.host
    assert host is not None
    accounts = _all_pages(scenario, top="100")
    checked = continued = 0
    for account in accounts:
        if not account["instanceId"]:
            continue
        executions = host.executions(account["instanceId"])
        history = history_for_status(host.history(account["instanceId"], 0), show_output=True)
        first_activity: dict[str, Any] = next((e for e in history if e["EventType"] == "TaskCompleted"), {})
        if first_activity.get("FunctionName") != "preflight":
            continue  # re-attached to an encryption another orchestration started: no preparation of its own
        written = (host.instance(account["instanceId"]) or {})["output"]["timings"]
        derived = timings_from_history(history)
        for field, value in derived.items():
            assert parse_time(value) == parse_time(written.get(field)), (account["name"], field)
        if len(executions) == 1:
            for field in set(written) & set(TIMING_FIELDS) - set(derived) - {"finishedAt"}:
                # What the history cannot show yet: the step the orchestration ended in (no activity follows it).
                assert parse_time(written[field]) == parse_time(written["finishedAt"]), (account["name"], field)
        else:
            continued += 1
            # The first generation ran to the key PATCH; the monitor followed in the next.
            assert history[-1]["EventType"] == "ContinueAsNew", account["name"]
            assert [e for e in history if e.get("FunctionName") == "enable_cmk"], account["name"]
        checked += 1
    assert checked >= 8 and continued >= 2, (checked, continued)


def test_the_timeline_puts_every_account_on_one_axis_and_sums_the_time_by_phase(scenario: Scenario) -> None:
    timeline = scenario.api.get(f"cmk/rollouts/{scenario.rollout}/timeline")
    assert len(timeline["accounts"]) == len(scenario.accounts) + 1
    assert timeline["endSeconds"] and timeline["endSeconds"] <= timeline["nowSeconds"] + 1
    for row in timeline["accounts"]:
        previous = 0.0
        for phase, start, end in row["segments"]:
            assert phase in PHASES and end is not None and start >= previous - 0.01 and end >= start
            previous = end
    queued = [row for row in timeline["accounts"] if row["segments"] and row["segments"][0][0] == "queued"]
    assert queued, "with 3 lanes, later accounts waited for the cap"
    starts = [min((s[1] for s in row["segments"] if s[0] != "queued"), default=1e12) for row in timeline["accounts"]]
    assert starts == sorted(starts)
    totals = timeline["phaseTotals"]
    assert set(totals) <= set(PHASES) and totals["encrypting"]["accounts"] >= 1
    assert totals["queued"]["seconds"] >= totals["queued"]["maxSeconds"] > 0


def test_the_rollout_list_is_newest_first_paged_and_live(scenario: Scenario) -> None:
    slow = next(a for a in account_ids(demo_world()) if a.endswith("/" + SLOW))  # not enabled by the rollout
    dry = scenario.api.post("cmk/rollouts", {"accounts": [slow], "keyPolicy": KEY_POLICY, "dryRun": True})["id"]
    listed = scenario.api.get("cmk/rollouts")
    assert [r["instanceId"] for r in listed["rollouts"]] == [dry, scenario.rollout]
    first = listed["rollouts"][1]
    assert first["runtimeStatus"] == "Completed" and first["total"] == first["done"] == len(scenario.accounts) + 1
    assert first["dryRun"] is False and listed["rollouts"][0]["dryRun"] is True
    one = scenario.api.get("cmk/rollouts", top="1")
    assert [r["instanceId"] for r in one["rollouts"]] == [dry] and one["continuationToken"]
    two = scenario.api.get("cmk/rollouts", top="1", continuationToken=one["continuationToken"])
    assert [r["instanceId"] for r in two["rollouts"]] == [scenario.rollout] and two["continuationToken"] is None
    completed = scenario.api.get("cmk/rollouts", runtimeStatus="Completed")
    assert scenario.rollout in [r["instanceId"] for r in completed["rollouts"]]
    response = requests.get(f"{scenario.stack.host_url}/api/cmk/rollouts?runtimeStatus=Sleeping", timeout=30)
    assert response.status_code == 400
    status = scenario.wait_until_finished(dry)
    deadline = time.monotonic() + 10
    while (item := scenario.api.get("cmk/rollouts")["rollouts"][0])["runtimeStatus"] != "Completed":
        assert time.monotonic() < deadline
        time.sleep(0.2)
    assert item["byOutcome"] == status["output"]["totals"] == {"Planned": 1}
    planned = scenario.api.get(f"cmk/rollouts/{dry}/accounts")
    assert {a["outcome"] for a in planned["accounts"]} == {"Planned"}
    assert all(a["dryRun"] for a in planned["accounts"])
