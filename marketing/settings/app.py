"""Product settings: import limits, consent notice, retention, email tracking."""

from .env import env_bool, env_int, env_list, env_str

# Largest CSV a staff user may upload, in megabytes.
IMPORT_MAX_FILE_MB = env_int("IMPORT_MAX_FILE_MB", 200)
# Uploaded import files and their reports are deleted after this many days.
IMPORT_FILE_RETENTION_DAYS = env_int("IMPORT_FILE_RETENTION_DAYS", 30)
# Version label of the consent notice recorded when none is given.
CONSENT_NOTICE_VERSION = env_str("CONSENT_NOTICE_VERSION", "default")
# Allow uploads the size of IMPORT_MAX_FILE_MB; Django streams them to disk.
DATA_UPLOAD_MAX_MEMORY_SIZE = 10 * 1024 * 1024
FILE_UPLOAD_MAX_MEMORY_SIZE = 5 * 1024 * 1024

# --- Email tracking (campaigns.tracking; docs/tracking.md) -------------------
# Anonymous tracking: count opens and clicks per message only (MessageStats);
# store no per-person open/click events, times or counts.
TRACKING_ANONYMOUS = env_bool("TRACKING_ANONYMOUS", False)
# An open (or click) this many seconds or less after delivery is a machine:
# a privacy proxy or scanner fetching the mail as it arrives, not a person.
TRACKING_MACHINE_SECONDS = env_int("TRACKING_MACHINE_SECONDS", 2)
# User agents (case-insensitive substrings) of link scanners and prefetchers.
# A user agent of exactly "Mozilla/5.0" (Apple Mail Privacy Protection) is
# always a machine; Gmail's and Yahoo's image proxies are not (they fetch
# when the person opens the mail).
TRACKING_MACHINE_USER_AGENTS = env_list(
    "TRACKING_MACHINE_USER_AGENTS",
    ["BingPreview", "Barracuda", "Mimecast", "Proofpoint", "Symantec", "Trend Micro", "HeadlessChrome",
     "python-requests", "Go-http-client", "curl/", "Wget/", "bot/", "spider", "crawler"],
)
# Networks (CIDR, comma-separated) whose opens and clicks are machines, e.g. a
# mail security gateway's egress ranges. Empty by default.
TRACKING_MACHINE_NETWORKS = env_list("TRACKING_MACHINE_NETWORKS", [])
# Absolute base of the own open pixel and click redirect links put in emails.
TRACKING_BASE_URL = env_str("TRACKING_BASE_URL", "http://localhost:8000").rstrip("/")
