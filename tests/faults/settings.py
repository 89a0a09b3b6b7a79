"""Settings of the worker processes of tests/faults: the scale tier's (store chosen by
``TANDEM_SCALE_STORE``), with a short lease, the executor the test names, and — for the clock
skew scenario — a host clock that runs ``TANDEM_FAULTS_CLOCK_SKEW`` seconds ahead.

The skew is injected here, before tandem is imported: ``django.utils.timezone.now`` (the clock
every tandem supervisor reads by default) is replaced by one that adds the skew. The ledger's own
timestamps use ``time.time()``, the machine's real clock, so what the ledger shows is real time.
"""

import os

from tests.support.worker_settings import *  # noqa: F403
from tests.support.worker_settings import TASKS

_skew = float(os.environ.get("TANDEM_FAULTS_CLOCK_SKEW", "0"))
if _skew:
    from datetime import timedelta

    from django.utils import timezone

    _real_now = timezone.now

    def _skewed_now():  # type: ignore[no-untyped-def]
        return _real_now() + timedelta(seconds=_skew)

    timezone.now = _skewed_now

TASKS = {
    "default": {
        **TASKS["default"],
        "OPTIONS": {
            **TASKS["default"]["OPTIONS"],
            "lease_seconds": float(os.environ.get("TANDEM_FAULTS_LEASE", "3")),
            "executor": os.environ.get("TANDEM_FAULTS_EXECUTOR", "process"),
            "recovery_max_attempts": 20,
        },
    }
}
