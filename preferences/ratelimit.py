"""Limit requests per client IP with the Django cache: a fixed window counter per scope.

Shared by web processes through the configured cache (Redis when scaled, a
file cache embedded). The IP is hashed in the key, so the cache holds no
address in clear.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable
from functools import wraps
from typing import Any

from django.conf import settings
from django.core.cache import cache
from django.core.exceptions import ImproperlyConfigured
from django.http import HttpRequest, HttpResponse

_PERIODS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def parse_rate(rate: str) -> tuple[int, int] | None:
    """Return (requests, seconds) for "N/s|m|h|d", or None for a limit that is off ("0" or empty)."""
    value = (rate or "").strip().lower()
    if value in {"", "0", "off"}:
        return None
    count, sep, unit = value.partition("/")
    if not sep or unit not in _PERIODS or not count.isdigit():
        raise ImproperlyConfigured(f"A rate limit looks like 10/m (per s, m, h or d), not {rate!r}")
    return (int(count), _PERIODS[unit]) if int(count) > 0 else None


def client_ip(request: HttpRequest) -> str | None:
    """Return the client's IP: REMOTE_ADDR, or the right-most entry of CLIENT_IP_HEADER behind a proxy."""
    header = settings.CLIENT_IP_HEADER
    if header:
        raw = request.headers.get(header, "")
        candidate = raw.split(",")[-1].strip() if raw else ""
        if candidate:
            return candidate
    return request.META.get("REMOTE_ADDR") or None


def allow(request: HttpRequest, *, scope: str, rate: str) -> bool:
    """Count one request of this client in ``scope``; say whether it is within ``rate``."""
    limit = parse_rate(rate)
    if limit is None:
        return True
    count, period = limit
    window = int(time.time()) // period
    who = hashlib.sha256((client_ip(request) or "unknown").encode()).hexdigest()[:20]
    key = f"rl:{scope}:{who}:{window}"
    # One cache call per request in the common case: the first request of a
    # window creates the counter, every later one increments it.
    try:
        hits = cache.incr(key)
    except ValueError:
        hits = 1 if cache.add(key, 1, timeout=period + 5) else cache.incr(key)
    return hits <= count


def rate_limited(scope: str, setting: str, *, methods: frozenset[str] | None = None) -> Callable[..., Any]:
    """Decorate a view: over the per-IP rate in ``settings.<setting>``, answer 429 with a friendly page.

    ``methods`` limits counting to those HTTP methods (e.g. only POST).
    """

    def decorate(view: Callable[..., HttpResponse]) -> Callable[..., HttpResponse]:
        @wraps(view)
        def wrapper(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
            counted = methods is None or request.method in methods
            if counted and not allow(request, scope=scope, rate=getattr(settings, setting)):
                from preferences.views import too_many_requests

                return too_many_requests(request, retry_after=parse_rate(getattr(settings, setting))[1])
            return view(request, *args, **kwargs)

        return wrapper

    return decorate
