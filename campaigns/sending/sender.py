"""Hand rendered messages to the ESP through Django's mail backend (Anymail in production), concurrently.

Sending is I/O-bound: an ESP answers each API call after tens of
milliseconds, and Anymail makes one call per individually rendered message.
So rendering happens in the calling thread and the calls run in the
process's pool of ``SEND_CONCURRENCY`` threads, each keeping its own open
backend connection (Anymail reuses its HTTP session across messages). Every outcome is classified:
accepted (with the ESP's message id), rejected for good (an invalid or
suppressed address, a 4xx answer), or transient (timeouts, 5xx, 429,
connection errors), which the caller retries later.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import requests
from django.conf import settings
from django.core.mail import get_connection

ACCEPTED, REJECTED, TRANSIENT = "accepted", "rejected", "transient"


@dataclass(frozen=True)
class Outcome:
    kind: str
    message_id: str = ""
    detail: str = ""


_local = threading.local()


def _connection() -> Any:
    """Return this thread's open backend connection (a new one when the configured backend changed)."""
    cached = getattr(_local, "connection", None)
    if cached is None or cached[0] != settings.EMAIL_BACKEND:
        connection = get_connection(fail_silently=False)
        connection.open()
        session = getattr(connection, "session", None)
        if session is not None:
            # Anymail's requests session would read proxy settings from the environment on every call
            # (about half a millisecond each); the proxy environment is read once, here.
            session.proxies.update(requests.utils.get_environ_proxies(getattr(connection, "api_url", "") or ""))
            session.trust_env = False
        cached = _local.connection = (settings.EMAIL_BACKEND, connection)
    return cached[1]


def _text(exc: Exception) -> str:
    try:
        return str(exc)
    except Exception:  # noqa: BLE001 - an exception that cannot describe itself still gets classified
        return type(exc).__name__


def classify(exc: Exception) -> Outcome:
    """Say whether a send error is worth retrying."""
    from anymail.exceptions import AnymailAPIError, AnymailInvalidAddress, AnymailRecipientsRefused

    if isinstance(exc, AnymailRecipientsRefused | AnymailInvalidAddress):
        return Outcome(REJECTED, detail=_text(exc)[:300])
    if isinstance(exc, AnymailAPIError):
        status = getattr(exc, "status_code", None)
        if status is not None and 400 <= status < 500 and status not in (408, 429):
            return Outcome(REJECTED, detail=f"ESP refused it ({status}): {_text(exc)[:250]}")
        return Outcome(TRANSIENT, detail=f"ESP unavailable ({status or 'no answer'}): {_text(exc)[:250]}")
    return Outcome(TRANSIENT, detail=f"{type(exc).__name__}: {_text(exc)[:280]}")


def _send_one(message: Any) -> Outcome:
    try:
        sent = _connection().send_messages([message])
    except Exception as exc:  # noqa: BLE001 - every failure becomes an outcome the caller records
        _local.connection = None
        return classify(exc)
    status = getattr(message, "anymail_status", None)
    if status is not None and status.status and status.status <= {"rejected", "invalid"}:
        return Outcome(REJECTED, detail=f"ESP rejected the address ({', '.join(sorted(status.status))})")
    if not sent and status is None:
        return Outcome(TRANSIENT, detail="the mail backend sent nothing")
    message_id = ""
    if status is not None and status.message_id:
        message_id = str(status.message_id) if isinstance(status.message_id, str) else str(
            next(iter(status.message_id), ""))
    return Outcome(ACCEPTED, message_id=message_id)


_pool: ThreadPoolExecutor | None = None
_pool_lock = threading.Lock()


def _executor() -> ThreadPoolExecutor:
    """Return the process's sending threads (created on first use, after a worker forks; kept for reuse)."""
    global _pool
    with _pool_lock:
        if _pool is None:
            _pool = ThreadPoolExecutor(max_workers=settings.SEND_CONCURRENCY, thread_name_prefix="esp")
        return _pool


def concurrent_backend() -> bool:
    """Say whether the mail backend talks to an ESP over HTTP (Anymail): only then are calls made in parallel.

    The local capture backend writes to the database, which is better done
    from one thread.
    """
    return settings.EMAIL_BACKEND.startswith("anymail.")


def send_all(messages: Iterable[Any]) -> list[Outcome]:
    """Send each message as soon as it is produced; returns the outcomes in the same order.

    ``messages`` may be a generator that renders them: with an ESP backend
    the first API calls are in flight while the next messages render.
    """
    if not concurrent_backend() or settings.SEND_CONCURRENCY <= 1:
        return [_send_one(m) for m in messages]
    pool = _executor()
    futures = [pool.submit(_send_one, m) for m in messages]
    return [f.result() for f in futures]


# --- Asking the ESP what it accepted (crash recovery) ----------------------------


def _postmark_accepted(delivery_ids: list[int]) -> set[int]:
    """Ask Postmark's outbound-message search which of these deliveries it accepted (by our metadata)."""
    import requests
    from anymail.utils import get_anymail_setting

    token = get_anymail_setting("server_token", esp_name="postmark")
    base = get_anymail_setting("api_url", esp_name="postmark", default="https://api.postmarkapp.com/")
    base = base if base.endswith("/") else base + "/"
    found = set()
    with requests.Session() as session:
        session.headers.update({"Accept": "application/json", "X-Postmark-Server-Token": token})
        for delivery_id in delivery_ids:
            response = session.get(f"{base}messages/outbound", timeout=10,
                                   params={"count": 1, "offset": 0, "metadata_delivery_id": str(delivery_id)})
            response.raise_for_status()
            if response.json().get("TotalCount", 0):
                found.add(delivery_id)
    return found


# ESPs whose API can say whether a message was accepted, by Anymail backend module.
ACCEPTED_LOOKUPS = {"anymail.backends.postmark": _postmark_accepted}


def esp_accepted(delivery_ids: list[int]) -> set[int] | None:
    """Return which deliveries the configured ESP accepted, or None when it cannot be asked."""
    module = settings.EMAIL_BACKEND.rsplit(".", 1)[0]
    lookup = ACCEPTED_LOOKUPS.get(module)
    if lookup is None or not delivery_ids:
        return None if lookup is None else set()
    return lookup(delivery_ids)
