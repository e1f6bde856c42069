"""Create (or reset) the demo staff login and print it."""

from typing import Any

from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from django.core.management.base import BaseCommand, CommandParser

from subscribers.roles import MARKETING_MANAGER


class Command(BaseCommand):
    help = "Create the demo staff user (a Marketing manager) and print its login."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--username", default="demo")
        parser.add_argument("--password", default="demo-marketing")

    def handle(self, *args: Any, **options: Any) -> None:
        User = get_user_model()
        user, _ = User.objects.get_or_create(username=options["username"], defaults={"email": "demo@example.com"})
        # A Marketing manager, not a superuser: the demo shows the product as its staff see it.
        user.is_staff = True
        user.is_superuser = False
        if not user.check_password(options["password"]):
            # Only when it differs: a new hash would log out everyone signed in as the demo user.
            user.set_password(options["password"])
        user.save()
        user.groups.add(Group.objects.get(name=MARKETING_MANAGER))
        self.stdout.write(f"Demo login: username {options['username']}  password {options['password']}")
