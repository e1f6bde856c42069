"""Turn tracking signals into plain events: signed pixel/click tokens, machine detection, Anymail mapping.

Nothing here writes to the database; ``campaigns.actions.record_tracking_events``
does, for webhooks and our own pixel and redirect alike.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import html
import ipaddress
import json
import re
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from django.conf import settings
from django.core import signing
from django.urls import reverse
from django.utils import timezone
from django.utils.dateparse import parse_datetime

from campaigns.models import BounceType, EventKind

OPEN_SALT = "campaigns.tracking.open"
CLICK_SALT = "campaigns.tracking.click"
# Where our own tracking is the source, DeliveryEvent.source says which.
PIXEL_SOURCE = "pixel"
REDIRECT_SOURCE = "redirect"
ALLOWED_SCHEMES = ("http", "https")
# Apple Mail Privacy Protection fetches every image on delivery with exactly this user agent.
APPLE_MPP_USER_AGENT = "Mozilla/5.0"


@dataclass(frozen=True)
class TrackingEvent:
    """One normalized delivery or engagement event, whatever reported it.

    ``delivery_id`` (from our metadata or token) wins; otherwise the event is
    matched by ``esp_message_id`` and, if several deliveries share it, by
    ``recipient``. ``machine_hint`` is the ESP's own bot verdict.
    """

    kind: str
    occurred_at: dt.datetime
    source: str = ""
    delivery_id: int | None = None
    esp_message_id: str = ""
    recipient: str = ""
    esp_event_id: str = ""
    url: str = ""
    user_agent: str = ""
    ip_address: str | None = None
    bounce_type: str = ""
    detail: str = ""
    machine_hint: bool = False


# --- Signed tokens ---------------------------------------------------------
# The open token carries only the delivery id; the click token the delivery id
# and the destination. Both are signed with SECRET_KEY and a salt per purpose,
# so a token for one purpose is useless for the other, and no URL that is not
# inside a valid token is ever redirected to.


def open_token(delivery_id: int) -> str:
    # signing.Signer(salt=OPEN_SALT).sign(value), with its derived key computed once (one per message).
    value = _to_base36(delivery_id)
    mac = hmac.digest(_signer_key(OPEN_SALT, settings.SECRET_KEY), value.encode(), "sha256")
    return f"{value}:{signing.b64_encode(mac).decode()}"


def read_open_token(token: str) -> int | None:
    """Return the delivery id inside a valid open token, else None."""
    try:
        return int(signing.Signer(salt=OPEN_SALT).unsign(token), 36)
    except (signing.BadSignature, ValueError):
        return None


def click_token(delivery_id: int, url: str) -> str:
    if not is_trackable_url(url):
        raise ValueError(f"Only http and https links can be tracked, not {url!r}")
    return _click_token(_signer_key(CLICK_SALT, settings.SECRET_KEY), delivery_id, _json_string(url))


def _click_token(key: bytes, delivery_id: int, url_json: str) -> str:
    # The same token as signing.Signer(salt=CLICK_SALT).sign_object([delivery_id, url]) (read_click_token
    # checks it with Django's signer), made with the derived HMAC key computed once instead of per link:
    # a campaign signs several links per message. Not compressed: zlib cost more than all the rest.
    payload = signing.b64_encode(f"[{delivery_id},{url_json}]".encode("latin-1"))
    return f"{payload.decode()}:{signing.b64_encode(hmac.digest(key, payload, 'sha256')).decode()}"


@lru_cache(maxsize=4096)
def _json_string(url: str) -> str:
    """Return a URL as a JSON string, as json.dumps writes it inside a list (kept: a campaign repeats its links)."""
    return json.dumps(url)


@lru_cache(maxsize=8)
def _signer_key(salt: str, secret: str) -> bytes:
    """Return the key Django's Signer derives for a salt (sha256 of salt + "signer" + SECRET_KEY)."""
    return hashlib.sha256(f"{salt}signer".encode() + secret.encode()).digest()


def read_click_token(token: str) -> tuple[int, str] | None:
    """Return (delivery id, destination) inside a valid click token, else None."""
    try:
        delivery_id, url = signing.Signer(salt=CLICK_SALT).unsign_object(token)
    except (signing.BadSignature, ValueError, TypeError):
        return None
    if not isinstance(delivery_id, int) or not isinstance(url, str) or not is_trackable_url(url):
        return None
    return delivery_id, url


def is_trackable_url(url: str) -> bool:
    scheme, sep, rest = url.partition("://")
    return bool(sep) and scheme.lower() in ALLOWED_SCHEMES and bool(rest) and not any(c in url for c in "\r\n\t ")


def _to_base36(number: int) -> str:
    if number < 0:
        raise ValueError("Delivery ids are positive.")
    digits = "0123456789abcdefghijklmnopqrstuvwxyz"
    out = ""
    while True:
        number, rest = divmod(number, 36)
        out = digits[rest] + out
        if not number:
            return out


@lru_cache(maxsize=8)
def _route(name: str) -> tuple[str, str]:
    """Return the path of a tracking route around its token, resolved once (reverse() per link is slow)."""
    path = reverse(name, args=["TOKEN"])
    before, _, after = path.partition("TOKEN")
    return before, after


def open_pixel_url(delivery_id: int, *, base_url: str | None = None) -> str:
    base = settings.TRACKING_BASE_URL if base_url is None else base_url.rstrip("/")
    before, after = _route("campaigns:open_pixel")
    return f"{base}{before}{open_token(delivery_id)}{after}"


def click_url(delivery_id: int, url: str, *, base_url: str | None = None) -> str:
    base = settings.TRACKING_BASE_URL if base_url is None else base_url.rstrip("/")
    before, after = _route("campaigns:click_redirect")
    return f"{base}{before}{click_token(delivery_id, url)}{after}"


_HREF = re.compile(r"""(<a\b[^>]*?\bhref\s*=\s*)(["'])(.*?)\2""", re.IGNORECASE | re.DOTALL)
_NO_TRACK = re.compile(r"\bdata-no-track\b", re.IGNORECASE)
_BODY_END = re.compile(r"</body\s*>", re.IGNORECASE)


def add_tracking(html_body: str, *, delivery_id: int, base_url: str | None = None) -> str:
    """Return the HTML with http(s) links sent through our click redirect and an open pixel added.

    For ESPs without their own tracking and for the local capture backend.
    Links marked ``data-no-track`` (e.g. unsubscribe) and non-web links
    (mailto:, tel:, anchors) are left alone.
    """

    base = settings.TRACKING_BASE_URL if base_url is None else base_url.rstrip("/")
    key = _signer_key(CLICK_SALT, settings.SECRET_KEY)
    before, after = _route("campaigns:click_redirect")

    def rewrite(match: re.Match[str]) -> str:
        tag_start, quote, raw = match.groups()
        url_json = _trackable_link(raw)
        if url_json is None or ("no-track" in match.group(0).lower() and _NO_TRACK.search(match.group(0))):
            return match.group(0)
        # click_url(), with what is the same for every link read once: the token is URL- and HTML-safe.
        return f"{tag_start}{quote}{html.escape(base)}{before}{_click_token(key, delivery_id, url_json)}{after}{quote}"

    tracked = _HREF.sub(rewrite, html_body)
    pixel = (
        f'<img src="{html.escape(open_pixel_url(delivery_id, base_url=base_url))}" width="1" height="1" alt="" '
        'style="display:block;width:1px;height:1px;border:0">'
    )
    ends = list(_BODY_END.finditer(tracked))
    if ends:
        at = ends[-1].start()
        return tracked[:at] + pixel + tracked[at:]
    return tracked + pixel


@lru_cache(maxsize=4096)
def _trackable_link(raw: str) -> str | None:
    """Return an href's destination as a JSON string if it is a web link to track, else None (kept per href)."""
    url = html.unescape(raw).strip()
    return _json_string(url) if is_trackable_url(url) else None


# --- Machine opens and clicks ---------------------------------------------


@lru_cache(maxsize=8)
def _networks(spec: tuple[str, ...]) -> tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]:
    return tuple(ipaddress.ip_network(item, strict=False) for item in spec)


def is_machine(
    *,
    user_agent: str,
    ip_address: str | None,
    occurred_at: dt.datetime,
    reference_at: dt.datetime | None,
    machine_hint: bool = False,
) -> bool:
    """Say whether an open or click came from a machine rather than a person.

    A machine is: the ESP says so (SendGrid ``sg_machine_open``, Mailgun
    ``client-info.bot``); the user agent is exactly "Mozilla/5.0" (Apple Mail
    Privacy Protection) or contains a known scanner's name
    (TRACKING_MACHINE_USER_AGENTS); the address is in TRACKING_MACHINE_NETWORKS;
    or it came within TRACKING_MACHINE_SECONDS of delivery (or of sending,
    when no delivery was reported) - no person opens mail that fast.
    """
    if machine_hint:
        return True
    agent = (user_agent or "").strip()
    if agent == APPLE_MPP_USER_AGENT:
        return True
    lowered = agent.lower()
    if lowered and any(marker.lower() in lowered for marker in settings.TRACKING_MACHINE_USER_AGENTS):
        return True
    if ip_address and settings.TRACKING_MACHINE_NETWORKS:
        try:
            address = ipaddress.ip_address(ip_address)
        except ValueError:
            address = None
        if address is not None and any(address in net for net in _networks(tuple(settings.TRACKING_MACHINE_NETWORKS))):
            return True
    if reference_at is not None:
        # Negative gaps are clock skew between the ESP's reports: still "at delivery".
        return (occurred_at - reference_at).total_seconds() <= settings.TRACKING_MACHINE_SECONDS
    return False


# --- Anymail ----------------------------------------------------------------

_ANYMAIL_KINDS = {
    "queued": EventKind.SENT,
    "sent": EventKind.SENT,
    "delivered": EventKind.DELIVERED,
    "deferred": EventKind.DEFERRED,
    "bounced": EventKind.BOUNCED,
    "rejected": EventKind.REJECTED,
    "failed": EventKind.FAILED,
    "opened": EventKind.OPENED,
    "clicked": EventKind.CLICKED,
    "complained": EventKind.COMPLAINED,
    "unsubscribed": EventKind.UNSUBSCRIBED,
}


def from_anymail(event: Any, esp_name: str) -> TrackingEvent:
    """Normalize an ``anymail.signals.AnymailTrackingEvent`` into a TrackingEvent."""
    esp_event = event.esp_event if isinstance(event.esp_event, dict) else {}
    kind = _ANYMAIL_KINDS.get(event.event_type, EventKind.OTHER)
    bounce_type = ""
    if kind == EventKind.BOUNCED:
        bounce_type = _bounce_type(esp_name, esp_event)
        if bounce_type == BounceType.SOFT:
            kind = EventKind.SOFT_BOUNCED
    occurred_at = _occurred_at(esp_name, esp_event, event.timestamp) or timezone.now()
    metadata = event.metadata if isinstance(event.metadata, dict) else {}
    detail = " — ".join(str(part) for part in (event.description, event.mta_response) if part)
    event_id = str(event.event_id or "")
    if not event_id and event.timestamp is not None:
        # Some ESPs (Postmark opens, clicks, deliveries) send no event id:
        # derive one from what identifies the event, so a retried post is recorded once.
        basis = "|".join(
            str(part)
            for part in (esp_name, event.event_type, event.message_id, event.recipient, event.timestamp.isoformat(),
                         event.click_url)
        )
        event_id = "h:" + hashlib.sha256(basis.encode()).hexdigest()[:40]
    return TrackingEvent(
        kind=kind,
        occurred_at=occurred_at,
        source=esp_name[:40],
        delivery_id=_delivery_id(metadata),
        esp_message_id=str(event.message_id or "")[:255],
        recipient=str(event.recipient or ""),
        esp_event_id=event_id[:255],
        url=str(event.click_url or ""),
        user_agent=str(event.user_agent or "")[:500],
        ip_address=_ip_address(esp_name, esp_event),
        bounce_type=bounce_type,
        detail=detail,
        machine_hint=_esp_says_machine(esp_name, esp_event),
    )


def _delivery_id(metadata: dict[str, Any]) -> int | None:
    raw = metadata.get("delivery_id")
    try:
        value = int(str(raw))
    except (TypeError, ValueError):
        return None
    return value if value > 0 else None


def _bounce_type(esp_name: str, esp_event: dict[str, Any]) -> str:
    """Return hard or soft for an Anymail "bounced" event, from the ESP's own payload.

    Anymail already turns Mailgun temporary failures and Postmark transient
    bounces into "deferred"; what is left is hard unless the ESP says otherwise.
    """
    if esp_name == "SendGrid":
        return BounceType.SOFT if str(esp_event.get("type", "")).lower() == "blocked" else BounceType.HARD
    if esp_name == "Postmark":
        postmark_type = esp_event.get("Type") or esp_event.get("SuppressionReason") or ""
        return BounceType.HARD if postmark_type == "HardBounce" else BounceType.SOFT
    if esp_name == "Amazon SES":
        bounce = esp_event.get("bounce") or {}
        return BounceType.HARD if bounce.get("bounceType") == "Permanent" else BounceType.SOFT
    if esp_name == "Mailgun":
        severity = (esp_event.get("event-data") or {}).get("severity")
        return BounceType.SOFT if severity == "temporary" else BounceType.HARD
    return BounceType.HARD


def _occurred_at(esp_name: str, esp_event: dict[str, Any], fallback: dt.datetime | None) -> dt.datetime | None:
    # Amazon SES: the SNS timestamp is when the notification was published;
    # the event's own timestamp ("open": {"timestamp": ...}) is when it happened.
    if esp_name == "Amazon SES":
        kind = str(esp_event.get("eventType") or esp_event.get("notificationType") or "").lower()
        details = esp_event.get(kind)
        raw = details.get("timestamp") if isinstance(details, dict) else None
        try:
            parsed = parse_datetime(raw) if isinstance(raw, str) else None
        except ValueError:
            parsed = None
        if parsed is not None:
            return parsed
    return fallback


def _ip_address(esp_name: str, esp_event: dict[str, Any]) -> str | None:
    if esp_name == "SendGrid":
        raw = esp_event.get("ip") if esp_event.get("event") in {"open", "click"} else None
    elif esp_name == "Mailgun":
        raw = (esp_event.get("event-data") or {}).get("ip")
    elif esp_name == "Postmark":
        raw = (esp_event.get("Geo") or {}).get("IP")
    elif esp_name == "Amazon SES":
        kind = str(esp_event.get("eventType", "")).lower()
        raw = (esp_event.get(kind) or {}).get("ipAddress") if kind in {"open", "click"} else None
    else:
        raw = None
    if not raw:
        return None
    try:
        return str(ipaddress.ip_address(str(raw)))
    except ValueError:
        return None


def _esp_says_machine(esp_name: str, esp_event: dict[str, Any]) -> bool:
    if esp_name == "SendGrid":
        return esp_event.get("sg_machine_open") is True
    if esp_name == "Mailgun":
        client = (esp_event.get("event-data") or {}).get("client-info") or {}
        return bool(client.get("bot"))
    return False
