#!/usr/bin/env python
"""The demo shop's manage.py: ``python demo/manage.py tandem serve`` runs web + workers."""

import os
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
SRC = HERE.parent / "src"


def main() -> None:
    sys.path.insert(0, str(HERE))
    if (SRC / "tandem").is_dir():
        # Use this checkout's tandem even when the venv has another (or none) installed.
        sys.path.insert(1, str(SRC))
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "demosite.settings")
    from django.core.management import execute_from_command_line

    execute_from_command_line(sys.argv)


if __name__ == "__main__":
    main()
