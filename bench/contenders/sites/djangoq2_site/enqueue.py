"""Enqueue script of ``djangoq2-redis`` (see ``base.enqueue_main``): ``async_task`` one at a time;
django-q2 has no bulk enqueue (``async_iter`` enqueues one message per item)."""

import os

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "contenders.sites.djangoq2_site.settings")

import django

django.setup()

from django_q.brokers import get_broker  # noqa: E402
from django_q.tasks import async_task  # noqa: E402

from contenders.base import enqueue_main  # noqa: E402

FUNC = "contenders.sites.djangoq2_site.tasks.noop"

if __name__ == "__main__":
    broker = get_broker()
    broker.ping()
    enqueue_main(lambda stamp: async_task(FUNC, stamp, broker=broker))
