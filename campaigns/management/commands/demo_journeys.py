"""Turn on the prebuilt journeys for the demo and replay the last week (safe to run again)."""

import time
from typing import Any

from django.core.management.base import BaseCommand, CommandParser

from campaigns.journeys.demo import run_demo_journeys


class Command(BaseCommand):
    help = ("Give the prebuilt journeys demo topics, turn them on and run the last N days of demo signups, "
            "checkouts, orders, birthdays and inactivity through them. Does nothing once a journey has people.")

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--days", type=int, default=7, metavar="N", help="Days of history to replay")

    def handle(self, *args: Any, **options: Any) -> None:
        started = time.monotonic()
        counts = run_demo_journeys(days=options["days"], log=self.stdout.write)
        if counts:
            self.stdout.write(self.style.SUCCESS(f"Demo journeys ready in {time.monotonic() - started:.1f} s."))
        else:
            self.stdout.write("Demo journeys already running; nothing to do.")
