"""A webhook receiver on 127.0.0.1, written as an endpoint owner would: it verifies signatures."""

from __future__ import annotations

import hashlib
import hmac
import json
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


@dataclass(frozen=True)
class Delivery:
    path: str
    headers: dict[str, str]
    body: bytes

    @property
    def event(self) -> dict[str, Any]:
        loaded: dict[str, Any] = json.loads(self.body)
        return loaded

    def signed_with(self, secret: str) -> bool:
        expected = "sha256=" + hmac.new(secret.encode(), self.body, hashlib.sha256).hexdigest()
        return hmac.compare_digest(expected, self.headers.get("x-governance-signature", ""))


class Receiver:
    """Records every POST; `status_for(path)` decides the answer (200 unless told otherwise)."""

    def __init__(self, server: ThreadingHTTPServer) -> None:
        self.url = f"http://127.0.0.1:{server.server_address[1]}"
        self.deliveries: list[Delivery] = []
        self.status_for: Callable[[str], int] = lambda _path: 200
        self._lock = threading.Condition()

    def record(self, delivery: Delivery) -> int:
        with self._lock:
            self.deliveries.append(delivery)
            self._lock.notify_all()
        return self.status_for(delivery.path)

    def at(self, path: str) -> list[Delivery]:
        with self._lock:
            return [d for d in self.deliveries if d.path == path]

    def wait_for(self, path: str, count: int, timeout: float = 20) -> list[Delivery]:
        deadline = time.monotonic() + timeout
        with self._lock:
            while len([d for d in self.deliveries if d.path == path]) < count:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    got = len([d for d in self.deliveries if d.path == path])
                    raise TimeoutError(f"{path}: {got} of {count} deliveries in {timeout} s")
                self._lock.wait(remaining)
            return [d for d in self.deliveries if d.path == path]


@contextmanager
def receiver() -> Iterator[Receiver]:
    box: list[Receiver] = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
            headers = {key.lower(): value for key, value in self.headers.items()}
            status = box[0].record(Delivery(self.path, headers, body))
            self.send_response(status)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    box.append(Receiver(server))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield box[0]
    finally:
        server.shutdown()
        server.server_close()
