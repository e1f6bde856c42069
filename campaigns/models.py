"""Store what we send and why; for now, locally captured mail."""

from django.db import models
from django.utils import timezone


class CapturedEmail(models.Model):
    """One message the local capture backend kept instead of sending it."""

    from_email = models.CharField(max_length=320)
    to = models.TextField(help_text="Recipients, one per line.")
    subject = models.CharField(max_length=998)
    text_body = models.TextField(blank=True)
    html_body = models.TextField(blank=True)
    headers = models.JSONField(default=dict, blank=True)
    created_at = models.DateTimeField(default=timezone.now, db_index=True)

    class Meta:
        ordering = ["-created_at"]
        verbose_name = "captured email"

    def __str__(self) -> str:
        return self.subject
