"""A new user's first mistakes, as real ``tandem serve`` / ``tandem worker`` processes in a fresh
``startproject`` site: each exits at once with status 1 and a message of a few lines that names the
fix — no banner, no traceback, no log of a supervisor failing."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

import tandem
from tests.support import free_port

pytestmark = [pytest.mark.process, pytest.mark.once]

DATABASE = "tandem.backends.database.DatabaseBackend"
REDIS = "tandem.backends.redis.RedisBackend"
#: Every migration tandem ships, in order: a fresh site has applied none of them.
MIGRATIONS = sorted(
    path.stem for path in (Path(tandem.__file__).parent / "migrations").glob("0*.py")
)
UNMIGRATED = (
    "CommandError: tandem's tables are not migrated in database 'default' (unapplied: "
    f"{', '.join(MIGRATIONS)}). Run `python manage.py migrate` first.\n"
)


def new_site(root: Path, tasks: str) -> Path:
    """``django-admin startproject mysite`` with tandem added as the tutorial says."""
    subprocess.run(
        [sys.executable, "-m", "django", "startproject", "mysite", str(root)],
        check=True,
        timeout=60,
    )
    settings = root / "mysite" / "settings.py"
    settings.write_text(
        settings.read_text()
        + f'\nINSTALLED_APPS += ["tandem"]\nTASKS = {tasks}\n'
        # The tutorial's SQLite setting (without it every command also warns tandem.W003).
        + 'DATABASES["default"]["OPTIONS"] = {"transaction_mode": "IMMEDIATE"}\n'
    )
    return root


def manage(site: Path, *args: str, prelude: str = "") -> subprocess.CompletedProcess[str]:
    """``python manage.py ARGS`` in ``site`` (``prelude``: Python run first, in that process)."""
    code = (
        f"{prelude}\nimport sys\nfrom django.core.management import execute_from_command_line\n"
        f"execute_from_command_line(['manage.py', *{list(args)!r}])"
    )
    env = {k: v for k, v in os.environ.items() if k != "DJANGO_SETTINGS_MODULE"}
    env.update(DJANGO_SETTINGS_MODULE="mysite.settings", PYTHONPATH=str(site))
    return subprocess.run(
        [sys.executable, "-c", code],
        cwd=site,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


SERVE = ("tandem", "serve", "--bind", "127.0.0.1:0")
WORKER = ("tandem", "worker", "--burst")


@pytest.mark.parametrize(
    "command", [SERVE, WORKER, ("tandem", "status")], ids=["serve", "worker", "status"]
)
def test_unapplied_migrations_stop_serve_and_worker_at_once(tmp_path: Path, command) -> None:
    site = new_site(tmp_path, f'{{"default": {{"BACKEND": "{DATABASE}"}}}}')

    ran = manage(site, *command)

    assert (ran.returncode, ran.stdout, ran.stderr) == (1, "", UNMIGRATED)

    assert manage(site, "migrate", "--verbosity", "0").returncode == 0
    burst = manage(site, *WORKER)
    assert burst.returncode == 0, burst.stderr
    assert burst.stdout.rstrip().endswith("stopped: 0 task(s) settled.")


def test_queue_typo_and_bad_options_in_one_report(tmp_path: Path) -> None:
    site = new_site(
        tmp_path,
        f'{{"default": {{"BACKEND": "{DATABASE}", "QUEUE": ["mail"], '
        '"OPTIONS": {"workers": 0, "lease_seconds": -1}}}',
    )

    ran = manage(site, *WORKER)

    assert ran.returncode == 1
    assert ran.stdout == ""
    assert "Traceback" not in ran.stderr
    assert ran.stderr.splitlines() == [
        "SystemCheckError: System check identified some issues:",
        "",
        "ERRORS:",
        "default: (tandem.E001) TASKS['default']['OPTIONS']['lease_seconds'] must be a finite "
        "number > 0, got -1.",
        "default: (tandem.E001) TASKS['default']['OPTIONS']['workers'] must be an integer >= 1, "
        "got 0.",
        "default: (tandem.E004) TASKS['default'] has unknown key(s) 'QUEUE' (did you mean "
        "'QUEUES'?); Django reads only BACKEND, OPTIONS, QUEUES, and ignores the rest.",
    ]


@pytest.mark.parametrize("command", [SERVE, WORKER, ("check",)], ids=["serve", "worker", "check"])
def test_missing_redis_package_names_the_extra(tmp_path: Path, command) -> None:
    site = new_site(tmp_path, f'{{"default": {{"BACKEND": "{REDIS}"}}}}')

    # None in sys.modules: `import redis` raises ModuleNotFoundError, as if not installed.
    ran = manage(site, *command, prelude="import sys; sys.modules['redis'] = None")

    assert ran.returncode == 1
    assert "Traceback" not in ran.stderr
    assert (
        "default: (tandem.E005) The Python package 'redis' is not installed; this store needs "
        'it. Install it with: pip install "django-tandem[redis]"'
    ) in ran.stderr.splitlines()


@pytest.mark.parametrize("command", [SERVE, WORKER], ids=["serve", "worker"])
def test_a_store_that_does_not_answer(tmp_path: Path, command) -> None:
    port = free_port()  # nothing listens there
    site = new_site(
        tmp_path,
        f'{{"default": {{"BACKEND": "{REDIS}", "OPTIONS": {{"url": "redis://127.0.0.1:{port}/0"}}}}}}',
    )
    assert manage(site, "migrate", "--verbosity", "0").returncode == 0

    ran = manage(site, *command)

    assert (ran.returncode, ran.stdout) == (1, "")
    [line] = ran.stderr.splitlines()
    assert line.startswith(
        "CommandError: The task store of TASKS['default'] does not answer: ConnectionError: "
        f"Redis: Error 111 connecting to 127.0.0.1:{port}."
    )
    assert line.endswith("Start it, or check its address and credentials in settings.")
