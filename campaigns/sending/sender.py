"""Hand rendered messages to the ESP through Django's mail backend (Anymail in production), concurrently.

Sending is I/O-bound: an ESP answers each API call after tens of
milliseconds, and Anymail makes one call per individually rendered message.
So rendering happens in the calling thread and the calls run in the
process's pool of ``SEND_CONCURRENCY`` threads, each keeping its own open
backend connection (Anymail reuses its HTTP session across messages). A
backend that declares a ``batch_size`` (``campaigns.sending.postmark``: 500
messages per Postmark ``email/batch`` call) gets the messages in groups of
that size instead, one call per group. Every outcome is classified:
accepted (with the ESP's message id), rejected for good (an invalid or
suppressed address, a 4xx answer), or transient (timeouts, 5xx, 429,
connection errors), which the caller retries later.
"""

from __future__ import annotations

import functools
import inspect
import itertools
import threading
from collections.abc import Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import requests
from django.conf import settings
from django.core.mail import get_connection
from django.utils.module_loading import import_string

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
    # The ANYMAIL settings are part of the key: a connection keeps the API URL and token it was made with.
    key = (settings.EMAIL_BACKEND, repr(getattr(settings, "ANYMAIL", None)))
    if cached is None or cached[0] != key:
        connection = get_connection(fail_silently=False)
        connection.open()
        session = getattr(connection, "session", None)
        if session is not None:
            # Anymail's requests session would read proxy settings from the environment on every call
            # (about half a millisecond each); the proxy environment is read once, here.
            session.proxies.update(requests.utils.get_environ_proxies(getattr(connection, "api_url", "") or ""))
            session.trust_env = False
        cached = _local.connection = (key, connection)
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
    return _outcome(message, sent=bool(sent))


def _send_batch(messages: list[Any]) -> list[Outcome]:
    """Send a group in one backend call; a failed call (nothing sent) is every message's outcome."""
    if len(messages) == 1:
        return [_send_one(messages[0])]
    try:
        _connection().send_messages(messages)
    except Exception as exc:  # noqa: BLE001 - every failure becomes an outcome the caller records
        _local.connection = None
        return [classify(exc)] * len(messages)
    return [_outcome(m, sent=True) for m in messages]


def _outcome(message: Any, *, sent: bool) -> Outcome:
    """Read what the ESP said about one message from its ``anymail_status`` (and a batch's ``anymail_error``)."""
    error = getattr(message, "anymail_error", None)
    if error is not None:
        return classify(error)
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


@functools.lru_cache(maxsize=32)
def anymail_module(backend: str) -> str | None:
    """Return the Anymail backend module a mail backend is or extends (``anymail.backends.postmark``), or None."""
    if backend.startswith("anymail.backends."):
        return backend.rsplit(".", 1)[0]
    try:
        backend_class = import_string(backend)
    except ImportError:
        return None
    for base in inspect.getmro(backend_class):
        module = base.__module__
        if module.startswith("anymail.backends.") and module.rsplit(".", 1)[1] not in ("base", "base_requests"):
            return module
    return None


def concurrent_backend() -> bool:
    """Say whether the mail backend talks to an ESP over HTTP (Anymail): only then are calls made in parallel.

    The local capture backend writes to the database, which is better done
    from one thread.
    """
    return anymail_module(settings.EMAIL_BACKEND) is not None


@functools.lru_cache(maxsize=32)
def _batch_size(backend: str) -> int:
    try:
        return max(1, int(getattr(import_string(backend), "batch_size", 1)))
    except ImportError:
        return 1


def batch_size() -> int:
    """Return how many messages the mail backend sends per call (its ``batch_size``; 1 for Anymail's own)."""
    return _batch_size(settings.EMAIL_BACKEND)


def _batches(messages: Iterable[Any], size: int) -> Iterator[list[Any]]:
    iterator = iter(messages)
    while batch := list(itertools.islice(iterator, size)):
        yield batch


def send_all(messages: Iterable[Any]) -> list[Outcome]:
    """Send each message (or each batch, for a batching backend) as soon as it is produced; outcomes in order.

    ``messages`` may be a generator that renders them: with an ESP backend
    the first API calls are in flight while the next messages render.
    """
    if not concurrent_backend() or settings.SEND_CONCURRENCY <= 1:
        if batch_size() > 1:
            return [o for batch in _batches(messages, batch_size()) for o in _send_batch(batch)]
        return [_send_one(m) for m in messages]
    pool = _executor()
    if batch_size() > 1:
        batched = [pool.submit(_send_batch, batch) for batch in _batches(messages, batch_size())]
        return [o for f in batched for o in f.result()]
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


# ESPs whose API can say whether a message was accepted, by the Anymail backend module a backend is or extends
# (campaigns.sending.postmark extends anymail.backends.postmark).
ACCEPTED_LOOKUPS = {"anymail.backends.postmark": _postmark_accepted}


def esp_accepted(delivery_ids: list[int]) -> set[int] | None:
    """Return which deliveries the configured ESP accepted, or None when it cannot be asked."""
    lookup = ACCEPTED_LOOKUPS.get(anymail_module(settings.EMAIL_BACKEND) or "")
    if lookup is None or not delivery_ids:
        return None if lookup is None else set()
    return lookup(delivery_ids)
