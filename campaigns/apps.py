from django.apps import AppConfig


class CampaignsConfig(AppConfig):
    name = "campaigns"
    verbose_name = "Campaigns"

    def ready(self) -> None:
        from anymail.signals import tracking

        from campaigns.receivers import record_anymail_tracking

        tracking.connect(record_anymail_tracking, dispatch_uid="campaigns.record_anymail_tracking")
