"""procrastinate app for ``procrastinate-postgres`` (``BENCH_PG_CONNINFO`` names the database).

Worker: ``python -m procrastinate --app contenders.sites.procrastinate_app.app worker
--concurrency 4``. procrastinate has no result store; finished jobs stay in
``procrastinate_jobs`` as ``succeeded`` (its default, ``delete_jobs=never``).
"""

from __future__ import annotations

import atexit
import os

from procrastinate import App, PsycopgConnector

from contenders.marks import mark

app = App(connector=PsycopgConnector(conninfo=os.environ["BENCH_PG_CONNINFO"]))


@app.task(name="noop")
def noop(stamp: float = 0.0) -> None:
    mark(stamp)


def driver():
    # Synchronous defer goes through procrastinate's SyncPsycopgConnector (a psycopg pool).
    app.open()
    atexit.register(app.close)

    def many(n: int) -> object:
        return noop.batch_defer(*({"stamp": 0.0} for _ in range(n)))

    return (lambda stamp: noop.defer(stamp=stamp)), many
