"""Keep outgoing mail in the database so the embedded setup shows what it would send."""

from collections.abc import Sequence

from django.core.mail.backends.base import BaseEmailBackend
from django.core.mail.message import EmailMessage, EmailMultiAlternatives


class CaptureEmailBackend(BaseEmailBackend):
    """Store each message as a CapturedEmail row instead of sending it."""

    def send_messages(self, email_messages: Sequence[EmailMessage]) -> int:
        from campaigns.models import CapturedEmail

        rows = []
        for message in email_messages:
            html = ""
            if isinstance(message, EmailMultiAlternatives):
                for content, mimetype in message.alternatives:
                    if mimetype == "text/html":
                        html = str(content)
            if message.content_subtype == "html":
                html, text = message.body, ""
            else:
                text = message.body
            rows.append(
                CapturedEmail(
                    from_email=message.from_email,
                    to="\n".join(message.recipients()),
                    subject=message.subject,
                    text_body=text,
                    html_body=html,
                    headers={k: str(v) for k, v in message.extra_headers.items()},
                )
            )
        CapturedEmail.objects.bulk_create(rows)
        return len(rows)
