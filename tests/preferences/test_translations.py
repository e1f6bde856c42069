"""Every public page and the confirmation email exist in all six languages, with nothing left in English."""

from __future__ import annotations

import gettext
import re
from html.parser import HTMLParser
from pathlib import Path

import pytest
from django.conf import settings
from django.test import Client
from django.utils import translation

from campaigns import actions as campaign_actions
from preferences import actions
from preferences.emails import confirmation_url, signup_confirmation_message
from preferences.links import PREFERENCE_SALT, sign
from subscribers.actions import ConsentEvidence
from subscribers.models import SubscriberStatus

LOCALE = Path(settings.BASE_DIR) / "locale"
LANGUAGES = [code for code, _name in settings.LANGUAGES]
TRANSLATED = [code for code in LANGUAGES if code != "en"]


def read_po(path: Path) -> list[tuple[str, str]]:
    """Return (msgid, msgstr) pairs of a .po file, header excluded (multi-line strings joined)."""
    entries, key, current = [], None, {"msgid": [], "msgstr": []}
    for line in path.read_text(encoding="utf-8").splitlines() + [""]:
        match = re.match(r'^(msgid|msgstr) "(.*)"$', line)
        if match:
            key = match.group(1)
            current[key] = [match.group(2)]
        elif line.startswith('"') and key:
            current[key].append(line[1:-1])
        elif not line.strip() and current["msgid"]:
            msgid, msgstr = ("".join(current[k]).replace('\\"', '"') for k in ("msgid", "msgstr"))
            if msgid:
                entries.append((msgid, msgstr))
            key, current = None, {"msgid": [], "msgstr": []}
    return entries


@pytest.mark.parametrize("code", LANGUAGES)
def test_every_message_is_translated_and_compiled(code):
    po = LOCALE / code / "LC_MESSAGES" / "django.po"
    mo = po.with_suffix(".mo")
    assert po.exists() and mo.exists(), f"run manage.py public_makemessages / compilemessages for {code}"
    entries = read_po(po)
    assert len(entries) > 80
    assert [msgid for msgid, msgstr in entries if not msgstr] == []
    assert "#, fuzzy" not in po.read_text(encoding="utf-8")
    compiled = gettext.GNUTranslations(mo.open("rb"))
    stale = [msgid for msgid, msgstr in entries if compiled.gettext(msgid.replace("\\n", "\n")) != msgstr]
    assert stale == [], "the .mo file is older than the .po file: run compilemessages"
    for msgid, msgstr in entries:  # placeholders survive translation
        assert sorted(re.findall(r"%\(\w+\)s", msgid)) == sorted(re.findall(r"%\(\w+\)s", msgstr)), msgid


class _Text(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.chunks: list[str] = []
        self._skip = 0

    def handle_starttag(self, tag, attrs):
        if tag in {"style", "script"}:
            self._skip += 1
        for name, value in attrs:  # text people meet outside the page body too
            if name in {"alt", "aria-label", "title", "placeholder"} and value:
                self.chunks.append(value)

    def handle_endtag(self, tag):
        if tag in {"style", "script"}:
            self._skip -= 1

    def handle_data(self, data):
        if not self._skip and data.strip():
            self.chunks.append(" ".join(data.split()))


def visible_text(html: str) -> set[str]:
    parser = _Text()
    parser.feed(html)
    return set(parser.chunks)


def pages(client: Client, *, language: str, person, topics) -> dict[str, str]:
    """Render every public page (and the confirmation email) for a person whose language is ``language``."""
    person.refresh_from_db()
    person.language = language
    person.save()
    token = sign(actions.ensure_preferences(person).token, salt=PREFERENCE_SALT)
    signup = actions.request_signup(email=f"new-{language}@example.com", language=language, topic_ids=[],
                                    evidence=ConsentEvidence(method="form"))
    confirm_path = confirmation_url(signup).replace(settings.PREFERENCE_CENTER_BASE_URL, "")
    rendered = {
        "center": client.get(f"/preferences/{token}/").content.decode(),
        "unsubscribe": client.get(f"/unsubscribe/{token}/").content.decode(),
        "erase": client.get(f"/preferences/{token}/erase/").content.decode(),
        "erase-error": client.post(f"/preferences/{token}/erase/", {}).content.decode(),
        "erased": client.get(f"/preferences/erased/?lang={language}").content.decode(),
        "signup": client.get(f"/signup/?lang={language}").content.decode(),
        "signup-error": client.post("/signup/", {"email": "nope", "lang": language}).content.decode(),
        "signup-sent": client.get(f"/signup/sent/?lang={language}").content.decode(),
        "confirm": client.get(confirm_path).content.decode(),
        "invalid": client.get(f"/preferences/{token}x/", HTTP_ACCEPT_LANGUAGE=language).content.decode(),
        "expired": client.get(f"/signup/confirm/{token}/?lang={language}").content.decode(),
    }
    message = signup_confirmation_message(signup)
    rendered["email-text"] = message.subject + "\n" + message.body
    rendered["email-html"] = message.alternatives[0][0]
    actions.confirm_signup(signup, evidence=ConsentEvidence(method="form"))
    rendered["confirmed"] = client.get(confirm_path).content.decode()
    actions.pause_emails(person, days=30, evidence=ConsentEvidence(method="preference_center"))
    rendered["center-paused"] = client.get(f"/preferences/{token}/").content.decode()
    actions.unsubscribe(person, evidence=ConsentEvidence(method="preference_center"))
    rendered["unsubscribed"] = client.get(f"/unsubscribe/{token}/done/").content.decode()
    rendered["center-unsubscribed"] = client.get(f"/preferences/{token}/").content.decode()
    actions.resubscribe(person, evidence=ConsentEvidence(method="preference_center"))
    from preferences.views import too_many_requests

    request = client.get("/signup/").wsgi_request
    with translation.override(language):
        rendered["rate-limited"] = too_many_requests(request, retry_after=60).content.decode()
    return rendered


@pytest.mark.django_db
def test_every_page_is_fully_translated_in_each_language(make_subscriber, topics):
    """Text shown in English and in another language must differ, except the person's own data.

    This catches a string a template forgot to mark for translation as well
    as a msgid without a translation.
    """
    person = make_subscriber(first_name="Anna", email="anna.k@example.com", status=SubscriberStatus.SUBSCRIBED)
    delivery = campaign_actions.create_delivery(subscriber_id=person.pk, message_key="campaign:7", why={
        "campaign": "Spring", "journey": "Welcome", "topic": "Offers", "segment": "Shoe buyers"})
    campaign_actions.record_sent(delivery_id=delivery.pk, esp_name="test")
    client = Client()
    english = pages(client, language="en", person=person, topics=topics)
    from preferences.forms import language_choices

    # The person's own data and the language names (each written in itself) are the same in every language.
    data = {t.name for t in topics} | {t.description for t in topics} | {settings.BRAND_NAME, "·", "Anna"}
    data |= {name for _code, name in language_choices()}
    for language in TRANSLATED:
        translated = pages(client, language=language, person=person, topics=topics)
        for name, html in translated.items():
            assert f'lang="{language}"' in html or name in {"email-text", "rate-limited"} or name == "email-html"
            same = visible_text(html) & visible_text(english[name])
            same = {text for text in same if text not in data and re.search(r"[A-Za-z]{3,}", text)
                    and "@" not in text}
            assert same == set(), f"{name} in {language} shows English: {sorted(same)}"
            with translation.override("en"):
                english_words = {m for m, _ in read_po(LOCALE / "en" / "LC_MESSAGES" / "django.po")
                                 if "%(" not in m and len(m) > 12}
            leaked = [m for m in english_words if m in html]
            assert leaked == [], f"{name} in {language} shows {leaked}"
