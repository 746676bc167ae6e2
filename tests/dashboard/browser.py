"""Headless Chromium from Debian's `chromium` and `chromium-driver` packages, driven by Selenium.

Nothing is downloaded at run time: Selenium gets the browser and the driver by path, and Selenium Manager is told
to stay offline. Without them the browser tests skip with a message saying how to install them; with CI=true they
fail instead, so a CI job cannot pass without running them.
"""

from __future__ import annotations

import importlib.util
import os
import time
from pathlib import Path
from typing import Any

import pytest

from sandbox.stack import REPO_ROOT

CHROMIUM = Path(os.environ.get("CMK_CHROMIUM", "/usr/bin/chromium"))
CHROMEDRIVER = Path(os.environ.get("CMK_CHROMEDRIVER", "/usr/bin/chromedriver"))
HOW_TO_RUN = (
    "install Debian's browser with `sudo make browser` (apt-get install -y chromium chromium-driver) and Selenium "
    "with `make install`, then run `.venv/bin/pytest -n 0 tests/dashboard`"
)
# Where the tests save their screenshots: docs/img to refresh the README's (`make screenshots`), else .state.
SCREENSHOTS = Path(os.environ.get("CMK_SCREENSHOTS") or REPO_ROOT / ".state" / "screenshots")


def missing_browser() -> str | None:
    """Why the browser tests cannot run here, or None."""
    if importlib.util.find_spec("selenium") is None:
        return "Selenium is not installed"
    for binary in (CHROMIUM, CHROMEDRIVER):
        if not (binary.exists() and os.access(binary, os.X_OK)):
            return f"{binary} is missing"
    return None


def require_browser() -> None:
    missing = missing_browser()
    if missing is None:
        return
    if os.environ.get("CI", "").strip().lower() == "true":
        pytest.fail(f"CI=true and the browser tests cannot run: {missing}. To fix: {HOW_TO_RUN}.", pytrace=False)
    pytest.skip(f"Browser tests skipped: {missing}. To run them: {HOW_TO_RUN}.")


def start_chromium(width: int = 1280, height: int = 900) -> Any:
    from selenium import webdriver
    from selenium.webdriver.chrome.options import Options
    from selenium.webdriver.chrome.service import Service

    os.environ["SE_OFFLINE"] = "true"  # Selenium Manager must not download a browser or a driver
    options = Options()
    options.binary_location = str(CHROMIUM)
    for argument in (
        "--headless=new",
        "--no-sandbox",  # root in containers
        "--disable-dev-shm-usage",
        "--disable-gpu",
        "--disable-extensions",
        "--no-first-run",
        "--force-device-scale-factor=1",
        f"--window-size={width},{height}",
        "--lang=en-GB",
    ):
        options.add_argument(argument)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    service = Service(executable_path=str(CHROMEDRIVER), log_output=os.devnull)
    return webdriver.Chrome(options=options, service=service)


def screenshot(driver: Any, name: str, *, full_page: bool = False, until: str | None = None) -> Path:
    """Save a PNG under SCREENSHOTS: the window, the whole page's height, or the page down to the bottom of the
    element `until` (a CSS selector)."""
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    path = SCREENSHOTS / f"{name}.png"
    size = driver.get_window_size()
    height: int | None = None
    if until:
        height = int(
            driver.execute_script(
                "return document.querySelector(arguments[0]).getBoundingClientRect().bottom + scrollY + 12",
                until,
            )
        )
    elif full_page:
        height = int(driver.execute_script("return document.documentElement.scrollHeight"))
    if height is not None:
        chrome = int(driver.execute_script("return window.outerHeight - window.innerHeight"))
        driver.set_window_size(size["width"], min(max(height, 400), 4000) + chrome)
        driver.execute_script("window.scrollTo(0, 0)")
        time.sleep(0.5)  # let the page lay out (and the timeline redraw) at the new size
    driver.save_screenshot(str(path))
    if height is not None:
        driver.set_window_size(size["width"], size["height"])
    return path
