"""``manage.py tandem <subcommand>``: one module per subcommand.

Each module declares its subcommand's arguments (``add_arguments(subparsers)``), checks them,
does the work and writes the output (``run(command, **options)``); flags that several
subcommands share are declared once in ``common``. ``management/commands/tandem.py`` only
builds the subparsers from these modules and dispatches to the one named.
"""

from __future__ import annotations

import importlib
from types import ModuleType

#: The subcommands, in the order ``manage.py tandem --help`` lists them: ``tandem.cli.<name>``.
SUBCOMMANDS = (
    "worker",
    "serve",
    "status",
    "schedule",
    "prune",
    "pause",
    "resume",
    "retry",
    "cancel",
)


def subcommand(name: str) -> ModuleType:
    """The module of subcommand ``name``."""
    if name not in SUBCOMMANDS:
        raise ValueError(f"No tandem subcommand {name!r}; known: {', '.join(SUBCOMMANDS)}.")
    return importlib.import_module(f"tandem.cli.{name}")


__all__ = ["SUBCOMMANDS", "subcommand"]
