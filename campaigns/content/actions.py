"""Compile, check, preview and test-send campaign content.

Admin screens and the sending pipeline call these; compiled content is built
once per variant and language and reused for every recipient.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.mail import EmailMultiAlternatives
from django.core.validators import validate_email
from django.db import transaction
from django.db.models import QuerySet
from django.utils import timezone

from campaigns.content.checks import Problem, check_content
from campaigns.content.models import Campaign, CampaignKind, ContentBlock, EmailLayout, Variant
from campaigns.content.personalize import empty_context, preview_links, recipient_contexts
from campaigns.content.rendering import CompiledMessage, ContentError, RenderedMessage, compile_message


def default_layout_html() -> str:
    layout = EmailLayout.objects.filter(is_default=True).values_list("html", flat=True).first()
    return layout or ""


def layout_for(campaign: Campaign) -> str:
    return campaign.layout.html if campaign.layout_id else default_layout_html()


def content_blocks() -> dict[str, str]:
    return dict(ContentBlock.objects.values_list("key", "html"))


def compile_variant(variant: Variant, *, language: str = "", layout: str | None = None,
                    blocks: dict[str, str] | None = None) -> CompiledMessage:
    """Compile a variant in a language (its translation, else the variant's own text); raises ContentError."""
    source: Any = variant
    if language:
        source = variant.translations.filter(language=language).first() or variant
    return compile_message(
        subject=source.subject, preheader=source.preheader, html=source.html, text=source.text,
        layout=layout_for(variant.campaign) if layout is None else layout,
        blocks=content_blocks() if blocks is None else blocks,
    )


def content_languages(variant: Variant) -> list[str]:
    """Return the languages a variant has its own version in ("" is the default version)."""
    return ["", *variant.translations.order_by("language").values_list("language", flat=True)]


def audience(campaign: Campaign) -> QuerySet:
    """Return everyone the campaign's segments choose (include minus exclude), before the sending policy."""
    from campaigns.segments import actions as segment_actions

    included, excluded = [], []
    for use in campaign.audience.select_related("segment"):
        (excluded if use.exclude else included).append(segment_actions.members_filter(use.segment))
    people = segment_actions.audience()
    if not included:
        return people.none()
    condition = included[0]
    for extra in included[1:]:
        condition |= extra
    people = people.filter(condition)
    for condition in excluded:
        people = people.exclude(condition)
    return people


def check_campaign(campaign: Campaign) -> list[Problem]:
    """Return every problem that stops a campaign from being scheduled, and warnings."""
    from campaigns.segments.models import Segment
    from subscribers.models import AttributeDefinition

    problems: list[Problem] = []
    # A journey email has no topic or audience of its own: its journey has them.
    broadcast = campaign.kind != CampaignKind.JOURNEY
    if broadcast and campaign.topic_id is None:
        problems.append(Problem("error", "Choose the topic this campaign belongs to (what people subscribed to)."))
    if broadcast and not campaign.audience.filter(exclude=False).exists():
        problems.append(Problem("error", "Choose at least one segment to send to."))
    variants = list(campaign.variants.all())
    if not variants:
        problems.append(Problem("error", "Write the message: the campaign has no content yet."))
    people = audience(campaign) if broadcast and campaign.audience.exists() else None
    sensitive = set(AttributeDefinition.objects.filter(sensitive=True).values_list("key", flat=True))
    layout, blocks = layout_for(campaign), content_blocks()
    for variant in variants:
        for language in content_languages(variant):
            label = f"Variant {variant.label}" + (f" ({language})" if language else "")
            try:
                compiled = compile_variant(variant, language=language, layout=layout, blocks=blocks)
            except ContentError as exc:
                problems.append(Problem("error", f"{label}: {exc}"))
                continue
            problems += check_content(compiled, label=label, audience=people,
                                      allow_sensitive=bool(campaign.sensitive_justification.strip()),
                                      sensitive_keys=sensitive)
            missing = sorted(set(compiled.segments) - set(Segment.objects.filter(name__in=compiled.segments)
                                                          .values_list("name", flat=True)))
            for name in missing:
                problems.append(Problem("error", f"{label}: {{% ifsegment \"{name}\" %}} names no segment; "
                                                 "check the spelling (everyone would get the other part)."))
    return problems


@dataclass(frozen=True)
class Preview:
    rendered: RenderedMessage
    subscriber_id: int | None
    language: str


def preview_variant(variant: Variant, *, subscriber_id: int | None = None, language: str = "") -> Preview:
    """Render a variant as one subscriber would get it, or (no subscriber) as a person with every field empty."""
    locale, currency = language or settings.LANGUAGE_CODE, settings.DEFAULT_CURRENCY
    if subscriber_id is not None:
        contexts = recipient_contexts([subscriber_id], segments=_segments_of(variant), recommendations=True,
                                      allow_sensitive=bool(variant.campaign.sensitive_justification.strip()))
        recipient = contexts[subscriber_id]
        context = {**recipient.context, **preview_links()}  # the person's own links stay out of previews
        language = language or _version_language(variant, recipient.locale)
        locale, currency = recipient.locale, recipient.currency
    else:
        context = empty_context()
    compiled = compile_variant(variant, language=language)
    return Preview(rendered=compiled.render(context, locale=locale, currency=currency),
                   subscriber_id=subscriber_id, language=language)


def _segments_of(variant: Variant) -> list[str]:
    try:
        return compile_variant(variant).segments
    except ContentError:
        return []


def _version_language(variant: Variant, locale: str) -> str:
    return locale if variant.translations.filter(language=locale).exists() else ""


def send_test(variant: Variant, *, to: list[str], subscriber_id: int | None = None, language: str = "") -> int:
    """Send a variant, rendered for a subscriber (or with no data), to staff addresses; returns how many."""
    wrong = [address for address in to if address and not _is_email(address)]
    if wrong:
        raise ContentError("Test send", None, " ".join(f"“{a}” is not an email address." for a in wrong)
                           + f" Nothing was sent: correct {'it' if len(wrong) == 1 else 'them'} and send again.")
    allowed = set(settings.TEST_SEND_ADDRESSES)
    recipients = [a for a in to if a and (not allowed or a in allowed)]
    if not recipients:
        raise ContentError("Test send", None, "give at least one allowed address.")
    preview = preview_variant(variant, subscriber_id=subscriber_id, language=language)
    campaign = variant.campaign
    from_name = variant.from_name or campaign.from_name
    from_email = campaign.from_email or settings.DEFAULT_FROM_EMAIL
    sender = f"{from_name} <{from_email}>" if from_name and "<" not in from_email else from_email
    message = EmailMultiAlternatives(subject=f"[Test] {preview.rendered.subject}", body=preview.rendered.text,
                                     from_email=sender, to=recipients,
                                     reply_to=[campaign.reply_to] if campaign.reply_to else None,
                                     headers={"X-Campaign-Test": str(campaign.pk)})
    message.attach_alternative(preview.rendered.html, "text/html")
    message.send()
    return len(recipients)


def _is_email(address: str) -> bool:
    try:
        validate_email(address)
    except ValidationError:
        return False
    return True


@transaction.atomic
def save_variant(variant: Variant) -> Variant:
    """Save a variant after checking that its content compiles; raises ContentError with part and line."""
    compile_message(subject=variant.subject, preheader=variant.preheader, html=variant.html, text=variant.text,
                    blocks=content_blocks())
    variant.save()
    Campaign.objects.filter(pk=variant.campaign_id).update(updated_at=timezone.now())
    return variant
