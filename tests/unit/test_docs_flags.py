"""Every ``--flag`` the deployment and tutorial pages mention is a real option: of ``tandem
serve``, ``worker`` or ``status``, or of the non-tandem command it is written with."""

from __future__ import annotations

import argparse
import re
from pathlib import Path

import pytest

from tandem.management.commands.tandem import Command

pytestmark = pytest.mark.once

DOCS = Path(__file__).resolve().parents[2] / "docs"
#: Flags of other commands the pages use (Django's own commands, systemctl, journalctl, tar...).
OTHERS = {
    "--deploy",  # manage.py check --deploy
    "--noinput",  # manage.py collectstatic --noinput
    "--now",  # systemctl enable --now
    "--since",  # journalctl --since
    "--index-url",  # pip
    "--extra-index-url",  # pip
    "--repository",  # twine upload
    "--strict",  # twine check --strict
    "--tags",  # git push --tags
    "--python",  # scripts/test --python 3.12
    "--django",  # scripts/test --django 6.0
}


def tandem_flags() -> set[str]:
    parser = Command().create_parser("manage.py", "tandem")
    flags: set[str] = set()
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for sub in action.choices.values():
                for option in sub._actions:
                    flags.update(o for o in option.option_strings if o.startswith("--"))
    return flags


@pytest.mark.parametrize(
    "page", ["how-to/deploy.md", "how-to/release.md", "tutorial.md", "how-to/status.md"]
)
def test_every_flag_on_the_page_exists(page: str) -> None:
    mentioned = set(re.findall(r"(?<![\w-])--[a-z][a-z-]+", (DOCS / page).read_text()))
    known = tandem_flags() | OTHERS

    assert sorted(mentioned - known) == []
    assert "--supervise" in tandem_flags()
