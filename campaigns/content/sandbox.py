"""The sandboxed template language of email content: Django's syntax, a documented tag and filter set.

Content is compiled by its own template ``Engine`` with no loaders and only
this library as builtins: no ``{% load %}``, ``{% include %}``,
``{% extends %}``, ``{% url %}`` or ``{% debug %}``, and the render context
holds plain data (dicts, lists, strings, numbers, dates), never model
instances, so a template cannot reach the database or call methods.

Tags: ``if`` / ``elif`` / ``else``, ``for`` / ``empty``, ``with``, ``firstof``,
``comment``, ``ifsegment "Segment name"`` / ``else`` (dynamic block: shown to
members of that segment), ``recommendations`` (the recipient's product
recommendations, see ``campaigns.content.personalize``).
``{% block_content "key" %}`` inserts a reusable content block; it is
resolved when the content is compiled, before any recipient is rendered.

Filters: ``default``, ``default_if_none``, ``upper``, ``lower``, ``title``,
``capfirst``, ``truncatewords``, ``truncatechars``, ``length``, ``first``,
``last``, ``join``, ``slice``, ``yesno``, ``urlencode``, ``linebreaksbr``,
``pluralize``, and the locale-aware ``money`` (``{{ total_spent|money }}``,
the recipient's currency and language), ``number``, ``date``
(``{{ last_order_at|date:"long" }}``: short, medium, long, or a Babel pattern).
"""

from __future__ import annotations

import datetime as dt
import functools
import re
from contextvars import ContextVar
from decimal import Decimal, InvalidOperation
from typing import Any

from babel import Locale, UnknownLocaleError
from babel.dates import format_date, format_datetime
from babel.numbers import format_currency, format_decimal, get_currency_precision
from django import template
from django.template import defaultfilters, defaulttags
from django.template.base import Node, NodeList, Parser, Token, TokenType

register = template.Library()

ALLOWED_TAGS = ("if", "for", "with", "firstof", "comment")
ALLOWED_FILTERS = ("default", "default_if_none", "upper", "lower", "title", "capfirst", "truncatewords",
                   "truncatechars", "length", "first", "last", "join", "slice", "yesno", "urlencode",
                   "linebreaksbr", "pluralize")

for _name in ALLOWED_TAGS:
    register.tags[_name] = defaulttags.register.tags[_name]
for _name in ALLOWED_FILTERS:
    register.filters[_name] = defaultfilters.register.filters[_name]

SEGMENTS_KEY = "segments"


class IfSegmentNode(Node):
    def __init__(self, segment: str, inside: NodeList, otherwise: NodeList):
        self.segment, self.inside, self.otherwise = segment, inside, otherwise

    def render(self, context: Any) -> str:
        members_of = context.get(SEGMENTS_KEY) or ()
        branch = self.inside if self.segment in members_of else self.otherwise
        return branch.render(context)


@register.tag("ifsegment")
def do_ifsegment(parser: Parser, token: Token) -> IfSegmentNode:
    """``{% ifsegment "Loyal customers" %}…{% else %}…{% endifsegment %}``: content per segment."""
    bits = token.split_contents()
    if len(bits) != 2 or bits[1][0] not in "\"'" or bits[1][-1] != bits[1][0]:
        raise template.TemplateSyntaxError('Write {% ifsegment "Segment name" %}, with the name in quotes.')
    inside = parser.parse(("else", "endifsegment"))
    otherwise = NodeList()
    if parser.next_token().contents == "else":
        otherwise = parser.parse(("endifsegment",))
        parser.delete_first_token()
    return IfSegmentNode(bits[1][1:-1], inside, otherwise)


def segments_used(source: str) -> list[str]:
    """Return the segment names a template's ``ifsegment`` blocks name, in order of first use."""
    from django.template.base import Lexer

    names: list[str] = []
    for token in Lexer(source).tokenize():
        if token.token_type == TokenType.BLOCK:
            bits = token.split_contents()
            if bits and bits[0] == "ifsegment" and len(bits) == 2 and bits[1][:1] in "\"'":
                name = bits[1][1:-1]
                if name not in names:
                    names.append(name)
    return names


class RecommendationsNode(Node):
    def __init__(self, body: NodeList, limit: int, empty: NodeList):
        self.body, self.limit, self.empty = body, limit, empty

    def render(self, context: Any) -> str:
        items = list(context.get("recommendations") or [])[: self.limit]
        if not items:
            return self.empty.render(context)
        parts = []
        with context.push():
            for item in items:
                context["product"] = item
                parts.append(self.body.render(context))
        return "".join(parts)


@register.tag("recommendations")
def do_recommendations(parser: Parser, token: Token) -> RecommendationsNode:
    """``{% recommendations 3 %}{{ product.name }}…{% empty %}…{% endrecommendations %}``."""
    bits = token.split_contents()
    limit = 3
    if len(bits) == 2:
        try:
            limit = max(1, min(12, int(bits[1])))
        except ValueError:
            raise template.TemplateSyntaxError("Write {% recommendations 3 %}: how many products, 1 to 12.") from None
    elif len(bits) > 2:
        raise template.TemplateSyntaxError("Write {% recommendations 3 %}: how many products, 1 to 12.")
    body = parser.parse(("empty", "endrecommendations"))
    empty = NodeList()
    if parser.next_token().contents == "empty":
        empty = parser.parse(("endrecommendations",))
        parser.delete_first_token()
    return RecommendationsNode(body, limit, empty)


# The recipient's locale and currency while one message renders (set by ``rendering``).
RECIPIENT_LOCALE: ContextVar[tuple[str, str]] = ContextVar("recipient_locale", default=("en", "EUR"))


def _decimal(value: Any) -> Decimal | None:
    if value in (None, "") or isinstance(value, bool):
        return None
    try:
        amount = Decimal(str(value))
    except InvalidOperation:
        return None
    return amount if amount.is_finite() else None


@functools.lru_cache(maxsize=512)
def _number_style(locale: str, currency: str) -> tuple[str, str, str, str, int] | None:
    """Return (prefix, suffix, group, decimal, digits) of a locale's currency (or plain number) format.

    Derived once from Babel's output for a sample amount, so each amount
    then formats with plain string operations (Babel's pattern engine costs
    ≈ 40 µs a call). None when the locale groups digits other than by three.
    """
    try:
        parsed = Locale.parse(locale.replace("-", "_"))
    except (ValueError, UnknownLocaleError):
        parsed = Locale.parse("en")
    pattern = parsed.currency_formats["standard"] if currency else parsed.decimal_formats[None]
    if pattern.grouping != (3, 3):
        return None
    digits = get_currency_precision(currency) if currency else 2
    sample = (format_currency(Decimal("1234567.89"), currency, locale=parsed) if currency
              else format_decimal(Decimal("1234567.89"), locale=parsed, decimal_quantization=False))
    positions = [m.start() for m in re.finditer(r"\d", sample)]
    if not positions:
        return None
    start, end = positions[0], positions[-1] + 1
    body = sample[start:end]
    match = re.fullmatch(r"1(?P<group>\D?)234(?P=group)567(\D)89", body)
    if match is None:
        return None
    return sample[:start], sample[end:], match.group("group"), match.group(2), digits


def _fast_format(amount: Decimal, style: tuple[str, str, str, str, int], digits: int | None = None) -> str:
    prefix, suffix, group, decimal, default_digits = style
    places = default_digits if digits is None else digits
    text = f"{abs(amount):,.{places}f}".replace(",", "\x00").replace(".", decimal).replace("\x00", group)
    sign = "-" if amount < 0 else ""
    return f"{sign}{prefix}{text}{suffix}"


@register.filter
def money(value: Any, currency: str = "") -> str:
    """Format an amount in the recipient's currency and language: ``{{ total_spent|money }}`` → “€1,234.50”."""
    # Not ``value in (None, "")``: comparing a Decimal with None and "" costs more than the rest of the filter.
    if value is None or isinstance(value, bool) or (isinstance(value, str) and not value):
        return ""
    locale, default_currency = RECIPIENT_LOCALE.get()
    return _money_text(str(value), locale, (currency or default_currency or "EUR").upper())


@functools.lru_cache(maxsize=8192)
def _money_text(text: str, locale: str, code: str) -> str:
    """``money`` for an amount's text (prices and totals recur from one recipient to the next)."""
    amount = _decimal(text)
    if amount is None:
        return ""
    style = _number_style(locale, code)
    if style is None:
        return format_currency(amount, code, locale=locale)
    return _fast_format(amount, style)


@register.filter
def number(value: Any, digits: Any = None) -> str:
    """Format a number for the recipient's language: ``{{ points|number }}`` → “12 345” in Latvian."""
    amount = _decimal(value)
    if amount is None:
        return ""
    places = int(digits) if digits not in (None, "") else (0 if amount == amount.to_integral_value() else None)
    style = _number_style(RECIPIENT_LOCALE.get()[0], "")
    if style is None:
        return format_decimal(amount if places is None else round(amount, places), locale=RECIPIENT_LOCALE.get()[0])
    if places is None:
        places = min(3, max(0, -amount.normalize().as_tuple().exponent))
    return _fast_format(amount, style, places)


DATE_STYLES = {"short", "medium", "long", "full"}


@functools.lru_cache(maxsize=8192)
def _format_day(day: dt.date, style: str, locale: str) -> str:
    return format_date(day, style, locale=locale)


@register.filter(name="date")
def date_filter(value: Any, style: str = "medium") -> str:
    """Format the date of a date or time for the recipient's language: short, medium (default), long, full."""
    day = _as_moment(value)
    if day is None:
        return "" if value in (None, "") else str(value)
    if isinstance(day, dt.datetime):
        day = day.date()
    return _format_day(day, style if style in DATE_STYLES else "medium", RECIPIENT_LOCALE.get()[0])


@register.filter(name="datetime")
def datetime_filter(value: Any, style: str = "medium") -> str:
    """Format a date and time (UTC) for the recipient's language: short, medium (default), long, full."""
    moment = _as_moment(value)
    if moment is None:
        return "" if value in (None, "") else str(value)
    if not isinstance(moment, dt.datetime):
        return _format_day(moment, style if style in DATE_STYLES else "medium", RECIPIENT_LOCALE.get()[0])
    return format_datetime(moment, style if style in DATE_STYLES else "medium", locale=RECIPIENT_LOCALE.get()[0])


def _as_moment(value: Any) -> dt.date | None:
    if isinstance(value, dt.date):
        return value
    if isinstance(value, str) and value:
        try:
            return dt.datetime.fromisoformat(value) if ("T" in value or " " in value) else dt.date.fromisoformat(value)
        except ValueError:
            return None
    return None
