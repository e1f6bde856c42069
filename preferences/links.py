"""Sign and read the tokens in public links; no link ever carries a subscriber id or an address.

A link holds a random per-person (or per-signup) token, signed with
SECRET_KEY under a salt of its own, so a guessed or altered token is refused
by the signature check before any database query, and a link of one kind
cannot be replayed as another. Links do not expire by age: a preference or
unsubscribe link in a years-old email must still work (RFC 8058 asks for
that); erasure deletes the token, which ends every link at once.
"""

from __future__ import annotations

import secrets

from django.core import signing

PREFERENCE_SALT = "preferences.link.v1"
SIGNUP_SALT = "preferences.signup-confirm.v1"
# "." is outside base64url, so the signed value splits unambiguously; it also
# keeps links free of ":" that some mail clients escape.
_SEP = "."


def new_token() -> str:
    """Return a fresh random token: 144 bits, URL-safe, 24 characters."""
    return secrets.token_urlsafe(18)


def sign(token: str, *, salt: str) -> str:
    return signing.Signer(salt=salt, sep=_SEP).sign(token)


def unsign(value: str, *, salt: str) -> str | None:
    """Return the token inside a signed link value, or None when it was forged, altered or truncated."""
    if not value or len(value) > 200:
        return None
    try:
        return signing.Signer(salt=salt, sep=_SEP).unsign(value)
    except signing.BadSignature:
        return None
