"""The dashboard in a real browser (headless Chromium from Debian, driven by Selenium) against the local stack
running a rollout of the demo world, with function keys required as on Azure.

The rollout takes all 13 demo accounts, three at a time; one of them has an approval-gated orchestration running
already, which the rollout waits for. The tests run in file order on one stack and one browser: the sign-in message
for a wrong key, then the overview against the API, the rollout table filling, updating and filtering, the approval
through the button, and the layout at 390 px. Screenshots go to CMK_SCREENSHOTS (docs/img with `make
screenshots`, else .state/screenshots).
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from sandbox.azure.testing import IDENTITY_ENV
from sandbox.stack import LocalAzureStack
from tests.dashboard.browser import require_browser, screenshot, start_chromium
from tests.dashboard.world import APP_SETTINGS, GATED, Api, demo_world, start_scenario

# One real second is 15 simulated minutes: the demo's short encryptions end in seconds, an approval can wait
# (72 simulated hours are almost 5 real minutes), and the 17-hour encryption outlasts the tests.
TIME_SCALE = 900


class Page:
    """The dashboard page in the browser, refreshing every second (?refresh=1)."""

    def __init__(self, driver: Any, stack: LocalAzureStack, key: str) -> None:
        self.driver = driver
        self.url = f"{stack.host_url}/api/cmk/dashboard"
        self.key = key

    def open(self, query: str = "") -> None:
        self.driver.get(f"{self.url}?{query}{'&' if query else ''}refresh=1")

    def js(self, script: str, *args: Any) -> Any:
        return self.driver.execute_script(script, *args)

    def until(self, what: str, check: Callable[[], Any], timeout: float = 30) -> Any:
        deadline = time.monotonic() + timeout
        last: Exception | None = None
        while True:
            try:
                value = check()
            except Exception as error:  # an element not there yet, a stale one
                value, last = None, error
            else:
                last = None
            if value:
                return value
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out waiting for {what} (last error: {last}); body: {self.text()[:1500]}")
            time.sleep(0.1)

    def text(self) -> str:
        return str(self.js("return document.body.innerText"))

    def data(self, name: str) -> Any:
        raw = self.js("return document.body.dataset[arguments[0]] || null", name)
        return json.loads(raw) if raw else None

    def refreshes(self) -> int:
        return int(self.js("return Number(document.body.dataset.refreshes || 0)"))

    def after_refresh(self) -> None:
        seen = self.refreshes()
        self.until("a refresh", lambda: self.refreshes() > seen, timeout=15)

    def enter_key(self, key: str) -> None:
        from selenium.webdriver.common.by import By

        if not self.driver.find_element(By.ID, "auth").is_displayed():
            self.driver.find_element(By.ID, "key-button").click()
        field = self.driver.find_element(By.ID, "key-input")
        field.clear()
        field.send_keys(key)
        self.driver.find_element(By.CSS_SELECTOR, "#key-form button[type=submit]").click()

    def rows(self) -> list[dict[str, str]]:
        return list(
            self.js(
                """return [...document.querySelectorAll('#accounts tbody tr[data-account]')].map((tr) => ({
                    account: tr.dataset.account, name: tr.dataset.name, phase: tr.cells[2].innerText,
                    outcome: tr.cells[3].innerText }))"""
            )
        )


@pytest.fixture(scope="module")
def stack() -> Iterator[LocalAzureStack]:
    require_browser()
    with pytest.MonkeyPatch.context() as patch:
        for name in IDENTITY_ENV:
            patch.delenv(name, raising=False)
        with LocalAzureStack(demo_world(), time_scale=TIME_SCALE, settings=APP_SETTINGS, require_keys=True) as running:
            yield running


@pytest.fixture(scope="module")
def key(stack: LocalAzureStack) -> str:
    assert stack.host is not None and stack.host.keys is not None
    return stack.host.keys.default_function


@pytest.fixture(scope="module")
def api(stack: LocalAzureStack, key: str) -> Api:
    return Api(stack, key)


@pytest.fixture(scope="module")
def scenario(api: Api) -> tuple[str, str]:
    return start_scenario(api, demo_world())


@pytest.fixture(scope="module")
def page(stack: LocalAzureStack, key: str, scenario: tuple[str, str]) -> Iterator[Page]:
    driver = start_chromium()
    try:
        yield Page(driver, stack, key)
    finally:
        driver.quit()


def test_a_wrong_key_shows_a_sign_in_message_not_an_empty_page(page: Page, api: Api) -> None:
    page.open()
    # No key yet: the host requires one, the API answers 401, and the page says so.
    page.until("the sign-in message", lambda: "Sign-in needed" in page.text() and "401" in page.text())
    page.enter_key("not-the-key")
    page.until("the refused key's message", lambda: "to the function key or token you entered" in page.text())
    assert page.js("return document.getElementById('auth').hidden") is False
    assert page.js("return document.body.dataset.auth") == "401"
    assert page.js("return sessionStorage.getItem('cmk.functionKey')") == "not-the-key"
    page.enter_key(page.key)
    page.until("the overview", lambda: page.data("overview"))
    assert page.js("return document.getElementById('auth').hidden") is True
    assert page.js("return sessionStorage.getItem('cmk.functionKey')") == page.key


def test_the_overview_counts_match_the_api(page: Page, api: Api, scenario: tuple[str, str]) -> None:
    page.open()
    page.until("the overview", lambda: page.data("overview"))

    def same() -> bool:
        shown = page.data("overview")
        overview = api.get("cmk/overview")
        expected = {
            "total": overview["accounts"]["total"],
            "running": overview["accounts"]["running"],
            "awaitingApproval": overview["accounts"]["awaitingApproval"],
            "rollouts": overview["rollouts"]["total"],
        }
        cards = page.js(
            "return [...document.querySelectorAll('.cards .card')].map((c) => c.querySelector('.value').innerText)"
        )
        return bool(
            shown == expected and cards[:3] == [str(expected[k]) for k in ("total", "running", "awaitingApproval")]
        )

    page.until("the overview's counts to equal the API's", same)
    rollout_id = scenario[1]
    listed = api.get("cmk/rollouts")["rollouts"]
    assert [r["instanceId"] for r in listed] == [rollout_id]
    page.until(
        "the rollout in the rollouts table",
        lambda: rollout_id in page.js("return document.getElementById('rollouts').innerHTML"),
    )
    page.until(
        "the gated request among the standalone ones",
        lambda: GATED in page.js("return document.getElementById('standalone').innerText"),
    )
    screenshot(page.driver, "dashboard-overview", full_page=True)


def test_the_rollout_table_fills_and_updates_as_accounts_move(page: Page, api: Api, scenario: tuple[str, str]) -> None:
    _, rollout_id = scenario
    page.open(f"rollout={rollout_id}")
    rows = page.until("13 rows", lambda: len(page.rows()) == 13 and page.rows())
    assert {row["name"] for row in rows} == {a.rsplit("/", 1)[-1] for a in demo_world()["expectations"]}
    first = {row["account"]: (row["phase"], row["outcome"]) for row in rows}
    first_done = page.data("rollout")["done"]

    def moved() -> bool:
        now = {row["account"]: (row["phase"], row["outcome"]) for row in page.rows()}
        return now != first and page.data("rollout")["done"] > first_done

    page.until("accounts to move on in the table", moved, timeout=40)
    # What the page shows is what the API says (the same server-side read within a second).
    state = page.data("rollout")
    accounts = api.get(f"cmk/rollouts/{rollout_id}/accounts", top="100")
    assert state["total"] == accounts["rollout"]["total"] == 13
    # The timeline draws one row per account.
    assert page.js("return document.querySelector('.timeline-box canvas').height") > 13 * 18
    # Every form control has a label a screen reader can read.
    unlabeled = page.js(
        """return [...document.querySelectorAll('input, select, textarea, button')].filter((el) =>
            el.offsetParent !== null && !(el.labels && el.labels.length) && !el.getAttribute('aria-label')
            && !el.innerText.trim()).map((el) => el.outerHTML)"""
    )
    assert unlabeled == []
    screenshot(page.driver, "dashboard-rollout", until="#accounts tbody tr[data-account]:nth-child(11)")


def test_a_filter_narrows_the_table_and_keeps_through_refreshes(
    page: Page, api: Api, scenario: tuple[str, str]
) -> None:
    from selenium.webdriver.support.ui import Select

    _, rollout_id = scenario
    page.until("refused accounts", lambda: page.data("rollout")["byOutcome"].get("Refused", 0) >= 3, timeout=40)

    def outcome_filter() -> str | None:
        value: str | None = Select(page.driver.find_element("id", "f-outcome")).first_selected_option.get_attribute(
            "value"
        )
        return value

    def choose_refused() -> bool:
        # A refresh may redraw the filter between finding it and choosing: find it again until the choice holds.
        Select(page.driver.find_element("id", "f-outcome")).select_by_value("Refused")
        return outcome_filter() == "Refused"

    page.until("the outcome filter set to Refused", choose_refused)
    page.until("only refused rows", lambda: page.rows() and all("Refused" in r["outcome"] for r in page.rows()))
    narrowed = page.rows()
    assert 3 <= len(narrowed) < 13
    assert "outcome=Refused" in page.driver.current_url
    refused = f"cmk/rollouts/{rollout_id}/accounts"
    page.until("the API's count", lambda: len(page.rows()) == api.get(refused, outcome="Refused")["matched"])
    # The filter, and an open row, survive the next refreshes.
    page.driver.find_element("css selector", "#accounts button.expander").click()
    page.after_refresh()
    page.after_refresh()
    assert page.until("the outcome filter read", outcome_filter) == "Refused"
    assert page.js("return document.querySelectorAll('#accounts tr.detail:not([hidden])').length") == 1
    assert all("Refused" in r["outcome"] for r in page.rows())
    # Narrowed further by the search box; cleared, everything is back.
    search = page.driver.find_element("id", "f-search")
    wanted = narrowed[0]["name"]
    search.send_keys(wanted)
    page.until("one row", lambda: [r["name"] for r in page.rows()] == [wanted])
    page.driver.find_element("xpath", "//button[normalize-space()='Clear filters']").click()
    page.until("all rows again", lambda: len(page.rows()) == 13)


def test_an_awaiting_account_is_approved_through_the_button_and_goes_on_to_enabled(
    page: Page, api: Api, scenario: tuple[str, str]
) -> None:
    from selenium.webdriver.common.by import By

    gated, rollout_id = scenario
    page.open(f"instance={gated}&from={rollout_id}")
    approve = page.until("the Approve button", lambda: page.driver.find_element(By.ID, "approve"))
    assert "Waiting for your approval" in page.text()
    assert "access policies" in page.text()  # the plan: the vault's permission model
    screenshot(page.driver, "dashboard-account", full_page=True)
    approve.click()
    dialog = page.driver.find_element(By.ID, "decision")
    page.until("the dialog", dialog.is_displayed)
    shown = dialog.text
    assert "kv-contoso-cmk-prod" in shown and "Default identity" in shown and "cannot be undone" in shown
    # A comment is required before anything is sent.
    page.driver.find_element(By.ID, "decision-confirm").click()
    page.until("the comment is required", lambda: "A comment is required" in dialog.text)
    assert api.get(f"cmk/instances/{gated}")["customStatus"]["phase"] == "awaitingApproval"
    page.driver.find_element(By.ID, "decision-comment").send_keys("Change 4711 approved by the data owner")
    page.driver.find_element(By.ID, "decision-confirm").click()
    page.until("the dialog to close", lambda: not dialog.is_displayed())
    page.until(
        "the account to reach Enabled", lambda: (page.data("account") or {}).get("outcome") == "Enabled", timeout=60
    )
    assert "Approved" in page.js("return document.querySelector('.approval').innerText")
    output = api.get(f"cmk/instances/{gated}")["output"]
    assert output["outcome"] == "Enabled"
    assert "approvedAt" in output["timings"]


def test_the_page_fits_390_px_and_every_control_is_keyboard_reachable(page: Page, scenario: tuple[str, str]) -> None:
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys

    _, rollout_id = scenario
    page.driver.set_window_size(390, 844)
    try:
        page.open(f"rollout={rollout_id}")
        page.until("13 rows", lambda: len(page.rows()) == 13)
        overflow = page.js("return document.documentElement.scrollWidth - document.documentElement.clientWidth")
        assert overflow <= 1, f"the page scrolls sideways by {overflow}px at 390 px"
        screenshot(page.driver, "dashboard-rollout-390")
    finally:
        page.driver.set_window_size(1280, 900)
    # Tab order reaches the filters, the table's buttons and links (60 presses in one go, focus recorded in-page).
    page.js(
        """window.__focused = [];
        document.addEventListener('focusin', (e) => window.__focused.push(e.target.id || e.target.className
            || e.target.tagName));"""
    )
    page.driver.find_element(By.TAG_NAME, "body").click()
    chain = ActionChains(page.driver)
    for _ in range(60):
        chain.send_keys(Keys.TAB)
    chain.perform()
    reached = set(page.js("return window.__focused"))
    assert {"f-outcome", "f-phase", "f-subscription", "f-search"} <= reached
    assert any("expander" in str(name) for name in reached)


def test_data_the_api_refuses_shows_as_such_never_as_an_empty_page(page: Page, scenario: tuple[str, str]) -> None:
    page.open("instance=cmk-no-such-account-000000000000.000000000000")
    page.until("the refusal", lambda: "Not found: No account orchestration" in page.text())
    assert "No data" in page.js("return document.getElementById('live-state').innerText")
    # Data shown once and then refused is kept, marked stale.
    page.open(f"rollout={scenario[1]}")
    page.until("the rollout", lambda: len(page.rows()) == 13)
    page.js("window.fetch = () => Promise.resolve(new Response('{}', {status: 502, statusText: 'Bad Gateway'}))")
    page.until("the stale mark", lambda: page.js("return !document.getElementById('banner').hidden"))
    assert "Stale data" in page.js("return document.getElementById('banner').innerText")
    assert page.js("return document.getElementById('main').classList.contains('stale')")
    assert len(page.rows()) == 13
