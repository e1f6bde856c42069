"""A local stand-in for Postmark's email API, for integration tests and the sending benchmark.

Anymail's real Postmark backend talks to it (``POSTMARK_API_URL``). It
answers ``POST /email`` like Postmark, after an optional delay (a real ESP
across the internet takes tens of milliseconds), counts every message it
accepts per delivery id (from Anymail's metadata), and can fail on purpose:
HTTP 500 for the first N calls (an outage), HTTP 422 "Invalid 'To' address"
for chosen addresses (a permanent refusal). ``GET /messages/outbound?
metadata_delivery_id=N`` answers like Postmark's message search, which the
crash recovery asks.
"""

from __future__ import annotations

import json
import threading
import time
import uuid
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


class MockESP:
    def __init__(self, *, latency: float = 0.0, fail_first: int = 0, refuse: set[str] | None = None,
                 port: int = 0):
        self.latency, self.fail_first, self.refuse = latency, fail_first, {a.lower() for a in refuse or ()}
        self.accepted: Counter[str] = Counter()  # delivery id -> times accepted
        self.calls = 0
        self.failed_calls = 0
        self.lock = threading.Lock()
        self.first_at: float | None = None
        self.last_at: float | None = None
        esp = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: Any) -> None:
                pass

            def do_GET(self) -> None:  # noqa: N802 - Postmark's outbound search, by metadata_delivery_id
                from urllib.parse import parse_qs, urlsplit

                parts = urlsplit(self.path)
                if parts.path == "/stats":  # for the benchmark
                    with esp.lock:
                        answer = {"accepted": sum(esp.accepted.values()), "unique": len(esp.accepted),
                                  "duplicates": esp.duplicates, "calls": esp.calls, "failed_calls": esp.failed_calls,
                                  "first_at": esp.first_at, "last_at": esp.last_at, "clock": time.monotonic()}
                else:
                    delivery_id = (parse_qs(parts.query).get("metadata_delivery_id") or [""])[0]
                    with esp.lock:
                        answer = {"TotalCount": esp.accepted.get(delivery_id, 0), "Messages": []}
                data = json.dumps(answer).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_POST(self) -> None:  # noqa: N802 - the http.server API
                length = int(self.headers.get("Content-Length") or 0)
                body = json.loads(self.rfile.read(length) or b"{}")
                status, answer = esp.answer(body)
                if esp.latency:
                    time.sleep(esp.latency)
                data = json.dumps(answer).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        class Server(ThreadingHTTPServer):
            request_queue_size = 1024  # many workers' connections arrive at once

        self.server = Server(("127.0.0.1", port), Handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/"

    def answer(self, body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        to = str(body.get("To", ""))
        with self.lock:
            self.calls += 1
            if self.calls <= self.fail_first:
                self.failed_calls += 1
                return 500, {"ErrorCode": 500, "Message": "Internal server error"}
            address = to.rsplit("<", 1)[-1].rstrip(">").strip().lower()
            if address in self.refuse:
                return 422, {"ErrorCode": 300, "Message": f"Invalid 'To' address: '{address}'."}
            delivery_id = str((body.get("Metadata") or {}).get("delivery_id", ""))
            self.accepted[delivery_id] += 1
            now = time.monotonic()
            self.first_at = self.first_at or now
            self.last_at = now
        return 200, {"To": to, "SubmittedAt": "2026-12-01T12:00:00Z", "MessageID": str(uuid.uuid4()),
                     "ErrorCode": 0, "Message": "OK"}

    @property
    def duplicates(self) -> int:
        return sum(n - 1 for n in self.accepted.values() if n > 1)

    def __enter__(self) -> MockESP:
        self.thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.server.shutdown()
        self.server.server_close()


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
                print(f"accepted {sum(esp.accepted.values())}, calls {esp.calls}, duplicates {esp.duplicates}",
                      flush=True)
        except KeyboardInterrupt:
            pass
