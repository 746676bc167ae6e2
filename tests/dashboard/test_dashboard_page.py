"""The dashboard's page and its two files are served without a key (auth level ANONYMOUS, like a sign-in page: it
holds no data), with a strict content security policy and cache headers; every route it reads keeps FUNCTION."""

from __future__ import annotations

import re

import pytest
import requests

from sandbox.azure.testing import IDENTITY_ENV
from sandbox.stack import LocalAzureStack
from tests.dashboard.world import APP_SETTINGS, demo_world


def test_the_dashboard_page_and_its_files_need_no_key_but_its_data_does() -> None:
    with pytest.MonkeyPatch.context() as patch:
        for name in IDENTITY_ENV:
            patch.delenv(name, raising=False)
        with LocalAzureStack(demo_world(), settings=APP_SETTINGS, require_keys=True) as stack:
            assert stack.host is not None and stack.host.keys is not None
            base = f"{stack.host_url}/api/cmk"
            page = requests.get(f"{base}/dashboard?rollout=x", timeout=30)
            assert page.status_code == 200 and page.headers["Content-Type"].startswith("text/html")
            policy = page.headers["Content-Security-Policy"]
            assert "script-src 'self'" in policy and "frame-ancestors 'none'" in policy
            assert page.headers["Cache-Control"] == "no-store"
            script = re.search(r'src="([^"]+)"', page.text)
            assert script is not None
            asset = requests.get(f"{stack.host_url}{script.group(1)}", timeout=30)
            assert asset.status_code == 200 and asset.headers["Content-Type"].startswith("text/javascript")
            assert "immutable" in asset.headers["Cache-Control"]
            assert requests.get(f"{base}/dashboard/app.css", timeout=30).headers["Cache-Control"] == "no-cache"
            assert requests.get(f"{base}/dashboard/secrets.json", timeout=30).status_code == 404
            for path in ("overview", "rollouts", "accounts"):
                assert requests.get(f"{base}/{path}", timeout=30).status_code == 401, path
                keyed = requests.get(
                    f"{base}/{path}", headers={"x-functions-key": stack.host.keys.default_function}, timeout=30
                )
                assert keyed.status_code == 200, path
