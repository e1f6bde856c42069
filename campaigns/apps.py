from django.apps import AppConfig


class CampaignsConfig(AppConfig):
    name = "campaigns"
    verbose_name = "Campaigns"

    def ready(self) -> None:
        from anymail.signals import tracking

        from campaigns.receivers import record_anymail_tracking

        tracking.connect(record_anymail_tracking, dispatch_uid="campaigns.record_anymail_tracking")

        from campaigns.journeys import receivers
        from subscribers.actions import on_events, on_subscribed

        on_events(receivers.events_tracked)
        on_subscribed(receivers.subscribed)
