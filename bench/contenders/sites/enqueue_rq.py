"""Enqueue script of ``rq-redis`` (see ``base.enqueue_main``); ``bulk`` is
``Queue.enqueue_many``."""

from contenders.base import enqueue_main
from contenders.sites.rq_app import driver

if __name__ == "__main__":
    enqueue_main(*driver())
