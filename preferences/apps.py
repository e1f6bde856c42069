from django.apps import AppConfig


class PreferencesConfig(AppConfig):
    name = "preferences"
    verbose_name = "Preferences"

    def ready(self) -> None:
        from preferences import actions, checks  # noqa: F401 - importing checks registers them
        from subscribers.actions import on_erasure
        from subscribers.api import register_export_section

        # Erasure removes this app's personal data (idempotent); the export includes it.
        on_erasure(actions.remove_preference_data)
        register_export_section("preferences", actions.export_section)
