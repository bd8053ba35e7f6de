"""Home Pocket settings: one module, everything from the environment.

The defaults give the embedded mode (SQLite under var/, local-memory cache, in-memory channel
layer, local object directory, a file-system Celery broker). Setting DATABASE_URL, REDIS_URL and
S3_BUCKET switches each concern to its distributed form independently. See docs/configuration.md.
"""

from __future__ import annotations

import os
from pathlib import Path

import dj_database_url

from homepocket.env import (
    env_bool,
    env_float,
    env_int,
    env_list,
    env_secret,
    env_str,
    local_secret,
)

BASE_DIR = Path(__file__).resolve().parent.parent
VAR_DIR = Path(env_str("HOMEPOCKET_VAR_DIR") or BASE_DIR / "var").resolve()

# --- core -------------------------------------------------------------------------------------

DEBUG = env_bool("DEBUG", False)
# The embedded mode makes its own secret on first run; a deployment passes SECRET_KEY(_FILE).
SECRET_KEY = env_secret("SECRET_KEY") or local_secret(VAR_DIR / "secret_key")
ALLOWED_HOSTS = env_list("ALLOWED_HOSTS", ["127.0.0.1", "localhost", "[::1]"])
CSRF_TRUSTED_ORIGINS = env_list("CSRF_TRUSTED_ORIGINS", [])

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "rest_framework",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "channels",
    "django_celery_beat",
    "homepocket",
    "apps.audit",
    "apps.quotas",
    "apps.pairing",
    "apps.relay",
    "apps.photos",
    "apps.backups",
    "apps.signing",
    "apps.cluster",  # cluster operations: one-run jobs (apps/cluster)
    "apps.ops",  # the operator dashboard at /ops/ and its 1-minute aggregates
    "apps.accounts",  # /account/: API key holders' usage and key rotation
]

# The admin's stack (sessions, CSRF, messages): served for SITE_PATH_PREFIXES only. Ours comes
# first so that request ids, access logs and metrics cover the admin too.
MIDDLEWARE = [
    "homepocket.middleware.request_context_middleware",
    "apps.cluster.maintenance.maintenance_middleware",
    "django.middleware.security.SecurityMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]
# Everything else (the API, its docs, health, metrics) needs no session or cookie, and takes a
# stack with no thread hop at all (homepocket/asgi.py, docs/PERFORMANCE.md): the API
# authenticates with bearer tokens, so CSRF does not apply to it.
API_MIDDLEWARE = [
    "homepocket.middleware.request_context_middleware",
    "apps.cluster.maintenance.maintenance_middleware",
    "homepocket.inline_middleware.InlineSecurityMiddleware",
    "homepocket.inline_middleware.InlineXFrameOptionsMiddleware",
]
# Operators' API calls authenticate with the admin's session, so they take the site stack too, and
# so do the operator dashboard and the API key holders' account pages.
SITE_PATH_PREFIXES = (
    "/admin/", "/api/v1/audit/", "/ops/", "/account/",
    # Server backups' staff API (apps/backups/engine/urls.py); share delivery's /api/v1/backup/... stays on the API stack.
    "/api/v1/backup/schedule", "/api/v1/backup/trigger/", "/api/v1/backup/status/", "/api/v1/recovery/", "/api/v1/validation/", "/api/v1/compliance/",
)  # fmt: skip

ROOT_URLCONF = "homepocket.urls"
ASGI_APPLICATION = "homepocket.asgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = False
USE_TZ = True
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

STATIC_URL = "/static/"
STATIC_ROOT = Path(env_str("STATIC_ROOT", str(VAR_DIR / "static")))
# The embedded mode serves static files (admin, Swagger UI) from the ASGI app itself; behind
# nginx a deployment sets SERVE_STATIC=0 and lets nginx serve collectstatic's output.
SERVE_STATIC = env_bool("SERVE_STATIC", True)

# --- request limits ---------------------------------------------------------------------------

# Bodies above this answer 413 PAYLOAD_TOO_LARGE before they are read (homepocket/body_limit.py).
MAX_REQUEST_BODY_BYTES = env_int("MAX_REQUEST_BODY_BYTES", 1024 * 1024)
DATA_UPLOAD_MAX_MEMORY_SIZE = MAX_REQUEST_BODY_BYTES

# --- database ---------------------------------------------------------------------------------

DATABASE_URL = env_str("DATABASE_URL")
if DATABASE_URL:
    _db = dj_database_url.parse(DATABASE_URL, conn_max_age=0)
    if _db["ENGINE"] == "django.db.backends.postgresql" and env_bool("DATABASE_POOL", True):
        # psycopg 3's pool: connections are reused across requests and threads of a worker.
        _db["OPTIONS"] = {
            **_db.get("OPTIONS", {}),
            "pool": {
                "min_size": env_int("DATABASE_POOL_MIN", 1),
                "max_size": env_int("DATABASE_POOL_MAX", 10),
                "timeout": env_float("DATABASE_POOL_TIMEOUT", 10.0),
            },
        }
    DATABASES = {"default": _db}
else:
    DATABASES = {
        "default": {
            "ENGINE": "django.db.backends.sqlite3",
            "NAME": VAR_DIR / "db.sqlite3",
            "OPTIONS": {
                # WAL lets readers run beside the one writer; IMMEDIATE takes the write lock at
                # BEGIN so two writers queue on busy_timeout instead of failing with "database
                # is locked" when one upgrades a read transaction.
                "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
                "transaction_mode": "IMMEDIATE",
                "timeout": env_int("SQLITE_BUSY_TIMEOUT_SECONDS", 20),
            },
            # A file, not memory, so tests run on the same WAL journal as the server.
            "TEST": {"NAME": VAR_DIR / "test-db.sqlite3"},
        }
    }

# --- cache, channel layer, Celery broker -------------------------------------------------------

REDIS_URL = env_str("REDIS_URL")
CACHE_KEY_PREFIX = env_str("CACHE_KEY_PREFIX", "hp")
if REDIS_URL:
    CACHES = {
        "default": {
            "BACKEND": "django.core.cache.backends.redis.RedisCache",
            "LOCATION": REDIS_URL,
            "KEY_PREFIX": CACHE_KEY_PREFIX,
            # A blocking pool, as for every Redis client (homepocket/redis_clients.py): past 64
            # connections a cache call waits up to 2 s for one instead of failing at once.
            "OPTIONS": {
                "pool_class": "redis.BlockingConnectionPool", "max_connections": 64, "timeout": 2,
                "socket_connect_timeout": 2, "socket_timeout": 2,
            },
        }
    }
    # The pub/sub layer, not the classic one: the classic layer drops messages silently past
    # its capacity and breaks with redis-py 8's default pool (measured, see the README notes).
    CHANNEL_LAYERS = {
        "default": {
            "BACKEND": "channels_redis.pubsub.RedisPubSubChannelLayer",
            "CONFIG": {"hosts": [REDIS_URL], "prefix": f"{CACHE_KEY_PREFIX}:ch"},
        }
    }
else:
    CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}
    CHANNEL_LAYERS = {"default": {"BACKEND": "channels.layers.InMemoryChannelLayer"}}

# --- rate limits and quotas (apps/quotas, docs/quotas.md) -------------------------------------

# The counter store: Redis in the distributed mode (one Lua script per check), this process's
# memory in the embedded mode (one web process). A separate URL lets a deployment give the
# limiter its own Redis.
RATELIMIT_REDIS_URL = env_str("RATELIMIT_REDIS_URL", REDIS_URL)
RATELIMIT_KEY_PREFIX = env_str("RATELIMIT_KEY_PREFIX", f"{CACHE_KEY_PREFIX}:rl")
# Seconds a check may wait for Redis before the policy's fail mode applies, and how long the
# store then stays marked down (checks fail fast) before Redis is tried again.
RATELIMIT_STORE_TIMEOUT = env_float("RATELIMIT_STORE_TIMEOUT", 0.25)
RATELIMIT_STORE_RETRY = env_float("RATELIMIT_STORE_RETRY", 1.0)
RATELIMIT_REDIS_MAX_CONNECTIONS = env_int("RATELIMIT_REDIS_MAX_CONNECTIONS", 32)
# How old a node's copy of the policies may get: an admin edit applies everywhere within this.
RATELIMIT_POLICY_TTL = env_float("RATELIMIT_POLICY_TTL", 5.0)
# Hot paths (the sign route) spend quota from blocks leased in one step (apps/quotas/leases.py):
# a block lives this many seconds, and holds at most this many units (and a 20th of the limit).
QUOTA_LEASE_SECONDS = env_float("QUOTA_LEASE_SECONDS", 1.0)
QUOTA_LEASE_UNITS = env_int("QUOTA_LEASE_UNITS", 100)
# A notification is recorded once per window when a daily or monthly quota passes this share.
QUOTA_WARNING_RATIO = env_float("QUOTA_WARNING_RATIO", 0.8)
# Abuse signals per API key and device (apps/quotas/abuse.py, docs/quotas.md "Abuse signals").
# Each web process adds its per-subject counts to the shared store every ABUSE_FLUSH_SECONDS.
ABUSE_FLUSH_SECONDS = env_float("ABUSE_FLUSH_SECONDS", 10.0)
ABUSE_KEY_PREFIX = env_str("ABUSE_KEY_PREFIX", f"{CACHE_KEY_PREFIX}:abuse")
# A rate spike: a minute's requests above max(ABUSE_RATE_FLOOR, ABUSE_RATE_FACTOR x the usual
# rate), the usual rate being an exponentially weighted average of the subject's active minutes
# (each new minute weighs ABUSE_BASELINE_WEIGHT), judged once it has ABUSE_BASELINE_MIN_MINUTES.
ABUSE_RATE_FACTOR = env_float("ABUSE_RATE_FACTOR", 10.0)
ABUSE_RATE_FLOOR = env_int("ABUSE_RATE_FLOOR", 600)
ABUSE_BASELINE_WEIGHT = env_float("ABUSE_BASELINE_WEIGHT", 0.05)
ABUSE_BASELINE_MIN_MINUTES = env_int("ABUSE_BASELINE_MIN_MINUTES", 10)
ABUSE_BASELINE_DAYS = env_int("ABUSE_BASELINE_DAYS", 30)
# Many addresses: more than ABUSE_IP_LIMIT distinct client addresses within ABUSE_IP_WINDOW_MINUTES.
ABUSE_IP_LIMIT = env_int("ABUSE_IP_LIMIT", 16)
ABUSE_IP_WINDOW_MINUTES = env_int("ABUSE_IP_WINDOW_MINUTES", 10)
# Suspend an API key when it is flagged (devices are only ever flagged).
ABUSE_SUSPEND_API_KEYS = env_bool("ABUSE_SUSPEND_API_KEYS", False)

CELERY_BROKER_URL = env_str("CELERY_BROKER_URL", REDIS_URL or "filesystem://")
if CELERY_BROKER_URL == "filesystem://":
    # No broker server in the embedded mode: kombu's file-system transport, shared by the web
    # process, the worker and beat through var/celery.
    _celery_dir = VAR_DIR / "celery"
    for _sub in ("queue", "processed", "control"):
        (_celery_dir / _sub).mkdir(parents=True, exist_ok=True)
    CELERY_BROKER_TRANSPORT_OPTIONS = {
        "data_folder_in": str(_celery_dir / "queue"),
        "data_folder_out": str(_celery_dir / "queue"),
        "processed_folder": str(_celery_dir / "processed"),
        "control_folder": str(_celery_dir / "control"),
        "store_processed": False,
    }
# The queue web nodes send to and workers consume: one Redis may carry several deployments (or the
# test harness's clusters), each on a queue of its own.
CELERY_TASK_DEFAULT_QUEUE = env_str("CELERY_QUEUE", "celery")
CELERY_TASK_IGNORE_RESULT = True
# Celery logs through Django's LOGGING: the same JSON lines and the same redaction.
CELERY_WORKER_HIJACK_ROOT_LOGGER = False
CELERY_TASK_ACKS_LATE = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_TASK_ALWAYS_EAGER = env_bool("CELERY_TASK_ALWAYS_EAGER", False)
CELERY_BEAT_SCHEDULER = "django_celery_beat.schedulers:DatabaseScheduler"
CELERY_TIMEZONE = TIME_ZONE

# --- object storage ---------------------------------------------------------------------------

S3_BUCKET = env_str("S3_BUCKET")
OBJECTS_DIR = Path(env_str("OBJECTS_DIR", str(VAR_DIR / "objects")))
if S3_BUCKET:
    _objects_storage = {
        "BACKEND": "storages.backends.s3.S3Storage",
        "OPTIONS": {
            "bucket_name": S3_BUCKET,
            "endpoint_url": env_str("S3_ENDPOINT_URL") or None,
            "region_name": env_str("S3_REGION", "us-east-1"),
            "access_key": env_secret("S3_ACCESS_KEY_ID") or None,
            "secret_key": env_secret("S3_SECRET_ACCESS_KEY") or None,
            "addressing_style": env_str("S3_ADDRESSING_STYLE", "path"),
            "signature_version": "s3v4",
            "file_overwrite": False,
            "default_acl": None,
            "querystring_auth": True,
        },
    }
else:
    _objects_storage = {
        "BACKEND": "django.core.files.storage.FileSystemStorage",
        "OPTIONS": {"location": OBJECTS_DIR, "base_url": None},
    }

# --- photos (apps/photos, docs/photos.md) -------------------------------------------------------

# The embedded mode's own upload/download URLs are HMAC-signed with this (made under var/ on
# first run); every node that serves those URLs must share it.
OBJECT_URL_SECRET = env_secret("OBJECT_URL_SECRET") or local_secret(VAR_DIR / "object_url_secret")
PHOTO_MAX_BYTES = env_int("PHOTO_MAX_BYTES", 10 * 1024 * 1024)
PHOTO_UPLOAD_URL_SECONDS = env_int("PHOTO_UPLOAD_URL_SECONDS", 300)
PHOTO_DOWNLOAD_URL_SECONDS = env_int("PHOTO_DOWNLOAD_URL_SECONDS", 300)
# Uploads never completed within this are removed (object and row) by the cleanup task.
PHOTO_PENDING_MAX_SECONDS = env_int("PHOTO_PENDING_MAX_SECONDS", 3600)

STORAGES = {
    "default": _objects_storage,
    "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"},
}

# --- REST API ---------------------------------------------------------------------------------

REST_FRAMEWORK = {
    "DEFAULT_RENDERER_CLASSES": ["homepocket.api.renderers.EnvelopeRenderer"],
    "DEFAULT_PARSER_CLASSES": ["rest_framework.parsers.JSONParser"],
    "DEFAULT_AUTHENTICATION_CLASSES": ["apps.pairing.authentication.DeviceTokenAuthentication"],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
    "DEFAULT_SCHEMA_CLASS": "homepocket.api.schema.EnvelopeAutoSchema",
    "EXCEPTION_HANDLER": "homepocket.api.exceptions.envelope_exception_handler",
    "UNAUTHENTICATED_USER": None,
    "UNAUTHENTICATED_TOKEN": None,
}
API_VERSION = "1"
# Service callers (`Authorization: Api-Key …`) are accepted only by the views that add this class
# (audit queries now, signing later): device endpoints never see an API key as their caller.
API_KEY_AUTHENTICATION = "apps.quotas.authentication.ApiKeyAuthentication"

SPECTACULAR_SETTINGS = {
    "TITLE": "Home Pocket server API",
    "DESCRIPTION": (
        "Zero-knowledge sync and key custody for Home Pocket. Every response under /api/ is an "
        "envelope: {success, data | error, meta}. Error codes are listed in docs/api.md."
    ),
    "VERSION": "1.0.0",
    "SERVE_INCLUDE_SCHEMA": False,
    "COMPONENT_SPLIT_REQUEST": True,
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
    "SCHEMA_PATH_PREFIX": "/api/v1",
    "ENUM_NAME_OVERRIDES": {
        # Share delivery's `status` would otherwise collide with other `status` enums.
        "ShareDeliveryStatusEnum": "apps.backups.delivery.models.DeliveryStatus",
        # Backup runs' `kind` and `status` collide with other apps' `kind`/`status` enums.
        "BackupRunKindEnum": "apps.backups.engine.models.RunKind",
        "BackupRunStatusEnum": "apps.backups.engine.models.RunStatus",
    },
    "DISABLE_ERRORS_AND_WARNINGS": False,
}

# --- device auth ------------------------------------------------------------------------------

DEVICE_TOKEN_MAX_LIFETIME_SECONDS = env_int("DEVICE_TOKEN_MAX_LIFETIME_SECONDS", 24 * 3600)
DEVICE_TOKEN_LEEWAY_SECONDS = env_int("DEVICE_TOKEN_LEEWAY_SECONDS", 60)
DEVICE_LAST_ACTIVE_INTERVAL_SECONDS = env_int("DEVICE_LAST_ACTIVE_INTERVAL_SECONDS", 60)
# Device records for token checks, cached in the process and in Redis (distributed mode only;
# apps/pairing/device_cache.py): a change reaches every node through the broadcast at once; these
# only bound an entry's life. 0 turns a level off.
DEVICE_CACHE_SECONDS = env_int("DEVICE_CACHE_SECONDS", 60)
DEVICE_CACHE_REDIS_SECONDS = env_int("DEVICE_CACHE_REDIS_SECONDS", 300)
# Hot configuration (apps/cluster/hot_config.py): a node re-reads it this often while it cannot
# hear the broadcast (Redis down, or the embedded mode), and this often in any case.
HOT_CONFIG_POLL_SECONDS = env_float("HOT_CONFIG_POLL_SECONDS", 5.0)
HOT_CONFIG_SAFETY_SECONDS = env_float("HOT_CONFIG_SAFETY_SECONDS", 60.0)

# --- audit ------------------------------------------------------------------------------------

# The key of the HMAC that turns device and book ids into audit hashes; every node must share it.
AUDIT_HASH_KEY = env_secret("AUDIT_HASH_KEY") or local_secret(VAR_DIR / "audit_hash_key")
AUDIT_RETENTION_DAYS = env_int("AUDIT_RETENTION_DAYS", 90)
# Audited requests hand events to a buffer that a background thread writes in batches; a crash
# loses at most this many seconds of events (docs/audit.md). 0: write each at commit.
AUDIT_FLUSH_INTERVAL = env_float("AUDIT_FLUSH_INTERVAL", 0.5)
AUDIT_BATCH_SIZE = env_int("AUDIT_BATCH_SIZE", 500)
AUDIT_BUFFER_MAX = env_int("AUDIT_BUFFER_MAX", 100_000)

# --- backups: share delivery (docs/share-delivery.md) ----------------------------------------

SHARE_DELIVERY_MAX_SHARE_BYTES = env_int("SHARE_DELIVERY_MAX_SHARE_BYTES", 4096)
# A request whose timestamp is further than this from the server's clock is a replay.
SHARE_DELIVERY_REPLAY_WINDOW_SECONDS = env_int("SHARE_DELIVERY_REPLAY_WINDOW_SECONDS", 300)
# Failed attempts (a negative or mismatching confirm) before a delivery is FAILED.
SHARE_DELIVERY_MAX_TRIES = env_int("SHARE_DELIVERY_MAX_TRIES", 5)
# A delivery not confirmed this long after its deposit (or an operator's retry) is FAILED.
SHARE_DELIVERY_DEADLINE_SECONDS = env_int("SHARE_DELIVERY_DEADLINE_SECONDS", 7 * 24 * 3600)
# After a failed attempt the next request waits base · 2^(tries-1) seconds, at most max.
SHARE_DELIVERY_RETRY_BASE_SECONDS = env_float("SHARE_DELIVERY_RETRY_BASE_SECONDS", 1.0)
SHARE_DELIVERY_RETRY_MAX_SECONDS = env_float("SHARE_DELIVERY_RETRY_MAX_SECONDS", 300.0)
# Serve POST /api/v1/backup/delivery/request from the lean ASGI route (apps/backups/delivery/fast_route.py).
DELIVERY_LEAN_ROUTE = env_bool("DELIVERY_LEAN_ROUTE", True)

# --- backups: server backups (docs/backups.md) -------------------------------------------------

# The backup repository (docs/backup-format.md): BACKUP_REPOSITORY is a directory or
# s3://bucket/prefix (a bucket of its own, apart from the photos); unset, the local directory
# BACKUP_REPOSITORY_DIR. An s3:// repository uses BACKUP_S3_*, each defaulting to the photo store's S3_*.
BACKUP_REPOSITORY = env_str("BACKUP_REPOSITORY", "")
BACKUP_REPOSITORY_DIR = Path(env_str("BACKUP_REPOSITORY_DIR", str(VAR_DIR / "backups" / "repository")))
BACKUP_S3 = {
    "endpoint_url": env_str("BACKUP_S3_ENDPOINT_URL", env_str("S3_ENDPOINT_URL")) or None,
    "region": env_str("BACKUP_S3_REGION", env_str("S3_REGION", "us-east-1")),
    "access_key": env_secret("BACKUP_S3_ACCESS_KEY_ID") or env_secret("S3_ACCESS_KEY_ID") or None,
    "secret_key": env_secret("BACKUP_S3_SECRET_ACCESS_KEY") or env_secret("S3_SECRET_ACCESS_KEY") or None,
    "addressing_style": env_str("BACKUP_S3_ADDRESSING_STYLE", env_str("S3_ADDRESSING_STYLE", "path")),
}
# The codec a repository is made with: zstd (level 3), gzip, lz4 or none (docs/backup-format.md).
# An existing repository keeps the one in its config.json; `manage.py backup compression CODEC`
# changes that. An unknown name fails the start-up checks (backups.E001).
BACKUP_COMPRESSION = env_str("BACKUP_COMPRESSION", "zstd")
# PostgreSQL: pg_dump workers (1: one custom-format file; N > 1: the directory format, N in parallel)
# and pg_restore jobs for a test restore or a recovery. Below 1 fails the start-up checks (backups.E020).
BACKUP_PG_DUMP_JOBS = env_int("BACKUP_PG_DUMP_JOBS", 1)
BACKUP_PG_RESTORE_JOBS = env_int("BACKUP_PG_RESTORE_JOBS", 1)
# Config and full backups put the secrets bundle, sealed under this file's passphrase, in the snapshot.
BACKUP_SECRETS_PASSPHRASE_FILE = env_str("BACKUP_SECRETS_PASSPHRASE_FILE", "")
# Data residency: regions a storage location may be in (empty: any). A backup elsewhere is COMPLIANCE_VIOLATION.
BACKUP_ALLOWED_REGIONS = env_list("BACKUP_ALLOWED_REGIONS", [])
# Take a database backup before `manage.py migrate` applies migrations (apps/backups/engine/before_migrate.py).
BACKUP_BEFORE_MIGRATE = env_bool("BACKUP_BEFORE_MIGRATE", False)
# The region of BACKUP_REPOSITORY (storage locations in the admin carry their own).
BACKUP_REPOSITORY_REGION = env_str("BACKUP_REPOSITORY_REGION", "")
# A schedule whose due run has not started this long after it was due raises BACKUP_DELAYED.
BACKUP_DELAY_GRACE_SECONDS = env_int("BACKUP_DELAY_GRACE_SECONDS", 900)

# Point-in-time recovery (apps/backups/engine/physical.py, docs/backups.md): PostgreSQL's
# archive_command copies finished WAL segments into this spool; a `wal` backup moves them into the
# repository. BACKUP_PHYSICAL_DATABASE_URL is the server pg_basebackup copies (a user with the
# REPLICATION attribute); unset, the server of DATABASE_URL. BACKUP_POSTGRES_BIN_DIR holds
# pg_basebackup and pg_waldump; unset, `pg_config --bindir`, else the PATH.
BACKUP_WAL_SPOOL_DIR = Path(env_str("BACKUP_WAL_SPOOL_DIR", str(VAR_DIR / "backups" / "wal-spool")))
BACKUP_PHYSICAL_DATABASE_URL = env_secret("BACKUP_PHYSICAL_DATABASE_URL")
BACKUP_POSTGRES_BIN_DIR = env_str("BACKUP_POSTGRES_BIN_DIR", "")

# --- pairing ----------------------------------------------------------------------------------

BOOK_MAX_DEVICES = env_int("BOOK_MAX_DEVICES", 10)
# Failed verifies per device and per client IP in 10 minutes before RATE_LIMIT_EXCEEDED.
PAIRING_MAX_FAILURES = env_int("PAIRING_MAX_FAILURES", 5)

# --- signing ----------------------------------------------------------------------------------

# The signer sidecars' Unix sockets (docs/signing.md). `manage.py serve` starts one signer per
# path: one in the embedded mode, one per core in the distributed mode unless set.
SIGNER_SOCKETS = env_list(
    "SIGNER_SOCKETS",
    [str(VAR_DIR / "run" / f"signer-{i}.sock") for i in range(1 if not REDIS_URL else (os.cpu_count() or 1))],
)
SIGNER_POOL_SIZE = env_int("SIGNER_POOL_SIZE", 2)  # persistent connections per signer per worker
SIGNER_TIMEOUT_SECONDS = env_float("SIGNER_TIMEOUT_SECONDS", 2.0)
# A verified API key is trusted this long on the sign path: a revoked key signs at most this much longer.
SIGNING_API_KEY_CACHE_SECONDS = env_int("SIGNING_API_KEY_CACHE_SECONDS", 10)
SIGNING_KEY_CACHE_SECONDS = env_int("SIGNING_KEY_CACHE_SECONDS", 60)
SIGNING_USAGE_FLUSH_SECONDS = env_int("SIGNING_USAGE_FLUSH_SECONDS", 60)
# Serve POST /api/v1/signing/sign from the lean ASGI route (apps/signing/fast_route.py).
SIGNING_LEAN_ROUTE = env_bool("SIGNING_LEAN_ROUTE", True)

# --- relay (docs/relay.md) -----------------------------------------------------------------------

# Frames (and relay/send payloads) above this are refused: close 1009 / PAYLOAD_TOO_LARGE.
RELAY_MAX_FRAME_BYTES = env_int("RELAY_MAX_FRAME_BYTES", 256 * 1024)
# A socket's outbox bounds: a frame past either closes that socket with 4408 (slow reader).
RELAY_SOCKET_BUFFER_FRAMES = env_int("RELAY_SOCKET_BUFFER_FRAMES", 1024)
RELAY_SOCKET_BUFFER_BYTES = env_int("RELAY_SOCKET_BUFFER_BYTES", 4 * 1024 * 1024)
# A browser's one-time socket ticket (POST /api/v1/relay/ticket) lives this long.
RELAY_TICKET_TTL_SECONDS = env_int("RELAY_TICKET_TTL_SECONDS", 30)
# A node refreshes its sockets' presence every third of this; a dead node's sockets drop out after it.
RELAY_PRESENCE_TTL_SECONDS = env_int("RELAY_PRESENCE_TTL_SECONDS", 90)
RELAY_REDIS_TIMEOUT_SECONDS = env_float("RELAY_REDIS_TIMEOUT_SECONDS", 3.0)
# The optional encrypted backlog, OFF by default because the product promises that the relay
# stores nothing: with N > 0 the last N ciphertext frames of a book, at most this many seconds
# old, are kept so a device reconnecting with ?since=<seq> catches up (docs/relay.md "Backlog").
RELAY_BACKLOG_FRAMES = env_int("RELAY_BACKLOG_FRAMES", 0)
RELAY_BACKLOG_SECONDS = env_int("RELAY_BACKLOG_SECONDS", 3600)

# --- health, drain, metrics --------------------------------------------------------------------

# After SIGTERM, /health answers 503 for this long while requests in flight finish, so a load
# balancer takes the node out before it stops listening.
DRAIN_SECONDS = env_float("DRAIN_SECONDS", 5.0)
# Components /ready must find up; the others are reported but do not fail readiness.
READY_REQUIRED = env_list("READY_REQUIRED", ["database", "cache", "channel_layer", "storage", "signer", "relay"])
PROMETHEUS_MULTIPROC_DIR = env_str("PROMETHEUS_MULTIPROC_DIR")

# --- node heartbeats and ops aggregates (apps/cluster/heartbeat.py, apps/ops; docs/ops.md) ------

# This node's name on the cluster page; `homepocket.server` defaults it to <hostname>:<port>.
NODE_ID = env_str("NODE_ID")
HOMEPOCKET_VERSION = env_str("HOMEPOCKET_VERSION", "1.0.0")
# Each server process writes its heartbeat this often; a process silent for the TTL is dead.
HEARTBEAT_INTERVAL_SECONDS = env_float("HEARTBEAT_INTERVAL_SECONDS", 10.0)
HEARTBEAT_TTL_SECONDS = env_float("HEARTBEAT_TTL_SECONDS", 30.0)
# Each process adds its 1-minute aggregates to the shared store this often; kept this many hours.
OPS_FLUSH_SECONDS = env_float("OPS_FLUSH_SECONDS", 5.0)
OPS_RETENTION_HOURS = env_int("OPS_RETENTION_HOURS", 48)
# A rotated API key keeps working this long beside its successor, then is revoked (docs/ops.md).
API_KEY_ROTATION_GRACE_SECONDS = env_int("API_KEY_ROTATION_GRACE_SECONDS", 24 * 3600)

# --- security (production values come from the environment) ------------------------------------

# Proxies (addresses or CIDR networks) whose X-Forwarded-For names the client (homepocket/client_ip.py).
TRUSTED_PROXIES = env_list("TRUSTED_PROXIES", [])
SECURE_PROXY_SSL_HEADER = (
    ("HTTP_X_FORWARDED_PROTO", "https") if env_bool("TRUST_X_FORWARDED_PROTO", False) else None
)
SECURE_SSL_REDIRECT = env_bool("SECURE_SSL_REDIRECT", False)
SECURE_REDIRECT_EXEMPT = [r"^health$", r"^ready$", r"^metrics$"]
SECURE_HSTS_SECONDS = env_int("SECURE_HSTS_SECONDS", 0)
SECURE_HSTS_INCLUDE_SUBDOMAINS = env_bool("SECURE_HSTS_INCLUDE_SUBDOMAINS", False)
SECURE_HSTS_PRELOAD = env_bool("SECURE_HSTS_PRELOAD", False)
SESSION_COOKIE_SECURE = env_bool("SESSION_COOKIE_SECURE", False)
CSRF_COOKIE_SECURE = env_bool("CSRF_COOKIE_SECURE", False)
SESSION_COOKIE_HTTPONLY = True
X_FRAME_OPTIONS = "DENY"

# --- logging ----------------------------------------------------------------------------------

LOG_LEVEL = env_str("LOG_LEVEL", "INFO").upper()
LOG_FORMAT = env_str("LOG_FORMAT", "json")
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "filters": {
        "redact": {"()": "homepocket.logs.RedactingFilter"},
        "request_id": {"()": "homepocket.logs.RequestIdFilter"},
    },
    "formatters": {
        "json": {"()": "homepocket.logs.JsonFormatter"},
        "text": {"format": "%(asctime)s %(levelname)s %(name)s [%(request_id)s] %(message)s"},
    },
    "handlers": {
        "console": {
            "class": "logging.StreamHandler",
            "formatter": LOG_FORMAT if LOG_FORMAT in ("json", "text") else "json",
            "filters": ["request_id", "redact"],
        },
    },
    "root": {"handlers": ["console"], "level": LOG_LEVEL},
    "loggers": {
        # Our access log replaces these; they would print paths with query strings.
        "django.request": {"level": "ERROR"},
        "django.server": {"level": "WARNING"},
        "_granian": {"level": "WARNING"},
        "granian.access": {"level": "WARNING"},
        # An INFO line per request made (the admin tools' and tests' clients): noise, and URLs.
        "httpx": {"level": "WARNING"},
        "httpcore": {"level": "WARNING"},
    },
}
