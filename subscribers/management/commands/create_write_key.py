"""Create a tracking API write key for a source and print it (shown only once)."""

from typing import Any

from django.core.management.base import BaseCommand, CommandParser

from subscribers.actions import create_write_key


class Command(BaseCommand):
    help = "Create a write key for the tracking API (one per source, e.g. “Shop backend”) and print it."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("name", help="Which source will use the key")

    def handle(self, *args: Any, **options: Any) -> None:
        write_key, key = create_write_key(name=options["name"])
        self.stdout.write(key)
        self.stderr.write(f"Write key for “{write_key.name}” created. Keep it now: only its hash is stored.")
