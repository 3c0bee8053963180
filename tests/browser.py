"""Headless Chromium for the browser tests (Debian's chromium and chromium-driver, driven by
selenium); a test that needs it is skipped with a message when either is missing."""

from __future__ import annotations

import shutil
from typing import Any

import pytest


def headless_chromium(what: str, *args: str, logs: bool = False) -> Any:
    """A started ``webdriver.Chrome`` (the caller quits it); ``what`` names the test for the
    skip message, ``args`` are extra Chromium switches, ``logs`` keeps the browser console."""
    webdriver = pytest.importorskip("selenium.webdriver", reason="selenium is not installed "
                                    "(pip install -e '.[test]')")
    driver_path = shutil.which("chromedriver")
    if shutil.which("chromium") is None or driver_path is None:
        pytest.skip("headless Chromium is not installed: apt-get install chromium "
                    f"chromium-driver to run the browser test of {what}")
    from selenium.webdriver.chrome.options import Options
    from selenium.webdriver.chrome.service import Service
    opts = Options()
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                *args):
        opts.add_argument(arg)
    if logs:
        opts.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    return webdriver.Chrome(options=opts, service=Service(driver_path))
