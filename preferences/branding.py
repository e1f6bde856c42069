"""Give the public pages and the confirmation email their brand, read from settings at call time."""

from __future__ import annotations

import re
from typing import Any

from django.conf import settings

HEX_COLOR = re.compile(r"^#(?:[0-9a-fA-F]{3}){1,2}$")
_FALLBACK_PRIMARY = "#0b5cad"
_FALLBACK_BACKGROUND = "#f4f6f8"


def _rgb(color: str) -> tuple[float, float, float]:
    value = color.lstrip("#")
    if len(value) == 3:
        value = "".join(c * 2 for c in value)
    return tuple(int(value[i:i + 2], 16) / 255 for i in (0, 2, 4))  # type: ignore[return-value]


def relative_luminance(color: str) -> float:
    """Return the WCAG 2 relative luminance of a hex colour."""

    def channel(c: float) -> float:
        return c / 12.92 if c <= 0.03928 else ((c + 0.055) / 1.055) ** 2.4

    r, g, b = (channel(c) for c in _rgb(color))
    return 0.2126 * r + 0.7152 * g + 0.0722 * b


def contrast_ratio(a: str, b: str) -> float:
    la, lb = sorted((relative_luminance(a), relative_luminance(b)), reverse=True)
    return (la + 0.05) / (lb + 0.05)


def text_on(color: str) -> str:
    """Return black or white, whichever reads better on ``color`` (WCAG contrast)."""
    return "#ffffff" if contrast_ratio(color, "#ffffff") >= contrast_ratio(color, "#111111") else "#111111"


def brand() -> dict[str, Any]:
    """Return the brand as plain data for templates; an invalid colour falls back to the default."""
    primary = settings.BRAND_PRIMARY_COLOR if HEX_COLOR.match(settings.BRAND_PRIMARY_COLOR or "") else _FALLBACK_PRIMARY
    background = (settings.BRAND_BACKGROUND_COLOR if HEX_COLOR.match(settings.BRAND_BACKGROUND_COLOR or "")
                  else _FALLBACK_BACKGROUND)
    # Links and focus rings use the primary colour on white only when it is readable there.
    link = primary if contrast_ratio(primary, "#ffffff") >= 4.5 else "#0b5cad"
    return {
        "name": settings.BRAND_NAME,
        "logo_url": settings.BRAND_LOGO_URL,
        "primary": primary,
        "on_primary": text_on(primary),
        "link": link,
        "background": background,
        "website_url": settings.BRAND_WEBSITE_URL,
        "privacy_url": settings.PRIVACY_NOTICE_URL,
    }
