"""Settings whose import never ends: a process-pool child set up with them hangs in start-up
(``tests/faults/test_pools.py``)."""

import time

from tests.settings import *  # noqa: F403

time.sleep(3600)
