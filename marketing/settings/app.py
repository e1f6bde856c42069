"""Product settings: import limits, consent notice, retention."""

from .env import env_int, env_str

# Largest CSV a staff user may upload, in megabytes.
IMPORT_MAX_FILE_MB = env_int("IMPORT_MAX_FILE_MB", 200)
# Uploaded import files and their reports are deleted after this many days.
IMPORT_FILE_RETENTION_DAYS = env_int("IMPORT_FILE_RETENTION_DAYS", 30)
# Version label of the consent notice recorded when none is given.
CONSENT_NOTICE_VERSION = env_str("CONSENT_NOTICE_VERSION", "default")
# Allow uploads the size of IMPORT_MAX_FILE_MB; Django streams them to disk.
DATA_UPLOAD_MAX_MEMORY_SIZE = 10 * 1024 * 1024
FILE_UPLOAD_MAX_MEMORY_SIZE = 5 * 1024 * 1024
