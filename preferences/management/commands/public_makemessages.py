"""Update locale/*/LC_MESSAGES/django.po from the public pages and emails only.

The catalogue holds what subscribers see (preferences/, templates/preferences/,
templates/emails/); the admin stays in English, so its strings are left out
and every msgstr can be kept filled in (a test checks it).
"""

from pathlib import Path
from typing import Any

from django.conf import settings
from django.core.management import call_command
from django.core.management.base import BaseCommand

PUBLIC = {"preferences", "templates"}
PUBLIC_TEMPLATES = {"preferences", "emails"}


class Command(BaseCommand):
    help = "Run makemessages for the six languages over the public pages and emails only."

    def handle(self, *args: Any, **options: Any) -> None:
        root = Path(settings.BASE_DIR)
        ignore = [p.name for p in root.iterdir() if p.name not in PUBLIC and not p.name.startswith(".")]
        ignore += [f"templates/{p.name}" for p in (root / "templates").iterdir() if p.name not in PUBLIC_TEMPLATES]
        ignore += [".*", "preferences/migrations"]
        (root / "locale").mkdir(exist_ok=True)
        call_command("makemessages", locale=[code for code, _ in settings.LANGUAGES], ignore_patterns=ignore,
                     no_obsolete=True, add_location="file", verbosity=options["verbosity"])
