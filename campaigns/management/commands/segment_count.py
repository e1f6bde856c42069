"""Print a segment's member count, how long counting took, and its SQL."""

import time
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from campaigns.segments import actions
from campaigns.segments.compiler import SegmentRuleError
from campaigns.segments.models import Segment


class Command(BaseCommand):
    help = "Count a segment's members now; print the count, the time it took and the SQL (and plan with --explain)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("segment", help="Segment id or exact name")
        parser.add_argument("--explain", action="store_true", help="Also print the database's query plan")

    def handle(self, *args: Any, **options: Any) -> None:
        ref = options["segment"]
        segment = (Segment.objects.filter(pk=int(ref)).first() if ref.isdigit() else None) \
            or Segment.objects.filter(name=ref).first()
        if segment is None:
            raise CommandError(f"No segment with id or name “{ref}”.")
        try:
            queryset = actions.members(segment)
        except SegmentRuleError as exc:
            raise CommandError(f"“{segment}” cannot be counted: {exc}") from None
        started = time.perf_counter()
        total = queryset.count()
        seconds = time.perf_counter() - started
        self.stdout.write(f"{segment}: {total:,} members in {seconds:.3f} s")
        self.stdout.write(actions.compiled_sql(queryset.values("pk")))
        if options["explain"]:
            plan, warnings = actions.explain_queryset(queryset.values("pk"))
            self.stdout.write(plan)
            for warning in warnings:
                self.stdout.write(self.style.WARNING(warning))
