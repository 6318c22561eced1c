"""Flower as an operator sees it: a real headless Chromium (Debian's `chromium` and
`chromium-driver`, driven by Selenium) logs in with basic auth and finds the worker and
the five plugins' tasks on Flower's pages, once Flower's JavaScript has filled them in.

Valkey, a worker with the five built-in plugins and Flower are real processes; Flower
turns task events on in the worker by itself, as it does in production.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import urllib.request
from base64 import b64encode
from collections.abc import Iterator
from typing import Any

import pytest

try:
    from selenium.webdriver.common.by import By
except ImportError:  # chromium_driver() says what is missing
    By = None

from banktasks_testing import free_port, http_status, seed_data, wait_for

pytestmark = pytest.mark.e2e

MAIN_TASKS = {  # the README's table: each plugin's task
    "fraud": "fraud.analyze_fraud_patterns",
    "reports": "reports.generate_daily_reports",
    "notifications": "notifications.send_email_notification",
    "export": "export.export_transaction_data",
    "health": "health.system_health_check",
}
PLUGINS = tuple(MAIN_TASKS)
USER, PASSWORD = "ops", "browser-s3cret-pass"


def chromium_driver() -> Any:
    """A headless Chromium under Selenium; without Chromium, its driver or Selenium, a skip
    with the reason, or a failure under CI=true."""
    browser, driver = shutil.which("chromium"), shutil.which("chromedriver")
    try:
        from selenium import webdriver
        from selenium.webdriver.chrome.service import Service
    except ImportError:
        webdriver = None
    missing = [
        what
        for what, found in (
            ("chromium (apt-get install chromium)", browser),
            ("chromedriver (apt-get install chromium-driver)", driver),
            ("selenium (pip install -e '.[dev]')", webdriver),
        )
        if not found
    ]
    if missing:
        reason = f"Flower is not tested in a browser: missing {', '.join(missing)}"
        if os.environ.get("CI") == "true":
            pytest.fail(f"{reason}; CI must install it (.ci/run)")
        pytest.skip(reason)
    options = webdriver.ChromeOptions()
    options.binary_location = browser
    for argument in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage"):
        options.add_argument(argument)
    options.add_argument("--window-size=1400,1000")
    # an explicit driver: Selenium never looks for (or downloads) one of its own
    return webdriver.Chrome(options=options, service=Service(executable_path=driver))


@pytest.fixture
def browser() -> Iterator[Any]:
    """A headless Chromium (root needs --no-sandbox), quit after the test."""
    driver = chromium_driver()
    driver.set_page_load_timeout(60)
    try:
        yield driver
    finally:
        driver.quit()


def flower_tasks(base: str) -> set[str]:
    """Ids of the tasks Flower has seen (through its API)."""
    request = urllib.request.Request(f"{base}/api/tasks")
    request.add_header(
        "Authorization", "Basic " + b64encode(f"{USER}:{PASSWORD}".encode()).decode()
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        return set(json.load(response))


def text_of(driver: Any, css: str) -> str:
    """The rendered text of the elements matching `css` (empty when there are none)."""
    return "\n".join(e.text for e in driver.find_elements(By.CSS_SELECTOR, css))


def table_rows(driver: Any, css: str) -> list[list[str]]:
    """The rendered cells of each row of the table `css`; [] while JavaScript redraws it."""
    from selenium.common.exceptions import StaleElementReferenceException

    try:
        return [
            [cell.text for cell in row.find_elements(By.TAG_NAME, "td")]
            for row in driver.find_elements(By.CSS_SELECTOR, f"{css} tbody tr")
        ]
    except StaleElementReferenceException:
        return []


def test_a_browser_logs_in_and_sees_the_worker_and_every_plugins_tasks(e2e, browser):
    e2e.set(BANKTASKS_PLUGINS=",".join(PLUGINS), FLOWER_BASIC_AUTH=f"{USER}:{PASSWORD}")
    app = e2e.app()
    seed_data(app.runtime.db, users=10, transactions=200, seed_value=7)
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    log = (e2e.tmp / "flower.log").open("wb")
    flower = subprocess.Popen(
        [sys.executable, "-m", "core.cli", "flower", f"--port={port}"],
        env={**os.environ, **e2e.env},
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        wait_for(lambda: http_status(f"{base}/healthcheck") == 200, 60, "flower to listen")
        worker = e2e.start_worker(concurrency=2)
        node = f"{worker.name}@{socket.gethostname()}"

        # Flower switches task events on in running workers every few seconds: wait until
        # it has seen a task, then send one task of each plugin (their `example` arguments)
        def probe_seen() -> bool:
            result = app.tasks["health.system_health_check"].delay()
            result.get(timeout=30)
            return bool(wait_for_quietly(lambda: result.id in flower_tasks(base), 3))

        wait_for(probe_seen, 60, "flower to see task events", interval=0.5)
        sent = {}
        for name in MAIN_TASKS.values():  # with the arguments `banktasks demo` sends
            kwargs = app.runtime.tasks[name].example_kwargs()
            sent[name] = app.tasks[name].apply_async(kwargs=kwargs)
        for name, result in sent.items():
            result.get(timeout=60)
            assert result.successful(), name

        # without credentials the browser shows nothing of Flower (the login prompt, which
        # headless Chromium leaves unanswered, is all there is)
        browser.get(f"{base}/")
        assert "Flower" not in browser.title, browser.title
        assert node not in browser.page_source
        assert "workers-table" not in browser.page_source

        # logged in (the credentials a user types into the browser's prompt)
        browser.get(f"http://{USER}:{PASSWORD}@127.0.0.1:{port}/")
        # the counts are "—" in the HTML Flower sends: its JavaScript fills them in
        wait_for(lambda: text_of(browser, "#workers-online") == "1", 30, "the worker count")
        assert text_of(browser, "#workers-failed") == "0"
        rows = wait_for(lambda: table_rows(browser, "#workers-table"), 30, "the worker row")
        assert [row[:2] for row in rows] == [[node, "Online"]], rows

        browser.get(f"{base}/tasks")  # same origin: the browser sends the login again
        wait_for(lambda: text_of(browser, "#tasks-table tbody td"), 30, "the tasks table")
        search = browser.find_element(By.CSS_SELECTOR, "input[type=search]")
        for name in sent:  # typed into Flower's search box, as a user looks for a task
            search.clear()
            search.send_keys(name)

            def found(name: str = name) -> list[list[str]]:
                # the search also matches arguments and results: other tasks may show up
                return [row for row in table_rows(browser, "#tasks-table") if row[0] == name]

            rows = wait_for(found, 30, f"{name} on the tasks page", interval=0.3)
            header = [
                h.get_attribute("data-column")
                for h in browser.find_elements(By.CSS_SELECTOR, "#tasks-table thead th")
            ]
            for row in rows:
                cells = dict(zip(header, row, strict=True))
                assert cells["state"] == "SUCCESS", cells
                assert cells["worker"] == node, cells

        browser.get(f"{base}/worker/{node}")
        wait_for(lambda: node in browser.page_source, 30, "the worker page")
        registered = browser.execute_script(  # the task limits tab, rendered but hidden
            "return Array.from(document.querySelectorAll('#limits-table tr td:first-child'))"
            ".map(td => td.textContent.trim())"
        )
        assert set(registered) >= set(app.runtime.tasks), registered  # every plugin task
    except BaseException:
        browser.save_screenshot(str(e2e.tmp / "failure.png"))  # what the browser showed
        raise
    finally:
        flower.terminate()
        flower.wait(20)
        log.close()


def wait_for_quietly(predicate: Any, timeout: float) -> Any:
    """`wait_for` that returns False instead of failing."""
    try:
        return wait_for(predicate, timeout, interval=0.2)
    except AssertionError:
        return False
