"""Serve the Segment-compatible tracking API: /v1/identify, track, page, screen, group, alias, batch.

Authentication is Segment's: HTTP Basic with the write key as the user name
(or ``writeKey`` in the body). Limits are Segment's: 32 KB per call, 500 KB
per batch. A batch keeps its valid calls and names the invalid ones by index.
"""

from __future__ import annotations

import base64
import binascii
import gzip
import io
import json
import time
from typing import Any

from django.http import HttpRequest, JsonResponse
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_POST

from subscribers import actions
from subscribers.models import WriteKey
from subscribers.tracking.calls import MAX_BATCH_BYTES, MAX_CALL_BYTES

# Write keys are looked up by hash on every call; a short cache keeps that
# off the database while a revoked key still stops working within seconds.
KEY_CACHE_SECONDS = 10.0
_key_cache: dict[str, tuple[float, WriteKey | None]] = {}


def _error(status: int, message: str) -> JsonResponse:
    return JsonResponse({"success": False, "error": message}, status=status)


def _write_key_from(request: HttpRequest, body: Any) -> str:
    header = request.headers.get("Authorization", "")
    if header.lower().startswith("basic "):
        try:
            user, _, _ = base64.b64decode(header[6:].strip()).decode().partition(":")
        except (binascii.Error, UnicodeDecodeError):
            return ""
        return user
    if isinstance(body, dict) and isinstance(body.get("writeKey"), str):
        return body["writeKey"]
    return ""


def _source(key: str) -> WriteKey | None:
    digest = WriteKey.hash(key)
    now = time.monotonic()
    cached = _key_cache.get(digest)
    if cached and now - cached[0] < KEY_CACHE_SECONDS:
        return cached[1]
    source = WriteKey.objects.filter(key_hash=digest, revoked_at__isnull=True).first()
    if len(_key_cache) > 1000:
        _key_cache.clear()
    _key_cache[digest] = (now, source)
    return source


def _body(request: HttpRequest, limit: int) -> bytes | None:
    """Return the request body, un-gzipped if the SDK compressed it, or None if it is over ``limit``."""
    raw = request.body
    if request.headers.get("Content-Encoding", "").lower() == "gzip":
        try:
            with gzip.GzipFile(fileobj=io.BytesIO(raw)) as stream:
                raw = stream.read(limit + 1)  # never inflate more than the limit allows
        except (OSError, EOFError):
            raise ValueError("The body is not valid gzip.") from None
    return None if len(raw) > limit else raw


def _handle(request: HttpRequest, call_type: str | None) -> JsonResponse:
    limit = MAX_BATCH_BYTES if call_type is None else MAX_CALL_BYTES
    try:
        raw = _body(request, limit)
    except ValueError as exc:
        return _error(400, str(exc))
    if raw is None:
        return _error(413, f"The request is larger than {limit // 1024} KB; send smaller batches.")
    try:
        body = json.loads(raw or b"null")
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        return _error(400, f"The body is not valid JSON: {exc}")
    key = _write_key_from(request, body)
    if not key:
        return _error(401, "Missing write key: send it as the HTTP Basic user name.")
    source = _source(key)
    if source is None:
        return _error(401, "Unknown or revoked write key.")
    if not isinstance(body, dict):
        return _error(400, "The body must be a JSON object.")
    if call_type is None:
        calls = body.get("batch")
        if not isinstance(calls, list):
            return _error(400, "A batch needs a “batch” array of calls.")
        defaults = {"context": body.get("context"), "sentAt": body.get("sentAt")}
        result = actions.ingest_tracking_calls(calls, source=source, batch_defaults=defaults)
        if result.errors and not result.accepted and not result.duplicates:
            return JsonResponse(result.as_json(), status=400)
        return JsonResponse(result.as_json())
    result = actions.ingest_tracking_calls([body], source=source, default_type=call_type)
    if result.errors:
        return _error(400, result.errors[0]["error"])
    return JsonResponse(result.as_json())


def _endpoint(call_type: str | None):  # type: ignore[no-untyped-def]
    @csrf_exempt
    @require_POST
    def view(request: HttpRequest) -> JsonResponse:
        return _handle(request, call_type)

    view.__name__ = f"tracking_{call_type or 'batch'}"
    return view


identify = _endpoint("identify")
track = _endpoint("track")
page = _endpoint("page")
screen = _endpoint("screen")
group = _endpoint("group")
alias = _endpoint("alias")
batch = _endpoint(None)
