"""Read Segment HTTP Tracking API calls into plain, validated values.

The shapes follow Segment's spec (identify, track, page, screen, group, alias,
batch) so existing Segment and RudderStack sources send to us unchanged.
Nothing here touches the database.
"""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import dataclass, field
from typing import Any

from django.utils import timezone

from subscribers.importing.columns import CellError, parse_country, parse_email, parse_gender, parse_language
from subscribers.models import timezone_names

CALL_TYPES = frozenset({"identify", "track", "page", "screen", "group", "alias"})
MAX_CALL_BYTES = 32 * 1024
MAX_BATCH_BYTES = 500 * 1024
MAX_ID = 200


class CallError(ValueError):
    """A call cannot be accepted; the message says why, for the developer sending it."""


@dataclass
class Call:
    type: str
    user_id: str = ""
    anonymous_id: str = ""
    event: str = ""
    properties: dict[str, Any] = field(default_factory=dict)
    traits: dict[str, Any] = field(default_factory=dict)
    context: dict[str, Any] = field(default_factory=dict)
    occurred_at: dt.datetime | None = None
    message_id: str | None = None
    previous_id: str = ""
    group_id: str = ""

    @property
    def identity(self) -> str:
        """The key events are filed under until the person is known: the userId or the anonymousId."""
        return f"user:{self.user_id}" if self.user_id else self.anonymous_id


def _id(value: Any, name: str) -> str:
    if value is None or value == "":
        return ""
    if isinstance(value, bool) or not isinstance(value, str | int | float):
        raise CallError(f"{name} must be a string")
    text = str(value).strip()
    if len(text) > MAX_ID:
        raise CallError(f"{name} is longer than {MAX_ID} characters")
    return text


def _object(value: Any, name: str) -> dict[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise CallError(f"{name} must be a JSON object")
    return value


def parse_timestamp(value: Any, name: str) -> dt.datetime | None:
    if value in (None, ""):
        return None
    if not isinstance(value, str):
        raise CallError(f"{name} must be an ISO 8601 date-time string")
    try:
        parsed = dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise CallError(f"{name} “{value}” is not an ISO 8601 date-time") from None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=dt.UTC)
    return parsed


def parse_call(raw: Any, *, default_type: str | None = None, received_at: dt.datetime | None = None) -> Call:
    """Validate one call, or raise CallError naming the field."""
    if not isinstance(raw, dict):
        raise CallError("each call must be a JSON object")
    kind = raw.get("type") or default_type
    if kind not in CALL_TYPES:
        raise CallError(f"type must be one of {', '.join(sorted(CALL_TYPES))}")
    call = Call(
        type=kind,
        user_id=_id(raw.get("userId"), "userId"),
        anonymous_id=_id(raw.get("anonymousId"), "anonymousId"),
        properties=_object(raw.get("properties"), "properties"),
        traits=_object(raw.get("traits"), "traits"),
        context=_object(raw.get("context"), "context"),
        message_id=_id(raw.get("messageId"), "messageId") or None,
        previous_id=_id(raw.get("previousId"), "previousId"),
        group_id=_id(raw.get("groupId"), "groupId"),
    )
    if kind == "identify" and not call.traits and isinstance(call.context.get("traits"), dict):
        call.traits = call.context["traits"]
    if kind == "identify" and call.traits.get("email"):
        try:
            parse_email(str(call.traits["email"]))
        except CellError as exc:
            raise CallError(f"traits.email: {exc}") from None
    if kind == "alias":
        if not call.previous_id or not call.user_id:
            raise CallError("alias needs previousId and userId")
    elif not call.user_id and not call.anonymous_id:
        raise CallError("userId or anonymousId is required")
    if kind == "track":
        event = raw.get("event")
        if not isinstance(event, str) or not event.strip():
            raise CallError("track needs an event name")
        if len(event) > 200:
            raise CallError("event name is longer than 200 characters")
        call.event = event.strip()
    elif kind == "page":
        call.event = "Page Viewed"
        _merge_name(call, raw)
    elif kind == "screen":
        call.event = "Screen Viewed"
        _merge_name(call, raw)
    elif kind == "group":
        call.event = "Group"
        if not call.group_id:
            raise CallError("group needs a groupId")
    call.occurred_at = _occurred_at(raw, received_at or timezone.now())
    return call


def _merge_name(call: Call, raw: dict[str, Any]) -> None:
    for key in ("name", "category"):
        if isinstance(raw.get(key), str) and key not in call.properties:
            call.properties[key] = raw[key]


def _occurred_at(raw: dict[str, Any], received_at: dt.datetime) -> dt.datetime:
    """Return when the call happened, corrected for the sender's clock as Segment does.

    With sentAt, the device's clock skew (sentAt vs. our receipt) is removed
    from timestamp; without timestamp the call happened when received.
    """
    timestamp = parse_timestamp(raw.get("timestamp") or raw.get("originalTimestamp"), "timestamp")
    sent_at = parse_timestamp(raw.get("sentAt"), "sentAt")
    if timestamp is None:
        return received_at
    if sent_at is not None:
        corrected = received_at - (sent_at - timestamp)
        return min(corrected, received_at)
    return min(timestamp, received_at + dt.timedelta(minutes=5))


def call_size(raw: Any) -> int:
    return len(json.dumps(raw, separators=(",", ":"), ensure_ascii=False).encode())


# --- identify traits -> profile fields -------------------------------------


def _text(value: Any, limit: int) -> str:
    if value is None or isinstance(value, dict | list):
        return ""
    return str(value).strip()[:limit]


def profile_from_identify(call: Call) -> tuple[dict[str, Any], list[str]]:
    """Map standard traits and context to Subscriber fields.

    Returns (fields, warnings): a trait with an unusable value is left out
    and named in a warning; the rest of the call still counts.
    """
    traits, context = call.traits, call.context
    fields: dict[str, Any] = {}
    warnings: list[str] = []

    def put(name: str, value: Any) -> None:
        if value not in (None, ""):
            fields[name] = value

    email = traits.get("email")
    if email:
        try:
            fields["email"] = parse_email(str(email))
        except CellError as exc:
            raise CallError(f"traits.email: {exc}") from None
    first = traits.get("firstName", traits.get("first_name"))
    last = traits.get("lastName", traits.get("last_name"))
    if not first and not last and isinstance(traits.get("name"), str):
        first, _, last = traits["name"].strip().partition(" ")
    put("first_name", _text(first, 150))
    put("last_name", _text(last, 150))
    put("phone", _text(traits.get("phone"), 40))
    put("job_title", _text(traits.get("title"), 200))
    put("industry", _text(traits.get("industry"), 100))
    company = traits.get("company")
    put("company", _text(company.get("name") if isinstance(company, dict) else company, 200))
    if traits.get("gender"):
        try:
            fields["gender"] = parse_gender(str(traits["gender"]))
        except CellError as exc:
            warnings.append(f"traits.gender: {exc}")
    birthday = traits.get("birthday")
    if birthday:
        try:
            parsed = parse_timestamp(birthday, "traits.birthday") if "T" in str(birthday) else None
            date = parsed.date() if parsed else dt.date.fromisoformat(str(birthday)[:10])
            if date > dt.date.today() or date.year < 1900:
                raise ValueError
            fields["birth_date"] = date
        except (ValueError, CallError):
            warnings.append(f"traits.birthday: “{birthday}” is not a date like 1990-05-17")
    address = traits.get("address") if isinstance(traits.get("address"), dict) else {}
    if address.get("country"):
        try:
            fields["country"] = parse_country(str(address["country"]).strip())
        except CellError as exc:
            warnings.append(f"traits.address.country: {exc}")
    put("city", _text(address.get("city"), 100))
    put("region", _text(address.get("state") or address.get("region"), 100))
    locale = context.get("locale") or traits.get("locale") or traits.get("language")
    if locale:
        try:
            fields["language"] = parse_language(str(locale))
        except CellError as exc:
            warnings.append(f"context.locale: {exc}")
    tz = context.get("timezone") or traits.get("timezone")
    if tz:
        if str(tz) in timezone_names():
            fields["timezone"] = str(tz)
        else:
            warnings.append(f"context.timezone: “{tz}” is not a known time zone")
    return fields, warnings
