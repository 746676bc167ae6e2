"""Preflight against the simulator with the real SDK clients: every finding code from an account that triggers
it, a plan for ready accounts, and not a single write to Azure."""

from __future__ import annotations

import time
import uuid
from datetime import timedelta
from typing import Any

import pytest

from activities.preflight import preflight_activity
from cmk import inventory
from cmk.errors import InvalidRequest
from cmk.rollouts import discover_accounts
from tests.activities.conftest import FOREIGN_TENANT, OTHER_SUB, RG, SUB, UNKNOWN_SUB, Cloud


def run(cloud: Cloud, account: str, key_uri: str | None = None, **request: Any) -> dict[str, Any]:
    body = {"accountId": cloud.account(account), "keyUri": key_uri or cloud.key_uri, **request}
    result: dict[str, Any] = preflight_activity({"request": body, "asOf": cloud.simulator.clock.now().isoformat()})
    return result


def codes(result: dict[str, Any], severity: str = "blocking") -> list[str]:
    return [f["code"] for f in result["findings"] if f["severity"] == severity]


def test_a_ready_account_gets_a_plan_and_no_finding(cloud: Cloud) -> None:
    result = run(cloud, "acct-ready")
    assert result["findings"] == []
    assert not result["blocked"]
    assert result["plan"] == {
        "accountId": cloud.account("acct-ready"),
        "keyUri": cloud.key_uri,
        "identity": {"type": "SystemAssigned"},
        "defaultIdentity": "SystemAssignedIdentity",
        "vault": {
            "id": f"/subscriptions/{SUB}/resourceGroups/{RG}/providers/Microsoft.KeyVault/vaults/kv-cmk-ready",
            "permissionModel": "accessPolicy",
            "tenantId": result["plan"]["vault"]["tenantId"],
        },
    }
    assert result["documentIds"]["status"] == "scanned"


@pytest.mark.parametrize(
    ("account", "key", "code"),
    [
        ("acct-missing", None, "ACCOUNT_NOT_FOUND"),
        ("acct-migrating", None, "ACCOUNT_BUSY"),
        ("acct-cassandra", None, "CASSANDRA_NOT_SUPPORTED"),
        ("acct-vector", None, "VECTOR_SEARCH_NOT_SUPPORTED"),
        ("acct-views", None, "MATERIALIZED_VIEWS_NOT_SUPPORTED"),
        ("acct-views-service", None, "MATERIALIZED_VIEWS_NOT_SUPPORTED"),
        ("acct-avad", None, "ALL_VERSIONS_AND_DELETES_CHANGE_FEED_NOT_SUPPORTED"),
        ("acct-long-ids", None, "DOCUMENT_ID_TOO_LONG"),
        ("acct-continuous", None, "CONTINUOUS_BACKUP_NEEDS_USER_ASSIGNED_IDENTITY"),
        ("acct-enabled", None, "ALREADY_ENABLED"),
        ("acct-other-key", None, "DIFFERENT_KEY_CONFIGURED"),
        ("acct-ready", "https://kv-nowhere.vault.azure.net/keys/cosmos-cmk", "VAULT_NOT_FOUND"),
        ("acct-ready", "https://kv-no-softdel.vault.azure.net/keys/cosmos-cmk", "VAULT_SOFT_DELETE_DISABLED"),
        ("acct-ready", "https://kv-no-purge.vault.azure.net/keys/cosmos-cmk", "VAULT_PURGE_PROTECTION_DISABLED"),
        ("acct-ready", "https://kv-private.vault.azure.net/keys/cosmos-cmk", "VAULT_NETWORK_BLOCKS_COSMOS"),
        ("acct-ready", "https://kv-firewalled.vault.azure.net/keys/cosmos-cmk", "VAULT_NETWORK_BLOCKS_COSMOS"),
        ("acct-ready", "https://kv-cmk-ready.vault.azure.net/keys/absent", "KEY_NOT_FOUND"),
        ("acct-ready", "https://kv-cmk-ready.vault.azure.net/keys/disabled", "KEY_DISABLED"),
        ("acct-ready", "https://kv-cmk-ready.vault.azure.net/keys/expired", "KEY_EXPIRED"),
        ("acct-ready", "https://kv-cmk-ready.vault.azure.net/keys/future", "KEY_NOT_YET_VALID"),
        ("acct-ready", "https://kv-cmk-ready.vault.azure.net/keys/elliptic", "KEY_TYPE_UNSUPPORTED"),
        ("acct-ready", "https://kv-cmk-ready.vault.azure.net/keys/small", "KEY_TYPE_UNSUPPORTED"),
        ("acct-ready", "https://kv-cmk-ready.vault.azure.net/keys/sign-only", "KEY_OPERATIONS_MISSING"),
    ],
)
def test_each_blocking_finding_comes_from_an_account_that_triggers_it(
    cloud: Cloud, account: str, key: str | None, code: str
) -> None:
    before = cloud.last_sequence()
    result = run(cloud, account, key)
    assert code in codes(result)
    assert result["blocked"] and result["plan"] is None
    finding = next(f for f in result["findings"] if f["code"] == code)
    assert len(finding["message"]) > 20
    assert cloud.writes_since(before) == [], "preflight must change nothing"


def test_a_missing_user_assigned_identity_is_reported(cloud: Cloud) -> None:
    missing = cloud.uami_id.replace("id-cosmos-cmk", "id-does-not-exist")
    assert "IDENTITY_NOT_FOUND" in codes(run(cloud, "acct-ready", identity=missing))


def test_continuous_backup_with_a_user_assigned_identity_is_planned_with_it(cloud: Cloud) -> None:
    result = run(cloud, "acct-continuous-uami")
    assert not result["blocked"]
    assert result["plan"]["identity"] == {
        "type": "UserAssigned",
        "resourceId": cloud.uami_id,
        "principalId": cloud.uami_principal,
    }
    assert result["plan"]["defaultIdentity"] == f"UserAssignedIdentity={cloud.uami_id}"
    # Naming the identity fixes a continuous account that has none yet.
    fixed = run(cloud, "acct-continuous", identity=cloud.uami_id)
    assert "CONTINUOUS_BACKUP_NEEDS_USER_ASSIGNED_IDENTITY" not in codes(fixed)


def test_already_enabled_matches_the_key_with_port_and_slash_and_stops_there(cloud: Cloud) -> None:
    result = run(cloud, "acct-enabled")
    assert [f["code"] for f in result["findings"]] == ["ALREADY_ENABLED"]


def test_a_versioned_key_uri_is_a_warning_not_a_refusal(cloud: Cloud) -> None:
    key = cloud.simulator.resource(
        f"/subscriptions/{SUB}/resourceGroups/{RG}/providers/Microsoft.KeyVault/vaults/kv-cmk-ready/keys/cosmos-cmk"
    )
    assert key is not None
    version = str(key["properties"]["keyUriWithVersion"]).rsplit("/", 1)[-1]
    result = run(cloud, "acct-ready", f"{cloud.key_uri}/{version}")
    assert codes(result, "warning") == ["KEY_URI_VERSIONED"]
    assert not result["blocked"]


def test_trusted_services_bypass_and_mongo_accounts_pass(cloud: Cloud) -> None:
    assert not run(cloud, "acct-ready", "https://kv-trusted.vault.azure.net/keys/cosmos-cmk")["blocked"]
    assert not run(cloud, "acct-mongo")["blocked"]


def test_several_problems_are_reported_together(cloud: Cloud) -> None:
    result = run(cloud, "acct-cassandra", "https://kv-no-purge.vault.azure.net/keys/cosmos-cmk")
    assert {"CASSANDRA_NOT_SUPPORTED", "VAULT_PURGE_PROTECTION_DISABLED"} <= set(codes(result))


def test_a_vault_in_another_subscription_is_found_through_resource_graph(cloud: Cloud) -> None:
    """A central security subscription needs no configuration: the vault is found by name across subscriptions."""
    before = cloud.last_sequence()
    found = run(cloud, "acct-ready", "https://kv-elsewhere.vault.azure.net/keys/cosmos-cmk")
    assert not found["blocked"], found["findings"]
    assert found["plan"]["vault"]["id"].startswith(f"/subscriptions/{OTHER_SUB}/")
    requests = cloud.simulator.requests(since=before)
    graph = [r for r in requests if "Microsoft.ResourceGraph" in r["path"]]
    # The vault's search, and the first preflight of this process also learns the subscriptions' tenants.
    assert 1 <= len(graph) <= 2 and all(r["status"] == 200 for r in graph)
    assert not [r for r in requests if r["path"].lower().endswith("/providers/microsoft.keyvault/vaults")]  # no listing


def test_cmk_key_vault_subscriptions_narrows_the_search(cloud: Cloud, monkeypatch: pytest.MonkeyPatch) -> None:
    key = "https://kv-elsewhere.vault.azure.net/keys/cosmos-cmk"
    monkeypatch.setenv("CMK_KEY_VAULT_SUBSCRIPTIONS", f'["{UNKNOWN_SUB}", "{OTHER_SUB}"]')
    found = run(cloud, "acct-ready", key)
    assert not found["blocked"], found["findings"]
    assert found["plan"]["vault"]["id"].startswith(f"/subscriptions/{OTHER_SUB}/")
    monkeypatch.setenv("CMK_KEY_VAULT_SUBSCRIPTIONS", f'["{UNKNOWN_SUB}"]')
    missing = run(cloud, "acct-ready", key)
    message = next(f["message"] for f in missing["findings"] if f["code"] == "VAULT_NOT_FOUND")
    assert UNKNOWN_SUB in message and SUB in message


def test_a_vault_nowhere_the_app_can_read_says_where_it_looked(cloud: Cloud) -> None:
    result = run(cloud, "acct-ready", "https://kv-nowhere.vault.azure.net/keys/cosmos-cmk")
    assert codes(result) == ["VAULT_NOT_FOUND"]
    assert "any subscription this app can read" in result["findings"][0]["message"]


@pytest.mark.parametrize(
    ("vault", "how"),
    [
        ("kv-partner", "properties.tenantId"),  # a partner's subscription delegated to the app
        ("kv-moved", "properties.tenantId"),  # our subscription, a vault still bound to its old tenant
    ],
)
def test_a_key_in_another_tenant_gets_its_own_finding(cloud: Cloud, vault: str, how: str) -> None:
    before = cloud.last_sequence()
    result = run(cloud, "acct-ready", f"https://{vault}.vault.azure.net/keys/cosmos-cmk")
    assert codes(result) == ["KEY_IN_ANOTHER_TENANT"], result["findings"]
    message = result["findings"][0]["message"]
    assert FOREIGN_TENANT in message and how in message and "cross-tenant" in message
    assert result["plan"] is None
    assert cloud.writes_since(before) == []


@pytest.mark.parametrize(
    "request_body",
    [
        {"accountId": "not-an-id", "keyUri": "https://kv-cmk-ready.vault.azure.net/keys/cosmos-cmk"},
        {"accountId": f"/subscriptions/{SUB}/resourceGroups/{RG}/providers/Microsoft.DocumentDB/databaseAccounts/a1"},
    ],
)
def test_malformed_input_is_refused_before_any_call(cloud: Cloud, request_body: dict[str, Any]) -> None:
    before = cloud.last_sequence()
    with pytest.raises(InvalidRequest):
        preflight_activity({"request": request_body, "asOf": cloud.simulator.clock.now().isoformat()})
    assert cloud.simulator.requests(since=before) == []


def test_a_rollouts_accounts_share_the_reads_of_their_keys_vault_and_key_for_30_seconds(cloud: Cloud) -> None:
    """One central vault serves a whole fleet: within a rollout its vault and key are read once per 30 s of the
    orchestrations' time, not once per account; another rollout, or a preflight of its own, reads afresh."""
    start = cloud.simulator.clock.now()

    def key_reads(rollout: str | None, after_seconds: float) -> int:
        before = cloud.last_sequence()
        payload: dict[str, Any] = {
            "request": {"accountId": cloud.account("acct-ready"), "keyUri": cloud.key_uri},
            "asOf": (start + timedelta(seconds=after_seconds)).isoformat(),
        }
        if rollout is not None:
            payload["sharedReads"] = rollout
        result = preflight_activity(payload)
        assert not result["blocked"], result["findings"]
        assert result["plan"]["vault"]["id"].endswith("/vaults/kv-cmk-ready")
        return len(
            [r for r in cloud.simulator.requests(since=before) if "/providers/Microsoft.KeyVault/vaults/" in r["path"]]
        )

    rollout = f"rollout-{uuid.uuid4()}"
    assert key_reads(rollout, 0) == 2  # the vault and the key
    assert key_reads(rollout, 29) == 0  # another account of the rollout, moments later
    assert key_reads(rollout, 31) == 2  # older than 30 s: read again
    assert key_reads(f"rollout-{uuid.uuid4()}", 31) == 2  # another rollout never sees this one's
    assert key_reads(None, 31) == 2  # a preflight of its own always reads


def test_a_rollouts_graph_answers_spare_its_preflights_the_queries_while_recent(
    cloud: Cloud, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A rollout's discovery asks Resource Graph once for its subscriptions' tenants and where its keys' vaults are;
    its accounts' preflights use those answers for 10 minutes of the orchestrations' time instead of each asking
    (a fleet's preflights queued for the graph's quota, two queries each). Older answers, or a vault gone from
    where they place it, are asked again, and the preflight still finds the vault."""
    for cache in ("_found", "_tenants", "_tenants_asked_at"):  # this process has asked nothing yet
        monkeypatch.setattr(inventory, cache, {})
    start = cloud.simulator.clock.now()
    discovered = discover_accounts([cloud.account("acct-ready")], None, {"keyUri": cloud.key_uri})
    vaults, tenants = discovered["vaults"], discovered["tenants"]
    assert set(vaults) == {"kv-cmk-ready"} and SUB.lower() in tenants
    answers = {"at": start.isoformat(), "tenants": tenants, "vaults": vaults}

    def graph_queries(after_seconds: float, graph: dict[str, Any]) -> int:
        before = cloud.last_sequence()
        payload = {
            "request": {"accountId": cloud.account("acct-ready"), "keyUri": cloud.key_uri},
            "asOf": (start + timedelta(seconds=after_seconds)).isoformat(),
            "sharedReads": f"rollout-{uuid.uuid4()}",
            "resourceGraph": graph,
        }
        result = preflight_activity(payload)
        if "throttled" in result:  # the graph's quota, spent by this module's earlier tests: wait, as orchestrators do
            time.sleep(result["throttled"]["retryAfterSeconds"])
            result = preflight_activity(payload)
        assert not result["blocked"], result["findings"]
        assert result["plan"]["vault"]["id"] == vaults["kv-cmk-ready"]["id"]
        return len([r for r in cloud.simulator.requests(since=before) if "Microsoft.ResourceGraph" in r["path"]])

    assert graph_queries(0, answers) == 0
    assert graph_queries(599, answers) == 0
    assert graph_queries(601, answers) >= 1  # ten minutes old: asked again
    for cache in ("_found", "_tenants", "_tenants_asked_at"):
        monkeypatch.setattr(inventory, cache, {})
    gone = f"/subscriptions/{SUB}/resourceGroups/{RG}/providers/Microsoft.KeyVault/vaults/kv-cmk-moved-away"
    misplaced = {**answers, "vaults": {"kv-cmk-ready": {"id": gone, "tenantId": None}}}
    assert graph_queries(0, misplaced) >= 1  # not where the answers place it: searched, and found
