"""Signed link tokens, the rate limiter, the brand's contrast and the settings checks."""

from __future__ import annotations

import pytest
from django.core.exceptions import ImproperlyConfigured
from django.test import RequestFactory

from preferences import branding, links, ratelimit
from preferences.checks import check_public_page_settings


def test_signed_tokens_round_trip_and_refuse_changes_and_other_salts():
    token = links.new_token()
    assert len(token) == 24 and token != links.new_token()
    signed = links.sign(token, salt=links.PREFERENCE_SALT)
    assert links.unsign(signed, salt=links.PREFERENCE_SALT) == token
    assert links.unsign(signed, salt=links.SIGNUP_SALT) is None
    assert links.unsign(signed[:-1], salt=links.PREFERENCE_SALT) is None
    changed = ("y" if signed[0] == "x" else "x") + signed[1:]  # always a different first character
    assert links.unsign(changed, salt=links.PREFERENCE_SALT) is None
    assert links.unsign("", salt=links.PREFERENCE_SALT) is None
    assert links.unsign("a" * 500, salt=links.PREFERENCE_SALT) is None


@pytest.mark.parametrize(("rate", "parsed"), [("10/m", (10, 60)), ("5/h", (5, 3600)), ("2/s", (2, 1)),
                                                ("1/d", (1, 86400)), ("0", None), ("", None), ("0/m", None)])
def test_rates_parse(rate, parsed):
    assert ratelimit.parse_rate(rate) == parsed


@pytest.mark.parametrize("rate", ["ten/m", "10/w", "10", "-1/m"])
def test_bad_rates_are_configuration_errors(rate):
    with pytest.raises(ImproperlyConfigured):
        ratelimit.parse_rate(rate)


def test_limits_count_per_client_ip(settings):
    from django.core.cache import cache

    cache.clear()
    factory = RequestFactory()
    one, other = factory.get("/", REMOTE_ADDR="192.0.2.1"), factory.get("/", REMOTE_ADDR="192.0.2.2")
    assert [ratelimit.allow(one, scope="t", rate="2/m") for _ in range(3)] == [True, True, False]
    assert ratelimit.allow(other, scope="t", rate="2/m")
    settings.CLIENT_IP_HEADER = "X-Forwarded-For"
    proxied = factory.get("/", REMOTE_ADDR="10.0.0.1", HTTP_X_FORWARDED_FOR="198.51.100.1, 192.0.2.2")
    assert ratelimit.client_ip(proxied) == "192.0.2.2"


@pytest.mark.parametrize(("color", "text"), [("#0b5cad", "#ffffff"), ("#ffd400", "#111111"),
                                              ("#fff", "#111111"), ("#000", "#ffffff")])
def test_text_on_the_brand_colour_is_readable(settings, color, text):
    settings.BRAND_PRIMARY_COLOR = color
    brand = branding.brand()
    assert brand["on_primary"] == text
    assert branding.contrast_ratio(color, text) >= 4.5
    assert branding.contrast_ratio(brand["link"], "#ffffff") >= 4.5


def test_settings_checks(settings):
    assert check_public_page_settings() == []
    settings.BRAND_PRIMARY_COLOR = "blue; } body { display:none"
    settings.SIGNUP_RATE_LIMIT = "lots"
    settings.PREFERENCE_CENTER_BASE_URL = "mail.example.com"
    assert {e.id for e in check_public_page_settings()} == {"preferences.E001", "preferences.E002",
                                                            "preferences.E003"}
    assert branding.brand()["primary"] == "#0b5cad"  # never injected into the page's CSS
