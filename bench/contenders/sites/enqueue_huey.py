"""Enqueue script of ``huey-sqlite`` and ``huey-redis`` (see ``base.enqueue_main``)."""

from contenders.base import enqueue_main
from contenders.sites.huey_app import driver

if __name__ == "__main__":
    enqueue_main(*driver())
