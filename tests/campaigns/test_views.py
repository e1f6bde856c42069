import pytest
from django.urls import reverse

from campaigns import tracking
from campaigns.models import Delivery, DeliveryEvent, EventKind, MessageStats
from campaigns.views import TRANSPARENT_GIF

HUMAN_UA = "Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0"


def flip_last(text: str) -> str:
    return text[:-1] + ("B" if text[-1] == "A" else "A")


def pixel_path(delivery_id: int) -> str:
    return reverse("campaigns:open_pixel", args=[tracking.open_token(delivery_id)])


def click_path(delivery_id: int, url: str) -> str:
    return reverse("campaigns:click_redirect", args=[tracking.click_token(delivery_id, url)])


def test_open_pixel_is_an_uncached_transparent_gif_and_records_the_open(client, make_delivery):
    delivery = make_delivery()
    path = pixel_path(delivery.pk)
    assert path.startswith("/t/o/") and path.endswith(".gif")
    response = client.get(path, HTTP_USER_AGENT=HUMAN_UA, REMOTE_ADDR="203.0.113.5")
    assert response.status_code == 200
    assert response["Content-Type"] == "image/gif" and response.content == TRANSPARENT_GIF
    assert TRANSPARENT_GIF.startswith(b"GIF89a\x01\x00\x01\x00")
    assert "no-store" in response["Cache-Control"] and response["Pragma"] == "no-cache"
    delivery.refresh_from_db()
    assert (delivery.status, delivery.open_count) == ("opened", 1)
    opened = delivery.events.get()
    assert (opened.kind, opened.source, opened.user_agent, opened.ip_address, opened.is_machine) == (
        EventKind.OPENED, "pixel", HUMAN_UA, "203.0.113.5", False)
    assert delivery.subscriber.__class__.objects.get(pk=delivery.subscriber_id).last_open_at is not None


def test_click_redirects_only_to_the_signed_url(client, make_delivery):
    delivery = make_delivery()
    path = click_path(delivery.pk, "https://shop.example.com/sale?utm_campaign=spring")
    response = client.get(path + "?url=https://evil.example/&next=https://evil.example/", HTTP_USER_AGENT=HUMAN_UA)
    assert response.status_code == 302
    assert response["Location"] == "https://shop.example.com/sale?utm_campaign=spring"
    delivery.refresh_from_db()
    assert (delivery.status, delivery.click_count) == ("clicked", 1)
    assert delivery.events.get().url == "https://shop.example.com/sale?utm_campaign=spring"


@pytest.mark.parametrize("kind", ["open", "click"])
def test_tampered_tokens_get_the_404_page_and_record_nothing(client, make_delivery, kind):
    delivery = make_delivery()
    if kind == "open":
        token = tracking.open_token(delivery.pk)
        value, signature = token.split(":")
        forged = f"{tracking._to_base36(delivery.pk + 1)}:{signature}"
        paths = [f"/t/o/{forged}.gif", f"/t/o/{flip_last(token)}.gif", "/t/o/nothing.gif"]
    else:
        token = tracking.click_token(delivery.pk, "https://shop.example.com/")
        payload, signature = token.rsplit(":", 1)
        paths = [f"/t/c/{payload}:{flip_last(signature)}", f"/t/c/{flip_last(payload)}:{signature}",
                 f"/t/c/{tracking.open_token(delivery.pk)}", "/t/c/https:evil.example"]
        # A URL in place of the token does not even reach the view.
        outside = client.get("/t/c/https:%2F%2Fevil.example")
        assert outside.status_code == 404 and "Location" not in outside
    for path in paths:
        response = client.get(path)
        assert response.status_code == 404, path
        assert b"This link does not work" in response.content
        assert "Location" not in response
    assert not DeliveryEvent.objects.exists()


def test_open_token_is_not_a_click_token(client, make_delivery):
    delivery = make_delivery()
    assert client.get(f"/t/c/{tracking.open_token(delivery.pk)}").status_code == 404
    click = tracking.click_token(delivery.pk, "https://example.com/")
    assert client.get(f"/t/o/{click}.gif").status_code == 404


def test_head_requests_and_other_methods_record_nothing(client, make_delivery):
    delivery = make_delivery()
    assert client.head(pixel_path(delivery.pk)).status_code == 200
    assert client.head(click_path(delivery.pk, "https://example.com/")).status_code == 302
    assert client.post(pixel_path(delivery.pk)).status_code == 405
    assert not DeliveryEvent.objects.exists()


def test_link_still_works_when_the_delivery_is_gone(client, make_delivery):
    delivery = make_delivery()
    path = click_path(delivery.pk, "https://example.com/offer")
    Delivery.objects.filter(pk=delivery.pk).delete()
    response = client.get(path)
    assert response.status_code == 302 and response["Location"] == "https://example.com/offer"
    assert MessageStats.objects.get(message_key="unmatched:redirect").clicks == 1


def test_privacy_proxy_pixel_fetch_is_a_machine_open(client, make_delivery):
    delivery = make_delivery()
    client.get(pixel_path(delivery.pk), HTTP_USER_AGENT="Mozilla/5.0")
    delivery.refresh_from_db()
    assert (delivery.status, delivery.machine_open_count) == ("sent", 1)


def test_recording_failure_still_serves_the_person(client, make_delivery, monkeypatch, caplog):
    delivery = make_delivery()

    def broken(event):
        raise RuntimeError("database is down")

    monkeypatch.setattr("campaigns.actions.record_tracking_event", broken)
    assert client.get(pixel_path(delivery.pk)).status_code == 200
    response = client.get(click_path(delivery.pk, "https://example.com/"))
    assert response.status_code == 302
    assert "Could not record" in caplog.text
