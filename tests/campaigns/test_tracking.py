import datetime as dt
import re
from types import SimpleNamespace

import pytest
from django.core import signing

from campaigns import tracking
from campaigns.models import EventKind

AT = dt.datetime(2026, 3, 2, 9, 0, tzinfo=dt.UTC)


def test_open_token_round_trip_and_tampering():
    token = tracking.open_token(12345)
    assert tracking.read_open_token(token) == 12345
    value, signature = token.split(":")
    assert tracking.read_open_token(f"{tracking._to_base36(12346)}:{signature}") is None
    assert tracking.read_open_token(token[:-1] + ("A" if token[-1] != "A" else "B")) is None
    assert tracking.read_open_token("garbage") is None


def test_click_token_round_trip_and_tampering():
    token = tracking.click_token(7, "https://shop.example.com/sale?utm_source=mail&x=1")
    assert tracking.read_click_token(token) == (7, "https://shop.example.com/sale?utm_source=mail&x=1")
    payload, signature = token.rsplit(":", 1)
    forged = signing.Signer(salt="something-else").sign_object([7, "https://evil.example"], compress=True)
    assert tracking.read_click_token(forged) is None
    assert tracking.read_click_token(forged.rsplit(":", 1)[0] + ":" + signature) is None
    assert tracking.read_click_token(token + "x") is None


def test_tokens_of_one_purpose_do_not_work_for_the_other():
    assert tracking.read_click_token(tracking.open_token(7)) is None
    assert tracking.read_open_token(tracking.click_token(7, "https://example.com")) is None


def test_open_token_does_not_carry_the_person():
    # Only the delivery id (base 36) and a signature: no email, no subscriber id.
    value, _signature = tracking.open_token(35).split(":")
    assert value == "z"


@pytest.mark.parametrize("url", ["javascript:alert(1)", "mailto:a@example.com", "//evil.example", "ftp://x.example",
                                 "https://exa mple.com", "https://example.com/\r\nSet-Cookie: x"])
def test_only_web_links_can_be_tracked(url):
    with pytest.raises(ValueError, match="http"):
        tracking.click_token(1, url)


def test_add_tracking_rewrites_web_links_and_adds_the_pixel(settings):
    settings.TRACKING_BASE_URL = "https://mail.example.com"
    html = (
        '<html><body><p><a class="btn" href="https://shop.example.com/?a=1&amp;b=2">Shop</a>'
        "<a href='mailto:help@example.com'>Mail us</a> <a href=\"#top\">Top</a>"
        '<a data-no-track href="https://example.com/unsubscribe">Unsubscribe</a></p></body></html>'
    )
    out = tracking.add_tracking(html, delivery_id=42)
    links = re.findall(r'href="(https://mail\.example\.com/t/c/[^"]+)"', out)
    assert len(links) == 1
    token = links[0].rsplit("/", 1)[1]
    assert tracking.read_click_token(token) == (42, "https://shop.example.com/?a=1&b=2")
    assert "href='mailto:help@example.com'" in out and 'href="#top"' in out
    assert 'href="https://example.com/unsubscribe"' in out
    pixel = re.search(r'<img src="https://mail\.example\.com/t/o/([^"]+)\.gif"[^>]*></body>', out)
    assert pixel and tracking.read_open_token(pixel.group(1)) == 42


def test_add_tracking_without_a_body_tag_appends_the_pixel():
    out = tracking.add_tracking("<p>Hello</p>", delivery_id=1, base_url="https://m.example.com/")
    assert out.startswith("<p>Hello</p><img src=\"https://m.example.com/t/o/")


@pytest.mark.parametrize(
    ("user_agent", "ip", "seconds", "hint", "expected"),
    [
        ("Mozilla/5.0 (iPhone; CPU iPhone OS 17_4 like Mac OS X) AppleWebKit/605.1.15", None, 3600, False, False),
        ("Mozilla/5.0", None, 3600, False, True),
        ("  Mozilla/5.0 ", None, 3600, False, True),
        ("Mozilla/5.0 (compatible; BingPreview/1.0b)", None, 3600, False, True),
        ("python-requests/2.31", None, 3600, False, True),
        ("YahooMailProxy; https://help.yahoo.com/kb/yahoo-mail-proxy-SLN28749.html", None, 3600, False, False),
        ("Microsoft Office/16.0 (Windows NT 10.0; Microsoft Outlook 16.0.17328)", None, 3600, False, False),
        ("Mozilla/5.0 (Macintosh)", None, 2, False, True),
        ("Mozilla/5.0 (Macintosh)", None, -30, False, True),
        ("Mozilla/5.0 (Macintosh)", None, 3, False, False),
        ("Mozilla/5.0 (Macintosh)", None, 3600, True, True),
        ("", None, 3600, False, False),
    ],
)
def test_is_machine(user_agent, ip, seconds, hint, expected, settings):
    settings.TRACKING_MACHINE_SECONDS = 2
    assert tracking.is_machine(user_agent=user_agent, ip_address=ip, occurred_at=AT + dt.timedelta(seconds=seconds),
                               reference_at=AT, machine_hint=hint) is expected


def test_is_machine_without_a_reference_time_uses_only_the_other_rules():
    assert tracking.is_machine(user_agent="Mozilla/5.0 (X11)", ip_address=None, occurred_at=AT,
                               reference_at=None) is False


def anymail_event(event_type, esp_event, **overrides):
    fields = {"event_type": event_type, "timestamp": AT, "event_id": None, "esp_event": esp_event,
              "message_id": "m-1", "recipient": "ann@example.com", "metadata": {}, "click_url": None,
              "description": None, "mta_response": None, "user_agent": None}
    fields.update(overrides)
    return SimpleNamespace(**fields)


@pytest.mark.parametrize(
    ("esp", "esp_event", "kind"),
    [
        ("SendGrid", {"event": "bounce", "type": "bounce"}, EventKind.BOUNCED),
        ("SendGrid", {"event": "bounce", "type": "blocked"}, EventKind.SOFT_BOUNCED),
        ("Postmark", {"RecordType": "Bounce", "Type": "HardBounce"}, EventKind.BOUNCED),
        ("Postmark", {"RecordType": "Bounce", "Type": "SoftBounce"}, EventKind.SOFT_BOUNCED),
        ("Postmark", {"RecordType": "SubscriptionChange", "SuppressionReason": "HardBounce"}, EventKind.BOUNCED),
        ("Amazon SES", {"notificationType": "Bounce", "bounce": {"bounceType": "Permanent"}}, EventKind.BOUNCED),
        ("Amazon SES", {"notificationType": "Bounce", "bounce": {"bounceType": "Transient"}}, EventKind.SOFT_BOUNCED),
        ("Mailgun", {"event-data": {"event": "failed", "severity": "permanent"}}, EventKind.BOUNCED),
        ("SparkPost", {}, EventKind.BOUNCED),
    ],
)
def test_from_anymail_tells_hard_from_soft_bounces(esp, esp_event, kind):
    assert tracking.from_anymail(anymail_event("bounced", esp_event), esp).kind == kind


def test_from_anymail_reads_our_metadata_and_derives_an_event_id_when_the_esp_has_none():
    normalized = tracking.from_anymail(anymail_event("opened", {}, metadata={"delivery_id": "17"}), "Postmark")
    assert (normalized.kind, normalized.delivery_id, normalized.source) == (EventKind.OPENED, 17, "Postmark")
    assert normalized.esp_event_id.startswith("h:")
    again = tracking.from_anymail(anymail_event("opened", {}, metadata={"delivery_id": "17"}), "Postmark")
    assert again.esp_event_id == normalized.esp_event_id
    other = tracking.from_anymail(anymail_event("opened", {}, timestamp=AT + dt.timedelta(seconds=1)), "Postmark")
    assert other.esp_event_id != normalized.esp_event_id
    assert tracking.from_anymail(anymail_event("opened", {}, metadata={"delivery_id": "x"}), "X").delivery_id is None


def test_from_anymail_maps_other_types_to_other():
    assert tracking.from_anymail(anymail_event("subscribed", {}), "Postmark").kind == EventKind.OTHER
    assert tracking.from_anymail(anymail_event("queued", {}), "SendGrid").kind == EventKind.SENT


@pytest.mark.parametrize("url", ["https://shop.example/a", "https://shop.example/p?q=1&b=ü€", "http://x"])
def test_click_tokens_are_djangos_signed_objects(url, settings):
    from django.core import signing

    from campaigns.tracking import CLICK_SALT, click_token, read_click_token

    token = click_token(42, url)
    assert token == signing.Signer(salt=CLICK_SALT).sign_object([42, url])
    assert read_click_token(token) == (42, url)
    settings.SECRET_KEY = "another-secret-" * 4
    assert read_click_token(token) is None


@pytest.mark.parametrize("delivery_id", [1, 35, 36, 987_654_321])
def test_open_tokens_are_djangos_signed_values(delivery_id, settings):
    from campaigns.tracking import OPEN_SALT, open_token, read_open_token

    token = open_token(delivery_id)
    assert token == signing.Signer(salt=OPEN_SALT).sign(tracking._to_base36(delivery_id))
    assert read_open_token(token) == delivery_id
    settings.SECRET_KEY = "another-secret-" * 4
    assert read_open_token(token) is None
