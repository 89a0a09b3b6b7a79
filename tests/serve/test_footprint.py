"""What an idle ``tandem serve`` holds: modules it does not need until they are used are not
imported, in the main interpreter (the HTTP side, the supervisor) nor in a worker."""

from __future__ import annotations

import signal

import pytest

from tandem.brokers.base import SUCCESSFUL
from tandem.models import TaskRecord
from tests.serve.tasks import loaded_modules
from tests.support.serving import Servers, get, wait_until

pytestmark = [pytest.mark.process, pytest.mark.django_db(transaction=True)]

#: Loaded only by a server that serves static files (no STATIC_ROOT here, DEBUG off).
STATIC_ONLY = ("whitenoise", "django.contrib.staticfiles.storage")
#: Loaded only when a watchdog or a lost lease interrupts a task, or an interpreter closes.
INTERRUPT_ONLY = ("ctypes",)


def test_an_idle_server_has_not_imported_what_it_does_not_use(servers: Servers) -> None:
    server, port = servers.serve()

    code, text = get(port, "/modules/")
    result = loaded_modules.enqueue()
    wait_until(
        lambda: TaskRecord.objects.get(id=result.id).status == SUCCESSFUL,
        "the task to run",
        alive=[server],
    )

    assert code == 200
    main = set(text.split("\n"))
    assert "tandem.serve.server" in main  # the list is the server's own
    assert not main & {*STATIC_ONLY, *INTERRUPT_ONLY}
    worker = set(TaskRecord.objects.get(id=result.id).return_value)
    assert "tandem.worker.pools.runner" in worker
    assert not worker & {*STATIC_ONLY, *INTERRUPT_ONLY}
    server.send(signal.SIGTERM)
    assert server.wait() == 0, server.output()
