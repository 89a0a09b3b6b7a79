"""A TCP proxy on loopback that a test can cut: the store outage of the fault tier.

``Proxy(port)`` forwards ``127.0.0.1:<proxy.port>`` to ``127.0.0.1:<port>`` with two threads per
connection. ``cut()`` starts an outage as a network partition shows it to the worker: every open
connection is reset (``SO_LINGER`` 0: an RST, not a FIN) and every new one is accepted and reset
at once; ``restore()`` ends it. The store itself never notices.
"""

from __future__ import annotations

import contextlib
import socket
import struct
import threading

RESET = struct.pack("ii", 1, 0)  # SO_LINGER on, 0 seconds: close() sends an RST


def _reset(sock: socket.socket) -> None:
    """Reset ``sock``: an RST to its peer, and a ``recv`` blocked on it in another thread returns.

    ``close()`` alone does neither while a thread is blocked in ``recv``: on Linux the blocked
    call keeps the connection alive, so the store kept a session (and its locks) open until the
    end of the run, where MariaDB's ``DROP DATABASE`` waited for them forever. ``shutdown``
    wakes the reader; the last close then sends the RST (``SO_LINGER`` 0)."""
    with contextlib.suppress(OSError):
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, RESET)
    with contextlib.suppress(OSError):
        sock.shutdown(socket.SHUT_RD)
    with contextlib.suppress(OSError):
        sock.close()


class Proxy:
    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self._listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._listener.bind(("127.0.0.1", 0))
        self._listener.listen(128)
        self.port: int = self._listener.getsockname()[1]
        self._lock = threading.Lock()
        self._open: list[socket.socket] = []
        self._down = threading.Event()
        self._closed = False
        self.connections = 0
        self.resets = 0
        threading.Thread(target=self._accept, name="faults-proxy", daemon=True).start()

    def cut(self) -> None:
        """Reset every connection and refuse new ones until ``restore()``."""
        self._down.set()
        with self._lock:
            victims, self._open = self._open, []
        for sock in victims:
            self.resets += 1
            _reset(sock)

    def restore(self) -> None:
        self._down.clear()

    def close(self) -> None:
        self._closed = True
        self.cut()
        with contextlib.suppress(OSError):
            self._listener.close()

    def _accept(self) -> None:
        while not self._closed:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            if self._down.is_set():
                self.resets += 1
                _reset(client)
                continue
            try:
                upstream = socket.create_connection(("127.0.0.1", self.target_port), timeout=5)
                upstream.settimeout(None)
            except OSError:
                _reset(client)
                continue
            self.connections += 1
            with self._lock:
                if self._down.is_set() or self._closed:  # cut while this one was connecting
                    self.resets += 1
                    _reset(client)
                    _reset(upstream)
                    continue
                self._open += [client, upstream]
            for source, sink in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pump, args=(source, sink), daemon=True).start()

    def _pump(self, source: socket.socket, sink: socket.socket) -> None:
        try:
            while data := source.recv(65536):
                sink.sendall(data)
        except OSError:
            pass
        finally:
            _reset(sink)
            _reset(source)
