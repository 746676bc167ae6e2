"""A lane that has continued as new carries only the report rows it wrote itself: the status API still shows every
account it finished in its earlier generations, with the orchestration that handled it, and the rollout's report
has every account's true outcome. Scaled time (1 real second is 1,500 simulated seconds), so a human's approval
can arrive while the rollout runs."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from cmk.orchestration import rollout_instance_id
from orchestrators.rollout_lane import ACCOUNTS_PER_GENERATION
from sandbox.azure.testing import key_patches
from sandbox.stack import LocalAzureStack
from tests.orchestrations.test_rollout_overlaps import KEY_URI, _id, _post, _report, _running, _status, _until, _world

# More accounts than one generation of the lane takes, and one an approval-gated request holds: the smallest, so
# the lane (longest expected encryption first) reaches it last, in its second generation.
NAMES = [f"gen-{i:02d}" for i in range(ACCOUNTS_PER_GENERATION + 1)]
GATED = "gen-gated"


@pytest.fixture(scope="module")
def stack() -> Iterator[LocalAzureStack]:
    data = {_id(name): {"dataSizeGiB": 0.1, "spareRuPerSecond": 1000} for name in NAMES}
    data[_id(GATED)] = {"dataSizeGiB": 0.05, "spareRuPerSecond": 1000}
    yield from _running(_world([*NAMES, GATED], data), time_scale=1500)


def _accounts(stack: LocalAzureStack, rollout_id: str) -> dict[str, dict[str, Any]]:
    found: dict[str, dict[str, Any]] = {}
    token = None
    for _ in range(10):
        path = f"cmk/rollouts/{rollout_id}/accounts" + (f"?continuationToken={token}" if token else "")
        page = _status(stack, path)
        found.update({account["accountId"].lower(): account for account in page["accounts"]})
        token = page.get("continuationToken")
        if not token:
            return found
    raise AssertionError("too many pages")


def test_accounts_a_lane_finished_in_earlier_generations_keep_their_outcomes_in_the_view_and_the_report(
    stack: LocalAzureStack,
) -> None:
    gated = _post(stack, "cmk/accounts", {"accountId": _id(GATED), "keyUri": KEY_URI, "approval": "required"})
    _until(
        stack, f"cmk/instances/{gated['id']}", lambda s: (s["customStatus"] or {}).get("phase") == "awaitingApproval"
    )
    # Preparing nothing ahead, the lane continues as new every ACCOUNTS_PER_GENERATION accounts.
    body = {"accounts": [_id(n) for n in [*NAMES, GATED]], "keyUri": KEY_URI, "maxConcurrency": 1, "maxPreparing": 0}
    rollout_id = _post(stack, "cmk/rollouts", body)["id"]
    lane_id = f"{rollout_id}-lane-0"
    _until(
        stack,
        f"cmk/instances/{lane_id}",
        lambda s: sum(((s.get("customStatus") or {}).get("done") or {}).values()) == len(NAMES),
    )

    # The first read of the rollout's accounts comes after the lane continued as new: every account it finished is
    # found through the orchestration the lane started for it.
    view = _accounts(stack, rollout_id)
    for name in NAMES:
        account = view[_id(name).lower()]
        assert (account["phase"], account["outcome"]) == ("done", "Enabled"), account
        assert account["instanceId"] == rollout_instance_id(_id(name), rollout_id, 0)
    waiting = view[_id(GATED).lower()]
    assert waiting["phase"] == "awaitingApproval" and waiting["instanceId"] == gated["id"]

    _post(stack, f"cmk/instances/{gated['id']}/approve", {"comment": "go"})
    report = _report(stack, rollout_id)
    rows = {row["accountId"].lower(): row for row in report["accounts"]}
    assert len(rows) == len(NAMES) + 1 and {row["outcome"] for row in rows.values()} == {"Enabled"}
    for name in NAMES:
        assert rows[_id(name).lower()]["instanceId"] == rollout_instance_id(_id(name), rollout_id, 0)
    gated_row = rows[_id(GATED).lower()]
    assert gated_row["instanceId"] == gated["id"] and "already running" in gated_row["reason"]
    assert all(len(key_patches(stack.simulator, _id(name))) == 1 for name in [*NAMES, GATED])
