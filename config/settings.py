"""Beacon's one settings module, configured from the environment (12-factor).

Every value is read here, typed, from an environment variable (or from `.env` beside
manage.py, which `make run` writes for development; real environment variables win; a
deployed process never reads it: config/env_file.py).
Nothing exists only in a production settings file: production is this file with
DEBUG off and real secrets set.
"""

from __future__ import annotations

import ipaddress
import re
import sys
from datetime import timedelta
from pathlib import Path

import environ
from django.core.exceptions import ImproperlyConfigured
from whitenoise.compress import Compressor

from config.env_file import env_file_read

BASE_DIR = Path(__file__).resolve().parent.parent

env = environ.Env()
env_file_read(Path(env.str("BEACON_ENV_FILE", default=str(BASE_DIR / ".env"))))


def _networks(name: str, default: list[str]) -> list[str]:
    """A comma-separated list of CIDR networks; a typo stops the process instead of trusting nobody (or everybody)."""
    values = env.list(name, default=default)
    for value in values:
        try:
            ipaddress.ip_network(value, strict=False)
        except ValueError as exc:
            raise ImproperlyConfigured(f"{name}: {value!r} is not an IP network (e.g. 10.0.0.0/8).") from exc
    return values


DEBUG = env.bool("DEBUG", default=False)
TESTING = env.bool("BEACON_TESTING", default=False)

SECRET_KEY = env.str("SECRET_KEY", default="")
if not SECRET_KEY:
    if not (DEBUG or TESTING):
        message = (
            "SECRET_KEY must be set when DEBUG is off. For development, `make run` writes a .env "
            "(DEBUG=true and a random key); see .env.example for every variable."
        )
        # Django's command runner can hide a settings error behind a later one: say it here too.
        sys.stderr.write(f"Beacon configuration error: {message}\n")
        raise ImproperlyConfigured(message)
    SECRET_KEY = "django-insecure-development-only-key-do-not-use-in-production-0123456789"

ALLOWED_HOSTS = env.list("ALLOWED_HOSTS", default=["127.0.0.1", "localhost"] if DEBUG else [])
CSRF_TRUSTED_ORIGINS = env.list("CSRF_TRUSTED_ORIGINS", default=[])

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "django_prometheus",
    "rest_framework",
    "drf_spectacular",
    "drf_spectacular_sidecar",  # Swagger UI and Redoc served from our static files, no CDN
    "axes",
    "config.apps.BeaconConfig",
    "checkout",
    "notifications",
    "sandbox",
]

MIDDLEWARE = [
    "foundation.trusted_proxies.TrustedProxyMiddleware",
    "django_prometheus.middleware.PrometheusBeforeMiddleware",
    "foundation.middleware.RequestIdMiddleware",
    "django.middleware.security.SecurityMiddleware",
    # Static files from the web process itself, right after SecurityMiddleware (WhiteNoise's rule).
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "foundation.middleware.ApiErrorMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "config.content_security.ContentSecurityPolicyMiddleware",
    # After authentication: refuses a locked-out admin login with 429 (django-axes).
    "axes.middleware.AxesMiddleware",
    "django_prometheus.middleware.PrometheusAfterMiddleware",
]

ROOT_URLCONF = "config.urls"
WSGI_APPLICATION = "config.wsgi.application"
ASGI_APPLICATION = "config.asgi.application"

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

# --- Database ---------------------------------------------------------------------------
# Persistent connections (CONN_MAX_AGE) with health checks: gunicorn's threads and Celery's
# processes each keep their connection instead of reconnecting per request or task.
DATABASE_URL = env.str("DATABASE_URL", default="postgres://root@127.0.0.1:5432/beacon")
DATABASES = {"default": env.db_url_config(DATABASE_URL)}
# django-prometheus's PostgreSQL backend (query metrics), whose health check skips a connection
# that ended a request or task without error less than this many seconds ago (config/database).
DATABASES["default"]["ENGINE"] = "config.database"
DATABASES["default"]["CONN_MAX_AGE"] = env.int("DATABASE_CONN_MAX_AGE", default=60)
DATABASES["default"]["CONN_HEALTH_CHECKS"] = True
DATABASE_HEALTH_CHECK_FRESH_SECONDS = env.float("DATABASE_HEALTH_CHECK_FRESH_SECONDS", default=1.0)
DATABASES["default"].setdefault("OPTIONS", {})
# A broken database must answer quickly (503), not hang a request.
DATABASES["default"]["OPTIONS"].setdefault("connect_timeout", env.int("DATABASE_CONNECT_TIMEOUT", default=3))
# Server-side parameter binding: psycopg sends the values apart from the SQL instead of quoting
# them into it in Python, and prepares a statement the fifth time a connection runs it, so
# PostgreSQL stops parsing and planning the checkout's and the send's few statements again and
# again. Turn off (false) behind a pooler in transaction mode (PgBouncer < 1.21), which cannot
# keep prepared statements.
if env.bool("DATABASE_SERVER_SIDE_BINDING", default=True):
    DATABASES["default"]["OPTIONS"].setdefault("server_side_binding", True)
    # Django turns psycopg's automatic preparing off unless told a threshold.
    DATABASES["default"]["OPTIONS"].setdefault("prepare_threshold", 5)
else:
    # Behind a transaction pooler a server-side cursor (QuerySet.iterator()) could outlive the
    # transaction that holds its server connection: Django's documented setting for poolers.
    DATABASES["default"]["DISABLE_SERVER_SIDE_CURSORS"] = True
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# --- Redis: broker, cache, breakers ------------------------------------------------------
# REDIS_URL holds what must not be evicted (circuit breakers, rate limits, counters);
# the template cache lives in its own database (CACHE_URL, default: REDIS_URL's db + 1),
# because a cache may evict and `cache.clear()` empties its whole database.
REDIS_URL = env.str("REDIS_URL", default="redis://127.0.0.1:6379/0")
CELERY_BROKER_URL = env.str("CELERY_BROKER_URL", default=REDIS_URL)


def _redis_url_with_next_db(url: str) -> str:
    base, _, db = url.rpartition("/")
    if base.startswith("redis") and db.isdigit():
        return f"{base}/{int(db) + 1}"
    return url


CACHE_URL = env.str("CACHE_URL", default=_redis_url_with_next_db(REDIS_URL))
# Redis calls from the request path must fail fast: a dead Redis costs a request at most this.
REDIS_SOCKET_TIMEOUT = env.float("REDIS_SOCKET_TIMEOUT", default=0.25)
CACHES = {
    "default": {
        # django_redis with django-prometheus's hit/miss counters (django_cache_*).
        "BACKEND": "django_prometheus.cache.backends.redis.RedisCache",
        "LOCATION": CACHE_URL,
        "KEY_PREFIX": env.str("CACHE_KEY_PREFIX", default="beacon"),
        "OPTIONS": {
            "CLIENT_CLASS": "django_redis.client.DefaultClient",
            "SOCKET_CONNECT_TIMEOUT": REDIS_SOCKET_TIMEOUT,
            "SOCKET_TIMEOUT": REDIS_SOCKET_TIMEOUT,
            # A cache outage degrades to "miss" (and is logged), never to a 500.
            "IGNORE_EXCEPTIONS": True,
        },
    }
}
DJANGO_REDIS_LOG_IGNORED_EXCEPTIONS = True
DJANGO_REDIS_LOGGER = "beacon.cache"

# --- Celery -------------------------------------------------------------------------------
CELERY_BROKER_URL = CELERY_BROKER_URL
CELERY_RESULT_BACKEND = None
CELERY_TASK_IGNORE_RESULT = True
CELERY_ACCEPT_CONTENT = ["json"]
CELERY_TASK_SERIALIZER = "json"
CELERY_TIMEZONE = "UTC"
# A killed worker's task runs again: ack after the run, requeue when the worker is lost,
# and take one message per process at a time. The database counts deliveries so a task
# that keeps killing its worker ends as a dead letter instead of looping (celery#9082).
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
# Kombu's connection retry is unlimited by default, which can hang a publisher while Redis
# is down (celery#4296). Bound it, and bound the socket operations.
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
CELERY_BROKER_CONNECTION_MAX_RETRIES = None  # workers: keep reconnecting, they have nothing else to do
# The visibility timeout must exceed every countdown and task run by far, or Redis hands the
# message to a second worker (celery#2599). Countdowns are capped at NOTIFICATION_MAX_COUNTDOWN.
CELERY_VISIBILITY_TIMEOUT = env.int("CELERY_VISIBILITY_TIMEOUT", default=3600)
CELERY_BROKER_TRANSPORT_OPTIONS = {
    "visibility_timeout": CELERY_VISIBILITY_TIMEOUT,
    "socket_connect_timeout": 2,
    "socket_timeout": 10,
    "socket_keepalive": True,
    "health_check_interval": 10,
}
# RabbitMQ (CELERY_BROKER_URL=amqp://..., several nodes as a ';'-separated failover list) for a
# fleet of hosts: quorum queues (replicated by Raft: a message survives the loss of a node) for
# every queue, the routed ones included, and publisher confirms (a publish returns once the
# queue's majority has the message). The Redis options above mean nothing to py-amqp; these
# bound every frame instead. Celery turns off global QoS itself on quorum queues.
if CELERY_BROKER_URL.startswith(("amqp://", "amqps://", "pyamqp://")):
    CELERY_TASK_DEFAULT_QUEUE_TYPE = "quorum"
    CELERY_TASK_CREATE_MISSING_QUEUE_TYPE = "quorum"
    CELERY_BROKER_TRANSPORT_OPTIONS = {"confirm_publish": True, "read_timeout": 10, "write_timeout": 10}
# The web's hand-off publishes on its own connection with these tight limits (seconds);
# a broker outage adds at most about this much to a checkout, once per cool-down window.
BEACON_PUBLISH_TIMEOUT = env.float("BEACON_PUBLISH_TIMEOUT", default=0.05)
BEACON_PUBLISH_COOLDOWN = env.float("BEACON_PUBLISH_COOLDOWN", default=5.0)
# Celery's Django fixup closes the database connection before and after every task unless
# this is set: a new PostgreSQL backend per task (fork + auth) cost more CPU than the task on
# the benchmark's 2-core box. With it, tasks recycle connections the way requests do
# (config/celery_signals.py: close_old_connections honours CONN_MAX_AGE and health checks).
CELERY_DB_REUSE_MAX = 1_000_000
CELERY_TASK_TIME_LIMIT = 120
CELERY_TASK_SOFT_TIME_LIMIT = 100
CELERY_WORKER_HIJACK_ROOT_LOGGER = False
CELERY_WORKER_SEND_TASK_EVENTS = False
CELERY_TASK_DEFAULT_QUEUE = "default"
CELERY_TASK_ROUTES = {
    "notifications.tasks.notification_send_email": {"queue": "email"},
    "notifications.tasks.notification_send_sms": {"queue": "sms"},
}
CELERY_BEAT_SCHEDULE_FILENAME = env.str("CELERY_BEAT_SCHEDULE_FILENAME", default=str(BASE_DIR / ".devservices" / "celerybeat-schedule"))

# --- Beacon -------------------------------------------------------------------------------
# How long the relay leaves a fresh trigger alone, so it does not re-publish what the web
# has just published itself (seconds).
OUTBOX_RELAY_GRACE = env.float("OUTBOX_RELAY_GRACE", default=10.0)
# How often beat runs the relay and the retry sweeper (seconds).
OUTBOX_RELAY_INTERVAL = env.float("OUTBOX_RELAY_INTERVAL", default=2.0)
NOTIFICATION_SWEEP_INTERVAL = env.float("NOTIFICATION_SWEEP_INTERVAL", default=5.0)
# A due notification untouched this long is taken to have lost its queued message and is
# queued again by the sweeper (seconds). Lower only where messages are lost on purpose (chaos).
NOTIFICATION_SWEEP_STALE_SECONDS = env.float("NOTIFICATION_SWEEP_STALE_SECONDS", default=60.0)
# Retry budget of one notification when every vendor failed.
NOTIFICATION_MAX_ATTEMPTS = env.int("NOTIFICATION_MAX_ATTEMPTS", default=8)
NOTIFICATION_MAX_AGE = env.float("NOTIFICATION_MAX_AGE", default=6 * 3600)
NOTIFICATION_RETRY_BASE_DELAY = env.float("NOTIFICATION_RETRY_BASE_DELAY", default=2.0)
NOTIFICATION_RETRY_MAX_DELAY = env.float("NOTIFICATION_RETRY_MAX_DELAY", default=600.0)
# The dispatch task makes the first attempt at each notification itself (one broker message
# per checkout instead of three); false queues each send on its channel's queue instead, for
# deployments that run workers dedicated to one channel (-Q email / -Q sms).
DISPATCH_SENDS_INLINE = env.bool("DISPATCH_SENDS_INLINE", default=True)
# Celery countdowns longer than this are left to the sweeper (kept far below the visibility timeout).
NOTIFICATION_MAX_COUNTDOWN = env.float("NOTIFICATION_MAX_COUNTDOWN", default=300.0)
# Deliveries of one notification's task before it is declared poison (dead letter).
NOTIFICATION_MAX_DELIVERIES = env.int("NOTIFICATION_MAX_DELIVERIES", default=20)
# Extra seconds a send's claim lasts beyond the sum of its vendors' timeouts.
NOTIFICATION_LEASE_MARGIN = env.float("NOTIFICATION_LEASE_MARGIN", default=5.0)
# Seconds a worker process keeps a channel's vendor list before reading it again (an
# operator's vendor edit reaches other processes within this time; 0 reads it for every send).
NOTIFICATION_VENDOR_CACHE_SECONDS = env.float("NOTIFICATION_VENDOR_CACHE_SECONDS", default=2.0)
# Seconds an SMTP session (connected, EHLO/STARTTLS/AUTH done) waits in a worker for its next
# email before it is closed; 0 opens and QUITs a session for every email.
SMTP_SESSION_IDLE_SECONDS = env.float("SMTP_SESSION_IDLE_SECONDS", default=15.0)
# The name Beacon gives in EHLO and the right part of its Message-IDs; empty: each SMTP vendor's
# sender domain (from_email), never the host's getfqdn() ("localhost" on many machines).
SMTP_EHLO_HOSTNAME = env.str("SMTP_EHLO_HOSTNAME", default="")
EMAIL_MESSAGE_ID_DOMAIN = env.str("EMAIL_MESSAGE_ID_DOMAIN", default="")
for _name in ("SMTP_EHLO_HOSTNAME", "EMAIL_MESSAGE_ID_DOMAIN"):
    if globals()[_name] and not re.fullmatch(r"[A-Za-z0-9]([A-Za-z0-9.-]{0,251}[A-Za-z0-9])?", globals()[_name]):
        raise ImproperlyConfigured(f"{_name} must be a domain name such as shop.example")
# CA bundle (PEM file) that SMTP relays' certificates are checked against; empty: the system's.
SMTP_CA_BUNDLE = env.str("SMTP_CA_BUNDLE", default="")
DEFAULT_LOCALE = env.str("BEACON_DEFAULT_LOCALE", default="en")
TEMPLATE_CACHE_TTL = env.int("TEMPLATE_CACHE_TTL", default=300)
# The render budget of one notification (or one admin preview or save check), enforced inside
# the template sandbox: wall-clock seconds, and characters produced (all parts together,
# including text captured by macros and {% set %} blocks; also the largest value a template
# may build). A template over either fails its notification permanently, with the reason.
TEMPLATE_RENDER_TIME_LIMIT = env.float("TEMPLATE_RENDER_TIME_LIMIT", default=0.5)
TEMPLATE_RENDER_MAX_CHARS = env.int("TEMPLATE_RENDER_MAX_CHARS", default=256 * 1024)
# The longest source one template part may have (about Gmail's clipping size); longer ones
# are refused on save and fail at render without being compiled.
TEMPLATE_SOURCE_MAX_CHARS = env.int("TEMPLATE_SOURCE_MAX_CHARS", default=100_000)
# Dispatches of one trigger after relay hand-overs before it is declared dead (it keeps
# failing to dispatch): it then waits for an operator in the admin instead of being
# republished forever (the relay hands it over every 30 s, so the default gives up after
# about 3 minutes of failures; a trigger waiting for workers that are down is not counted).
TRIGGER_MAX_DISPATCH_ATTEMPTS = env.int("TRIGGER_MAX_DISPATCH_ATTEMPTS", default=5)
for _name in ("TEMPLATE_RENDER_TIME_LIMIT", "TEMPLATE_RENDER_MAX_CHARS", "TEMPLATE_SOURCE_MAX_CHARS", "TRIGGER_MAX_DISPATCH_ATTEMPTS"):
    if globals()[_name] <= 0:
        raise ImproperlyConfigured(f"{_name} must be positive")
# Key for vendor secrets stored encrypted in the database (Fernet, urlsafe base64 of 32 bytes).
# Defaults to one derived from SECRET_KEY.
VENDOR_SECRETS_KEY = env.str("VENDOR_SECRETS_KEY", default="")
# --- Consent and personal data -------------------------------------------------------------
# Key of the HMAC that suppressions (and erased rows) keep of an address (notifications/consent.py).
# Defaults to one derived from SECRET_KEY. Changing it makes every stored hash unmatchable: a
# suppressed recipient would get messages again. Set it once, before the first STOP.
PERSONAL_DATA_HASH_KEY = env.str("PERSONAL_DATA_HASH_KEY", default="")
# Days rendered content and recipient addresses of notifications (and triggers' payloads and
# recipients) are kept; then the beat's daily `personal_data_expire` erases them, leaving
# counts, states, times and a hash (notifications/retention.py).
PERSONAL_DATA_RETENTION_DAYS = env.int("PERSONAL_DATA_RETENTION_DAYS", default=90)
if PERSONAL_DATA_RETENTION_DAYS <= 0:
    raise ImproperlyConfigured("PERSONAL_DATA_RETENTION_DAYS must be positive")
# What an inbound SMS "HELP" is answered with (Twilio inbound webhook).
SMS_HELP_REPLY = env.str("SMS_HELP_REPLY", default="Beacon notifications. Reply STOP to opt out, START to opt back in.")
# The base URL of one-click unsubscribe links in marketing email (List-Unsubscribe, RFC 8058),
# e.g. https://beacon.example.com; empty: marketing email carries no such header.
PUBLIC_BASE_URL = env.str("PUBLIC_BASE_URL", default="").rstrip("/")
# It is also where vendors send delivery receipts: every Twilio send names
# PUBLIC_BASE_URL/webhooks/twilio/status/ as its StatusCallback (docs/vendors.md).
# Channels whose messages a vendor reports undelivered (for a carrier reason, not the
# recipient's) are sent once more through the next vendor (notifications/delivery_fallback.py).
DELIVERY_FALLBACK_CHANNELS = frozenset(env.list("DELIVERY_FALLBACK_CHANNELS", default=["sms"]))
if not DELIVERY_FALLBACK_CHANNELS <= {"sms", "email"}:
    raise ImproperlyConfigured("DELIVERY_FALLBACK_CHANNELS may name sms and email only")
# --- Payments -----------------------------------------------------------------------------
# Dotted path of the class that charges a checkout (docs/payments.md: the interface a real
# provider implements). The sandbox gateway accepts the test token `tok_ok` as paid, so it is
# the default only in development and tests: with DEBUG off it must be named explicitly (a
# staging deploy may do so; `check --deploy` then warns); left unset, nothing starts.
SANDBOX_PAYMENT_GATEWAY = "checkout.payments.SandboxPaymentGateway"
PAYMENT_GATEWAY = env.str("PAYMENT_GATEWAY", default=SANDBOX_PAYMENT_GATEWAY if (DEBUG or TESTING) else "")
if not PAYMENT_GATEWAY:
    message = (
        "PAYMENT_GATEWAY must be set when DEBUG is off: the dotted path of your payment provider's "
        f"gateway class (docs/payments.md), or {SANDBOX_PAYMENT_GATEWAY} to accept test tokens on purpose."
    )
    sys.stderr.write(f"Beacon configuration error: {message}\n")
    raise ImproperlyConfigured(message)

# Egress policy of the vendor adapters (notifications/egress.py): vendors may connect to public
# addresses only, over https for HTTP vendors; these networks (CIDR) are allowed besides, and
# plain http:// with the flag. Development (DEBUG) allows loopback and http for the sandbox;
# link-local and metadata addresses are refused whatever this says.
VENDOR_EGRESS_ALLOWED_NETWORKS = _networks("VENDOR_EGRESS_ALLOWED_NETWORKS", ["127.0.0.0/8", "::1/128"] if DEBUG else [])
VENDOR_EGRESS_ALLOW_HTTP = env.bool("VENDOR_EGRESS_ALLOW_HTTP", default=DEBUG)
# How a committed trigger reaches the broker (docs/reliability.md, "The hand-off"):
# - "notify" (default): the trigger's INSERT also runs pg_notify, delivered on COMMIT; a listener
#   thread in every Celery worker (notifications/trigger_listener.py) claims the trigger and
#   publishes its dispatch. The checkout request never talks to the broker.
# - "web": the web publishes the dispatch itself right after COMMIT, bounded in time (publisher.py).
# Either way the outbox relay hands over what the hand-off missed, after OUTBOX_RELAY_GRACE.
_SYNC_SEND = env.bool("BEACON_SYNC_SEND", default=False)
TRIGGER_HANDOFF_VIA = env.str("TRIGGER_HANDOFF_VIA", default="web" if _SYNC_SEND else "notify")
_TRIGGER_HANDOFFS = {"notify": "notifications.outbox.trigger_handoff_notified", "web": "notifications.outbox.trigger_handoff"}
if TRIGGER_HANDOFF_VIA not in _TRIGGER_HANDOFFS:
    raise ImproperlyConfigured(f"TRIGGER_HANDOFF_VIA must be one of {sorted(_TRIGGER_HANDOFFS)}, not {TRIGGER_HANDOFF_VIA!r}")
# What runs right after a trigger commits (a dotted path), from TRIGGER_HANDOFF_VIA. The
# benchmark's "before" architecture (BEACON_SYNC_SEND=true, bench only: the case study's
# comparison; never in production) delivers inside the checkout request instead.
TRIGGER_HANDOFF = "bench.sync_send.trigger_deliver_inline" if _SYNC_SEND else _TRIGGER_HANDOFFS[TRIGGER_HANDOFF_VIA]
# The trigger listener (TRIGGER_HANDOFF_VIA=notify) runs in each worker unless turned off here.
# LISTEN needs a session of its own: point its URL past a transaction-mode pooler (PgBouncer),
# straight at PostgreSQL; by default it is DATABASE_URL.
TRIGGER_LISTENER_ENABLED = env.bool("TRIGGER_LISTENER_ENABLED", default=True)
TRIGGER_LISTENER_DATABASE_URL = env.str("TRIGGER_LISTENER_DATABASE_URL", default=DATABASE_URL)
# How long the listener's publish may wait for the broker (seconds). Longer than the web's
# BEACON_PUBLISH_TIMEOUT: no customer waits on it, and a publish given up on leaves the trigger
# to the relay, after its grace (a busy box's Redis can take over 50 ms to answer).
TRIGGER_LISTENER_PUBLISH_TIMEOUT = env.float("TRIGGER_LISTENER_PUBLISH_TIMEOUT", default=1.0)
# In a worker of the threads pool, the listener dispatches a claimed trigger itself, in one of
# this many threads when one is idle, instead of publishing it for a Celery pool to consume
# (notifications/trigger_dispatch_threads.py; a sixth less worker CPU per checkout at 60/s).
# A claim that finds every thread busy is published as before. 0: publish every claim.
TRIGGER_LISTENER_DISPATCH_THREADS = env.int("TRIGGER_LISTENER_DISPATCH_THREADS", default=8)
if not 0 <= TRIGGER_LISTENER_DISPATCH_THREADS <= 256:  # each thread may hold a database connection
    raise ImproperlyConfigured("TRIGGER_LISTENER_DISPATCH_THREADS must be between 0 and 256")

# --- API ----------------------------------------------------------------------------------
REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": ["checkout.authentication.ApiKeyAuthentication"],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
    "DEFAULT_THROTTLE_CLASSES": ["checkout.throttling.ApiClientRateThrottle"],
    "DEFAULT_PARSER_CLASSES": ["checkout.parsers.DepthLimitedJSONParser"],
    "DEFAULT_RENDERER_CLASSES": ["rest_framework.renderers.JSONRenderer"],
    "DEFAULT_PAGINATION_CLASS": "rest_framework.pagination.LimitOffsetPagination",
    "PAGE_SIZE": 50,
    "EXCEPTION_HANDLER": "checkout.exceptions.api_exception_handler",
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "UNAUTHENTICATED_USER": None,
}
if DEBUG:
    REST_FRAMEWORK["DEFAULT_RENDERER_CLASSES"].append("rest_framework.renderers.BrowsableAPIRenderer")
SPECTACULAR_SETTINGS = {
    # Swagger UI and Redoc from drf-spectacular-sidecar's static files: /api/docs/ works offline.
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
    "TITLE": "Beacon API",
    "DESCRIPTION": "Checkout API whose notifications never slow the checkout down.",
    "VERSION": "1.0.0",
    "SERVE_INCLUDE_SCHEMA": False,
    # API_DOCS_ACCESS decides (checkout/api_docs.py): an API key or an admin session by default.
    "SERVE_PERMISSIONS": ["checkout.api_docs.ApiDocsAccess"],
    "SERVE_AUTHENTICATION": [
        "checkout.authentication.ApiKeyAuthentication",
        "rest_framework.authentication.SessionAuthentication",
    ],
    "COMPONENT_SPLIT_REQUEST": True,
}
# Who may read /api/schema/ and /api/docs/: authenticated (an API key or a staff admin
# session), public, or off.
API_DOCS_ACCESS = env.str("API_DOCS_ACCESS", default="authenticated")
if API_DOCS_ACCESS not in ("authenticated", "public", "off"):
    raise ImproperlyConfigured("API_DOCS_ACCESS must be authenticated, public or off.")
# JSON bodies nested deeper than this are refused (400) before they are parsed.
API_MAX_JSON_DEPTH = env.int("API_MAX_JSON_DEPTH", default=32)
# Requests larger than this are refused with 413 before any parsing.
API_MAX_BODY_BYTES = env.int("API_MAX_BODY_BYTES", default=64 * 1024)
DATA_UPLOAD_MAX_MEMORY_SIZE = 2 * 1024 * 1024
# Default throttle of an API client without its own rate (requests per minute, sliding window).
API_DEFAULT_RATE_PER_MINUTE = env.int("API_DEFAULT_RATE_PER_MINUTE", default=6000)
# Wrong API keys from one client address before it gets 429 for everything, right keys
# included, until API_AUTH_FAILURE_WINDOW seconds after its first failure (checkout/authentication.py).
API_AUTH_FAILURE_LIMIT = env.int("API_AUTH_FAILURE_LIMIT", default=20)
API_AUTH_FAILURE_WINDOW = env.int("API_AUTH_FAILURE_WINDOW", default=300)
IDEMPOTENCY_KEY_TTL_HOURS = 24
# An in-flight idempotency record older than this is taken to belong to a dead request.
IDEMPOTENCY_IN_FLIGHT_TIMEOUT = env.int("IDEMPOTENCY_IN_FLIGHT_TIMEOUT", default=60)

# --- Web security -------------------------------------------------------------------------
# Proxies (CIDR) whose X-Forwarded-Proto / X-Forwarded-For are believed; from any other peer
# those headers are dropped (foundation/trusted_proxies.py). Empty: clients connect to gunicorn
# directly and nobody may claim HTTPS or another address.
TRUSTED_PROXIES = _networks("TRUSTED_PROXIES", [])
SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https") if TRUSTED_PROXIES else None
SECURE_SSL_REDIRECT = env.bool("SECURE_SSL_REDIRECT", default=not DEBUG)
SECURE_REDIRECT_EXEMPT = [r"^healthz$", r"^readyz$", r"^metrics$"]
SESSION_COOKIE_SECURE = env.bool("SESSION_COOKIE_SECURE", default=not DEBUG)
CSRF_COOKIE_SECURE = env.bool("CSRF_COOKIE_SECURE", default=not DEBUG)
SECURE_HSTS_SECONDS = env.int("SECURE_HSTS_SECONDS", default=0 if DEBUG else 31536000)
SECURE_HSTS_INCLUDE_SUBDOMAINS = not DEBUG
SECURE_HSTS_PRELOAD = env.bool("SECURE_HSTS_PRELOAD", default=not DEBUG)
SECURE_CONTENT_TYPE_NOSNIFF = True
X_FRAME_OPTIONS = "DENY"
SECURE_CROSS_ORIGIN_OPENER_POLICY = "same-origin"
# Sent with every HTML page (config/content_security.py); empty turns it off.
CONTENT_SECURITY_POLICY = env.str(
    "CONTENT_SECURITY_POLICY",
    default=(
        "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; "
        "font-src 'self' data:; connect-src 'self'; frame-src 'self'; object-src 'none'; base-uri 'self'; "
        "form-action 'self'; frame-ancestors 'none'"
    ),
)

# --- Admin login protection (django-axes; config/login_protection.py) ------------------------
AUTHENTICATION_BACKENDS = ["axes.backends.AxesStandaloneBackend", "django.contrib.auth.backends.ModelBackend"]
# Failed logins before a username, or a client address, is locked out (separately: a
# password-spraying address is locked whatever usernames it tries, and a targeted username
# whatever addresses try it); the lockout lasts this long, and a right password is refused meanwhile.
AXES_FAILURE_LIMIT = env.int("ADMIN_LOGIN_FAILURE_LIMIT", default=10)
AXES_COOLOFF_TIME = timedelta(minutes=env.float("ADMIN_LOGIN_LOCKOUT_MINUTES", default=30))
AXES_LOCKOUT_PARAMETERS = ["username", "ip_address"]
# The address behind a proxy named in TRUSTED_PROXIES, never a header anyone can write.
AXES_CLIENT_IP_CALLABLE = "foundation.trusted_proxies.client_address_or_peer"
# A success does not wipe the count: it would let anyone with one staff login clear their
# address's failures between guesses at other accounts. Failures age out after the cool-off.
AXES_RESET_ON_SUCCESS = False
AXES_HTTP_RESPONSE_CODE = 429

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

# --- Static files -------------------------------------------------------------------------
# gunicorn serves them through WhiteNoise: `collectstatic` (the Procfile's release step and
# `make run`) copies them to STATIC_ROOT with a content hash in each name and a gzip/Brotli
# copy beside it, so browsers may cache them for ever and a deploy never serves stale CSS.
STATIC_URL = "static/"
STATIC_ROOT = env.path("STATIC_ROOT", default=BASE_DIR / "staticfiles")
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {"BACKEND": "whitenoise.storage.CompressedManifestStaticFilesStorage"},
}
# Every page names its files through {% static %} (hashed names), so the unhashed copies are
# dead weight; source maps are fetched only by a developer's browser tools, and compressing
# the API docs' multi-megabyte maps with Brotli was most of collectstatic's time.
WHITENOISE_KEEP_ONLY_HASHED_FILES = True
WHITENOISE_SKIP_COMPRESS_EXTENSIONS = (*Compressor.SKIP_COMPRESS_EXTENSIONS, "map")

# --- Metrics --------------------------------------------------------------------------------
# /metrics is served only to these networks (CIDR) or with `Authorization: Bearer METRICS_TOKEN`.
METRICS_ALLOWED_NETWORKS = _networks("METRICS_ALLOWED_NETWORKS", ["127.0.0.0/8", "::1/128"])
METRICS_TOKEN = env.str("METRICS_TOKEN", default="")

# --- Logging --------------------------------------------------------------------------------
LOG_FORMAT = env.str("LOG_FORMAT", default="text" if DEBUG else "json")
LOG_LEVEL = env.str("LOG_LEVEL", default="INFO")
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "filters": {
        "request_id": {"()": "config.logging.RequestIdFilter"},
        "redact": {"()": "config.logging.RedactingFilter"},
    },
    "formatters": {
        "text": {
            "()": "config.logging.RedactingTextFormatter",
            "format": "%(asctime)s %(levelname)-7s %(name)s [%(request_id)s] %(message)s",
        },
        "json": {
            "()": "config.logging.RedactingJsonFormatter",
            "format": "%(asctime)s %(levelname)s %(name)s %(request_id)s %(message)s",
            "rename_fields": {"asctime": "time", "levelname": "level", "name": "logger"},
        },
    },
    "handlers": {
        "console": {
            "class": "logging.StreamHandler",
            "formatter": LOG_FORMAT,
            "filters": ["request_id", "redact"],
        },
    },
    "root": {"handlers": ["console"], "level": LOG_LEVEL},
    "loggers": {
        "django.db.backends": {"level": "WARNING"},
        "celery": {"level": "INFO"},
        # Per-task "received"/"succeeded" lines and beat's "sending due task" every two seconds
        # drown what matters; Beacon logs each checkout and each delivery attempt itself.
        "celery.app.trace": {"level": "WARNING"},
        "celery.worker.strategy": {"level": "WARNING"},
        "celery.beat": {"level": "WARNING"},
        # aiosmtpd logs every SMTP command of the sandbox at INFO.
        "mail.log": {"level": "WARNING"},
        # django-axes says "BEGIN" in every process; its lockout lines are WARNING.
        "axes.apps": {"level": "WARNING"},
    },
}

# --- Sentry ---------------------------------------------------------------------------------
SENTRY_DSN = env.str("SENTRY_DSN", default="")
SENTRY_ENVIRONMENT = env.str("SENTRY_ENVIRONMENT", default="development" if DEBUG else "production")
SENTRY_RELEASE = env.str("SENTRY_RELEASE", default="")
SENTRY_TRACES_SAMPLE_RATE = env.float("SENTRY_TRACES_SAMPLE_RATE", default=0.0)
# URL patterns (regular expressions) whose requests may carry Sentry's trace headers; none by
# default: vendors must not learn Beacon's release and transaction names.
SENTRY_TRACE_PROPAGATION_TARGETS = env.list("SENTRY_TRACE_PROPAGATION_TARGETS", default=[])
if SENTRY_DSN:
    from config.sentry import sentry_init

    sentry_init(
        dsn=SENTRY_DSN,
        environment=SENTRY_ENVIRONMENT,
        release=SENTRY_RELEASE or None,
        traces_sample_rate=SENTRY_TRACES_SAMPLE_RATE,
        trace_propagation_targets=SENTRY_TRACE_PROPAGATION_TARGETS,
    )

CELERY_BEAT_SCHEDULE = {
    # Periodic runs expire instead of piling up behind a backlog: the next run does the same work.
    "outbox-relay": {
        "task": "notifications.tasks.outbox_relay",
        "schedule": OUTBOX_RELAY_INTERVAL,
        "options": {"expires": OUTBOX_RELAY_INTERVAL * 5},
    },
    "notifications-sweep": {
        "task": "notifications.tasks.notifications_sweep",
        "schedule": NOTIFICATION_SWEEP_INTERVAL,
        "options": {"expires": NOTIFICATION_SWEEP_INTERVAL * 5},
    },
    # Delivery fallbacks whose hand-off was lost (broker down when the receipt came).
    "delivery-fallbacks-sweep": {
        "task": "notifications.tasks.delivery_fallbacks_sweep",
        "schedule": 30.0,
        "options": {"expires": 150.0},
    },
    "idempotency-purge": {"task": "checkout.tasks.idempotency_records_purge", "schedule": 3600.0},
    # Hourly, so a day's expiry is spread out; each run erases what passed the retention period.
    "personal-data-expire": {
        "task": "notifications.tasks.personal_data_expire",
        "schedule": 3600.0,
        "options": {"expires": 3000.0},
    },
    "orders-expire": {"task": "checkout.tasks.orders_expire", "schedule": 3600.0, "options": {"expires": 3000.0}},
}
