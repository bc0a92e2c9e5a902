"""Django settings for Commonroom, read from the environment (see README: Configuration)."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import Any

import dj_database_url
import django_stubs_ext
from csp.constants import NONE, SELF
from django.core.exceptions import ImproperlyConfigured

from commonroom.env import env_bool, env_choice, env_int, env_str, env_url, hosts, origins

# Lets generic classes such as ModelAdmin[Model] be subscripted at run time, as the type stubs allow.
django_stubs_ext.monkeypatch()

BASE_DIR = Path(__file__).resolve().parent.parent
DATA_DIR = Path(env_str("COMMONROOM_DATA_DIR") or BASE_DIR / "data")

DEBUG = env_bool("DEBUG", default=False)

_secret_key = env_str("SECRET_KEY")
if not _secret_key:
    if not DEBUG:
        raise ImproperlyConfigured(
            "SECRET_KEY must be set when DEBUG is off (generate one with "
            "`python -c 'import secrets; print(secrets.token_urlsafe(50))'`)."
        )
    _secret_key = "insecure-development-key-only-used-when-DEBUG-is-on"  # noqa: S105
SECRET_KEY = _secret_key

ALLOWED_HOSTS = hosts("ALLOWED_HOSTS", ["localhost", "127.0.0.1", "[::1]"])
CSRF_TRUSTED_ORIGINS = origins("CSRF_TRUSTED_ORIGINS")

INSTALLED_APPS = [
    "daphne",
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "axes",
    "whitenoise.runserver_nostatic",
    "django.contrib.staticfiles",
    "channels",
    "commonroom.apps.CommonroomConfig",
    "audit",
    "classes",
    "messaging",
    "moderation",
    "frontend",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "classes.middleware.SchoolScopeMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "csp.middleware.CSPMiddleware",
    "axes.middleware.AxesMiddleware",  # last: it answers a locked-out sign-in
]

# No inline script, no script or style from elsewhere, no framing: the client is one static module.
# 'self' in connect-src also allows the page's own ws:// and wss:// origin (CSP level 3).
CONTENT_SECURITY_POLICY = {
    "DIRECTIVES": {
        "default-src": [SELF],
        "script-src": [SELF],
        "style-src": [SELF],
        "img-src": [SELF, "data:"],
        "font-src": [SELF],
        "connect-src": [SELF],
        "object-src": [NONE],
        "base-uri": [NONE],
        "form-action": [SELF],
        "frame-ancestors": [NONE],
    }
}

ROOT_URLCONF = "commonroom.urls"
ASGI_APPLICATION = "commonroom.asgi.application"
AUTH_USER_MODEL = "classes.User"
LOGIN_URL = "/login/"
LOGIN_REDIRECT_URL = "/"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
                "frontend.context.navigation",
            ],
        },
    },
]

# Database: DATABASE_URL, or a SQLite file in the data folder so that a fresh
# clone runs with nothing but Python.
DATABASE_URL = env_url(
    "DATABASE_URL",
    f"sqlite:///{DATA_DIR / 'commonroom.sqlite3'}",
    schemes={"sqlite", "postgres", "postgresql", "pgsql"},
)
# A daphne process runs its sockets' database work in one thread, which keeps its connection for a
# minute rather than opening one for every socket frame (docs/performance.md). HTTP requests run in
# threads of their own under ASGI: each closes its connection when it ends (commonroom/db.py).
_database: dict[str, Any] = dict(
    dj_database_url.parse(DATABASE_URL or "", conn_max_age=env_int("DATABASE_CONN_MAX_AGE", 60, minimum=0))
)
if _database["ENGINE"] == "django.db.backends.sqlite3":
    if _database["NAME"] not in ("", ":memory:"):
        Path(_database["NAME"]).parent.mkdir(parents=True, exist_ok=True)
    # WAL lets readers run beside the one writer; IMMEDIATE takes the write
    # lock at BEGIN so that two writers queue instead of failing mid-way.
    _database["OPTIONS"] = {
        "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
        "transaction_mode": "IMMEDIATE",
        "timeout": 20,
    }
    _database["CONN_MAX_AGE"] = 0
else:
    _database["CONN_HEALTH_CHECKS"] = True
DATABASES = {"default": _database}
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# Channel layer: Redis when REDIS_URL is set (several daphne processes share
# it), otherwise the in-memory layer of a single process. The publish/subscribe
# layer sends a room's event to Redis once and each process hands it to its own
# sockets, where the list-based layer queues one copy per socket (see
# docs/performance.md). Live delivery is at most once either way; clients fill
# any gap from the room's sequence numbers (docs/protocol.md).
REDIS_URL = env_url("REDIS_URL", None, schemes={"redis", "rediss", "unix"})
CHANNEL_LAYERS: dict[str, Any]
if REDIS_URL:
    CHANNEL_LAYERS = {
        "default": {
            "BACKEND": "channels_redis.pubsub.RedisPubSubChannelLayer",
            "CONFIG": {"hosts": [REDIS_URL], "prefix": env_str("CHANNEL_PREFIX") or "commonroom"},
        }
    }
else:
    CHANNEL_LAYERS = {"default": {"BACKEND": "channels.layers.InMemoryChannelLayer"}}

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]

LANGUAGE_CODE = "en-gb"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

STATIC_URL = "/static/"
STATIC_ROOT = Path(env_str("STATIC_ROOT") or BASE_DIR / "staticfiles")
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {
        "BACKEND": "whitenoise.storage.CompressedManifestStaticFilesStorage"
        if not DEBUG
        else "django.contrib.staticfiles.storage.StaticFilesStorage"
    },
}

# Screeners that messaging asks about every message before it is saved (dotted paths of callables
# taking the body, the room and the author, answering a messaging.services.Verdict).
COMMONROOM_SCREENERS: list[str] = ["moderation.rules.screen_message"]
# How a message body is kept for search (a dotted path of a callable taking the body, answering text): the
# same folding screening reads with, so that searching "kill" finds "k1ll". None keeps no folded text.
COMMONROOM_SEARCH_FOLDER: str | None = "moderation.normalize.fold_for_search"
# Checks that `manage.py audit_verify` runs of the records the audit log describes (dotted paths of
# callables, see audit.records): audit/ cannot import the apps above it, so they name their checks here.
COMMONROOM_RECORD_CHECKS: list[str] = ["messaging.integrity.check_message_bodies"]

# How often (seconds) each daphne process runs the case clock (`escalate_overdue`); 0 turns it off,
# for deployments that run `manage.py escalate_overdue` from cron instead.
COMMONROOM_CASE_CLOCK_SECONDS = env_int("COMMONROOM_CASE_CLOCK_SECONDS", 60, minimum=0)
# The address people reach Commonroom at, for links in emails.
COMMONROOM_BASE_URL = (env_str("COMMONROOM_BASE_URL") or "http://localhost:8000").rstrip("/")

# Email for escalations: the console by default; an SMTP server in a real deployment.
EMAIL_BACKEND = env_str("EMAIL_BACKEND") or "django.core.mail.backends.console.EmailBackend"
EMAIL_HOST = env_str("EMAIL_HOST") or "localhost"
EMAIL_PORT = env_int("EMAIL_PORT", 25, minimum=1)
EMAIL_HOST_USER = env_str("EMAIL_HOST_USER") or ""
EMAIL_HOST_PASSWORD = env_str("EMAIL_HOST_PASSWORD") or ""
EMAIL_USE_TLS = env_bool("EMAIL_USE_TLS", default=False)
EMAIL_TIMEOUT = env_int("EMAIL_TIMEOUT", 10, minimum=1)  # seconds: a mail server that hangs is given up on
DEFAULT_FROM_EMAIL = env_str("DEFAULT_FROM_EMAIL") or "commonroom@localhost"

# Signed checkpoints of the audit chains (audit.checkpoints), outside the database: the Ed25519 private
# key that signs them (`manage.py audit_checkpoint --generate-key PATH` makes one), the public key that
# verifies them (derived from the private key if unset), and the folder the checkpoint files go to.
COMMONROOM_CHECKPOINT_KEY = env_str("COMMONROOM_CHECKPOINT_KEY") or ""
COMMONROOM_CHECKPOINT_PUBLIC_KEY = env_str("COMMONROOM_CHECKPOINT_PUBLIC_KEY") or ""
COMMONROOM_CHECKPOINT_DIR = Path(env_str("COMMONROOM_CHECKPOINT_DIR") or DATA_DIR / "checkpoints")

# The largest roster bundle the admin accepts as an upload (larger ones: the command line).
ROSTER_UPLOAD_MAX_MB = env_int("ROSTER_UPLOAD_MAX_MB", 200, minimum=1)
# An uploaded roster bundle may be large; Django streams big uploads to disk.
DATA_UPLOAD_MAX_MEMORY_SIZE = 10 * 1024 * 1024
FILE_UPLOAD_MAX_MEMORY_SIZE = 10 * 1024 * 1024

# Passwords: Argon2 (older hashes still sign in, and are rehashed with Argon2 when they do).
PASSWORD_HASHERS = [
    "django.contrib.auth.hashers.Argon2PasswordHasher",
    "django.contrib.auth.hashers.PBKDF2PasswordHasher",
    "django.contrib.auth.hashers.PBKDF2SHA1PasswordHasher",
    "django.contrib.auth.hashers.ScryptPasswordHasher",
]

# Sign-in lockout (django-axes): after SIGNIN_FAILURE_LIMIT wrong passwords for one username from one
# address, that pair is refused for SIGNIN_LOCKOUT_MINUTES. Per pair, not per address (a whole school
# signs in from one address) and not per username alone (anyone could lock a classmate out from
# anywhere). A correct sign-in clears the count.
AUTHENTICATION_BACKENDS = [
    "axes.backends.AxesStandaloneBackend",
    "django.contrib.auth.backends.ModelBackend",
]
AXES_FAILURE_LIMIT = env_int("SIGNIN_FAILURE_LIMIT", 5, minimum=1)
AXES_COOLOFF_TIME = timedelta(minutes=env_int("SIGNIN_LOCKOUT_MINUTES", 15, minimum=1))
AXES_LOCKOUT_PARAMETERS = [["username", "ip_address"]]
AXES_RESET_ON_SUCCESS = True
AXES_LOCKOUT_TEMPLATE = "frontend/locked_out.html"
AXES_VERBOSE = False

SESSION_COOKIE_HTTPONLY = True
SESSION_COOKIE_SAMESITE = "Lax"
SECURE_CONTENT_TYPE_NOSNIFF = True
X_FRAME_OPTIONS = "DENY"
if not DEBUG:
    SESSION_COOKIE_SECURE = env_bool("SECURE_COOKIES", default=True)
    CSRF_COOKIE_SECURE = SESSION_COOKIE_SECURE
    # Only trust X-Forwarded-Proto when a TLS proxy in front of daphne sets it.
    if env_bool("BEHIND_TLS_PROXY", default=False):
        SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
        # The lockout counts by the client's address, which the proxy passes on (one proxy in front).
        AXES_IPWARE_PROXY_COUNT = 1
        AXES_IPWARE_META_PRECEDENCE_ORDER = ["HTTP_X_FORWARDED_FOR", "REMOTE_ADDR"]
    SECURE_SSL_REDIRECT = env_bool("SECURE_SSL_REDIRECT", default=False)
    SECURE_HSTS_SECONDS = env_int("SECURE_HSTS_SECONDS", 0, minimum=0)
    SECURE_HSTS_INCLUDE_SUBDOMAINS = env_bool("SECURE_HSTS_INCLUDE_SUBDOMAINS", default=False)
    SECURE_HSTS_PRELOAD = env_bool("SECURE_HSTS_PRELOAD", default=False)
    # The health check is asked over plain HTTP from inside the container.
    SECURE_REDIRECT_EXEMPT = [r"^healthz$"]

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s %(message)s"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "root": {
        "handlers": ["console"],
        "level": env_choice("LOG_LEVEL", "INFO", {"DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"}),
    },
}
