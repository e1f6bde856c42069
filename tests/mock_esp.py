"""A local stand-in for Postmark's email API, for integration tests and the sending benchmark.

Anymail's real Postmark backend talks to it (``POSTMARK_API_URL``). It
answers ``POST /email`` like Postmark, after an optional delay (a real ESP
across the internet takes tens of milliseconds), counts every message it
accepts per delivery id (from Anymail's metadata), and can fail on purpose:
HTTP 500 for the first N calls (an outage), HTTP 422 "Invalid 'To' address"
for chosen addresses (a permanent refusal). ``POST /email/batch`` (up to 500
messages a call, for ``campaigns.sending.postmark``) answers like Postmark:
one result per message, in order, after the same delay per call; an outage
is HTTP 500 for the whole call, a chosen address is ErrorCode 406 (inactive
recipient) for its message only. ``GET /messages/outbound?
metadata_delivery_id=N`` answers like Postmark's message search, which the
crash recovery asks; ``GET /stats`` reports the counts. With ``keep=True``
it keeps every POST (path and JSON body) in ``posts``, for tests.

It is a small asyncio HTTP/1.1 server (keep-alive, no thread per
connection) so that, sharing the machine with the app under test, it costs
as little CPU as a remote ESP would.
"""

from __future__ import annotations

import asyncio
import json
import re
import threading
import time
import uuid
from collections import Counter
from typing import Any
from urllib.parse import parse_qs, urlsplit

_TO = re.compile(rb'"To"\s*:\s*"((?:[^"\\]|\\.)*)"')
_DELIVERY = re.compile(rb'"delivery_id"\s*:\s*"([^"]*)"')


class MockESP:
    def __init__(self, *, latency: float = 0.0, fail_first: int = 0, refuse: set[str] | None = None,
                 port: int = 0, keep: bool = False):
        self.latency, self.fail_first, self.refuse = latency, fail_first, {a.lower() for a in refuse or ()}
        self.accepted: Counter[str] = Counter()  # delivery id -> times accepted
        self.calls = 0
        self.failed_calls = 0
        self.batch_calls = 0
        self.received = 0  # messages received, in every call (accepted, refused or failed)
        self.keep = keep
        self.posts: list[tuple[str, Any]] = []
        self.lock = threading.Lock()
        self.first_at: float | None = None
        self.last_at: float | None = None
        self.port = port
        self.loop = asyncio.new_event_loop()
        self.ready = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/"

    # --- the ESP's answers ---------------------------------------------------------

    def post(self, path: str, body: bytes) -> tuple[int, Any]:
        if self.keep:
            with self.lock:
                self.posts.append((path, json.loads(body)))
        return self.batch(body) if path == "/email/batch" else self.send(body)

    def send(self, body: bytes) -> tuple[int, dict[str, Any]]:
        match = _TO.search(body)
        to = json.loads(b'"' + match.group(1) + b'"') if match else ""
        found = _DELIVERY.search(body)
        delivery_id = found.group(1).decode() if found else ""
        with self.lock:
            self.calls += 1
            self.received += 1
            if self.calls <= self.fail_first:
                self.failed_calls += 1
                return 500, {"ErrorCode": 500, "Message": "Internal server error"}
            address = to.rsplit("<", 1)[-1].rstrip(">").strip().lower()
            if address in self.refuse:
                return 422, {"ErrorCode": 300, "Message": f"Invalid 'To' address: '{address}'."}
            self.accepted[delivery_id] += 1
            now = time.monotonic()
            self.first_at = self.first_at or now
            self.last_at = now
        return 200, {"To": to, "SubmittedAt": "2026-12-01T12:00:00Z", "MessageID": str(uuid.uuid4()),
                     "ErrorCode": 0, "Message": "OK"}

    def batch(self, body: bytes) -> tuple[int, Any]:
        try:
            messages = json.loads(body)
        except ValueError:
            messages = None
        if not isinstance(messages, list) or not 0 < len(messages) <= 500:
            return 422, {"ErrorCode": 300, "Message": "Invalid email request: a batch holds 1 to 500 messages."}
        with self.lock:
            self.calls += 1
            self.batch_calls += 1
            self.received += len(messages)
            if self.calls <= self.fail_first:
                self.failed_calls += 1
                return 500, {"ErrorCode": 500, "Message": "Internal server error"}
            answers = []
            for message in messages:
                to = message.get("To", "")
                address = to.rsplit("<", 1)[-1].rstrip(">").strip().lower()
                if address in self.refuse:
                    answers.append({"ErrorCode": 406, "Message": (
                        "You tried to send to a recipient that has been marked as inactive.\n"
                        f"Found inactive addresses: {address}.\n"
                        "Inactive recipients are ones that have generated a hard bounce or a spam complaint. ")})
                    continue
                self.accepted[str((message.get("Metadata") or {}).get("delivery_id", ""))] += 1
                answers.append({"To": to, "SubmittedAt": "2026-12-01T12:00:00Z", "MessageID": str(uuid.uuid4()),
                                "ErrorCode": 0, "Message": "OK"})
            if len(answers) > sum(1 for a in answers if a["ErrorCode"]):
                now = time.monotonic()
                self.first_at = self.first_at or now
                self.last_at = now
        return 200, answers

    def get(self, target: str) -> dict[str, Any]:
        parts = urlsplit(target)
        with self.lock:
            if parts.path == "/stats":
                return {"accepted": sum(self.accepted.values()), "unique": len(self.accepted),
                        "duplicates": self.duplicates, "calls": self.calls, "failed_calls": self.failed_calls,
                        "batch_calls": self.batch_calls, "received": self.received,
                        "first_at": self.first_at, "last_at": self.last_at, "clock": time.monotonic()}
            delivery_id = (parse_qs(parts.query).get("metadata_delivery_id") or [""])[0]
            return {"TotalCount": self.accepted.get(delivery_id, 0), "Messages": []}

    @property
    def duplicates(self) -> int:
        return sum(n - 1 for n in self.accepted.values() if n > 1)

    # --- a minimal HTTP/1.1 server ---------------------------------------------------

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                request_line, *header_lines = head.decode("latin-1").split("\r\n")
                method, target, _ = request_line.split(" ", 2)
                headers = {k.strip().lower(): v.strip() for k, _, v in (h.partition(":") for h in header_lines if h)}
                body = await reader.readexactly(int(headers.get("content-length") or 0))
                status, answer = self.post(urlsplit(target).path, body) if method == "POST" else (
                    200, self.get(target))
                if self.latency and method == "POST":
                    await asyncio.sleep(self.latency)
                data = json.dumps(answer).encode()
                writer.write(f"HTTP/1.1 {status} {'OK' if status == 200 else 'Error'}\r\nContent-Type: "
                             f"application/json\r\nContent-Length: {len(data)}\r\n\r\n".encode() + data)
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError, ValueError):
            pass
        finally:
            writer.close()

    def _run(self) -> None:
        asyncio.set_event_loop(self.loop)
        server = self.loop.run_until_complete(asyncio.start_server(self._serve, "127.0.0.1", self.port,
                                                                   backlog=1024))
        self.port = server.sockets[0].getsockname()[1]
        self.server = server
        self.ready.set()
        self.loop.run_forever()
        server.close()

    def __enter__(self) -> MockESP:
        self.thread.start()
        self.ready.wait(10)
        return self

    def __exit__(self, *exc: Any) -> None:
        def stop() -> None:
            for task in asyncio.all_tasks(self.loop):
                task.cancel()
            self.loop.call_soon(self.loop.stop)

        self.loop.call_soon_threadsafe(stop)
        self.thread.join(10)


def anymail_settings(url: str) -> dict[str, str]:
    return {"POSTMARK_SERVER_TOKEN": "mock-server-token", "POSTMARK_API_URL": url}


if __name__ == "__main__":  # run it alone: python tests/mock_esp.py [port] [latency seconds]
    import sys

    port = int(sys.argv[1]) if len(sys.argv) > 1 else 8025
    latency = float(sys.argv[2]) if len(sys.argv) > 2 else 0.05
    with MockESP(latency=latency, port=port) as esp:
        print(f"mock ESP on {esp.url} (latency {latency * 1000:.0f} ms); Ctrl-C stops", flush=True)
        try:
            while True:
                time.sleep(5)
        except KeyboardInterrupt:
            pass
