"""The rule-builder widget: the rules JSON in a hidden textarea, edited by static/campaigns/segment_builder.js."""

from __future__ import annotations

import json
from typing import Any

from django import forms
from django.urls import reverse
from django.utils.html import format_html


class SegmentRulesWidget(forms.Textarea):
    """Render the rule tree for the builder; without JavaScript the JSON stays editable."""

    class Media:
        js = ("campaigns/segment_builder.js",)
        css = {"all": ("campaigns/segment_builder.css",)}

    def __init__(self, *args: Any, segment_id: int | None = None, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self.segment_id = segment_id

    def format_value(self, value: Any) -> str:
        if isinstance(value, str):
            return value
        return json.dumps(value if value is not None else {"match": "all", "rules": []}, ensure_ascii=False)

    def render(self, name: str, value: Any, attrs: dict[str, Any] | None = None, renderer: Any = None) -> str:
        attrs = {**(attrs or {}), "class": "segment-rules-json", "rows": 6, "aria-label": "Rules as JSON"}
        textarea = super().render(name, value, attrs, renderer)
        return format_html(
            '{}<div class="segment-builder" data-catalogue-url="{}" data-preview-url="{}" data-suggest-url="{}" '
            'data-segment-id="{}"><noscript>Turn on JavaScript to use the rule builder.</noscript></div>',
            textarea, reverse("admin:campaigns_segment_catalogue"), reverse("admin:campaigns_segment_preview"),
            reverse("admin:campaigns_segment_suggest"), self.segment_id or "",
        )
