"""Settings of the peer project: a stock `startproject` plus DRF and Celery, read from the
environment the bench harness sets (bench/peer/stack.py)."""

from __future__ import annotations

import os

from django.core.exceptions import ImproperlyConfigured


def _required(name: str) -> str:
    value = os.environ.get(name, "")
    if not value:
        raise ImproperlyConfigured(f"{name} is not set (bench/peer/stack.py sets it)")
    return value


def _database(url: str) -> dict[str, object]:
    from urllib.parse import unquote, urlsplit

    parts = urlsplit(url)
    return {
        "ENGINE": "django.db.backends.postgresql",
        "NAME": parts.path.lstrip("/"),
        "USER": unquote(parts.username or ""),
        "PASSWORD": unquote(parts.password or ""),
        "HOST": parts.hostname or "127.0.0.1",
        "PORT": parts.port or 5432,
        # Persistent connections, as Beacon's web has: the comparison is of the code, not of
        # a connection per request. (Its Celery threads still connect per task: Celery's Django
        # fix-up closes the connection before and after every task unless CELERY_DB_REUSE_MAX
        # is set, which the usual pattern leaves unset.)
        "CONN_MAX_AGE": None,
    }


SECRET_KEY = _required("PEER_SECRET_KEY")
DEBUG = False
ALLOWED_HOSTS = ["127.0.0.1", "localhost"]
ROOT_URLCONF = "bench.peer.urls"
WSGI_APPLICATION = "bench.peer.wsgi.application"
USE_TZ = True
TIME_ZONE = "UTC"

INSTALLED_APPS = [
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "rest_framework",
    "rest_framework.authtoken",
    "bench.peer",
]
# startproject's middleware, minus the admin it does not serve.
MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]
TEMPLATES = [{
    "BACKEND": "django.template.backends.django.DjangoTemplates",
    "DIRS": [],
    "APP_DIRS": True,
    "OPTIONS": {"context_processors": []},
}]
DATABASES = {"default": _database(_required("PEER_DATABASE_URL"))}

REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": ["bench.peer.authentication.BearerTokenAuthentication"],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
}

# SMTP to the sandbox (Django's defaults otherwise: no timeout, as most projects leave it).
EMAIL_HOST = "127.0.0.1"
EMAIL_PORT = int(_required("PEER_SMTP_PORT"))
DEFAULT_FROM_EMAIL = "shop@peer.example"

TWILIO_API_URL = _required("PEER_TWILIO_URL")
TWILIO_ACCOUNT_SID = os.environ.get("PEER_TWILIO_ACCOUNT_SID", "AC" + "0" * 32)
TWILIO_AUTH_TOKEN = os.environ.get("PEER_TWILIO_AUTH_TOKEN", "sandbox-token")
TWILIO_FROM = "+15005550006"

# Celery with its defaults; only the broker is set (no result backend, early acks, prefetch 4).
CELERY_BROKER_URL = _required("PEER_BROKER_URL")
