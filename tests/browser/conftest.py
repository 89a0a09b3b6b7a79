"""The browser tier: real headless Chromium (Debian's ``chromium`` and ``chromium-driver``)
driven by Selenium. Without them the tests are skipped on a laptop and FAIL in CI."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.fixtures import servers  # noqa: F401  (the fixture that starts tandem serve)

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
SCREENSHOTS = Path(__file__).resolve().parent / "screenshots"
INSTALL = "apt-get install -y chromium chromium-driver"


@pytest.fixture
def browser() -> Iterator[object]:
    yield from _chromium(javascript=True)


@pytest.fixture
def browser_without_javascript() -> Iterator[object]:
    """Headless Chromium with JavaScript turned off for every page."""
    yield from _chromium(javascript=False)


def _chromium(*, javascript: bool) -> Iterator[object]:
    missing = [p for p in (CHROMIUM, CHROMEDRIVER) if not shutil.which(p)]
    if missing:
        message = f"headless Chromium is missing ({', '.join(missing)}): {INSTALL}"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    from selenium import webdriver
    from selenium.webdriver.chrome.options import Options
    from selenium.webdriver.chrome.service import Service

    options = Options()
    options.binary_location = CHROMIUM
    for argument in (
        "--headless=new",
        "--no-sandbox",  # CI runs as root
        "--disable-dev-shm-usage",
        "--window-size=1280,1100",
        "--disable-gpu",
    ):
        options.add_argument(argument)
    if not javascript:
        options.add_experimental_option(
            "prefs", {"profile.managed_default_content_settings.javascript": 2}
        )
    driver = webdriver.Chrome(options=options, service=Service(executable_path=CHROMEDRIVER))
    driver.implicitly_wait(10)  # a click that navigates returns before the next page is there
    try:
        yield driver
    finally:
        driver.quit()


@pytest.fixture(scope="session")
def static_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``collectstatic`` once for the session (the admin's stylesheets, hashed and compressed):
    ``tandem serve`` serves them from there, as in production."""
    from tests.support.processes import ROOT, process_env

    root = tmp_path_factory.mktemp("static")
    subprocess.run(
        [sys.executable, "-m", "django", "collectstatic", "--noinput", "-v0"],
        cwd=ROOT,
        env=process_env(
            settings_module="tests.browser.settings", TANDEM_TEST_STATIC_ROOT=str(root)
        ),
        check=True,
        timeout=120,
    )
    return root


@pytest.fixture
def screenshots() -> Path:
    """Where the browser test saves what it saw (git-ignored)."""
    SCREENSHOTS.mkdir(exist_ok=True)
    return SCREENSHOTS
