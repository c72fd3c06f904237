"""Settings from the environment.

With nothing set, the portal runs on its embedded default: a SQLite file under
``instance/`` and a Redis server that the launcher starts on a unix socket in
the same folder. With ``PORTAL_ENV=production`` the real services are required
and the app refuses to start without them.
"""
from __future__ import annotations

import os
import re
import secrets
from datetime import timedelta
from pathlib import Path
from urllib.parse import urlsplit

PROJECT_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_INSTANCE = PROJECT_ROOT / "instance"


MAX_CONTENT_LENGTH = 2 * 1024 * 1024  # bytes: any request body (see README, "Limits")


class ConfigError(RuntimeError):
    """The configuration cannot run; the message is one line naming what is missing."""


def _bool(value: str | None, default: bool = False) -> bool:
    if value is None or value == "":
        return default
    return value.strip().lower() in {"1", "true", "yes", "on"}


def instance_path() -> Path:
    return Path(os.environ.get("PORTAL_INSTANCE_PATH", DEFAULT_INSTANCE))


def embedded_redis_socket(instance: Path | None = None) -> Path:
    return (instance or instance_path()) / "redis.sock"


def _dev_secret_key(instance: Path) -> str:
    """A per-install random key kept in instance/, so sessions survive restarts."""
    path = instance / "secret_key"
    if path.exists():
        return path.read_text().strip()
    instance.mkdir(parents=True, exist_ok=True)
    key = secrets.token_hex(32)
    path.write_text(key)
    path.chmod(0o600)
    return key


def _normalise_database_url(url: str) -> str:
    # Heroku-style URLs and plain "postgresql://" go through psycopg 3.
    if url.startswith("postgres://"):
        url = "postgresql://" + url[len("postgres://"):]
    if url.startswith("postgresql://"):
        url = "postgresql+psycopg://" + url[len("postgresql://"):]
    return url


_HOSTNAME = re.compile(r"[a-z0-9.-]+|[0-9a-f:.]+")
_LOOPBACK = ("127.0.0.1", "localhost", "::1")


def _base_url(value: str) -> str | None:
    """PORTAL_BASE_URL, checked: an absolute http(s) URL with a host and nothing after the path."""
    value = value.strip().rstrip("/")
    if not value:
        return None
    problem = "PORTAL_BASE_URL must be an absolute http(s) URL such as https://billing.example.com"
    try:
        parts = urlsplit(value)
        port = parts.port
    except ValueError as exc:
        raise ConfigError(problem) from exc
    hostname = parts.hostname or ""
    if (parts.scheme not in {"http", "https"} or not hostname or not _HOSTNAME.fullmatch(hostname)
            or parts.username is not None or parts.password is not None or parts.query or parts.fragment
            or "?" in value or "#" in value or any(c.isspace() for c in value) or port == 0):
        raise ConfigError(problem)
    return value


def trusted_hosts(base_url: str | None, extra: str = "") -> list[str] | None:
    """Flask's TRUSTED_HOSTS for a base URL: its host (plus the other loopback names when it is a
    loopback one, for ``make run``), plus any PORTAL_EXTRA_HOSTS. None (any host) without a base URL."""
    if not base_url:
        return None
    host = urlsplit(base_url).hostname or ""
    hosts = [host]
    if host in _LOOPBACK:
        hosts += [name for name in _LOOPBACK if name != host]
    hosts += [name.strip().lower() for name in extra.split(",") if name.strip()]
    return list(dict.fromkeys(hosts))


def from_environment(env: dict[str, str] | None = None) -> dict:
    """Build the Flask config mapping from environment variables."""
    env = dict(os.environ if env is None else env)
    portal_env = env.get("PORTAL_ENV", "development").strip().lower() or "development"
    if portal_env not in {"development", "production"}:
        raise ConfigError(f"PORTAL_ENV must be 'development' or 'production', not {portal_env!r}")
    production = portal_env == "production"
    instance = Path(env.get("PORTAL_INSTANCE_PATH", DEFAULT_INSTANCE))

    database_url = env.get("DATABASE_URL", "").strip()
    redis_url = env.get("REDIS_URL", "").strip()
    secret_key = env.get("SECRET_KEY", "").strip()
    base_url = env.get("PORTAL_BASE_URL", "").strip()

    if production:
        # PORTAL_BASE_URL: links in emails are built from it only, and it is the one Host served.
        missing = [name for name, value in (
            ("DATABASE_URL", database_url), ("REDIS_URL", redis_url), ("SECRET_KEY", secret_key),
            ("PORTAL_BASE_URL", base_url),
        ) if not value]
        if missing:
            raise ConfigError("PORTAL_ENV=production needs " + ", ".join(missing) + " to be set")
        if len(secret_key) < 32 or secret_key in {"dev", "change-me", "changeme", "secret"}:
            raise ConfigError("SECRET_KEY must be a random value of at least 32 characters in production")
        if database_url.startswith("sqlite"):
            raise ConfigError("DATABASE_URL must point to PostgreSQL in production, not SQLite")
        if not env.get("STRIPE_SECRET_KEY", "").strip():
            raise ConfigError("PORTAL_ENV=production needs STRIPE_SECRET_KEY: the sandbox gateway is for test mode only")

    base_url = _base_url(base_url)

    embedded_redis = not redis_url
    if not database_url:
        database_url = f"sqlite:///{instance / 'portal.db'}"
    if not redis_url:
        redis_url = f"unix://{embedded_redis_socket(instance)}"
    if not secret_key:
        secret_key = _dev_secret_key(instance)

    mail_server = env.get("MAIL_SERVER", "").strip() or None
    idle_minutes = int(env.get("PORTAL_IDLE_TIMEOUT_MINUTES", "60"))

    return {
        "PORTAL_ENV": portal_env,
        "PRODUCTION": production,
        "SECRET_KEY": secret_key,
        "SQLALCHEMY_DATABASE_URI": _normalise_database_url(database_url),
        "SQLALCHEMY_ENGINE_OPTIONS": {"pool_pre_ping": True},
        "REDIS_URL": redis_url,
        "EMBEDDED_REDIS": embedded_redis,
        "PORTAL_INSTANCE_PATH": str(instance),
        # Links in emails come from PORTAL_BASE_URL only (never from the request's Host); without it
        # (development only) from the local address `make run` serves.
        "PORTAL_BASE_URL": base_url,
        "PORTAL_DEFAULT_BASE_URL": f"http://127.0.0.1:{env.get('PORT') or '5000'}",
        # With PORTAL_BASE_URL set, a request for any other host is refused (400).
        "TRUSTED_HOSTS": trusted_hosts(base_url, env.get("PORTAL_EXTRA_HOSTS", "")),
        # How many reverse proxies sit in front (X-Forwarded-For/-Proto are trusted that deep).
        "PORTAL_TRUSTED_PROXIES": int(env.get("PORTAL_TRUSTED_PROXIES", "0") or 0),
        # Sessions: HttpOnly, SameSite=Lax, Secure in production, server-checked idle timeout.
        "SESSION_COOKIE_NAME": "portal_session",
        "SESSION_COOKIE_HTTPONLY": True,
        "SESSION_COOKIE_SAMESITE": "Lax",
        "SESSION_COOKIE_SECURE": production,
        "REMEMBER_COOKIE_HTTPONLY": True,
        "REMEMBER_COOKIE_SECURE": production,
        "PERMANENT_SESSION_LIFETIME": timedelta(minutes=idle_minutes),
        "SESSION_REFRESH_EACH_REQUEST": True,
        "IDLE_TIMEOUT": timedelta(minutes=idle_minutes),
        # CSRF: htmx sends the token in X-CSRFToken.
        "WTF_CSRF_TIME_LIMIT": None,
        "WTF_CSRF_SSL_STRICT": production,
        # Rate limits (Flask-Limiter, Redis storage).
        "RATELIMIT_STORAGE_URI": limiter_uri(redis_url),
        "RATELIMIT_HEADERS_ENABLED": True,
        "RATELIMIT_LOGIN": env.get("PORTAL_RATELIMIT_LOGIN", "10 per minute;50 per hour"),
        "RATELIMIT_RESET": env.get("PORTAL_RATELIMIT_RESET", "5 per minute;20 per hour"),
        "RATELIMIT_TOKEN_PAGE": env.get("PORTAL_RATELIMIT_TOKEN_PAGE", "30 per minute"),
        # Mail: with no server, messages stay in the delivery log.
        "MAIL_SERVER": mail_server,
        "MAIL_PORT": int(env.get("MAIL_PORT", "25") or 25),
        "MAIL_USERNAME": env.get("MAIL_USERNAME") or None,
        "MAIL_PASSWORD": env.get("MAIL_PASSWORD") or None,
        "MAIL_USE_TLS": _bool(env.get("MAIL_USE_TLS")),
        "MAIL_USE_SSL": _bool(env.get("MAIL_USE_SSL")),
        # Unset: mail comes from the business's email address (Settings), see services.deliveries.sender.
        "MAIL_DEFAULT_SENDER": env.get("MAIL_DEFAULT_SENDER") or None,
        "MAIL_SUPPRESS_SEND": False,
        # Stripe (used from F3 on).
        "STRIPE_SECRET_KEY": env.get("STRIPE_SECRET_KEY") or None,
        "STRIPE_PUBLISHABLE_KEY": env.get("STRIPE_PUBLISHABLE_KEY") or None,
        "STRIPE_WEBHOOK_SECRET": env.get("STRIPE_WEBHOOK_SECRET") or None,
        "STRIPE_API_BASE": env.get("STRIPE_API_BASE") or None,
        # Request size: a body above this is refused with 413 before it is read. It must stay above
        # the logo limit (services.settings.LOGO_MAX_BYTES, 512 KB) plus the settings form; Werkzeug
        # also caps each text field of a multipart form at MAX_FORM_MEMORY_SIZE (500 KB default).
        "MAX_CONTENT_LENGTH": MAX_CONTENT_LENGTH,
        # Token lifetimes.
        "PASSWORD_RESET_TTL": timedelta(hours=1),
        "PORTAL_INVITE_TTL": timedelta(days=7),
        "PORTAL_LINK_TTL": timedelta(days=7),
        "RQ_QUEUES": ["emails", "default", "periodic"],
    }


def limiter_uri(redis_url: str) -> str:
    if redis_url.startswith("unix://"):
        return "redis+unix://" + redis_url[len("unix://"):]
    return redis_url
