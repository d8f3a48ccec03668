"""Django settings for poolsite.

Every knob comes from the environment through the small env* helpers below, which
fail loudly on a malformed value instead of silently falling back. The README lists
every variable with its default.
"""

from __future__ import annotations

import math
import os
from datetime import timedelta
from pathlib import Path

import dj_database_url
from django.core.exceptions import ImproperlyConfigured

BASE_DIR = Path(__file__).resolve().parent.parent
DEV_SECRET_KEY = "dev-only-insecure-secret-key-change-me"


def envbool(name: str, default: str) -> bool:
    value = os.getenv(name, default).strip().lower()
    if value in ("1", "true", "yes", "on"):
        return True
    if value in ("0", "false", "no", "off", ""):
        return False
    raise ImproperlyConfigured(f"{name}={value!r}: expected 1/0, true/false, yes/no, on/off")


def envint(name: str, default: str) -> int:
    value = os.getenv(name, default)
    try:
        return int(value)
    except ValueError:
        raise ImproperlyConfigured(f"{name}={value!r}: expected a whole number") from None


def envfloat(name: str, default: str) -> float:
    value = os.getenv(name, default)
    try:
        number = float(value)
    except ValueError:
        raise ImproperlyConfigured(f"{name}={value!r}: expected a number of seconds") from None
    if not math.isfinite(number) or number < 0:
        raise ImproperlyConfigured(f"{name}={value!r}: expected a number of seconds")
    return number


def envlist(name: str, default: str) -> list[str]:
    return [item.strip() for item in os.getenv(name, default).split(",") if item.strip()]


DEBUG = envbool("DJANGO_DEBUG", "1")
SECRET_KEY = os.getenv("DJANGO_SECRET_KEY", DEV_SECRET_KEY)
if not DEBUG and SECRET_KEY == DEV_SECRET_KEY:
    raise ImproperlyConfigured("DJANGO_SECRET_KEY must be set when DJANGO_DEBUG=0")
ALLOWED_HOSTS = envlist("DJANGO_ALLOWED_HOSTS", "127.0.0.1,localhost,testserver")
CSRF_TRUSTED_ORIGINS = envlist("DJANGO_CSRF_TRUSTED_ORIGINS", "")

# Where poolsite keeps its data: the SQLite file, downloaded documents, evidence,
# saved browser sessions. Owner-only; never served as static files.
DATA_DIR = Path(os.getenv("POOL_DATA_DIR", str(BASE_DIR / "var"))).resolve()
OUTPUT_DIR = Path(os.getenv("POOL_OUTPUT_DIR", str(DATA_DIR / "output"))).resolve()
# Created here so that every entry point (make, manage.py, tests) finds it.
DATA_DIR.mkdir(parents=True, exist_ok=True, mode=0o700)

INSTALLED_APPS = [
    "daphne",
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "channels",
    "axes",
    "ninja",  # the API's docs page: its Swagger UI template and static files
    "poolsite.batches",
    "poolsite.supervisor",
    "poolsite.dashboard",
    "poolsite.demo_erp",
    "poolsite.sessions",
    "poolsite.api",
    "poolsite.notifications",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    # Before whitenoise, so that static files get the policy too.
    "poolsite.csp.ContentSecurityPolicyMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    # Last, as django-axes asks: it answers a locked-out sign-in with 429.
    "axes.middleware.AxesMiddleware",
]

# Sign-in throttling (django-axes): after POOL_LOGIN_FAILURE_LIMIT failed sign-ins for a
# user name, or from an address, further attempts for that name, and from that
# address, are refused for POOL_LOGIN_COOLOFF_MINUTES, even with the right password.
# Attempts and lock-outs are in the admin (Axes), where deleting an attempt unlocks;
# `manage.py axes_reset` does the same from a terminal.
AUTHENTICATION_BACKENDS = [
    "axes.backends.AxesStandaloneBackend",
    "django.contrib.auth.backends.ModelBackend",
]
AXES_FAILURE_LIMIT = envint("POOL_LOGIN_FAILURE_LIMIT", "5")
AXES_COOLOFF_TIME = timedelta(minutes=envint("POOL_LOGIN_COOLOFF_MINUTES", "15"))
AXES_LOCKOUT_PARAMETERS = ["username", "ip_address"]  # each on its own, not the pair
# The address is the connection's (REMOTE_ADDR), never a header a client can forge.
AXES_IPWARE_META_PRECEDENCE_ORDER = ("REMOTE_ADDR",)
# A successful sign-in does not clear failures: with an account of their own, an
# attacker could otherwise clear their address's count between guesses at others.
AXES_RESET_ON_SUCCESS = False

ROOT_URLCONF = "poolsite.urls"
ASGI_APPLICATION = "poolsite.asgi.application"

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

# SQLite by default; DATABASE_URL (postgres://…) for scale-out. SQLite gets WAL,
# IMMEDIATE transactions and a busy timeout so several writers queue instead of
# failing with "database is locked".
DATABASE_URL = os.getenv("DATABASE_URL", "")
if DATABASE_URL:
    DATABASES = {"default": dj_database_url.parse(DATABASE_URL, conn_max_age=60)}
else:
    DATABASES = {
        "default": {
            "ENGINE": "django.db.backends.sqlite3",
            "NAME": str(DATA_DIR / "poolsite.sqlite3"),
            "OPTIONS": {
                "transaction_mode": "IMMEDIATE",
                # Seconds a writer waits for the lock before "database is locked".
                "timeout": envfloat("POOL_SQLITE_BUSY_SECONDS", "20"),
                "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
            },
        }
    }

# In-memory channel layer by default (one process only); Redis for scale-out.
REDIS_URL = os.getenv("REDIS_URL", "")
# channels-redis waits for a message with BZPOPMIN, which blocks in Redis for up to
# 5 s (RedisChannelLayer.brpop_timeout) and then is simply issued again. redis-py 8
# gives every socket a 5 s read timeout by default, so an idle wait is cut off with
# redis.exceptions.TimeoutError: the hosts' wake-up listener logs a traceback every
# few seconds and an idle dashboard's consumer dies (its page reconnects). The layer's
# reads therefore wait well past the blocking read, still bounded so that a Redis gone
# silent is noticed; connecting keeps redis-py's 5 s. A `socket_timeout=` query
# argument in REDIS_URL overrides this (redis-py lets the URL win).
REDIS_SOCKET_TIMEOUT = 15.0
if REDIS_URL:
    CHANNEL_LAYERS = {
        "default": {
            "BACKEND": "channels_redis.core.RedisChannelLayer",
            "CONFIG": {
                "hosts": [{"address": REDIS_URL, "socket_timeout": REDIS_SOCKET_TIMEOUT,
                           "socket_connect_timeout": 5.0}],
                # Deployments sharing one Redis keep apart by prefix.
                "prefix": os.getenv("POOL_REDIS_PREFIX", "poolsite"),
            },
        }
    }
else:
    CHANNEL_LAYERS = {"default": {"BACKEND": "channels.layers.InMemoryChannelLayer"}}

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
]
LOGIN_URL = "/accounts/login/"
LOGIN_REDIRECT_URL = "/"
LOGOUT_REDIRECT_URL = "/accounts/login/"

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

STATIC_URL = "/static/"
STATICFILES_DIRS = [BASE_DIR / "static"]
STATIC_ROOT = DATA_DIR / "staticfiles"
STATIC_ROOT.mkdir(exist_ok=True)  # whitenoise warns on every request without it
WHITENOISE_USE_FINDERS = True
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# Production hardening (DJANGO_DEBUG=0); `manage.py check --deploy` passes with these.
if not DEBUG:
    SECURE_SSL_REDIRECT = envbool("DJANGO_SECURE_SSL_REDIRECT", "1")
    SESSION_COOKIE_SECURE = True
    CSRF_COOKIE_SECURE = True
    SECURE_HSTS_SECONDS = envint("DJANGO_HSTS_SECONDS", "31536000")
    SECURE_HSTS_INCLUDE_SUBDOMAINS = True
    SECURE_HSTS_PRELOAD = True
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")

# The browser executable for workers; empty means "find it" (pool_core.browser).
POOL_BROWSER_PATH = os.getenv("POOL_BROWSER_PATH", "")
# The pool that `runpool` hosts (every value can also be given on the command line).
POOL_SIZE = envint("POOL_SIZE", "4")
POOL_MAX_TASK_TIMEOUT = envint("POOL_MAX_TASK_TIMEOUT", "300")  # seconds per PO attempt
POOL_MAX_ATTEMPTS = envint("POOL_MAX_ATTEMPTS", "3")  # crash re-queues count too
POOL_MEMORY_SOFT_MB = envint("POOL_MEMORY_SOFT_MB", "400")  # recycle after the PO
POOL_MEMORY_HARD_MB = envint("POOL_MEMORY_HARD_MB", "800")  # kill now, retry the PO
# How often each worker tree's PSS is measured (a sample of 8 trees costs ~0.1 s CPU).
POOL_MEMORY_CHECK_SECONDS = envfloat("POOL_MEMORY_CHECK_SECONDS", "10")
POOL_LEASE_SECONDS = envint("POOL_LEASE_SECONDS", "60")
POOL_POLL_SECONDS = envfloat("POOL_POLL_SECONDS", "1.0")
POOL_STOP_TIMEOUT = envint("POOL_STOP_TIMEOUT", "30")  # graceful stop, seconds
POOL_HEADLESS = envbool("POOL_HEADLESS", "1")
# After an outage pause (HTTP 5xx / network errors in a row), check the site this often
# and resume by itself once it answers.
POOL_SITE_PROBE_SECONDS = envfloat("POOL_SITE_PROBE_SECONDS", "10")
# Probe the site's saved session before a start and refuse when it is not signed in.
POOL_SESSION_PREFLIGHT = envbool("POOL_SESSION_PREFLIGHT", "1")
# Extra site presets (*.json) beside the built-in coupa, generic and demo.
POOL_SITES_DIR = os.getenv("POOL_SITES_DIR", "")
# The demo procurement site that `make run`, the tests and the benchmarks use.
POOL_DEMO_PORT = envint("POOL_DEMO_PORT", "8001")
POOL_DEMO_URL = f"http://127.0.0.1:{POOL_DEMO_PORT}"
# Upload limits for batch files (web form and `manage.py import_batch`).
POOL_MAX_UPLOAD_BYTES = envint("POOL_MAX_UPLOAD_BYTES", str(20 * 1024 * 1024))
POOL_MAX_ROWS = envint("POOL_MAX_ROWS", "20000")
# The largest request body anywhere but the two upload forms (those take
# POOL_MAX_UPLOAD_BYTES): refused with 413 before anything reads it (request_limits).
POOL_MAX_REQUEST_BYTES = envint("POOL_MAX_REQUEST_BYTES", str(2621440))
# The HTTP API (poolsite/api): requests per minute for one token (429 with Retry-After
# past it), and, like sign-ins, a lock-out per address after that many bad tokens.
POOL_API_RATE_PER_MINUTE = envint("POOL_API_RATE_PER_MINUTE", "120")
POOL_API_BAD_TOKEN_LIMIT = envint("POOL_API_BAD_TOKEN_LIMIT", "10")
POOL_API_BAD_TOKEN_COOLOFF_MINUTES = envint("POOL_API_BAD_TOKEN_COOLOFF_MINUTES", "15")

# Notifications (poolsite.notifications): the address links in messages start with (the
# address operators open poolsite at), and how long one send to one target may take.
POOL_PUBLIC_URL = os.getenv("POOL_PUBLIC_URL", "http://127.0.0.1:8000")
POOL_NOTIFY_TIMEOUT = envfloat("POOL_NOTIFY_TIMEOUT", "10")
# A crash loop: this many worker restarts on one host within this many seconds.
POOL_CRASH_LOOP_RESTARTS = envint("POOL_CRASH_LOOP_RESTARTS", "5")
POOL_CRASH_LOOP_SECONDS = envint("POOL_CRASH_LOOP_SECONDS", "300")
# The hour (0-23, UTC) a daily summary goes to the targets that want one; empty: none.
POOL_DAILY_SUMMARY_HOUR = (envint("POOL_DAILY_SUMMARY_HOUR", "0")
                           if os.getenv("POOL_DAILY_SUMMARY_HOUR", "").strip() else None)
if POOL_DAILY_SUMMARY_HOUR is not None and not 0 <= POOL_DAILY_SUMMARY_HOUR <= 23:
    raise ImproperlyConfigured(f"POOL_DAILY_SUMMARY_HOUR={POOL_DAILY_SUMMARY_HOUR}: "
                               "expected an hour, 0-23")
# E-mail notifications go through Django's e-mail backend (SMTP); Django's own names.
EMAIL_BACKEND = os.getenv("EMAIL_BACKEND", "django.core.mail.backends.smtp.EmailBackend")
EMAIL_HOST = os.getenv("EMAIL_HOST", "localhost")
EMAIL_PORT = envint("EMAIL_PORT", "25")
EMAIL_HOST_USER = os.getenv("EMAIL_HOST_USER", "")
EMAIL_HOST_PASSWORD = os.getenv("EMAIL_HOST_PASSWORD", "")
EMAIL_USE_TLS = envbool("EMAIL_USE_TLS", "0")
EMAIL_USE_SSL = envbool("EMAIL_USE_SSL", "0")
EMAIL_TIMEOUT = envint("EMAIL_TIMEOUT", "10")
DEFAULT_FROM_EMAIL = os.getenv("DEFAULT_FROM_EMAIL", "poolsite@localhost")

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s: %(message)s"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "root": {"handlers": ["console"], "level": os.getenv("POOL_LOG_LEVEL", "INFO")},
    # Apprise's debug lines carry the URLs of notification targets (their tokens).
    "loggers": {"apprise": {"level": "WARNING"}},
}
