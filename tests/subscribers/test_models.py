import datetime as dt

import pytest
from django.core.exceptions import ValidationError
from django.db import IntegrityError

from subscribers.models import (
    ConsentMethod,
    ConsentPurpose,
    ConsentRecord,
    Subscriber,
    coerce_attribute_value,
    email_key,
    normalize_email,
    validate_attribute_values,
)


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("  Ann.Lee@Example.COM ", "Ann.Lee@example.com"),
        ("bob@EXAMPLE.org", "bob@example.org"),
        ("weird@x@Host.LV", "weird@x@host.lv"),
        ("no-at-sign", "no-at-sign"),
    ],
)
def test_normalize_email_trims_and_lowercases_domain_only(raw, expected):
    assert normalize_email(raw) == expected


def test_email_is_unique_case_insensitively(make_subscriber):
    make_subscriber(email="Ann@example.com")
    with pytest.raises(IntegrityError):
        make_subscriber(email="ANN@EXAMPLE.COM ")


def test_save_keeps_local_part_case_and_derives_key(make_subscriber):
    s = make_subscriber(email=" Ann.Lee@EXAMPLE.com")
    s.refresh_from_db()
    assert s.email == "Ann.Lee@example.com"
    assert s.email_key == email_key("ann.lee@example.com") == "ann.lee@example.com"


def test_birth_date_fills_birthday_month_and_day(make_subscriber):
    s = make_subscriber(birth_date=dt.date(1990, 2, 28))
    assert (s.birthday_month, s.birthday_day) == (2, 28)


def test_unknown_timezone_is_rejected_in_plain_words(db):
    s = Subscriber(email="a@example.com", timezone="Mars/Olympus")
    with pytest.raises(ValidationError) as exc:
        s.full_clean()
    assert "not a known time zone" in str(exc.value)


def test_known_timezone_is_accepted(db):
    Subscriber(email="a@example.com", timezone="Europe/Riga").full_clean()


@pytest.mark.parametrize(
    ("kind", "choices", "raw", "expected"),
    [
        ("number", [], "42", 42),
        ("number", [], "3,5", 3.5),
        ("date", [], "2024-02-29", "2024-02-29"),
        ("boolean", [], "Yes", True),
        ("boolean", [], "0", False),
        ("choice", ["Gold", "Silver"], "gold", "Gold"),
        ("text", [], "  hi ", "hi"),
        ("number", [], "", None),
    ],
)
def test_attribute_values_are_coerced_to_their_type(kind, choices, raw, expected):
    assert coerce_attribute_value(kind, choices, raw, "Label") == expected


@pytest.mark.parametrize(
    ("kind", "choices", "raw", "message"),
    [
        ("number", [], "many", "must be a number"),
        ("date", [], "2023-02-30", "must be a date"),
        ("boolean", [], "perhaps", "must be yes or no"),
        ("choice", ["Gold"], "Bronze", "must be one of Gold"),
    ],
)
def test_bad_attribute_values_are_explained(kind, choices, raw, message):
    with pytest.raises(ValidationError) as exc:
        coerce_attribute_value(kind, choices, raw, "Tier")
    assert message in " ".join(exc.value.messages)


def test_attribute_values_must_be_in_catalogue(attribute):
    attribute("shoe_size", "number")
    assert validate_attribute_values({"shoe_size": "41"}) == {"shoe_size": 41}
    with pytest.raises(ValidationError) as exc:
        validate_attribute_values({"shoe_size": "big", "unknown_key": 1})
    text = " ".join(exc.value.messages)
    assert "shoe_size" in text and "must be a number" in text
    assert "unknown_key" in text and "not in the attribute catalogue" in text


def test_consent_ledger_is_append_only(make_subscriber):
    s = make_subscriber()
    record = ConsentRecord.objects.create(subscriber=s, purpose=ConsentPurpose.EMAIL_MARKETING, granted=True,
                                          method=ConsentMethod.FORM)
    record.granted = False
    with pytest.raises(TypeError):
        record.save()
    with pytest.raises(TypeError):
        record.delete()
    with pytest.raises(TypeError):
        ConsentRecord.objects.filter(pk=record.pk).update(granted=False)
    with pytest.raises(TypeError):
        ConsentRecord.objects.filter(pk=record.pk).delete()
    record.refresh_from_db()
    assert record.granted is True


def test_topic_consent_needs_a_topic(make_subscriber):
    s = make_subscriber()
    with pytest.raises(IntegrityError):
        ConsentRecord.objects.create(subscriber=s, purpose=ConsentPurpose.TOPIC, granted=True,
                                     method=ConsentMethod.FORM)
