"""A real HTTP receiver on loopback for the webhook tests, and how a receiver checks a request."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from cloudevents.core.formats.json import JSONFormat
from cloudevents.core.v1.event import CloudEvent
from standardwebhooks import Webhook


@dataclass
class Received:
    headers: dict[str, str]
    body: bytes
    at: float  # time.monotonic() when it arrived

    def verified(self, secret: str) -> CloudEvent:
        """Check the signature as a receiver would, then parse the CloudEvent strictly."""
        Webhook(secret).verify(self.body, self.headers)
        return JSONFormat().read(CloudEvent, self.body)

    @property
    def webhook_id(self) -> str:
        return self.headers["webhook-id"]


@dataclass
class Answer:
    """How to answer one request; `hold`: wait until it is set before answering (a request kept
    in flight, for a test to kill its sender meanwhile)."""

    status: int = 200
    headers: dict[str, str] = field(default_factory=dict)
    delay: float = 0.0
    body: bytes = b"ok"
    hold: threading.Event | None = None


class Receiver:
    """Answers each POST with the next scripted `Answer`, then with `default`; `fail_first` maps a
    CloudEvent id or type to how many of its requests to answer with 500 before the script applies.
    `keep_alive`: answer in HTTP/1.1 and keep each connection open; `connections` counts them."""

    def __init__(
        self,
        script: list[Answer] | None = None,
        default: Answer | None = None,
        fail_first: dict[str, int] | None = None,
        keep_alive: bool = False,
    ) -> None:
        self.script = list(script or [])
        self.default = default or Answer()
        self.fail_first = dict(fail_first or {})
        self.received: list[Received] = []
        self.connections = 0  # TCP connections accepted
        self._lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            # HTTP/1.1 keeps a connection open for the next request; 1.0 closes it after each.
            protocol_version = "HTTP/1.1" if keep_alive else "HTTP/1.0"

            def setup(self) -> None:
                super().setup()
                with receiver._lock:
                    receiver.connections += 1

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                with receiver._lock:
                    receiver.received.append(
                        Received({k.lower(): v for k, v in self.headers.items()}, body, time.monotonic())
                    )
                    answer = receiver._answer(body)
                time.sleep(answer.delay)
                if answer.hold is not None:
                    answer.hold.wait()
                # A sender killed while its request was held is gone: nobody to answer.
                with suppress(BrokenPipeError, ConnectionResetError):
                    self.send_response(answer.status)
                    for name, value in answer.headers.items():
                        self.send_header(name, value)
                    self.send_header("Content-Length", str(len(answer.body)))
                    self.end_headers()
                    self.wfile.write(answer.body)

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        self.url = f"http://127.0.0.1:{self.port}/hooks"

    def _answer(self, body: bytes) -> Answer:
        cloudevent = json.loads(body)
        for key in (cloudevent.get("id"), cloudevent.get("type")):
            if self.fail_first.get(key, 0) > 0:
                self.fail_first[key] -= 1
                return Answer(500)
        return self.script.pop(0) if self.script else self.default

    def events(self, secret: str) -> list[CloudEvent]:
        return [r.verified(secret) for r in self.received]


@contextmanager
def running(receiver: Receiver) -> Iterator[Receiver]:
    thread = threading.Thread(target=receiver.server.serve_forever, daemon=True)
    thread.start()
    try:
        yield receiver
    finally:
        receiver.server.shutdown()
        receiver.server.server_close()
