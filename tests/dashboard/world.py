"""The demo world as the dashboard tests run it: an approval-gated request for one account, then a rollout of the
whole world that claims it, so the rollout waits for a human while its other accounts move."""

from __future__ import annotations

import json
import time
from typing import Any

import requests

from sandbox.stack import REPO_ROOT, LocalAzureStack

DEMO_WORLD = REPO_ROOT / "sandbox" / "worlds" / "demo.json"
PROD_KEY = "https://kv-contoso-cmk-prod.vault.azure.net/keys/cosmos-cmk"
ANALYTICS_SUBSCRIPTION = "9b1e7a3c-6d2f-4a8b-b5c4-3e7f1d9a2c8b"
ANALYTICS_KEY = "https://kv-contoso-analytics.vault.azure.net/keys/cosmos-cmk"
KEY_POLICY = {"default": PROD_KEY, "bySubscription": {ANALYTICS_SUBSCRIPTION: ANALYTICS_KEY}}
GATED = "cosmos-orders-prod"
# Activity retries 5 s apart instead of 30, as the other end-to-end tests run.
APP_SETTINGS = {"CMK_ACTIVITY_RETRY_SECONDS": "5"}


def demo_world() -> dict[str, Any]:
    world: dict[str, Any] = json.loads(DEMO_WORLD.read_text(encoding="utf-8"))
    return world


def account_ids(world: dict[str, Any]) -> list[str]:
    return list(world["expectations"])


class Api:
    """The app's HTTP API as a script calls it, with the function key when the host requires one."""

    def __init__(self, stack: LocalAzureStack, key: str | None = None) -> None:
        self.base = f"{stack.host_url}/api"
        self.session = requests.Session()
        if key:
            self.session.headers["x-functions-key"] = key

    def get(self, path: str, **params: str) -> Any:
        response = self.session.get(f"{self.base}/{path}", params=params, timeout=60)
        assert response.status_code == 200, f"GET {path}: {response.status_code} {response.text[:500]}"
        return response.json()

    def post(self, path: str, body: Any) -> Any:
        response = self.session.post(f"{self.base}/{path}", json=body, timeout=60)
        assert response.status_code in (200, 202), f"POST {path}: {response.status_code} {response.text[:500]}"
        return response.json()

    def until(self, path: str, done: Any, timeout: float = 120, **params: str) -> Any:
        deadline = time.monotonic() + timeout
        while True:
            body = self.get(path, **params)
            if done(body):
                return body
            assert time.monotonic() < deadline, f"{path}: {json.dumps(body)[:800]}"
            time.sleep(0.1)


def start_scenario(api: Api, world: dict[str, Any], *, cap: int = 3) -> tuple[str, str]:
    """(the gated account's orchestration, the rollout): the gated one waits for approval when the rollout starts."""
    ids = account_ids(world)
    gated_id = next(i for i in ids if i.endswith("/" + GATED))
    gated = api.post("cmk/accounts", {"accountId": gated_id, "keyUri": PROD_KEY, "approval": "required"})["id"]
    api.until(f"cmk/instances/{gated}", lambda s: (s.get("customStatus") or {}).get("phase") == "awaitingApproval")
    rollout = api.post("cmk/rollouts", {"accounts": ids, "keyPolicy": KEY_POLICY, "maxConcurrency": cap})["id"]
    return str(gated), str(rollout)
