"""Forms of the public pages: the preference center, signup and erasure confirmation."""

from __future__ import annotations

import time
from typing import Any

from django import forms
from django.conf import settings
from django.core import signing
from django.utils import formats
from django.utils.translation import get_language_info
from django.utils.translation import gettext_lazy as _

from preferences.actions import PAUSE_DAYS, PreferenceChoices
from preferences.models import Frequency

FORM_TIME_SALT = "preferences.signup-form-time.v1"
# A person needs a few seconds to type an address; bots post at once.
MIN_FILL_SECONDS = 2


def frequency_choices() -> list[tuple[str, Any]]:
    return [
        (Frequency.EVERY, _("Every email we send")),
        (Frequency.WEEKLY, _("At most one email a week")),
        (Frequency.MONTHLY, _("At most one email a month")),
    ]


def language_choices() -> list[tuple[str, str]]:
    """Return the site's languages, each named in itself (a person finds their own language that way)."""
    choices = []
    for code, _name in settings.LANGUAGES:
        try:
            local = get_language_info(code)["name_local"]
        except KeyError:
            local = code
        choices.append((code, local[:1].upper() + local[1:]))
    return choices


class PreferencesForm(forms.Form):
    """Topics (one checkbox each), frequency, language, pause and personalization."""

    frequency = forms.ChoiceField(label=_("How often"), widget=forms.RadioSelect)
    language = forms.ChoiceField(label=_("Language of our emails and this page"))
    pause = forms.ChoiceField(label=_("Pause"), widget=forms.RadioSelect, required=False)
    personalization = forms.BooleanField(
        label=_("Use what I browse and buy to tailor my emails"), required=False,
        help_text=_("When this is off we send you the same content as everyone else on your topics."),
    )

    def __init__(self, *args: Any, topics: list[dict[str, Any]], paused_until: Any = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.topics = topics
        for topic in topics:
            self.fields[f"topic_{topic['id']}"] = forms.BooleanField(
                label=topic["name"], required=False, help_text=topic["description"]
            )
        self.fields["frequency"].choices = frequency_choices()
        self.fields["language"].choices = language_choices()
        self.fields["pause"].choices = pause_choices(paused_until)

    def choices(self) -> PreferenceChoices:
        data = self.cleaned_data
        return PreferenceChoices(
            topics={topic["id"]: bool(data.get(f"topic_{topic['id']}")) for topic in self.topics},
            frequency=data["frequency"], language=data["language"], pause=data.get("pause") or "",
            personalization=bool(data.get("personalization")),
        )


def pause_choices(paused_until: Any) -> list[tuple[str, Any]]:
    """Return the pause options: keep/resume a running pause, or start one of 30, 60 or 90 days."""
    if paused_until:
        until = formats.date_format(paused_until, "DATE_FORMAT")
        pause = [("", _("Stay paused until %(date)s") % {"date": until}), ("resume", _("Resume emails now"))]
        return pause + [(str(d), label) for d, label in _pause_labels(extend=True)]
    return [("", _("Don't pause"))] + [(str(d), label) for d, label in _pause_labels(extend=False)]


def _pause_labels(*, extend: bool) -> list[tuple[int, Any]]:
    if extend:
        labels = {30: _("Pause for 30 days from today"), 60: _("Pause for 60 days from today"),
                  90: _("Pause for 90 days from today")}
    else:
        labels = {30: _("Pause for 30 days"), 60: _("Pause for 60 days"), 90: _("Pause for 90 days")}
    return [(days, labels[days]) for days in PAUSE_DAYS]


def form_time_token() -> str:
    return signing.dumps(int(time.time()), salt=FORM_TIME_SALT)


class SignupForm(forms.Form):
    """The public signup form, with a honeypot and a signed render time against bots."""

    email = forms.EmailField(label=_("Email address"), max_length=254,
                             widget=forms.EmailInput(attrs={"autocomplete": "email", "inputmode": "email"}))
    first_name = forms.CharField(label=_("First name (optional)"), max_length=150, required=False,
                                 widget=forms.TextInput(attrs={"autocomplete": "given-name"}),
                                 error_messages={"max_length": _("Please keep your first name under 150 characters.")})
    topics = forms.MultipleChoiceField(label=_("What would you like to hear about?"), required=False,
                                       widget=forms.CheckboxSelectMultiple,
                                       error_messages={"invalid_choice": _("Please choose from the topics listed.")})
    # Honeypot: hidden from people (and from assistive technology); bots fill every field.
    website = forms.CharField(required=False, label=_("Leave this field empty"),
                              widget=forms.TextInput(attrs={"autocomplete": "off", "tabindex": "-1"}))
    t = forms.CharField(required=False, widget=forms.HiddenInput)
    lang = forms.CharField(required=False, widget=forms.HiddenInput)

    def __init__(self, *args: Any, topics: list[dict[str, Any]], **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.topics = topics
        self.fields["topics"].choices = [(t["slug"], t["name"]) for t in topics]
        if not self.is_bound:
            self.initial.setdefault("topics", [t["slug"] for t in topics if t["default_opt_in"]])
            self.initial.setdefault("t", form_time_token())

    def looks_like_a_bot(self) -> bool:
        """Say whether the honeypot was filled or the render-time stamp was forged."""
        if self.cleaned_data.get("website"):
            return True
        return self._seconds_to_fill() == -1

    def came_back_too_fast(self) -> bool:
        """Say whether the form came back faster than a person types.

        Browser autofill can be that fast, so such a form is shown again,
        filled in, to be sent once more rather than dropped.
        """
        return 0 <= self._seconds_to_fill() < MIN_FILL_SECONDS

    def _seconds_to_fill(self) -> float:
        """Seconds from render to submit; infinite without a stamp (an embedded snippet), -1 if forged."""
        stamp = self.cleaned_data.get("t")
        if not stamp:
            return float("inf")
        try:
            rendered = signing.loads(stamp, salt=FORM_TIME_SALT, max_age=60 * 60 * 24)
        except signing.BadSignature:
            return -1
        return max(time.time() - int(rendered), 0)

    def topic_entries(self) -> list[dict[str, Any]]:
        """Return each topic with its checkbox state, for a template that shows descriptions too."""
        selected = set(self.data.getlist("topics") if self.is_bound else self.initial.get("topics", []))
        return [{**t, "checked": t["slug"] in selected} for t in self.topics]


class EraseForm(forms.Form):
    confirm = forms.BooleanField(label=_("I understand that this erases my data for good and cannot be undone."))
