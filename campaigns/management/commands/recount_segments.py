"""Count every segment's members now (the segment list shows these counts)."""

from typing import Any

from django.core.management.base import BaseCommand

from campaigns.segments.actions import recount_segments


class Command(BaseCommand):
    help = "Count every segment's members now; a Beat job does this hourly."

    def handle(self, *args: Any, **options: Any) -> None:
        counted = recount_segments()
        self.stdout.write(f"Counted {counted} segments.")
