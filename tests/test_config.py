"""Configuration: safe embedded defaults, and a production mode that refuses to
start half-configured, saying in one line what is missing."""
from __future__ import annotations

import itertools
import os
import secrets
import subprocess
import sys
from pathlib import Path

import pytest
from sqlalchemy import text

from portal.config import DEFAULT_INSTANCE, PROJECT_ROOT, ConfigError, from_environment

FLASK = str(Path(sys.executable).parent / "flask")
REQUIRED = ("DATABASE_URL", "REDIS_URL", "SECRET_KEY")
GOOD = {
    "DATABASE_URL": "postgresql://portal@db.internal:5432/portal",
    "REDIS_URL": "redis://cache.internal:6379/0",
    "SECRET_KEY": secrets.token_hex(32),
    "STRIPE_SECRET_KEY": "sk_live_" + "x" * 24,
    "PORTAL_BASE_URL": "https://billing.example",
}
MISSING_SETS = [set(combo) for n in (1, 2, 3) for combo in itertools.combinations(REQUIRED, n)]


def _production_env(missing: set[str] = frozenset(), **extra) -> dict[str, str]:
    env = {"PORTAL_ENV": "production", **{k: v for k, v in GOOD.items() if k not in missing}}
    env.update(extra)
    return env


def _assert_names_exactly(message: str, missing: set[str]) -> None:
    assert "\n" not in message
    for name in REQUIRED:
        assert (name in message) == (name in missing), (name, message)


# Production refuses to start half-configured -------------------------------------

@pytest.mark.parametrize("missing", MISSING_SETS, ids=lambda m: "+".join(sorted(m)))
def test_production_without_required_settings_names_what_is_missing(missing):
    with pytest.raises(ConfigError) as caught:
        from_environment(_production_env(missing))
    _assert_names_exactly(str(caught.value), missing)


@pytest.mark.parametrize("missing", MISSING_SETS, ids=lambda m: "+".join(sorted(m)))
def test_create_app_refuses_production_without_required_settings(monkeypatch, tmp_path, missing):
    from portal import create_app

    for name in REQUIRED:
        monkeypatch.delenv(name, raising=False)
    for name, value in _production_env(missing, PORTAL_INSTANCE_PATH=str(tmp_path)).items():
        monkeypatch.setenv(name, value)
    with pytest.raises(ConfigError) as caught:
        create_app()
    _assert_names_exactly(str(caught.value), missing)


def test_empty_values_count_as_missing():
    with pytest.raises(ConfigError) as caught:
        from_environment(_production_env(REDIS_URL="  ", SECRET_KEY=""))
    _assert_names_exactly(str(caught.value), {"REDIS_URL", "SECRET_KEY"})


def test_flask_cli_in_production_with_nothing_set_exits_with_one_line(tmp_path):
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "PORTAL_ENV": "production",
           "PORTAL_INSTANCE_PATH": str(tmp_path)}
    result = subprocess.run([FLASK, "--app", "wsgi", "routes"], cwd=PROJECT_ROOT, env=env,
                            capture_output=True, text=True, timeout=60)
    assert result.returncode != 0
    lines = [line for line in (result.stdout + result.stderr).splitlines() if line.strip()]
    assert len(lines) == 1, result.stderr
    _assert_names_exactly(lines[0], set(REQUIRED))
    assert "PORTAL_ENV=production" in lines[0]
    assert list(tmp_path.iterdir()) == []  # nothing was created: it never started


@pytest.mark.parametrize("weak", ["short", "changeme", "x" * 31, "secret"])
def test_weak_secret_key_is_refused_in_production(weak):
    with pytest.raises(ConfigError) as caught:
        from_environment(_production_env(SECRET_KEY=weak))
    message = str(caught.value)
    assert "SECRET_KEY" in message
    assert "\n" not in message
    if len(weak) >= 8:
        assert weak not in message  # the key itself is not echoed


def test_sqlite_database_is_refused_in_production():
    with pytest.raises(ConfigError) as caught:
        from_environment(_production_env(DATABASE_URL="sqlite:////srv/portal/portal.db"))
    message = str(caught.value)
    assert "DATABASE_URL" in message
    assert "PostgreSQL" in message
    assert "\n" not in message


def test_production_settings_secure_cookies_and_psycopg3():
    settings = from_environment(_production_env())
    assert settings["PRODUCTION"] is True
    assert settings["SESSION_COOKIE_SECURE"] is True
    assert settings["REMEMBER_COOKIE_SECURE"] is True
    assert settings["SESSION_COOKIE_HTTPONLY"] is True
    assert settings["SESSION_COOKIE_SAMESITE"] == "Lax"
    assert settings["SQLALCHEMY_DATABASE_URI"] == "postgresql+psycopg://portal@db.internal:5432/portal"
    assert settings["REDIS_URL"] == GOOD["REDIS_URL"]
    assert settings["EMBEDDED_REDIS"] is False
    assert settings["SECRET_KEY"] == GOOD["SECRET_KEY"]


def test_production_app_sends_secure_cookies_and_hsts(app, database_url, redis_server, monkeypatch, tmp_path):
    """A production app over HTTPS: the session cookie is Secure, HttpOnly, Lax; HSTS is on."""
    from portal import create_app

    env = _production_env(REDIS_URL=redis_server.url, PORTAL_BASE_URL="https://billing.example",
                          PORTAL_INSTANCE_PATH=str(tmp_path))
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    # The settings are production's; only the database is pointed at the test one.
    test_uri = app.config["SQLALCHEMY_DATABASE_URI"]
    production = create_app({"SQLALCHEMY_DATABASE_URI": test_uri})
    assert production.config["PRODUCTION"] is True

    response = production.test_client().get("/staff/login", base_url="https://billing.example")
    with production.app_context():
        from portal.extensions import db

        db.engine.dispose()
    assert response.status_code == 200, response.get_data(as_text=True)
    cookies = response.headers.getlist("Set-Cookie")
    session_cookie = [c for c in cookies if c.startswith("portal_session=")]
    assert session_cookie, cookies
    assert "Secure" in session_cookie[0]
    assert "HttpOnly" in session_cookie[0]
    assert "SameSite=Lax" in session_cookie[0]
    assert "max-age=" in response.headers["Strict-Transport-Security"]


def test_development_app_cookies_are_not_secure_only(client):
    response = client.get("/staff/login")
    session_cookie = [c for c in response.headers.getlist("Set-Cookie") if c.startswith("portal_session=")]
    assert session_cookie
    assert "Secure" not in session_cookie[0]
    assert "HttpOnly" in session_cookie[0]
    assert "Strict-Transport-Security" not in response.headers


# Development defaults ------------------------------------------------------------

def test_development_defaults_live_under_the_instance_folder(tmp_path):
    settings = from_environment({"PORTAL_INSTANCE_PATH": str(tmp_path)})
    assert settings["PORTAL_ENV"] == "development"
    assert settings["PRODUCTION"] is False
    assert settings["SESSION_COOKIE_SECURE"] is False
    assert settings["SQLALCHEMY_DATABASE_URI"] == f"sqlite:///{tmp_path / 'portal.db'}"
    assert settings["REDIS_URL"] == f"unix://{tmp_path / 'redis.sock'}"
    assert settings["RATELIMIT_STORAGE_URI"] == f"redis+unix://{tmp_path / 'redis.sock'}"
    assert settings["EMBEDDED_REDIS"] is True
    assert settings["MAIL_SERVER"] is None

    # A random secret key, kept in the instance folder so sessions survive restarts.
    key_file = tmp_path / "secret_key"
    assert key_file.read_text().strip() == settings["SECRET_KEY"]
    assert len(settings["SECRET_KEY"]) >= 32
    assert key_file.stat().st_mode & 0o077 == 0
    assert from_environment({"PORTAL_INSTANCE_PATH": str(tmp_path)})["SECRET_KEY"] == settings["SECRET_KEY"]
    other = tmp_path / "other"
    assert from_environment({"PORTAL_INSTANCE_PATH": str(other)})["SECRET_KEY"] != settings["SECRET_KEY"]


def test_default_instance_folder_is_in_the_project():
    settings = from_environment({"SECRET_KEY": "k" * 40})
    assert DEFAULT_INSTANCE == PROJECT_ROOT / "instance"
    assert settings["SQLALCHEMY_DATABASE_URI"] == f"sqlite:///{DEFAULT_INSTANCE / 'portal.db'}"
    assert settings["REDIS_URL"] == f"unix://{DEFAULT_INSTANCE / 'redis.sock'}"


def test_unknown_portal_env_is_refused():
    with pytest.raises(ConfigError) as caught:
        from_environment({"PORTAL_ENV": "staging", "SECRET_KEY": "k" * 40})
    assert "PORTAL_ENV" in str(caught.value)


# SQLite connections --------------------------------------------------------------

@pytest.fixture
def sqlite_only(db_kind):
    if db_kind != "sqlite":
        pytest.skip("SQLite connection settings; the suite runs on PostgreSQL")


def test_sqlite_connections_use_wal_foreign_keys_and_a_busy_timeout(sqlite_only, app):
    from portal.extensions import db

    assert db.session.execute(text("PRAGMA journal_mode")).scalar() == "wal"
    assert db.session.execute(text("PRAGMA foreign_keys")).scalar() == 1
    assert db.session.execute(text("PRAGMA busy_timeout")).scalar() > 0


def test_sqlite_enforces_foreign_keys(sqlite_only, app):
    from sqlalchemy.exc import IntegrityError

    from portal.extensions import db
    from portal.models import Contact

    db.session.add(Contact(client_id=999_999, name="Nobody", email="nobody@nowhere.example"))
    with pytest.raises(IntegrityError):
        db.session.commit()
    db.session.rollback()


def test_the_sandbox_gateway_is_refused_in_production():
    env = _production_env()
    del env["STRIPE_SECRET_KEY"]
    with pytest.raises(ConfigError) as caught:
        from_environment(env)
    assert "STRIPE_SECRET_KEY" in str(caught.value) and "sandbox" in str(caught.value)
    assert "\n" not in str(caught.value)
