"""Release-ready packaging: ``python -m build`` makes an sdist and a wheel (the wheel built from
the sdist, so the sdist is complete), ``twine check`` passes, and the wheel installed in a clean
virtualenv passes the conformance tier — run from the sdist's tests, importing the installed
package, not ``src/``. The steps are docs/how-to/release.md's checklist."""

from __future__ import annotations

import os
import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path

import pytest

import tandem

pytestmark = [pytest.mark.process, pytest.mark.once, pytest.mark.timeout(900)]

ROOT = Path(__file__).resolve().parents[2]
#: What the conformance tier needs besides the wheel (the sdist's tests import these).
TEST_NEEDS = ["pytest", "pytest-django", "pytest-timeout", "pytest-xdist", "hypothesis"]


def run(*args: str | Path, cwd: Path = ROOT, env: dict[str, str] | None = None) -> str:
    done = subprocess.run(
        [str(a) for a in args], cwd=cwd, env=env, capture_output=True, text=True, timeout=600
    )
    assert done.returncode == 0, f"{args} failed:\n{done.stdout}\n{done.stderr}"
    return done.stdout


def test_build_check_install_and_conform(tmp_path: Path) -> None:
    dist = tmp_path / "dist"
    run(sys.executable, "-m", "build", "--outdir", dist, ROOT)
    version = tandem.__version__
    sdist = dist / f"django_tandem-{version}.tar.gz"
    wheel = dist / f"django_tandem-{version}-py3-none-any.whl"
    assert sorted(p.name for p in dist.iterdir()) == [wheel.name, sdist.name]

    assert "PASSED" in run(sys.executable, "-m", "twine", "check", "--strict", sdist, wheel)

    names = zipfile.ZipFile(wheel).namelist()
    for needed in (
        "tandem/py.typed",
        "tandem/migrations/0001_initial.py",
        "tandem/templates/tandem/monitoring/dashboard.html",
    ):
        assert needed in names, f"the wheel lacks {needed}"
    assert not [n for n in names if n.startswith("tests/")]

    with tarfile.open(sdist) as archive:
        archive.extractall(tmp_path, filter="data")
    unpacked = tmp_path / f"django_tandem-{version}"
    assert (unpacked / "tests" / "conformance").is_dir()
    assert not (unpacked / ".venv-3.14").exists()

    venv = tmp_path / "venv"
    run(sys.executable, "-m", "venv", venv)
    python = venv / "bin" / "python"
    run(python, "-m", "pip", "install", "--quiet", f"{wheel}[redis]", *TEST_NEEDS)

    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTHON", "VIRTUAL_ENV"))}
    env["TANDEM_TEST_DB"] = "sqlite"
    where = run(python, "-c", "import tandem; print(tandem.__file__)", cwd=unpacked, env=env)
    assert str(venv) in where, f"tandem was imported from {where.strip()}, not the wheel"

    # -o pythonpath=.: the tests import `tests` from the sdist and `tandem` from the wheel.
    report = run(
        python,
        "-m",
        "pytest",
        "-o",
        "pythonpath=.",
        "-p",
        "no:cacheprovider",
        "-q",
        "tests/conformance",
        cwd=unpacked,
        env=env,
    )
    assert " passed" in report and "failed" not in report, report
