"""Enqueue script for the contenders built on Django's task API (tandem, django-tasks-db, ...).

    python -m contenders.django_enqueue serial|bulk|paced N [INTERVAL]

``DJANGO_SETTINGS_MODULE`` picks the project, ``BENCH_TASK`` the task (dotted path), and
``BENCH_BULK`` the peer's bulk API for ``bulk``: ``tandem`` (``tandem.enqueue_many``), ``ox``
(``django_ox.bulk.enqueue_many``), ``enqueue_all`` (dj_queue's backend method), ``enqueue_many``
(django-vtasks' backend method). Each ``serial``/``paced`` call is ``task.enqueue(stamp=...)`` in
autocommit: its own commit, as in a view.
"""

from __future__ import annotations

import importlib
import os

import django

django.setup()

from django.db import connection  # noqa: E402

from contenders.base import enqueue_main  # noqa: E402

module, _, name = os.environ["BENCH_TASK"].rpartition(".")
task = getattr(importlib.import_module(module), name)
connection.ensure_connection()  # outside the clock


def one(stamp: float) -> None:
    task.enqueue(stamp=stamp)


bulk = None
BULK = os.environ.get("BENCH_BULK", "")
if BULK == "tandem":
    import tandem

    def bulk(n: int) -> None:
        tandem.enqueue_many(task, [((), {"stamp": 0.0}) for _ in range(n)])

elif BULK == "ox":
    from django_ox.bulk import enqueue_many

    def bulk(n: int) -> None:
        enqueue_many(task, [((), {"stamp": 0.0}) for _ in range(n)])

elif BULK == "enqueue_all":  # dj_queue: the backend's enqueue_all((task, args, kwargs), ...)

    def bulk(n: int) -> None:
        task.get_backend().enqueue_all([(task, [], {"stamp": 0.0}) for _ in range(n)])

elif BULK == "enqueue_many":  # django-vtasks: the backend's enqueue_many((task, args, kwargs), ...)
    inner = getattr(task, "django_task", task)

    def bulk(n: int) -> None:
        task.get_backend().enqueue_many([(inner, (), {"stamp": 0.0}) for _ in range(n)])


if __name__ == "__main__":
    enqueue_main(one, bulk)
