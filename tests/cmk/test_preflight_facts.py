"""Gathering preflight's facts from the simulator: one JSON-serialisable snapshot, 404s as data, and nothing read
that cannot change the verdict."""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

from cmk.preflight import evaluate
from cmk.preflight_facts import gather
from cmk.requests import EnablementRequest
from tests.activities.conftest import RG, SUB, Cloud
from tests.activities.conftest import cloud as cloud  # the simulated cloud of the activity tests, one per module

KEY_URI = "https://kv-cmk-ready.vault.azure.net/keys/cosmos-cmk"


def request(account: str, key_uri: str = KEY_URI, **extra: Any) -> EnablementRequest:
    account_id = f"/subscriptions/{SUB}/resourceGroups/{RG}/providers/Microsoft.DocumentDB/databaseAccounts/{account}"
    return {"accountId": account_id, "keyUri": key_uri, **extra}  # type: ignore[typeddict-item]


def test_a_ready_account_s_snapshot_holds_every_fact_and_survives_json(cloud: Cloud) -> None:
    snapshot = gather(request("acct-ready"), cloud.simulator.clock.now())
    assert snapshot["account"]["outcome"] == "found"
    assert snapshot["vault"] is not None and snapshot["vault"]["vault"] is not None
    assert snapshot["key"] is not None and snapshot["key"]["outcome"] == "found"
    assert snapshot["identity"] is None  # system-assigned: nothing to read
    assert snapshot["documentIds"] is not None and snapshot["documentIds"]["status"] == "scanned"
    stored = json.loads(json.dumps(snapshot))
    assert stored == snapshot
    assert evaluate(stored)["plan"] is not None


def test_what_azure_does_not_have_is_a_fact_not_an_exception(cloud: Cloud) -> None:
    missing_identity = (
        f"/subscriptions/{SUB}/resourceGroups/{RG}/providers/Microsoft.ManagedIdentity/userAssignedIdentities/gone"
    )
    snapshot = gather(
        request("acct-ready", "https://kv-cmk-ready.vault.azure.net/keys/absent", identity=missing_identity),
        cloud.simulator.clock.now(),
    )
    assert snapshot["key"] == {"outcome": "notFound", "facts": None, "refusal": None}
    assert snapshot["identity"] == {"outcome": "notFound", "facts": None, "refusal": None}
    assert snapshot["documentIds"] is None  # blocked already: the scan would only spend the account's RU
    assert gather(request("acct-missing"), cloud.simulator.clock.now())["account"]["outcome"] == "notFound"


def test_an_account_already_on_a_key_is_the_only_read(cloud: Cloud) -> None:
    before = cloud.last_sequence()
    snapshot = gather(request("acct-enabled"), datetime.fromisoformat("2026-06-01T00:00:00+00:00"))
    assert (snapshot["vault"], snapshot["key"], snapshot["identity"], snapshot["documentIds"]) == (None,) * 4
    # ARM only: a data-plane client of an earlier scan may refresh its account metadata in the background.
    paths = [
        str(r["path"]) for r in cloud.simulator.requests(since=before) if not str(r["path"]).startswith("/cosmos/")
    ]
    assert paths and all("/databaseAccounts/acct-enabled" in path for path in paths), paths


def _account_reads(cloud: Cloud, since: int, name: str) -> list[tuple[str, int]]:
    """(api-version, status) of each GET of the account itself, in order."""
    reads = []
    for entry in cloud.simulator.requests(since=since):
        path, _, query = str(entry["path"]).partition("?")
        if entry["method"] == "GET" and path.lower().endswith(f"/databaseaccounts/{name}"):
            reads.append((query.split("api-version=", 1)[-1].split("&", 1)[0], int(entry["status"])))
    return reads


def test_the_account_is_read_once_at_the_preview_api_version(cloud: Cloud) -> None:
    before = cloud.last_sequence()
    account = gather(request("acct-ready"), cloud.simulator.clock.now())["account"]["facts"]
    assert account is not None
    assert account["enableMaterializedViews"] is False and account["enableAllVersionsAndDeletesChangeFeed"] is False
    assert _account_reads(cloud, before, "acct-ready") == [("2025-11-01-preview", 200)]


def test_a_refused_preview_api_version_falls_back_to_the_stable_read_and_leaves_the_flags_unknown(
    cloud: Cloud,
) -> None:
    cloud.simulator.add_fault(
        {
            "method": "GET",
            "path": "acct-ready\\?api-version=2025-11-01-preview",
            "kind": "status",
            "status": 400,
            "code": "InvalidApiVersionParameter",
        }
    )
    try:
        before = cloud.last_sequence()
        account = gather(request("acct-ready"), cloud.simulator.clock.now())["account"]["facts"]
    finally:
        cloud.simulator.clear_faults()
    assert account is not None and account["documentEndpoint"]
    assert account["enableMaterializedViews"] is None and account["enableAllVersionsAndDeletesChangeFeed"] is None
    reads = _account_reads(cloud, before, "acct-ready")
    assert reads[0] == ("2025-11-01-preview", 400) and len(reads) == 2 and reads[1][1] == 200
    assert not reads[1][0].endswith("-preview")
