"""The outside world of a chaos run, on loopback: a distributor's webhook receiver and a mail server.

The receiver verifies every Standard Webhooks signature with the endpoint's real secret and keeps
the `webhook-id`s it accepted (answered 2xx), as a receiver that drops repeats by that id would.
Now and then it answers 500, 429 with `Retry-After`, or takes its time (sometimes past the sender's
10 s limit). The mail server keeps each message's `Message-ID`.
"""

from __future__ import annotations

import email
import random
import threading
import time
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from aiosmtpd.controller import Controller
from standardwebhooks import Webhook, WebhookVerificationError


class _QuietServer(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request, client_address) -> None:
        # A sender that gave up (its 10 s are over) hangs up on a slow answer: that is expected.
        pass


class WebhookReceiver:
    """Answers with a mix of 2xx, 500, 429 and slow answers; `chaos=False` answers 204 at once."""

    def __init__(self, *, port: int, seed: int, long_sleep: float = 11.0) -> None:
        self.port = port
        self.secret: str | None = None
        self.chaos = True
        self.long_sleep = long_sleep
        self.random = random.Random(seed)
        self.lock = threading.Lock()
        self.accepted: Counter[str] = Counter()  # webhook-id -> 2xx answers given
        self.answers: Counter[str] = Counter()  # answer kind -> count
        self.bad_signatures = 0
        # Requests whose body never arrived whole: the sender was killed while writing it.
        self.torn_requests = 0
        self.event_ids: dict[str, str] = {}  # webhook-id -> CloudEvent id
        self.server = _QuietServer(("127.0.0.1", port), self._handler_class())
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def start(self) -> None:
        self.thread.start()

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    def _choose(self) -> str:
        with self.lock:
            if not self.chaos:
                return "ok"
            roll = self.random.random()
        if roll < 0.04:
            return "500"
        if roll < 0.07:
            return "429"
        if roll < 0.09:
            return "slow"
        if roll < 0.0915:
            return "too_slow"
        return "ok"

    def _handler_class(self) -> type[BaseHTTPRequestHandler]:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def _answer(self, status: int, extra: dict[str, str] | None = None) -> None:
                self.send_response(status)
                for name, value in (extra or {}).items():
                    self.send_header(name, value)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length", 0))
                body = self.rfile.read(length)
                headers = {name.lower(): value for name, value in self.headers.items()}
                if len(body) < length:
                    # Not a signature to judge: the rest of the request died with its sender.
                    with receiver.lock:
                        receiver.torn_requests += 1
                    self.close_connection = True
                    return
                if receiver.secret is None:
                    self._answer(503)
                    return
                try:
                    payload = Webhook(receiver.secret).verify(body, headers)
                except WebhookVerificationError:
                    with receiver.lock:
                        receiver.bad_signatures += 1
                    self._answer(401)
                    return
                kind = receiver._choose()
                with receiver.lock:
                    receiver.answers[kind] += 1
                if kind == "500":
                    self._answer(500)
                    return
                if kind == "429":
                    self._answer(429, {"Retry-After": "1"})
                    return
                if kind == "slow":
                    time.sleep(receiver.random.uniform(0.3, 2.0))
                elif kind == "too_slow":
                    time.sleep(receiver.long_sleep)
                webhook_id = headers["webhook-id"]
                with receiver.lock:
                    receiver.accepted[webhook_id] += 1
                    receiver.event_ids[webhook_id] = payload.get("id", "") if isinstance(payload, dict) else ""
                self._answer(204)

            def log_message(self, *args: object) -> None:
                pass

        return Handler


class MailServer:
    """A real SMTP server (aiosmtpd) on loopback that keeps every message's `Message-ID`."""

    def __init__(self, *, port: int) -> None:
        self.port = port
        self.lock = threading.Lock()
        self.message_ids: Counter[str] = Counter()
        self.controller = Controller(self, hostname="127.0.0.1", port=port)

    async def handle_DATA(self, server, session, envelope) -> str:
        message = email.message_from_bytes(envelope.content)
        with self.lock:
            self.message_ids[str(message["Message-ID"]).strip()] += 1
        return "250 OK"

    def start(self) -> None:
        self.controller.start()

    def stop(self) -> None:
        self.controller.stop()
