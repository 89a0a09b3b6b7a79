"""Enqueue script of ``procrastinate-postgres`` (see ``base.enqueue_main``); ``bulk`` is
``Task.batch_defer``."""

from contenders.base import enqueue_main
from contenders.sites.procrastinate_app import driver

if __name__ == "__main__":
    enqueue_main(*driver())
