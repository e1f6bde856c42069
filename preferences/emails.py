"""Build the double opt-in confirmation email, in the language the person signed up in."""

from __future__ import annotations

from django.conf import settings
from django.core.mail import EmailMultiAlternatives
from django.template.loader import render_to_string
from django.urls import reverse
from django.utils import translation

from preferences.branding import brand
from preferences.links import SIGNUP_SALT, sign
from preferences.models import Signup


def confirmation_url(signup: Signup) -> str:
    return settings.PREFERENCE_CENTER_BASE_URL + reverse(
        "preferences:signup_confirm", args=[sign(signup.token, salt=SIGNUP_SALT)]
    )


def signup_confirmation_message(signup: Signup) -> EmailMultiAlternatives:
    """Return the confirmation email (text and HTML) for a signup; the context is plain data."""
    language = signup.language or settings.LANGUAGE_CODE
    with translation.override(language):
        context = {
            "brand": brand(),
            "first_name": signup.first_name,
            "confirm_url": confirmation_url(signup),
            "expires_at": signup.expires_at,
            "language": language,
        }
        subject = render_to_string("emails/signup_confirmation_subject.txt", context).strip()
        text = render_to_string("emails/signup_confirmation.txt", context)
        html = render_to_string("emails/signup_confirmation.html", context)
    message = EmailMultiAlternatives(subject=" ".join(subject.split()), body=text,
                                     from_email=settings.DEFAULT_FROM_EMAIL, to=[signup.email],
                                     headers={"Auto-Submitted": "auto-generated"})
    message.attach_alternative(html, "text/html")
    return message
