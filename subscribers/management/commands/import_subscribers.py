"""Import subscribers from a CSV file: the same code path as the admin's import screen."""

from pathlib import Path
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from preferences.models import Topic
from subscribers.actions import import_subscribers
from subscribers.importing.reader import ImportFileError
from subscribers.models import ImportMode


class Command(BaseCommand):
    help = "Import subscribers from a CSV file (Mailchimp and other exports). Use --dry-run first."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("file", help="Path of the CSV file")
        parser.add_argument("--topic", metavar="SLUG", help="Subscribe everyone imported to this topic")
        parser.add_argument("--consent-notice", default="", metavar="TEXT",
                            help="Version or text of the consent notice these people agreed to")
        parser.add_argument("--dry-run", action="store_true", help="Check the file and report; change nothing")
        parser.add_argument("--overwrite", action="store_true",
                            help="Overwrite existing subscribers' fields with the file's values "
                                 "(default: fill blank fields only)")
        parser.add_argument("--skip-bad-rows", action="store_true",
                            help="Import the good rows even if some rows have errors (default: all or nothing)")
        parser.add_argument("--report", metavar="PATH", help="Write the row-by-row outcome to this CSV file")

    def handle(self, *args: Any, **options: Any) -> None:
        path = Path(options["file"])
        if not path.is_file():
            raise CommandError(f"No such file: {path}")
        topic_id = None
        if options["topic"]:
            topic = Topic.objects.filter(slug=options["topic"]).first()
            if topic is None:
                known = ", ".join(Topic.objects.values_list("slug", flat=True)) or "none yet"
                raise CommandError(f"No topic with slug “{options['topic']}”; known topics: {known}")
            topic_id = topic.pk
        report = Path(options["report"]).open("w", newline="", encoding="utf-8") if options["report"] else None  # noqa: SIM115 closed below

        def progress(phase: str, fraction: float) -> None:
            if options["verbosity"] > 1:
                self.stderr.write(f"{phase}: {fraction:.0%}")

        try:
            result = import_subscribers(
                path,
                topic_id=topic_id,
                consent_notice=options["consent_notice"],
                mode=ImportMode.OVERWRITE if options["overwrite"] else ImportMode.FILL_BLANKS,
                skip_bad_rows=options["skip_bad_rows"],
                dry_run=options["dry_run"],
                progress=progress,
                report=report,
            )
        except ImportFileError as exc:
            raise CommandError(str(exc)) from None
        finally:
            if report is not None:
                report.close()
        c = result.counts
        self.stdout.write(f"Rows: {result.total_rows}  new: {c['new']}  updated: {c['updated']}  "
                          f"skipped: {c['skipped']}  errors: {c['error']}")
        if result.ignored_columns:
            self.stdout.write("Columns not imported: " + ", ".join(result.ignored_columns))
        for issue in result.issues[:20]:
            where = f"row {issue['row']}" + (f", column {issue['column']}" if issue["column"] else "")
            self.stdout.write(f"  {issue['outcome']:8} {where}: {issue['reason']}")
        if len(result.issues) > 20:
            self.stdout.write(f"  … and more{'; see --report' if not options['report'] else ' in the report'}")
        if options["dry_run"]:
            self.stdout.write(self.style.WARNING(result.message))
        elif result.applied:
            self.stdout.write(self.style.SUCCESS(result.message))
        else:
            raise CommandError(result.message)
