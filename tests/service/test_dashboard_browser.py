"""The web dashboard in headless Chromium: each page against a running server with a small
workload, the numbers shown against the kernel's, the buttons against the kernel's state,
and a screenshot of each page in the test's directory."""

from __future__ import annotations


import pytest

from eskernel.service import Client
from eskernel.service.dashboard import PAGE
from tests.browser import headless_chromium
from tests.service.dashboard_workload import ADMIN, HOSTILE, kernel_call, start

WAIT = 30       # seconds a page may take to reach a state (a bound, not a measurement)


@pytest.fixture
def browser():
    driver = headless_chromium("the dashboard", "--window-size=1280,1000", logs=True)
    yield driver
    driver.quit()


@pytest.fixture
def served(tmp_path, sockdir):
    st = start(tmp_path / "log", str(sockdir / "b"))
    yield st
    st.stop()


def text(driver, css):
    from selenium.webdriver.common.by import By
    return driver.find_element(By.CSS_SELECTOR, css).text


def wait(driver, condition):
    from selenium.common.exceptions import (NoSuchElementException,
                                            StaleElementReferenceException)
    from selenium.webdriver.support.ui import WebDriverWait
    return WebDriverWait(driver, WAIT, ignored_exceptions=(
        NoSuchElementException, StaleElementReferenceException)).until(lambda d: condition())


def click_and_reload(driver, element):
    """Click a button whose success reloads the page; return once a new page has loaded
    (the old document is marked, so the new one is the one without the mark)."""
    from selenium.common.exceptions import WebDriverException
    from selenium.webdriver.support.ui import WebDriverWait
    driver.execute_script("document.documentElement.dataset.old = '1'")
    element.click()
    WebDriverWait(driver, WAIT, ignored_exceptions=(WebDriverException,)).until(
        lambda d: d.execute_script("return document.readyState === 'complete' && "
                                   "document.documentElement.dataset.old === undefined"))


def test_dashboard_in_a_browser(served, browser, tmp_path):
    from selenium.webdriver.common.by import By
    host, port = served.server.http_addresses[0]
    base = f"http://{host}:{port}"

    # Overview: the numbers are the kernel's, and they follow it live.
    browser.get(f"{base}/ui/")
    stats = kernel_call(served, lambda k: k.stats())
    for status, n in stats.counts.items():
        assert text(browser, f'td[data-stat="counts"][data-key="{status}"]') == str(n)
    for q in stats.queues:
        for field in ("ready", "running", "max_concurrent"):
            cell = f'td[data-stat="queues"][data-key="{q.name}"][data-field="{field}"]'
            assert text(browser, cell) == str(getattr(q, field))
    assert text(browser, 'td[data-stat="agents"][data-key="w"][data-field="active"]') == \
        str(stats.agents[0].active)
    for prio, counts in stats.by_priority.items():
        cell = f'td[data-stat="by_priority"][data-key="{prio}"][data-field="READY"]'
        assert text(browser, cell) == str(counts["READY"])
    assert [e for e in browser.get_log("browser") if e["level"] == "SEVERE"] == []
    with Client(served.address, token=ADMIN) as c:
        c.submit("q", {"late": 1}, id="late")
    ready = str(kernel_call(served, lambda k: k.stats().counts["READY"]))
    wait(browser, lambda: text(browser, 'td[data-stat="counts"][data-key="READY"]') == ready)
    browser.save_screenshot(str(tmp_path / "overview.png"))

    # Tasks: the first page is the kernel's first PAGE tasks.
    browser.get(f"{base}/ui/tasks")
    ids = kernel_call(served, lambda k: [v.id for v in k.tasks(limit=PAGE)])
    rows = browser.find_elements(By.CSS_SELECTOR, "#task-table td:first-child a")
    assert [r.text for r in rows] == ids
    assert text(browser, "#total") == str(kernel_call(served, lambda k: k.stats().tasks))
    browser.save_screenshot(str(tmp_path / "tasks.png"))

    # A task with an HTML payload: shown as text, never run.
    browser.get(f"{base}/ui/tasks/hostile")
    view = kernel_call(served, lambda k: k.task("hostile"))
    assert browser.title.startswith("Task hostile")
    assert HOSTILE in text(browser, "#payload")
    assert text(browser, "#f-status") == view.status
    assert text(browser, "#f-name") == "<b>bold</b>"
    assert len(browser.find_elements(By.CSS_SELECTOR, "main script, main img, main b")) == 0
    kinds = [e.text for e in browser.find_elements(By.CSS_SELECTOR, "#history .kind")]
    assert kinds == [e["t"] for e in kernel_call(served, lambda k: k.history("hostile"))]
    browser.save_screenshot(str(tmp_path / "task.png"))

    # Queues: without the admin token the button is refused and nothing changes.
    browser.get(f"{base}/ui/queues")
    browser.find_element(By.ID, "pause-q").click()
    wait(browser, lambda: "AuthenticationError" in text(browser, "#msg"))
    assert kernel_call(served, lambda k: k.stats().queues[0].paused) is False

    # Log in with the admin token, then pause.
    browser.get(f"{base}/ui/login")
    browser.find_element(By.ID, "token").send_keys(ADMIN)
    browser.find_element(By.ID, "login").click()
    wait(browser, lambda: browser.current_url == f"{base}/ui/" and browser.execute_script(
        "return document.readyState") == "complete")
    browser.get(f"{base}/ui/queues")
    click_and_reload(browser, browser.find_element(By.ID, "pause-q"))
    assert kernel_call(served, lambda k: k.stats().queues[0].paused) is True
    assert text(browser, 'tr[data-queue="q"] .state') == "paused"
    assert browser.find_elements(By.ID, "resume-q")
    browser.save_screenshot(str(tmp_path / "queues.png"))

    # Dead letters: requeue one.
    browser.get(f"{base}/ui/dead")
    dead = kernel_call(served, lambda k: [v.id for v in k.dead_letters()])
    assert [r.text for r in browser.find_elements(
        By.CSS_SELECTOR, "#task-table td:first-child a")] == dead
    assert "dead" in dead
    browser.save_screenshot(str(tmp_path / "dead.png"))
    row = browser.find_element(By.XPATH, "//tr[td/a[text()='dead']]")
    click_and_reload(browser, row.find_element(By.TAG_NAME, "button"))
    assert kernel_call(served, lambda k: k.task("dead").status) == "READY"
    assert "dead" not in [r.text for r in browser.find_elements(
        By.CSS_SELECTOR, "#task-table td:first-child a")]

    # A task page: cancel.
    browser.get(f"{base}/ui/tasks/t2")
    click_and_reload(browser, browser.find_element(By.ID, "cancel"))
    assert kernel_call(served, lambda k: k.task("t2").status) == "CANCELLED"
    assert text(browser, "#f-status") == "CANCELLED"
    for name in ("overview", "tasks", "task", "queues", "dead"):
        assert (tmp_path / f"{name}.png").stat().st_size > 0
