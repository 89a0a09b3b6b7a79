"""Imported only by ``tandem.scheduler.registry.discover()`` (when this app is installed)."""

from __future__ import annotations

from django.tasks import task

import tandem


@tandem.schedule("@daily", args=["discovered"])
@task
def nightly(label: str) -> str:
    return label
