"""Refuse settings of the public pages that would break them (system checks, run by manage.py check)."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.core.checks import Error, register
from django.core.exceptions import ImproperlyConfigured

from preferences.branding import HEX_COLOR
from preferences.ratelimit import parse_rate


@register()
def check_public_page_settings(app_configs: Any = None, **kwargs: Any) -> list[Error]:
    errors = []
    for name in ("BRAND_PRIMARY_COLOR", "BRAND_BACKGROUND_COLOR"):
        if not HEX_COLOR.match(getattr(settings, name, "") or ""):
            errors.append(Error(f"{name} must be a hex colour like #0b5cad.", id="preferences.E001"))
    for name in ("SIGNUP_RATE_LIMIT", "PREFERENCE_CENTER_RATE_LIMIT"):
        try:
            parse_rate(getattr(settings, name, ""))
        except ImproperlyConfigured as exc:
            errors.append(Error(f"{name}: {exc}", id="preferences.E002"))
    base = settings.PREFERENCE_CENTER_BASE_URL
    if not base.startswith(("http://", "https://")):
        errors.append(Error("PREFERENCE_CENTER_BASE_URL must start with https:// (or http:// locally).",
                            id="preferences.E003"))
    return errors
