from campaigns import api, tracking


def test_anymail_metadata_names_the_delivery():
    assert api.anymail_metadata(delivery_id=17) == {"delivery_id": "17"}


def test_delivery_explanation(make_delivery):
    delivery = make_delivery(why={"reason": "You subscribed to Offers", "segment": "Shoe buyers"})
    explained = api.delivery_explanation(delivery_id=delivery.pk)
    assert explained["why"] == {"reason": "You subscribed to Offers", "segment": "Shoe buyers"}
    assert explained["message_key"] == "campaign:1" and explained["subscriber_id"] == delivery.subscriber_id
    assert api.delivery_explanation(delivery_id=999999) is None


def test_message_stats_default_to_zero(db):
    assert set(api.message_stats(message_key="campaign:404").values()) == {0}


def test_tracking_urls_are_absolute(settings):
    settings.TRACKING_BASE_URL = "https://mail.example.com"
    assert api.open_pixel_url(delivery_id=5).startswith("https://mail.example.com/t/o/")
    link = api.click_url(delivery_id=5, url="https://example.com/a")
    assert tracking.read_click_token(link.rsplit("/", 1)[1]) == (5, "https://example.com/a")
    assert "/t/c/" in api.tracked_html('<a href="https://example.com/">x</a>', delivery_id=5)
