#!/usr/bin/env python3
"""Benchmark rendering alone: the send benchmark's template and timing, without Celery or an ESP.

    cd /work/main
    .venv/bin/python bench/render_bench.py --database-url postgres://postgres@127.0.0.1:5432/marketing_renderbench

The database is created, migrated and given 2,000 demo subscribers
(``seed_demo``) when it has fewer. The script writes the send benchmark's
variant (``bench/send_bench_template.html``, the same subject and preheader,
the default layout) on a campaign of its own, then runs
``send_bench.render_speed()``: subject, HTML and plain text of one message for
the first 2,000 subscribed people, and a same-size template without
personalization, per core (process time). It also prints a digest of every
part rendered for the first 2,000 people and an empty recipient, so a change
to the renderer can be checked for byte-identical output.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import sys
import time
from pathlib import Path

from common import ensure_database, migrate

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

DEFAULT_URL = "postgres://postgres@127.0.0.1:5432/marketing_renderbench"


def prepare() -> int:
    """Create the benchmark campaign and its one variant; return the campaign id."""
    from send_bench import TEMPLATE, TOPIC_SLUG

    from campaigns.content.models import Campaign, Variant
    from preferences.models import Topic

    Campaign.objects.filter(name="Bench render").delete()
    topic, _ = Topic.objects.get_or_create(slug=TOPIC_SLUG, defaults={"name": "Bench news"})
    campaign = Campaign.objects.create(name="Bench render", topic=topic, from_name="Bench shop",
                                       from_email="shop@example.com")
    Variant.objects.create(campaign=campaign, label="A", subject='{{ first_name|default:"Hi" }}, the sale is on',
                           preheader="Up to 40% off until Sunday", html=TEMPLATE)
    return campaign.pk


def digest(campaign_id: int) -> tuple[str, int]:
    """Return a digest of subject, HTML and text rendered for each bench recipient, and how many."""
    from campaigns.content import actions as content_actions
    from campaigns.content.models import Campaign
    from campaigns.content.personalize import empty_context, recipient_contexts
    from subscribers.models import Subscriber

    compiled = content_actions.compile_variant(Campaign.objects.get(pk=campaign_id).variants.get())
    ids = list(Subscriber.objects.order_by("pk").values_list("pk", flat=True)[:2000])
    contexts = list(recipient_contexts(ids, segments=compiled.segments, recommendations=True).values())
    sha = hashlib.sha256()
    for r in contexts:
        message = compiled.render(r.context, locale=r.locale, currency=r.currency)
        for part in (message.subject, message.html, message.text):
            sha.update(part.encode() + b"\0")
    message = compiled.render(empty_context())
    for part in (message.subject, message.html, message.text):
        sha.update(part.encode() + b"\0")
    return sha.hexdigest()[:16], len(contexts) + 1


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--database-url", default=DEFAULT_URL)
    args = parser.parse_args()
    if args.database_url.startswith("postgres"):
        ensure_database(args.database_url)
    env = {**os.environ, "DEBUG": "1", "DATABASE_URL": args.database_url,
           "DJANGO_SETTINGS_MODULE": "marketing.settings"}
    os.environ.update(env)
    migrate(env)
    import django

    django.setup()
    from django.core.management import call_command
    from send_bench import GOAL_RENDERS, render_speed

    from subscribers.models import Subscriber

    if Subscriber.objects.count() < 2000:
        call_command("seed_demo", subscribers=2000)
    campaign_id = prepare()
    started = time.perf_counter()
    renders = render_speed(campaign_id)
    print(f"rendering: {renders['personalized']:,.0f} renders/s per core personalized, {renders['static']:,.0f} "
          f"without personalization (ratio {renders['ratio']:.2f}×); template {renders['template_bytes']:,} B, "
          f"rendered HTML {renders['rendered_bytes']:,} B  ({time.perf_counter() - started:.0f} s)")
    print(f"  {'PASS' if renders['personalized'] >= GOAL_RENDERS else 'MISS'} (goal ≥ {GOAL_RENDERS:,})")
    value, count = digest(campaign_id)
    print(f"output digest over {count:,} messages (subject, HTML, text): {value}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
