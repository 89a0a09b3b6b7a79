"""The demo shop end to end: ``tandem serve`` as a real process, a form post, a task that runs."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import urlencode

import pytest

from tests.support import free_port, request

DEMO = Path(__file__).resolve().parents[2] / "demo"
DEADLINE = 20.0

pytestmark = pytest.mark.process


def demo_env(database: Path) -> dict[str, str]:
    env = dict(os.environ)
    env.update(
        DJANGO_SETTINGS_MODULE="demosite.settings",
        TANDEM_DEMO_DB=str(database),
        PYTHONUNBUFFERED="1",
    )
    return env


def wait_until_serving(port: int, server: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + DEADLINE
    while time.monotonic() < deadline:
        assert server.poll() is None, f"tandem serve exited early with {server.returncode}"
        try:
            request(port, "GET", "/")
            return
        except OSError:
            time.sleep(0.1)
    pytest.fail(f"tandem serve did not answer on port {port} within {DEADLINE:g}s")


@contextmanager
def serving_demo(env: dict[str, str], port: int, log: Path) -> Iterator[subprocess.Popen[bytes]]:
    """``tandem serve`` of the demo on ``port`` (output to ``log``), once it answers; killed
    on the way out if the test did not stop it."""
    with log.open("wb") as output:
        server = subprocess.Popen(
            [
                sys.executable,
                "manage.py",
                "tandem",
                "serve",
                "--bind",
                f"127.0.0.1:{port}",
                "--grace",
                "10",
            ],
            cwd=DEMO,
            env=env,
            stdout=output,
            stderr=subprocess.STDOUT,
        )
    try:
        wait_until_serving(port, server)
        yield server
    finally:
        if server.poll() is None:
            server.kill()
            server.wait()


def task_rows(page: str) -> list[str]:
    return re.findall(r'<tr id="task-[^"]+">(.*?)</tr>', page, flags=re.DOTALL)


def test_demo_serves_the_page_and_runs_an_enqueued_task(tmp_path: Path) -> None:
    env = demo_env(tmp_path / "demo.sqlite3")
    subprocess.run(
        [sys.executable, "manage.py", "migrate", "--verbosity", "0"],
        cwd=DEMO,
        env=env,
        check=True,
        timeout=60,
    )
    port = free_port()
    log = tmp_path / "serve.log"
    with serving_demo(env, port, log) as server:
        status, cookies, page = request(port, "GET", "/")
        assert status == 200
        assert '<meta http-equiv="refresh" content="2">' in page
        token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page)
        assert token, "the page has no CSRF token"
        assert "csrftoken" in cookies

        status, _, _ = request(
            port,
            "POST",
            "/enqueue/",
            body=urlencode(
                {
                    "csrfmiddlewaretoken": token.group(1),
                    "kind": "welcome",
                    "email": "grace@example.com",
                }
            ),
            headers={
                "Content-Type": "application/x-www-form-urlencoded",
                "Cookie": f"csrftoken={cookies['csrftoken']}",
            },
        )
        assert status == 302

        deadline = time.monotonic() + DEADLINE
        row = ""
        while time.monotonic() < deadline:
            _, _, page = request(port, "GET", "/")
            welcome = [r for r in task_rows(page) if "shop.tasks.send_welcome_email" in r]
            assert len(welcome) == 1, page
            row = welcome[0]
            if "SUCCESSFUL" in row or "FAILED" in row:
                break
            time.sleep(0.25)
        assert "SUCCESSFUL" in row, f"the welcome email task did not succeed in time: {row}"
        assert "Welcome email sent to grace@example.com" in row

        server.send_signal(signal.SIGTERM)
        assert server.wait(timeout=30) == 0

    printed = log.read_text()
    assert "tandem serve " in printed
    assert "critical" in printed  # the banner lists the demo's pools
    assert f"http://127.0.0.1:{port}/" in printed
    assert "tandem serve stopped" in printed


def test_demo_login_opens_the_admin_and_the_dashboard(tmp_path: Path) -> None:
    env = demo_env(tmp_path / "demo.sqlite3")

    def manage(*args: str) -> str:
        done = subprocess.run(
            [sys.executable, "manage.py", *args],
            cwd=DEMO,
            env=env,
            check=True,
            timeout=60,
            capture_output=True,
            text=True,
        )
        return done.stdout

    manage("migrate", "--verbosity", "0")
    printed = manage("demo_login")
    login = re.fullmatch(r"  admin login: user demo-admin, password (\S{16})\n", printed)
    assert login, printed
    password = login.group(1)
    # Made once: the next run names the user and makes no other.
    assert manage("demo_login") == (
        "  admin login: 'demo-admin' (its password was printed when it was made; set a new one "
        "with: python manage.py changepassword demo-admin)\n"
    )

    port = free_port()
    with serving_demo(env, port, tmp_path / "serve.log") as server:
        status, cookies, page = request(port, "GET", "/admin/login/?next=/tasks/")
        assert status == 200
        assert "Django administration" in page
        token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page)
        assert token and "csrftoken" in cookies

        status, session, _ = request(
            port,
            "POST",
            "/admin/login/?next=/tasks/",
            body=urlencode(
                {
                    "csrfmiddlewaretoken": token.group(1),
                    "username": "demo-admin",
                    "password": password,
                    "next": "/tasks/",
                }
            ),
            headers={
                "Content-Type": "application/x-www-form-urlencoded",
                "Cookie": f"csrftoken={cookies['csrftoken']}",
            },
        )
        assert status == 302 and "sessionid" in session, "the printed login was refused"
        signed_in = {"Cookie": f"sessionid={session['sessionid']}"}

        status, _, page = request(port, "GET", "/tasks/", headers=signed_in)
        assert status == 200
        assert "<title>Tasks · default · tandem</title>" in page
        status, _, page = request(port, "GET", "/admin/tandem/taskrecord/", headers=signed_in)
        assert status == 200
        assert 'href="/static/admin/css/base.css"' in page  # STATIC_URL is set

        server.send_signal(signal.SIGTERM)
        assert server.wait(timeout=30) == 0
