"""See it working, in a real browser: a staff user watches a queue fill and drain on the dashboard
(which refreshes itself), finds a failed task, retries it from the admin and sees it succeed.

``tandem serve`` runs the web side and the workers in one process on the test database; the test
enqueues from this process. Screenshots land in ``tests/browser/screenshots/``.
"""

from __future__ import annotations

import re
import signal
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from django.contrib.auth.models import User

from tandem.brokers.base import FAILED, SUCCESSFUL
from tandem.models import TaskRecord
from tests.browser.tasks import needs_file, wait_for_file
from tests.support import free_port
from tests.support.processes import process_env
from tests.support.serving import Server, Servers, get, wait_until

pytestmark = [pytest.mark.process, pytest.mark.django_db(transaction=True)]

TASKS = 8
WORKERS = 2  # tests/browser/settings.py


def serve(servers: Servers, static_root: Path) -> tuple[Server, str]:
    port = free_port()
    server = Server(
        ["-m", "django", "tandem", "serve", "--bind", f"127.0.0.1:{port}", "--grace", "5"],
        servers.directory,
        "serve-browser",
        process_env(
            settings_module="tests.browser.settings", TANDEM_TEST_STATIC_ROOT=str(static_root)
        ),
    )
    servers.started.append(server)
    wait_until(lambda: _answers(port), "tandem serve to be ready", 60, alive=[server])
    return server, f"http://127.0.0.1:{port}"


def _answers(port: int) -> bool:
    try:
        return get(port, "/-/health/ready", timeout=2)[0] == 200
    except OSError:
        return False


def cells(driver: Any, queue: str) -> dict[str, str]:
    """The dashboard's numbers for ``queue``, as the page shows them now."""
    from selenium.webdriver.common.by import By

    row = driver.find_element(By.ID, f"queue-{queue}")
    return {
        name: row.find_element(By.CSS_SELECTOR, f"td.{name}").text
        for name in ("ready", "running", "failed", "successful", "live")
    }


def until(driver: Any, predicate: Callable[[], bool], what: str, server: Server) -> None:
    """Poll the page (which refreshes itself) until ``predicate``; fail with what it showed."""
    from selenium.common.exceptions import (
        NoSuchElementException,
        StaleElementReferenceException,
        WebDriverException,
    )

    def check() -> bool:
        try:
            return predicate()
        except (StaleElementReferenceException, NoSuchElementException):
            return False  # the panel was swapped, or the page reloaded, mid-read
        except WebDriverException as exc:
            # Chromium's name for a node read while its page reloads (the no-JS refresh).
            if "does not belong to the document" in str(exc):
                return False
            raise

    try:
        wait_until(check, what, 30, alive=[server])
    except AssertionError as exc:
        raise AssertionError(
            f"{what}; the page shows:\n{driver.find_element('tag name', 'body').text}"
        ) from exc


def read[T](driver: Any, fn: Callable[[], T], what: str, server: Server) -> T:
    """``fn()`` once it reads the page without a reload getting in the way."""
    values: list[T] = []
    until(driver, lambda: values.append(fn()) is None, what, server)
    return values[-1]


def admin_stylesheets(driver: Any) -> list[int]:
    """The number of CSS rules of each of the admin's stylesheets the page loaded."""
    return list(
        driver.execute_script(
            "return Array.from(document.styleSheets)"
            ".filter(s => s.href && s.href.includes('/static/admin/css/'))"
            ".map(s => s.cssRules.length)"
        )
    )


def test_watch_a_queue_drain_then_retry_a_failure_from_the_admin(
    servers: Servers, browser: Any, screenshots: Path, tmp_path: Path, static_root: Path
) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select

    driver = browser
    User.objects.create_superuser("ops", "ops@example.com", "correct horse")
    server, base = serve(servers, static_root)

    # Log in through the admin; the dashboard sends anonymous users there.
    driver.get(f"{base}/tasks/")
    assert "/admin/login/" in driver.current_url
    # The admin is styled: tandem serve sent its stylesheets (collected, hashed names), the
    # browser parsed them, and they apply (the header's colour is the admin's, not the default).
    sheets = admin_stylesheets(driver)
    assert sheets and all(rules > 0 for rules in sheets), sheets
    header = driver.find_element(By.ID, "header")
    assert header.value_of_css_property("background-color") == "rgba(65, 118, 144, 1)"
    driver.save_screenshot(str(screenshots / "00-styled-login.png"))
    driver.find_element(By.ID, "id_username").send_keys("ops")
    driver.find_element(By.ID, "id_password").send_keys("correct horse")
    driver.find_element(By.CSS_SELECTOR, "input[type=submit]").click()
    driver.find_element(By.ID, "tandem-panel")  # the dashboard, after the login's redirect
    assert driver.current_url == f"{base}/tasks/"
    # Scripting is on: the <noscript> reload stays inert text; the page's script refreshes.
    assert not driver.find_elements(By.CSS_SELECTOR, 'head meta[http-equiv="refresh"]')
    until(driver, lambda: cells(driver, "default")["live"] == "1", "a live worker", server)

    # The queue fills: two tasks run, the rest wait, without reloading the page.
    flag = tmp_path / "go"
    for _ in range(TASKS):
        wait_for_file.enqueue(str(flag))
    filled = {"ready": str(TASKS - WORKERS), "running": str(WORKERS)}
    until(
        driver,
        lambda: {k: cells(driver, "default")[k] for k in filled} == filled,
        "the queue to fill",
        server,
    )
    driver.save_screenshot(str(screenshots / "01-queue-filled.png"))

    # ... and drains once the tasks may finish.
    flag.touch()
    drained = {"ready": "0", "running": "0", "successful": str(TASKS)}
    until(
        driver,
        lambda: {k: cells(driver, "default")[k] for k in drained} == drained,
        "the queue to drain",
        server,
    )
    totals = driver.find_element(By.ID, "throughput-totals").text
    assert f"{TASKS} succeeded" in totals and "0 failed" in totals
    driver.save_screenshot(str(screenshots / "02-queue-drained.png"))

    # A task fails: it shows up among the recent failures, linked to the admin.
    needed = tmp_path / "needed.txt"
    failing = needs_file.enqueue(str(needed))
    until(driver, lambda: cells(driver, "default")["failed"] == "1", "the failure", server)
    # Read the link whole in one go: the panel refreshes itself, and a node found before a
    # refresh is stale after it (clicking it raised StaleElementReferenceException).
    link: dict[str, str] = {}

    def read_link() -> bool:
        found = driver.find_element(By.CSS_SELECTOR, "#failures a")
        link.update(text=found.text, href=found.get_attribute("href") or "")
        return True

    until(driver, read_link, "the failure's link", server)
    assert link["text"] == "tests.browser.tasks.needs_file"
    driver.save_screenshot(str(screenshots / "03-failure-on-dashboard.png"))
    driver.get(link["href"])  # where the link leads
    shown = driver.find_element(By.CSS_SELECTOR, "pre.tandem-traceback")
    driver.execute_script("arguments[0].scrollIntoView({block: 'center'})", shown)
    traceback = shown.text
    assert traceback.startswith("Traceback (most recent call last):")
    assert "FileNotFoundError" in traceback
    driver.save_screenshot(str(screenshots / "04-failure-in-the-admin.png"))

    # Fix the cause, retry it from the admin's list of failed tasks.
    needed.write_text("found it")
    driver.get(f"{base}/admin/tandem/taskrecord/?status__exact={FAILED}")
    driver.find_element(By.CSS_SELECTOR, f"input.action-select[value='{failing.id}']").click()
    Select(driver.find_element(By.NAME, "action")).select_by_value("retry_tasks")
    driver.find_element(By.CSS_SELECTOR, "button[name=index]").click()
    notes = [
        (m.get_attribute("class"), m.text)
        for m in driver.find_elements(By.CSS_SELECTOR, "ul.messagelist li")
    ]
    assert len(notes) == 1 and notes[0][0] == "success", notes
    message = notes[0][1]
    assert message.startswith(f"Retried 1 failed task(s) as new task(s): {failing.id} → ")
    driver.save_screenshot(str(screenshots / "05-retried-from-the-admin.png"))
    retry = TaskRecord.objects.exclude(id=failing.id).get(task_path=failing.task.module_path)

    # The retry succeeds: the dashboard counts it, the admin shows its return value.
    driver.get(f"{base}/tasks/")
    until(
        driver,
        lambda: cells(driver, "default")["successful"] == str(TASKS + 1),
        "the retry to succeed",
        server,
    )
    assert TaskRecord.objects.get(id=retry.id).status == SUCCESSFUL
    assert TaskRecord.objects.get(id=failing.id).status == FAILED  # history is kept
    driver.save_screenshot(str(screenshots / "06-retry-succeeded.png"))
    driver.get(f"{base}/admin/tandem/taskrecord/{retry.id}/change/")
    assert '"found it"' in driver.find_element(By.CSS_SELECTOR, ".field-return_value_display").text
    driver.save_screenshot(str(screenshots / "07-retry-in-the-admin.png"))

    server.send(signal.SIGTERM)
    assert server.wait() == 0, server.output()


def test_the_dashboard_is_readable_and_refreshes_without_javascript(
    servers: Servers,
    browser_without_javascript: Any,
    screenshots: Path,
    tmp_path: Path,
    static_root: Path,
) -> None:
    from selenium.webdriver.common.by import By

    driver = browser_without_javascript
    User.objects.create_superuser("ops", "ops@example.com", "correct horse")
    server, base = serve(servers, static_root)

    # The admin's login form works without JavaScript.
    driver.get(f"{base}/tasks/")
    driver.find_element(By.ID, "id_username").send_keys("ops")
    driver.find_element(By.ID, "id_password").send_keys("correct horse")
    driver.find_element(By.CSS_SELECTOR, "input[type=submit]").click()
    driver.find_element(By.ID, "tandem-panel")
    assert driver.current_url == f"{base}/tasks/"
    # Scripting is off: the <noscript> refresh is a real element of the page's head (with
    # scripting on, a <noscript> in the head is plain text, and the page's script swaps the panel).
    refresh = read(
        driver,
        lambda: driver.find_element(
            By.CSS_SELECTOR, 'head meta[http-equiv="refresh"]'
        ).get_attribute("content"),
        "the refresh tag",
        server,
    )
    assert refresh == "1"

    # The numbers are in the HTML, and the page reloads itself as they change.
    until(driver, lambda: cells(driver, "default")["live"] == "1", "a live worker", server)
    flag = tmp_path / "go"
    for _ in range(TASKS):
        wait_for_file.enqueue(str(flag))
    filled = {"ready": str(TASKS - WORKERS), "running": str(WORKERS)}
    until(
        driver,
        lambda: {k: cells(driver, "default")[k] for k in filled} == filled,
        "the queue to fill, without JavaScript",
        server,
    )
    # The worker, its pool and executor as of its last heartbeat: busy/size, restarts, queues.
    workers = read(driver, lambda: driver.find_element(By.ID, "workers").text, "workers", server)
    assert re.search(r"default \(thread, [0-2]/2, 0 restarts: default\)", workers), workers
    charts = read(driver, lambda: driver.find_elements(By.CSS_SELECTOR, "svg.chart"), "svg", server)
    assert charts  # the chart is server-drawn SVG
    driver.save_screenshot(str(screenshots / "08-without-javascript.png"))
    flag.touch()
    until(
        driver,
        lambda: cells(driver, "default")["successful"] == str(TASKS),
        "the queue to drain, without JavaScript",
        server,
    )

    server.send(signal.SIGTERM)
    assert server.wait() == 0, server.output()
