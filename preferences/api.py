"""What other apps may ask of preferences: links for emails and what the sending policy gate must honour.

Keyword-only where it takes ids, plain return values. The link helpers
create the person's preferences row (and its random token) on first use.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from dataclasses import dataclass, field

from django.conf import settings
from django.db.models import OuterRef, Subquery
from django.urls import reverse
from django.utils import timezone

from preferences import actions
from preferences.links import PREFERENCE_SALT, sign
from preferences.models import Frequency, TopicSubscription
from subscribers.models import ConsentPurpose, ConsentRecord, Subscriber

# The shortest time between two marketing emails per frequency (None: no limit).
FREQUENCY_INTERVALS: dict[str, dt.timedelta | None] = {
    Frequency.EVERY: None,
    Frequency.WEEKLY: dt.timedelta(days=7),
    Frequency.MONTHLY: dt.timedelta(days=30),
}


def _absolute(path: str) -> str:
    return settings.PREFERENCE_CENTER_BASE_URL + path


def _signed(token: str) -> str:
    return sign(token, salt=PREFERENCE_SALT)


def preference_url(subscriber: Subscriber) -> str:
    """Return the absolute link to the person's preference center (no id or address in it)."""
    token = actions.ensure_preferences(subscriber).token
    return _absolute(reverse("preferences:center", args=[_signed(token)]))


def unsubscribe_url(subscriber: Subscriber) -> str:
    """Return the absolute unsubscribe link: a confirmation page on GET, RFC 8058 one-click on POST."""
    token = actions.ensure_preferences(subscriber).token
    return _absolute(reverse("preferences:unsubscribe", args=[_signed(token)]))


def list_unsubscribe_headers(subscriber: Subscriber) -> dict[str, str]:
    """Return the List-Unsubscribe and List-Unsubscribe-Post headers (RFC 2369, RFC 8058) for a marketing email."""
    return {
        "List-Unsubscribe": f"<{unsubscribe_url(subscriber)}>",
        "List-Unsubscribe-Post": "List-Unsubscribe=One-Click",
    }


@dataclass(frozen=True)
class PreferenceLinks:
    preference_url: str
    unsubscribe_url: str
    headers: dict[str, str]


def preference_links(*, subscriber_ids: Iterable[int],
                     preferences: dict[int, SendingPreferences] | None = None) -> dict[int, PreferenceLinks]:
    """Return the links and headers of many people at once (a send chunk): two queries, any size.

    ``preferences``: their ``sending_preferences_for`` when the caller has
    already read them; only people without a link token yet are looked up.
    """
    links = {}
    # reverse() once per route, not per person: a send chunk makes thousands of links.
    center = _absolute(reverse("preferences:center", args=["TOKEN"])).partition("TOKEN")
    unsubscribe_route = _absolute(reverse("preferences:unsubscribe", args=["TOKEN"])).partition("TOKEN")
    known = {pk: p.token for pk, p in (preferences or {}).items() if p.token}
    for subscriber_id, token in actions.ensure_preferences_for(subscriber_ids=subscriber_ids, known=known).items():
        signed = _signed(token)
        unsubscribe = f"{unsubscribe_route[0]}{signed}{unsubscribe_route[2]}"
        links[subscriber_id] = PreferenceLinks(
            preference_url=f"{center[0]}{signed}{center[2]}",
            unsubscribe_url=unsubscribe,
            headers={"List-Unsubscribe": f"<{unsubscribe}>", "List-Unsubscribe-Post": "List-Unsubscribe=One-Click"},
        )
    return links


@dataclass(frozen=True)
class SendingPreferences:
    """What the sending policy gate must honour for one person, besides status, consent and suppression.

    ``min_interval``: no marketing email sooner than this after the previous
    one (None: every email). ``paused_until``: defer until then (None or
    past: not paused). ``personalization_allowed``: False means only
    non-behavioural content (no segments on events/orders, no product
    recommendations) may be used for this person. ``language``: the
    person's language, or "" for the site default.
    """

    subscriber_id: int
    frequency: str
    min_interval: dt.timedelta | None
    paused_until: dt.datetime | None
    personalization_allowed: bool
    language: str
    #: Their preference and unsubscribe link token ("" before their preferences row exists).
    token: str = field(default="", repr=False)

    def is_paused(self, at: dt.datetime | None = None) -> bool:
        return self.paused_until is not None and self.paused_until > (at or timezone.now())


def sending_preferences_for(*, subscriber_ids: Iterable[int]) -> dict[int, SendingPreferences]:
    """Return the sending preferences of many people in one query (defaults for people without a row)."""
    ids = list(subscriber_ids)
    latest_personalization = (
        ConsentRecord.objects.filter(subscriber_id=OuterRef("pk"), purpose=ConsentPurpose.PERSONALIZATION)
        .order_by("-occurred_at", "-id").values("granted")[:1]
    )
    rows = (Subscriber.objects.filter(pk__in=ids).order_by()
            .annotate(personalization=Subquery(latest_personalization))
            .values_list("pk", "language", "preferences__frequency", "preferences__paused_until", "personalization",
                         "preferences__token"))
    result = {}
    for pk, language, frequency, paused_until, personalization, token in rows:
        frequency = frequency or Frequency.EVERY
        result[pk] = SendingPreferences(
            subscriber_id=pk, frequency=frequency, min_interval=FREQUENCY_INTERVALS[frequency],
            paused_until=paused_until, personalization_allowed=personalization is not False,
            language=actions.supported_language(language) or "", token=token or "",
        )
    return result


def sending_preferences(*, subscriber_id: int) -> SendingPreferences | None:
    """Return one person's sending preferences, or None for an unknown id."""
    return sending_preferences_for(subscriber_ids=[subscriber_id]).get(subscriber_id)


def subscribed_topic_ids(*, subscriber_id: int) -> set[int]:
    """Return the topics the person is subscribed to now."""
    return set(TopicSubscription.objects.filter(subscriber_id=subscriber_id, subscribed=True)
               .values_list("topic_id", flat=True))

