"""Define the staff roles and keep their groups' permissions in step with the models.

Marketing manager: everything in the product's apps, including deletion,
personal-data export and segment SQL plans. Marketer: everything except
deleting, exporting personal data and reading SQL plans. Analyst: read-only. The groups are created by a migration
and re-synced after every ``migrate``, so models added later join the roles.
"""

from typing import Any

PRODUCT_APPS = ("subscribers", "preferences", "campaigns", "django_celery_beat")

MARKETING_MANAGER = "Marketing manager"
MARKETER = "Marketer"
ANALYST = "Analyst"


def role_allows(role: str, codename: str) -> bool:
    """Say whether ``role`` holds the permission ``codename``."""
    if role == MARKETING_MANAGER:
        return True
    if role == MARKETER:
        return not codename.startswith(("delete_", "export_", "explain_"))
    if role == ANALYST:
        return codename.startswith("view_")
    return False


def sync_staff_groups(group_model: Any, permission_model: Any) -> None:
    """Create the three groups and set their permissions; safe to run again."""
    permissions = list(permission_model.objects.filter(content_type__app_label__in=PRODUCT_APPS))
    for role in (MARKETING_MANAGER, MARKETER, ANALYST):
        group, _ = group_model.objects.get_or_create(name=role)
        group.permissions.set([p for p in permissions if role_allows(role, p.codename)])


def sync_staff_groups_after_migrate(sender: Any, using: str = "default", **kwargs: Any) -> None:
    # post_migrate is sent per app, in INSTALLED_APPS order, after that app's
    # permissions exist; syncing after each product app means the last run sees them all.
    if getattr(sender, "label", None) not in PRODUCT_APPS:
        return
    from django.contrib.auth.models import Group, Permission

    sync_staff_groups(Group, Permission)
