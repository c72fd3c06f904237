"""The test app and its database, for conftest.py and for tests that build an app of their own."""
from __future__ import annotations

from pathlib import Path

from flask.testing import FlaskClient
from sqlalchemy import text


class IsolatedClient(FlaskClient):
    """A test client whose every request gets a fresh app context.

    The ``app`` fixture keeps an app context pushed for the whole test, and
    Flask would reuse it for each request, so ``g`` (the signed-in user, the
    CSRF token) and the DB session would leak from one request, or one
    client, into the next. In production every request has its own.
    """

    def open(self, *args, **kwargs):
        with self.application.app_context():
            return super().open(*args, **kwargs)


def make_app(database_url: str, redis_url: str, instance: Path, **overrides):
    from portal import create_app

    settings = {
        "TESTING": True,
        "SQLALCHEMY_DATABASE_URI": database_url if not database_url.startswith("postgresql://")
        else "postgresql+psycopg://" + database_url[len("postgresql://"):],
        "REDIS_URL": redis_url,
        "EMBEDDED_REDIS": False,
        "PORTAL_INSTANCE_PATH": str(instance),
        "SECRET_KEY": "test-secret-key-" + "x" * 32,
        "PORTAL_BASE_URL": "http://portal.test",
        "MAIL_SERVER": None,
        "MAIL_DEFAULT_SENDER": "billing@portal.example",
    }
    settings.update(overrides)
    app = create_app(settings)
    app.test_client_class = IsolatedClient
    return app


def empty_tables(db) -> None:
    """Delete every row of every table (TRUNCATE … RESTART IDENTITY on PostgreSQL)."""
    tables = [t.name for t in reversed(db.metadata.sorted_tables)]
    with db.engine.begin() as conn:
        if conn.dialect.name == "postgresql":
            conn.execute(text("TRUNCATE " + ", ".join(f'"{t}"' for t in tables) + " RESTART IDENTITY CASCADE"))
        else:
            for table in tables:
                conn.execute(text(f'DELETE FROM "{table}"'))
