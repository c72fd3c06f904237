"""GET /healthz: 200 when the web app, the database and Redis are reachable,
503 naming whatever is not."""
from __future__ import annotations

import pytest

from tests.support.apps import make_app
from tests.support.servers import free_port


def test_healthz_is_ok_when_everything_is_reachable(client):
    response = client.get("/healthz")
    assert response.status_code == 200
    assert response.is_json
    body = response.get_json()
    assert body["status"] == "ok"
    assert body["checks"] == {"database": "ok", "redis": "ok"}
    assert "unreachable" not in body


def test_healthz_needs_no_login_and_sets_no_session(client):
    response = client.get("/healthz")
    assert response.status_code == 200
    assert not [c for c in response.headers.getlist("Set-Cookie") if c.startswith("portal_session=")]


class TestRedisDown:
    @pytest.fixture
    def app_settings(self, smtp_server):
        return {"REDIS_URL": f"redis://127.0.0.1:{free_port()}/0",
                "MAIL_SERVER": "127.0.0.1", "MAIL_PORT": smtp_server.port}

    def test_healthz_answers_503_naming_redis(self, client):
        response = client.get("/healthz")
        assert response.status_code == 503
        body = response.get_json()
        assert body["status"] == "unavailable"
        assert body["unreachable"] == ["redis"]
        assert body["checks"]["database"] == "ok"
        assert body["checks"]["redis"].startswith("unreachable")


def _closed_postgres() -> str:
    return f"postgresql+psycopg://portal@127.0.0.1:{free_port()}/portal?connect_timeout=2"


def _unopenable_sqlite(tmp_path) -> str:
    return f"sqlite:///{tmp_path / 'no-such-folder' / 'portal.db'}"


@pytest.mark.parametrize("broken_database", ["postgresql", "sqlite"])
def test_healthz_answers_503_naming_the_database(broken_database, redis_server, instance_dir, tmp_path):
    url = _closed_postgres() if broken_database == "postgresql" else _unopenable_sqlite(tmp_path)
    app = make_app(url, redis_server.url, instance_dir)
    with app.app_context():
        response = app.test_client().get("/healthz")
        from portal.extensions import db

        db.engine.dispose()
        for connection in app.extensions.get("portal_redis", {}).values():
            connection.close()
    assert response.status_code == 503
    body = response.get_json()
    assert body["status"] == "unavailable"
    assert body["unreachable"] == ["database"]
    assert body["checks"]["database"].startswith("unreachable")
    assert body["checks"]["redis"] == "ok"
    # The answer names what is down without leaking connection details.
    assert "127.0.0.1" not in response.get_data(as_text=True)
    assert "no-such-folder" not in response.get_data(as_text=True)
