from django.apps import AppConfig


class SubscribersConfig(AppConfig):
    name = "subscribers"
    verbose_name = "Audience"

    def ready(self) -> None:
        from django.db.models.signals import post_migrate

        from subscribers.roles import sync_staff_groups_after_migrate

        post_migrate.connect(sync_staff_groups_after_migrate, dispatch_uid="sync_staff_groups")
