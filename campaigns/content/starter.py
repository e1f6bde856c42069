"""The layout and content block every installation starts with (created by a data migration, editable)."""

from __future__ import annotations

from typing import Any

DEFAULT_LAYOUT = """<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<style>
  body { margin: 0; padding: 0; background: #f4f6f8; font-family: Arial, Helvetica, sans-serif; color: #1f2328; }
  .wrap { width: 100%; background: #f4f6f8; padding: 24px 0; }
  .card { max-width: 600px; margin: 0 auto; background: #ffffff; border-radius: 8px; padding: 32px; }
  .brand { font-size: 20px; font-weight: bold; color: #0b5cad; margin: 0 0 24px; }
  p { font-size: 16px; line-height: 24px; margin: 0 0 16px; }
  a { color: #0b5cad; }
  .button { display: inline-block; background: #0b5cad; color: #ffffff; padding: 12px 20px; border-radius: 6px;
            text-decoration: none; font-weight: bold; }
  .footer { max-width: 600px; margin: 16px auto 0; font-size: 12px; line-height: 18px; color: #57606a;
            text-align: center; }
  .footer a { color: #57606a; }
</style>
</head>
<body>
{{ preheader }}
<div class="wrap">
  <div class="card">
    <p class="brand">{{ brand.name }}</p>
    {{ content }}
  </div>
  {% block_content "footer" %}
</div>
</body>
</html>
"""

FOOTER = """<div class="footer">
  You get this email because you subscribed to news from {{ brand.name }}.<br>
  <a href="{{ preferences_url }}">Choose what you get</a> · <a href="{{ unsubscribe_url }}">Unsubscribe</a>
</div>"""


def create_starter_content(layout_model: Any, block_model: Any) -> None:
    """Create the default layout and footer block if missing; safe to run again."""
    block_model.objects.get_or_create(key="footer", defaults={"name": "Footer with unsubscribe links",
                                                              "html": FOOTER})
    if not layout_model.objects.filter(is_default=True).exists():
        layout_model.objects.get_or_create(name="Default", defaults={"html": DEFAULT_LAYOUT, "is_default": True})
