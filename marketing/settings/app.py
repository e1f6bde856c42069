"""Product settings: import limits, consent notice, retention, email tracking."""

from .env import env_bool, env_int, env_list, env_str

# Largest CSV a staff user may upload, in megabytes.
IMPORT_MAX_FILE_MB = env_int("IMPORT_MAX_FILE_MB", 200)
# Files at least this big (MB) are checked by two processes on PostgreSQL
# (subscribers/importing/parallel.py); smaller ones by one.
IMPORT_PARALLEL_MIN_MB = env_int("IMPORT_PARALLEL_MIN_MB", 20)
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

# --- Preference center, signup and unsubscribe (preferences/; docs/preference-center.md) ---
# Absolute base of the links put in emails: preference center, one-click
# unsubscribe (List-Unsubscribe) and signup confirmation, e.g. https://mail.example.com
PREFERENCE_CENTER_BASE_URL = env_str("PREFERENCE_CENTER_BASE_URL", "http://localhost:8000").rstrip("/")
# Brand of the public pages and the confirmation email. The primary colour is a
# #rgb or #rrggbb hex value; text on it is black or white, whichever contrasts more.
BRAND_NAME = env_str("BRAND_NAME", "Marketing")
BRAND_LOGO_URL = env_str("BRAND_LOGO_URL", "")
BRAND_PRIMARY_COLOR = env_str("BRAND_PRIMARY_COLOR", "#0b5cad")
BRAND_BACKGROUND_COLOR = env_str("BRAND_BACKGROUND_COLOR", "#f4f6f8")
BRAND_WEBSITE_URL = env_str("BRAND_WEBSITE_URL", "")
# The privacy notice people agree to when they sign up (linked on the form),
# and its version, recorded in the consent ledger on confirmation.
PRIVACY_NOTICE_URL = env_str("PRIVACY_NOTICE_URL", "")
SIGNUP_NOTICE_VERSION = env_str("SIGNUP_NOTICE_VERSION", CONSENT_NOTICE_VERSION)
# Days a signup confirmation link works; unconfirmed signups are then deleted.
SIGNUP_CONFIRM_DAYS = env_int("SIGNUP_CONFIRM_DAYS", 7)
# Minutes before the same address can be sent another confirmation email.
SIGNUP_RESEND_MINUTES = env_int("SIGNUP_RESEND_MINUTES", 10)
# Origins (scheme://host[:port], comma-separated, or *) whose pages may call the
# JSON signup endpoint from the browser (CORS). Empty: same origin only.
SIGNUP_ALLOWED_ORIGINS = env_list("SIGNUP_ALLOWED_ORIGINS", [])
# Requests per client IP, as "N/s", "N/m", "N/h" or "N/d"; "0" turns a limit off.
# Signup (form and JSON) is strict; the preference center and unsubscribe pages
# allow normal use. The RFC 8058 one-click POST is never limited (mail providers
# send many from few addresses); a forged token there is refused before any query.
SIGNUP_RATE_LIMIT = env_str("SIGNUP_RATE_LIMIT", "10/h")
PREFERENCE_CENTER_RATE_LIMIT = env_str("PREFERENCE_CENTER_RATE_LIMIT", "120/m")
# Header holding the client's IP when behind a proxy (e.g. X-Forwarded-For; the
# right-most address is used, the one your proxy saw). Empty: REMOTE_ADDR.
CLIENT_IP_HEADER = env_str("CLIENT_IP_HEADER", "")

# --- Email content (campaigns/content/; docs/campaigns.md) ---
# Currency of amounts in emails ({{ total_spent|money }}), ISO 4217.
DEFAULT_CURRENCY = env_str("DEFAULT_CURRENCY", "EUR").upper()
# How the {% recommendations %} block picks products.
RECOMMENDATION_STRATEGY = env_str("RECOMMENDATION_STRATEGY", "bestsellers_in_favourite_category")
# Addresses test sends may go to (comma-separated); empty: staff users' own addresses.
TEST_SEND_ADDRESSES = env_list("TEST_SEND_ADDRESSES", [])

# --- Sending policy (campaigns/sending/policy.py; docs/campaigns.md) ---
# At most this many marketing emails (campaigns and journeys) per person per rolling 7 days; 0: no cap.
MARKETING_WEEKLY_CAP = env_int("MARKETING_WEEKLY_CAP", 5)
# Night hours in each person's own time zone ("START-END", 24-hour clock); mail waits until END. Empty: off.
QUIET_HOURS = env_str("QUIET_HOURS", "21-8")
# Time zone for people whose profile has none.
DEFAULT_RECIPIENT_TIMEZONE = env_str("DEFAULT_RECIPIENT_TIMEZONE", "UTC")
# Recipients per send task (each task costs ~25 queries whatever its size: 1,000 spent a fifth less PostgreSQL time
# per person than 500 in the send benchmark), and ESP API calls in flight per worker process.
SEND_CHUNK_SIZE = env_int("SEND_CHUNK_SIZE", 1000)
SEND_CONCURRENCY = env_int("SEND_CONCURRENCY", 32)
# Chunks per campaign queued ahead of the workers; each finished chunk queues more.
SEND_QUEUE_AHEAD = env_int("SEND_QUEUE_AHEAD", 40)
# A send a worker crashed during is checked against the ESP's events for this long before it is sent again.
SEND_RECONCILE_SECONDS = env_int("SEND_RECONCILE_SECONDS", 600)
# Attempts at a transient ESP error before a recipient is marked failed; the campaign pauses after this many
# failed chunks in a row (an ESP outage) and can be resumed.
SEND_MAX_ATTEMPTS = env_int("SEND_MAX_ATTEMPTS", 6)
# First wait after a transient ESP error, in seconds; it doubles with each try (at most an hour).
SEND_RETRY_SECONDS = env_int("SEND_RETRY_SECONDS", 30)
SEND_PAUSE_AFTER_FAILED_CHUNKS = env_int("SEND_PAUSE_AFTER_FAILED_CHUNKS", 3)
# Add our own open pixel and click redirect to campaign emails (turn off when the ESP tracks opens and clicks).
OWN_TRACKING = env_bool("OWN_TRACKING", True)

# --- Journeys (campaigns/journeys/; docs/journeys.md) ---
# Enrollments one scheduler batch claims (SELECT … FOR UPDATE SKIP LOCKED), and how long one advancing task
# keeps taking batches before it stops (the next tick continues).
JOURNEY_BATCH_SIZE = env_int("JOURNEY_BATCH_SIZE", 500)
JOURNEY_TICK_SECONDS = env_int("JOURNEY_TICK_SECONDS", 50)
# An advancing task with nothing due waits this long for the next person instead of stopping (steady streams of
# waits ending are then advanced within a second, not at the next tick).
JOURNEY_POLL_SECONDS = env_int("JOURNEY_POLL_SECONDS", 2)
# Advancing tasks each tick queues; they share the due people safely, so this is how many workers join in.
JOURNEY_PARALLEL = env_int("JOURNEY_PARALLEL", 2)
# How often date (birthday) and inactivity triggers look for people, in seconds.
JOURNEY_SWEEP_SECONDS = env_int("JOURNEY_SWEEP_SECONDS", 3600)
