"""A new user follows only the tutorial (docs/tutorial.md): a fresh ``django-admin
startproject`` site with tandem, served by ``tandem serve``, reaches the admin and the dashboard
in a real browser, and the admin is styled — its stylesheet is loaded and applied (computed
style), not just a 200. Screenshots land in ``tests/browser/screenshots/``.

The site's files are the tutorial's code blocks, read from the page itself, so a tutorial that
drifts from what works fails here.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.support import free_port, request

pytestmark = [pytest.mark.process, pytest.mark.once]

TUTORIAL = Path(__file__).resolve().parents[2] / "docs" / "tutorial.md"
PASSWORD = "tutorial-Pa55word"
DEADLINE = 30.0


def tutorial_block(starts_with: str) -> str:
    """The tutorial's code block whose first line starts with ``starts_with``."""
    blocks = re.findall(r"```(?:python|bash)\n(.*?)```", TUTORIAL.read_text(), flags=re.DOTALL)
    found = [b for b in blocks if b.startswith(starts_with)]
    assert found, f"the tutorial has no code block starting with {starts_with!r}"
    return found[-1]  # the last one: later steps replace earlier files


def site_env(site: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "DJANGO_SETTINGS_MODULE"}
    env.update(
        PYTHONPATH=str(site),
        PYTHONUNBUFFERED="1",
        DJANGO_SUPERUSER_PASSWORD=PASSWORD,
        DJANGO_SUPERUSER_EMAIL="admin@example.com",
    )
    return env


def manage(site: Path, *args: str) -> None:
    subprocess.run(
        [sys.executable, "manage.py", *args], cwd=site, env=site_env(site), check=True, timeout=120
    )


@pytest.fixture(scope="module")
def tutorial_site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[int]:
    """The tutorial's site, migrated, with a superuser, under ``tandem serve``: its port."""
    site = tmp_path_factory.mktemp("tutorial")
    subprocess.run(
        [sys.executable, "-m", "django", "startproject", "mysite", str(site)],
        check=True,
        timeout=60,
    )
    manage(site, "startapp", "shop")
    settings = site / "mysite" / "settings.py"
    settings.write_text(settings.read_text() + "\n" + tutorial_block("INSTALLED_APPS +="))
    (site / "shop" / "tasks.py").write_text(tutorial_block("from django.tasks import task"))
    (site / "shop" / "views.py").write_text(tutorial_block("from django.http import"))
    (site / "mysite" / "urls.py").write_text(tutorial_block("from django.contrib import admin"))
    manage(site, "migrate", "--verbosity", "0")
    # The tutorial's `createsuperuser`, without its prompts.
    manage(site, "createsuperuser", "--noinput", "--username", "admin")

    port = free_port()
    log = site / "serve.log"
    with log.open("wb") as output:
        server = subprocess.Popen(
            [sys.executable, "manage.py", "tandem", "serve", "--bind", f"127.0.0.1:{port}"],
            cwd=site,
            env=site_env(site),
            stdout=output,
            stderr=subprocess.STDOUT,
        )
    try:
        deadline = time.monotonic() + DEADLINE
        while True:
            assert server.poll() is None, f"tandem serve exited early:\n{log.read_text()}"
            try:
                request(port, "GET", "/-/health/live")
                break
            except OSError:
                assert time.monotonic() < deadline, "tandem serve did not answer in time"
                time.sleep(0.1)
        yield port
        server.send_signal(signal.SIGTERM)
        assert server.wait(timeout=30) == 0, log.read_text()
    finally:
        if server.poll() is None:
            server.kill()
            server.wait()


def log_in(browser: Any, port: int, next_path: str) -> None:
    from selenium.webdriver.common.by import By

    browser.get(f"http://127.0.0.1:{port}/admin/login/?next={next_path}")
    browser.find_element(By.NAME, "username").send_keys("admin")
    browser.find_element(By.NAME, "password").send_keys(PASSWORD)
    browser.find_element(By.CSS_SELECTOR, "input[type=submit]").click()


def test_the_tutorial_site_reaches_the_admin_and_the_dashboard(
    tutorial_site: int, browser: Any, screenshots: Path
) -> None:
    from selenium.webdriver.common.by import By

    port = tutorial_site
    status, _, body = request(port, "GET", "/count/?text=one+two+three")
    assert status == 200 and '"status": "READY"' in body

    log_in(browser, port, "/admin/tandem/taskrecord/")
    assert browser.find_element(By.ID, "site-name").text == "Django administration"
    rows = browser.find_elements(By.CSS_SELECTOR, "#result_list tbody tr")
    assert len(rows) == 1 and "shop.tasks.count_words" in rows[0].text
    browser.save_screenshot(str(screenshots / "new-user-admin.png"))

    browser.get(f"http://127.0.0.1:{port}/tasks/")
    assert browser.title == "Tasks · default · tandem"
    assert browser.find_element(By.TAG_NAME, "h1").text == "Tasks"
    assert "default" in browser.find_element(By.TAG_NAME, "body").text
    browser.save_screenshot(str(screenshots / "new-user-dashboard.png"))


def test_the_tutorial_sites_admin_is_styled(tutorial_site: int, browser: Any) -> None:
    log_in(browser, tutorial_site, "/admin/")
    # A stylesheet that failed to load has no readable rules (reading them throws).
    loaded = browser.execute_script(
        "return Array.from(document.styleSheets).some(sheet => {"
        " if (!sheet.href || !sheet.href.endsWith('/static/admin/css/base.css')) return false;"
        " try { return sheet.cssRules.length > 0; } catch (error) { return false; } });"
    )
    header = browser.execute_script(
        "return getComputedStyle(document.getElementById('header')).backgroundColor;"
    )
    assert loaded, "the admin's base.css did not load"
    assert header not in ("rgba(0, 0, 0, 0)", "transparent"), f"unstyled header: {header}"
