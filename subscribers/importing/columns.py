"""Map CSV headers to subscriber fields and turn cell text into clean values.

The alias table is documented in docs/importing.md; keep the two in step.
Headers are compared after lower-casing and dropping everything but letters
and digits, so "Email Address", "email_address" and "E-mail address" match.
"""

from __future__ import annotations

import csv
import datetime as dt
import ipaddress
import re
from collections.abc import Callable
from functools import lru_cache
from typing import Any

from django.conf.locale import LANG_INFO
from django.core.exceptions import ValidationError
from django.core.validators import EmailValidator, validate_email
from django_countries import countries

from subscribers.models import Gender, normalize_email, timezone_names


class CellError(ValueError):
    """A cell's value is not acceptable; the message is shown to the marketer."""


def header_key(header: str) -> str:
    return re.sub(r"[^a-z0-9]", "", header.strip().lower())


# Field -> header spellings seen in real exports (Mailchimp, Klaviyo, Brevo,
# HubSpot, Excel lists). Compared by header_key().
ALIASES: dict[str, tuple[str, ...]] = {
    "email": ("email", "emailaddress", "e-mail", "mail", "emailaddr", "subscriberemail"),
    "first_name": ("firstname", "fname", "givenname", "first", "forename"),
    "last_name": ("lastname", "lname", "surname", "familyname", "last"),
    "phone": ("phone", "phonenumber", "mobile", "mobilephone", "telephone", "tel", "sms"),
    "birthday": ("birthday", "birthdate", "dateofbirth", "dob"),
    "language": ("language", "lang", "locale", "preferredlanguage"),
    "country": ("country", "cc", "countrycode", "countryname"),
    "region": ("region", "state", "province", "county", "stateprovince"),
    "city": ("city", "town", "locality"),
    "timezone": ("timezone", "tz", "timezonename", "ianatimezone"),
    "gender": ("gender", "sex"),
    "company": ("company", "companyname", "organization", "organisation", "employer"),
    "job_title": ("jobtitle", "title", "position"),
    "industry": ("industry", "sector"),
    "source": ("source", "signupsource", "leadsource"),
    "external_id": ("externalid", "userid", "customerid", "shopuserid"),
    "tags": ("tags", "tag", "labels"),
    "optin_time": ("optintime", "optindate", "subscribedat", "signupdate", "consentdate", "createdat"),
    "optin_ip": ("optinip", "ip", "ipaddress", "signupip", "consentip"),
    "confirm_time": ("confirmtime", "confirmedat", "confirmationdate"),
}

# Columns that real exports carry but that describe the sending tool rather
# than the person; reported as "not imported" without alarm.
KNOWN_IGNORED = frozenset(
    header_key(h)
    for h in (
        "MEMBER_RATING", "LATITUDE", "LONGITUDE", "GMTOFF", "DSTOFF", "LAST_CHANGED", "LEID", "EUID",
        "NOTES", "CONFIRM_IP", "UNSUB_TIME", "UNSUB_CAMPAIGN_TITLE", "UNSUB_CAMPAIGN_ID", "UNSUB_REASON",
        "UNSUB_REASON_OTHER", "CLEAN_TIME", "CLEAN_CAMPAIGN_TITLE", "CLEAN_CAMPAIGN_ID", "MARKETING_PERMISSIONS",
    )
)

_ALIAS_LOOKUP = {header_key(alias): field for field, aliases in ALIASES.items() for alias in aliases}

# What each target is called on screen (the import page's column list).
LABELS: dict[str, str] = {
    "email": "Email", "first_name": "First name", "last_name": "Last name", "phone": "Phone",
    "birthday": "Birthday", "language": "Language", "country": "Country", "region": "Region", "city": "City",
    "timezone": "Time zone", "gender": "Gender", "company": "Company", "job_title": "Job title",
    "industry": "Industry", "source": "Source", "external_id": "External id", "tags": "Tags",
    "optin_time": "Consent time (opt-in)", "optin_ip": "Consent IP address (opt-in)",
    "confirm_time": "Confirmed at (double opt-in)",
}


def target_label(target: str, attribute_labels: dict[str, str]) -> str:
    """Name a column's target for people: a profile field, or a catalogue attribute (``attribute:<key>``)."""
    if target.startswith("attribute:"):
        key = target.split(":", 1)[1]
        return f"{attribute_labels.get(key, key)} (attribute)"
    return LABELS.get(target, target)

# Longest value each text field accepts (the model's max_length).
MAX_LENGTH = {
    "email": 254, "first_name": 150, "last_name": 150, "phone": 40, "region": 100, "city": 100,
    "company": 200, "job_title": 200, "industry": 100, "source": 100, "external_id": 255,
}


def field_for_header(header: str) -> str | None:
    return _ALIAS_LOOKUP.get(header_key(header))


@lru_cache(maxsize=1)
def _country_lookup() -> dict[str, str]:
    table: dict[str, str] = {}
    for code, name in countries:
        table[code.lower()] = code
        table[name.lower()] = code
        alpha3 = countries.alpha3(code)
        if alpha3:
            table[alpha3.lower()] = code
    table.update({"uk": "GB", "great britain": "GB", "england": "GB", "usa": "US", "u.s.": "US",
                  "u.s.a.": "US", "united states of america": "US", "the netherlands": "NL", "holland": "NL"})
    return table


@lru_cache(maxsize=1)
def _language_lookup() -> dict[str, str]:
    table: dict[str, str] = {}
    for code, info in LANG_INFO.items():
        if "name" not in info:
            continue
        table[code.lower()] = code
        table[info["name"].lower()] = code
        table[info.get("name_local", "").lower()] = code
    table.pop("", None)
    return table


_GENDER_WORDS = {
    "f": Gender.FEMALE, "female": Gender.FEMALE, "woman": Gender.FEMALE, "w": Gender.FEMALE,
    "m": Gender.MALE, "male": Gender.MALE, "man": Gender.MALE,
    "nonbinary": Gender.NON_BINARY, "non-binary": Gender.NON_BINARY, "nb": Gender.NON_BINARY,
    "non_binary": Gender.NON_BINARY, "other": Gender.OTHER, "diverse": Gender.OTHER, "x": Gender.OTHER,
    "prefer not to say": Gender.PREFER_NOT_TO_SAY, "prefer_not_to_say": Gender.PREFER_NOT_TO_SAY,
    "not specified": Gender.PREFER_NOT_TO_SAY, "unspecified": Gender.PREFER_NOT_TO_SAY,
}


# Django's own email rules for the common form (a dot-atom before the @, a
# host name after it) in one compiled pattern: an address it matches is one
# validate_email() accepts, at a fraction of the cost. Anything else (quoted
# local parts, [literal] addresses, localhost) goes to validate_email().
_PLAIN_EMAIL = re.compile(
    r"[-!#$%&'*+/=?^_`{}|~0-9A-Z]+(?:\.[-!#$%&'*+/=?^_`{}|~0-9A-Z]+)*@"
    + EmailValidator.hostname_re + EmailValidator.domain_re + EmailValidator.tld_no_fqdn_re,
    re.IGNORECASE,
)


def parse_email(value: str) -> str:
    email = normalize_email(value)
    if len(email) > MAX_LENGTH["email"]:
        raise CellError("is longer than 254 characters")
    if _PLAIN_EMAIL.fullmatch(email) is None:
        try:
            validate_email(email)
        except ValidationError:
            raise CellError(f"“{value}” is not a valid email address") from None
    return email


def parse_country(value: str) -> str:
    code = _country_lookup().get(value.lower())
    if code is None:
        raise CellError(f"“{value}” is not a country we know; use a name or a two-letter code like LV")
    return code


def parse_language(value: str) -> str:
    lookup = _language_lookup()
    key = value.lower().replace("_", "-")
    code = lookup.get(key) or lookup.get(key.split("-")[0])
    if code is None:
        raise CellError(f"“{value}” is not a language we know; use a code like en, lv or pl")
    return code


def parse_timezone(value: str) -> str:
    if value not in timezone_names():
        raise CellError(f"“{value}” is not a known time zone; use a name like Europe/Riga")
    return value


def parse_gender(value: str) -> str:
    gender = _GENDER_WORDS.get(value.lower())
    if gender is None:
        raise CellError(f"“{value}” is not a gender we understand; use female, male, non-binary, other "
                        "or prefer not to say")
    return str(gender)


def parse_birthday(value: str) -> tuple[dt.date | None, int, int]:
    """Return (full date or None, month, day) from YYYY-MM-DD, MM/DD/YYYY, DD.MM.YYYY or MM/DD."""
    year: int | None
    try:
        if "-" in value:
            year, month, day = (int(p) for p in value.split("-"))
        elif "." in value:
            day, month, year = (int(p) for p in value.split("."))
        elif "/" in value:
            parts = [int(p) for p in value.split("/")]
            if len(parts) == 2:
                (month, day), year = parts, None
            else:
                month, day, year = parts
        else:
            raise ValueError
    except ValueError:
        raise CellError(f"“{value}” is not a date; write it as YYYY-MM-DD or MM/DD") from None
    try:
        # 2000 is a leap year, so 02/29 without a year is accepted.
        date = dt.date(year if year is not None else 2000, month, day)
    except ValueError:
        raise CellError(f"“{value}” is not a real date") from None
    if year is not None:
        if date > dt.date.today():
            raise CellError(f"“{value}” is in the future")
        if year < 1900:
            raise CellError(f"“{value}” is too long ago to be a birth date")
        return date, month, day
    return None, month, day


def parse_datetime(value: str) -> dt.datetime:
    """Return an aware UTC datetime; times without an offset are taken as UTC (as Mailchimp writes them)."""
    text = value.strip()
    parsed: dt.datetime | None = None
    try:
        parsed = dt.datetime.fromisoformat(text)
    except ValueError:
        for fmt in ("%m/%d/%Y %H:%M:%S", "%m/%d/%Y %H:%M", "%m/%d/%Y", "%d.%m.%Y %H:%M", "%d.%m.%Y"):
            try:
                parsed = dt.datetime.strptime(text, fmt)
                break
            except ValueError:
                continue
    if parsed is None:
        raise CellError(f"“{value}” is not a date and time; write it as YYYY-MM-DD HH:MM:SS")
    if parsed.tzinfo is None:
        return parsed.replace(tzinfo=dt.UTC)
    return parsed.astimezone(dt.UTC)


def parse_ip(value: str) -> str:
    try:
        return str(ipaddress.ip_address(value))
    except ValueError:
        raise CellError(f"“{value}” is not an IP address") from None


def parse_tags(value: str) -> list[str]:
    """Read Mailchimp's ``"a","b"`` form as well as plain comma- or semicolon-separated tags."""
    if '"' in value:
        parts = next(csv.reader([value], skipinitialspace=True), [])
    else:
        parts = re.split(r"[,;]", value)
    seen: dict[str, None] = {}
    for part in parts:
        tag = part.strip()
        if tag:
            seen.setdefault(tag[:100], None)
    return list(seen)


def text_parser(field: str) -> Callable[[str], str]:
    limit = MAX_LENGTH[field]

    def parse(value: str) -> str:
        if len(value) > limit:
            raise CellError(f"is longer than {limit} characters")
        return value

    return parse


PARSERS: dict[str, Callable[[str], Any]] = {
    "email": parse_email,
    "country": parse_country,
    "language": parse_language,
    "timezone": parse_timezone,
    "gender": parse_gender,
    "birthday": parse_birthday,
    "optin_time": parse_datetime,
    "confirm_time": parse_datetime,
    "optin_ip": parse_ip,
    "tags": parse_tags,
    **{f: text_parser(f) for f in MAX_LENGTH if f != "email"},
}
