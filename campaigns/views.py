"""Serve our own open pixel and click redirect, for ESPs without tracking and for locally captured mail."""

from __future__ import annotations

import base64
import logging

from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.shortcuts import render
from django.utils import timezone
from django.views.decorators.http import require_safe

from campaigns import actions, tracking
from campaigns.models import EventKind

logger = logging.getLogger(__name__)

TRANSPARENT_GIF = base64.b64decode("R0lGODlhAQABAIAAAAAAAP///yH5BAEAAAAALAAAAAABAAEAAAIBRAA7")
NO_CACHE = "no-store, no-cache, must-revalidate, private, max-age=0"


@require_safe
def open_pixel(request: HttpRequest, token: str) -> HttpResponse:
    """Return a 1x1 transparent GIF and record an open of the delivery inside the signed token."""
    delivery_id = tracking.read_open_token(token)
    if delivery_id is None:
        return invalid_link(request)
    if request.method == "GET":
        _record(request, kind=EventKind.OPENED, delivery_id=delivery_id, source=tracking.PIXEL_SOURCE)
    response = HttpResponse(TRANSPARENT_GIF, content_type="image/gif")
    response["Cache-Control"] = NO_CACHE
    response["Pragma"] = "no-cache"
    response["Expires"] = "0"
    return response


@require_safe
def click_redirect(request: HttpRequest, token: str) -> HttpResponse:
    """Redirect to the link inside the signed token, recording the click; nothing else is ever a destination.

    Query parameters are ignored, so the redirect cannot be pointed anywhere
    else: a tampered or unknown token is a 404 page.
    """
    payload = tracking.read_click_token(token)
    if payload is None:
        return invalid_link(request)
    delivery_id, url = payload
    if request.method == "GET":
        _record(request, kind=EventKind.CLICKED, delivery_id=delivery_id, source=tracking.REDIRECT_SOURCE, url=url)
    response = HttpResponseRedirect(url)
    response["Cache-Control"] = NO_CACHE
    response["Referrer-Policy"] = "no-referrer"
    return response


def invalid_link(request: HttpRequest) -> HttpResponse:
    return render(request, "campaigns/invalid_link.html", status=404)


def _record(request: HttpRequest, *, kind: str, delivery_id: int, source: str, url: str = "") -> None:
    # The person gets their image or destination even if recording fails.
    event = tracking.TrackingEvent(
        kind=kind,
        occurred_at=timezone.now(),
        source=source,
        delivery_id=delivery_id,
        url=url,
        user_agent=request.headers.get("User-Agent", "")[:500],
        ip_address=request.META.get("REMOTE_ADDR") or None,
    )
    try:
        actions.record_tracking_event(event)
    except Exception:
        logger.exception("Could not record a %s for delivery %s", kind, delivery_id)
