"""Create a reproducible, realistic demo audience (safe to run again)."""

import time
from typing import Any

from django.core.management.base import BaseCommand, CommandParser

from subscribers.demo import seed_demo


class Command(BaseCommand):
    help = "Create demo subscribers, topics and attributes. Running it again adds only what is missing."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--subscribers", type=int, default=2000, metavar="N", help="How many subscribers in all")
        parser.add_argument("--seed", type=int, default=1, metavar="S", help="Random seed (same seed, same people)")
        parser.add_argument("--no-behaviour", action="store_true",
                            help="People only: no products, events, orders or engagement (faster for benchmarks)")
        parser.add_argument("--bulk-load", action="store_true",
                            help="PostgreSQL: drop the written tables' secondary indexes and foreign keys while "
                                 "loading and rebuild them at the end (much faster for big seeds; for a database "
                                 "nothing else writes to meanwhile)")

    def handle(self, *args: Any, **options: Any) -> None:
        started = time.monotonic()
        total = options["subscribers"]
        verbose = options["verbosity"] > 0

        def progress(done: int) -> None:
            if verbose and (done % 50000 == 0 or done == total):
                self.stdout.write(f"  {done:,} / {total:,} subscribers ({time.monotonic() - started:.0f} s)")

        def log(message: str) -> None:
            if verbose:
                self.stdout.write(f"  {message} ({time.monotonic() - started:.0f} s)")

        added = seed_demo(subscribers=total, seed=options["seed"], progress=progress,
                          behaviour=not options["no_behaviour"], bulk_load=options["bulk_load"], log=log)
        took = time.monotonic() - started
        if added:
            self.stdout.write(self.style.SUCCESS(f"Added {added:,} demo subscribers in {took:.1f} s."))
        else:
            self.stdout.write(f"Demo data already present ({total:,} subscribers); nothing to add.")
