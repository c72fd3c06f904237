"""Fixtures every test may use: the app on SQLite or a real PostgreSQL, a real
Redis, a real SMTP server, an RQ burst worker, an auth helper, and a real
Chromium driven by Playwright.

    pytest                  # SQLite
    pytest --db=postgresql  # PostgreSQL started by the tests (initdb/pg_ctl)
"""
from __future__ import annotations

import os
import shutil
import threading
from pathlib import Path

import pytest

import tests.support.profiles  # noqa: F401 - registers and loads the Hypothesis profiles
from tests.support.apps import empty_tables, make_app
from tests.support.servers import PostgresServer, RedisServer, SmtpServer
from tests.support.web import post_form

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
    "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-quic",
]


def pytest_addoption(parser):
    parser.addoption("--db", default=os.environ.get("PORTAL_TEST_DB", "sqlite"),
                     choices=["sqlite", "postgresql"], help="database the suite runs on")


def pytest_report_header(config):
    return f"portal database: {config.getoption('--db')}"


# Servers (one per session) -------------------------------------------------

@pytest.fixture(scope="session")
def redis_server(tmp_path_factory):
    server = RedisServer(tmp_path_factory.mktemp("redis"))
    server.start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def postgres_server(tmp_path_factory):
    why = PostgresServer.available()
    if why:
        pytest.fail(f"--db=postgresql but PostgreSQL cannot run here: {why}")
    base = Path("/tmp") / f"portal-pg-{os.getpid()}"
    shutil.rmtree(base, ignore_errors=True)
    server = PostgresServer(base)
    server.start()
    yield server
    server.stop()
    shutil.rmtree(base, ignore_errors=True)


@pytest.fixture(scope="session")
def db_kind(pytestconfig) -> str:
    return pytestconfig.getoption("--db")


@pytest.fixture(scope="session")
def database_url(db_kind, tmp_path_factory, request) -> str:
    if db_kind == "postgresql":
        server = request.getfixturevalue("postgres_server")
        return server.create_database("portal_test")
    return f"sqlite:///{tmp_path_factory.mktemp('db') / 'portal.db'}"


@pytest.fixture(scope="session")
def smtp_server():
    server = SmtpServer()
    server.start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def instance_dir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("instance")


@pytest.fixture(scope="session")
def migrated(database_url, redis_server, instance_dir):
    """Run the real migrations once per session."""
    from flask_migrate import upgrade

    app = make_app(database_url, redis_server.url, instance_dir)
    with app.app_context():
        upgrade()
        from portal.extensions import db

        db.engine.dispose()
    return True


@pytest.fixture
def app_settings(smtp_server) -> dict:
    """Per-test overrides; a test may change them before asking for ``app``."""
    return {"MAIL_SERVER": "127.0.0.1", "MAIL_PORT": smtp_server.port}


@pytest.fixture
def app(migrated, database_url, redis_server, instance_dir, smtp_server, app_settings):
    app = make_app(database_url, redis_server.url, instance_dir, **app_settings)
    redis_server.client().flushall()
    smtp_server.reset()
    with app.app_context():
        yield app
        from portal.extensions import db

        db.session.remove()
        empty_tables(db)
        db.engine.dispose()
    redis_server.client().flushall()


@pytest.fixture
def client(app):
    return app.test_client()


@pytest.fixture
def cli(app):
    return app.test_cli_runner()


# Work in the background --------------------------------------------------------

@pytest.fixture
def run_worker(app, redis_server):
    """Run an RQ worker in burst mode until the queues are empty; returns jobs run."""
    from rq import SimpleWorker

    from portal.queues import redis_connection

    class CountingWorker(SimpleWorker):
        executed = 0

        def execute_job(self, job, queue):
            CountingWorker.executed += 1
            return super().execute_job(job, queue)

    def run() -> int:
        CountingWorker.executed = 0
        worker = CountingWorker(app.config["RQ_QUEUES"], connection=redis_connection())
        worker.work(burst=True, with_scheduler=False)
        return CountingWorker.executed

    return run


# People ----------------------------------------------------------------------------

@pytest.fixture
def make(app):
    """The builders of tests.support.make (people, catalogue, invoices, payments), once the app is up."""
    from tests.support import make as builders

    return builders


class AuthActions:
    """Sign in and out through the real login pages."""

    def __init__(self, client):
        self.client = client

    def login_staff(self, email="staff@portal.example", password="correct horse battery"):
        return post_form(self.client, "/staff/login", {"email": email, "password": password})

    def login_contact(self, email="ana@acme.example", password="client password 1"):
        return post_form(self.client, "/portal/login", {"email": email, "password": password})

    def logout_staff(self):
        return post_form(self.client, "/staff/logout")

    def logout_contact(self):
        return post_form(self.client, "/portal/logout")


@pytest.fixture
def auth(client) -> AuthActions:
    return AuthActions(client)


@pytest.fixture
def staff_client(make, client, auth):
    """A test client signed in as a staff member."""
    user = make.staff()
    response = auth.login_staff(user.email, user.plain_password)
    assert response.status_code == 302, response.get_data(as_text=True)
    return client


@pytest.fixture
def owner_client(make, client, auth):
    user = make.owner()
    response = auth.login_staff(user.email, user.plain_password)
    assert response.status_code == 302
    return client


# The browser ---------------------------------------------------------------------

@pytest.fixture
def live_server(app):
    """The test app served over HTTP on loopback, in a thread."""
    from werkzeug.serving import make_server

    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    app.config["PORTAL_BASE_URL"] = f"http://127.0.0.1:{server.server_port}"
    yield app.config["PORTAL_BASE_URL"]
    server.shutdown()
    thread.join(timeout=5)


@pytest.fixture(scope="session")
def browser():
    if not os.path.exists(CHROMIUM):
        pytest.skip(f"browser tests need Chromium at {CHROMIUM} (apt-get install chromium); CI installs it")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        yield browser
        browser.close()


@pytest.fixture
def page(browser, live_server):
    context = browser.new_context(base_url=live_server)
    page = context.new_page()
    page.set_default_timeout(10_000)
    yield page
    context.close()
