"""The portal's app factory."""
from __future__ import annotations

import sqlite3
from pathlib import Path

from flask import Flask
from sqlalchemy import event
from sqlalchemy.engine import Engine

from portal import config as config_module

__all__ = ["create_app"]


@event.listens_for(Engine, "connect")
def _sqlite_pragmas(dbapi_connection, connection_record):
    # SQLite is the embedded default: WAL for readers beside the writer, a
    # busy timeout instead of "database is locked", and real foreign keys.
    if isinstance(dbapi_connection, sqlite3.Connection):
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA busy_timeout=10000")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.close()


def create_app(overrides: dict | None = None) -> Flask:
    """Build the app: config, extensions, blueprints, CLI.

    ``overrides`` (tests) are applied over the environment's settings.
    """
    settings = config_module.from_environment()
    if overrides:
        settings.update(overrides)
        if "REDIS_URL" in overrides and "RATELIMIT_STORAGE_URI" not in overrides:
            settings["RATELIMIT_STORAGE_URI"] = config_module.limiter_uri(overrides["REDIS_URL"])

    instance = Path(settings["PORTAL_INSTANCE_PATH"])
    instance.mkdir(parents=True, exist_ok=True)
    app = Flask(__name__, instance_path=str(instance), instance_relative_config=False)
    app.config.update(settings)
    app.config.setdefault("RATELIMIT_SWALLOW_ERRORS", True)
    app.config.setdefault("RATELIMIT_IN_MEMORY_FALLBACK_ENABLED", True)
    if app.config.get("TRUSTED_HOSTS") is None and app.config["PRODUCTION"]:
        # Production serves only PORTAL_BASE_URL's host (from_environment sets this; overrides may not).
        app.config["TRUSTED_HOSTS"] = config_module.trusted_hosts(app.config.get("PORTAL_BASE_URL"))

    if app.config.get("EMBEDDED_REDIS") and not app.config.get("TESTING"):
        from portal.embedded import ensure_redis

        ensure_redis(config_module.embedded_redis_socket(instance))

    proxies = int(app.config.get("PORTAL_TRUSTED_PROXIES") or 0)
    if proxies:
        # Behind a reverse proxy: take the client address (rate limits) and scheme from it.
        from werkzeug.middleware.proxy_fix import ProxyFix

        app.wsgi_app = ProxyFix(app.wsgi_app, x_for=proxies, x_proto=proxies, x_host=proxies)

    from portal import models  # noqa: F401 - register tables before migrate/db use
    from portal.extensions import csrf, db, htmx, limiter, login_manager, mail, migrate

    db.init_app(app)
    migrate.init_app(app, db, directory=str(config_module.PROJECT_ROOT / "migrations"), render_as_batch=True,
                     compare_type=True)
    login_manager.init_app(app)
    mail.init_app(app)
    csrf.init_app(app)
    htmx.init_app(app)
    limiter.init_app(app)

    # The services' session hooks (deliveries handed to RQ after commit, stale payment attempts,
    # autopay due now) and the email attachment renderers register when their modules are imported.
    from portal.services import autopay, credit_notes, deliveries, invoice_documents, payments  # noqa: F401
    from portal.web import init_app as init_web

    init_web(app)

    from portal.cli import portal_cli

    app.cli.add_command(portal_cli)
    return app
