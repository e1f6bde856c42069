"""Choose how mail leaves: captured locally by default, any Anymail ESP when set."""

import json

from django.core.exceptions import ImproperlyConfigured

from .env import env_str

# Default: every message is stored in the database and shown in the admin
# under "Captured emails", so a newcomer sees what would have been sent.
EMAIL_BACKEND = env_str("EMAIL_BACKEND", "campaigns.mail.CaptureEmailBackend")
DEFAULT_FROM_EMAIL = env_str("DEFAULT_FROM_EMAIL", "Marketing <marketing@example.com>")
SERVER_EMAIL = env_str("SERVER_EMAIL", DEFAULT_FROM_EMAIL)

# ESP credentials as JSON, e.g. {"MAILGUN_API_KEY": "...", "WEBHOOK_SECRET": "user:pass"}
try:
    ANYMAIL = json.loads(env_str("ANYMAIL", "{}") or "{}")
except json.JSONDecodeError as exc:
    raise ImproperlyConfigured(f"ANYMAIL must be a JSON object: {exc}") from None
