"""Links built from PORTAL_BASE_URL only, never from the request (issue X1, point 6).

- production refuses to start without PORTAL_BASE_URL (one line naming it);
- links in emails (reset, invite, portal sign-in, pay) come from it, whatever
  Host the request carried; without it (development) from the local default;
- Flask's TRUSTED_HOSTS is set from it, so a request for another host is a 400.
"""
from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from sqlalchemy import select

from portal.config import PROJECT_ROOT, ConfigError, from_environment
from portal.extensions import db
from portal.models import Delivery
from portal.services.events import Actor
from tests.support.web import _TOKEN, links

FLASK = str(Path(sys.executable).parent / "flask")
EVIL = "http://evil.example"
PRODUCTION = {
    "PORTAL_ENV": "production",
    "DATABASE_URL": "postgresql://portal@db.internal:5432/portal",
    "REDIS_URL": "redis://cache.internal:6379/0",
    "SECRET_KEY": "s" * 64,
    "STRIPE_SECRET_KEY": "sk_live_" + "x" * 24,
}
REFERER = "https://billing.example/staff/password/forgot"
OWNER = Actor("staff", None, "owner@portal.example")


def _rows() -> list[Delivery]:
    db.session.rollback()
    db.session.expire_all()
    return list(db.session.scalars(select(Delivery).order_by(Delivery.id)).all())


def _links_in(delivery: Delivery) -> list[str]:
    payload = delivery.payload
    return links(payload["text"]) + links(payload["html"])


# Production configuration -------------------------------------------------------------------------

def test_production_without_base_url_refuses_to_start_naming_it():
    with pytest.raises(ConfigError) as caught:
        from_environment(dict(PRODUCTION))
    message = str(caught.value)
    assert "PORTAL_BASE_URL" in message
    assert "\n" not in message


@pytest.mark.parametrize("bad", ["billing.example", "/billing", "ftp://billing.example", "https://",
                                 "https://user:pw@billing.example", "https://billing.example/?x=1",
                                 "https://billing.example/#top", "javascript:alert(1)", "https://bad host"])
def test_base_url_must_be_an_absolute_http_url(bad):
    for env in (dict(PRODUCTION, PORTAL_BASE_URL=bad), {"PORTAL_BASE_URL": bad, "SECRET_KEY": "k" * 40}):
        with pytest.raises(ConfigError) as caught:
            from_environment(env)
        assert "PORTAL_BASE_URL" in str(caught.value)
        assert "\n" not in str(caught.value)


def test_production_trusts_only_the_base_url_host():
    settings = from_environment(dict(PRODUCTION, PORTAL_BASE_URL="https://Billing.Example:8443/portal/"))
    assert settings["PORTAL_BASE_URL"] == "https://Billing.Example:8443/portal"
    assert settings["TRUSTED_HOSTS"] == ["billing.example"]
    # An extra name (a health check's) only when asked for.
    settings = from_environment(dict(PRODUCTION, PORTAL_BASE_URL="https://billing.example",
                                     PORTAL_EXTRA_HOSTS=" Internal.Lan , "))
    assert settings["TRUSTED_HOSTS"] == ["billing.example", "internal.lan"]


def test_development_without_base_url_trusts_any_host_and_links_to_the_local_default(tmp_path):
    settings = from_environment({"PORTAL_INSTANCE_PATH": str(tmp_path), "PORT": "5123"})
    assert settings["PORTAL_BASE_URL"] is None
    assert settings["TRUSTED_HOSTS"] is None
    assert settings["PORTAL_DEFAULT_BASE_URL"] == "http://127.0.0.1:5123"


def test_a_loopback_base_url_also_trusts_the_other_loopback_names(tmp_path):
    settings = from_environment({"PORTAL_INSTANCE_PATH": str(tmp_path), "PORTAL_BASE_URL": "http://127.0.0.1:5000"})
    assert set(settings["TRUSTED_HOSTS"]) >= {"127.0.0.1", "localhost"}


def test_flask_cli_in_production_without_base_url_exits_with_one_line(tmp_path):
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "PORTAL_INSTANCE_PATH": str(tmp_path), **PRODUCTION}
    result = subprocess.run([FLASK, "--app", "wsgi", "routes"], cwd=PROJECT_ROOT, env=env,
                            capture_output=True, text=True, timeout=60)
    assert result.returncode != 0
    lines = [line for line in (result.stdout + result.stderr).splitlines() if line.strip()]
    assert len(lines) == 1, result.stderr
    assert "PORTAL_BASE_URL" in lines[0]


def test_procfile_and_readme_say_production_needs_the_base_url():
    readme = (PROJECT_ROOT / "README.md").read_text()
    assert "PORTAL_BASE_URL" in readme
    assert "PORTAL_BASE_URL" in (PROJECT_ROOT / "Procfile").read_text()


# Host header: links come from the configured base, never from the request ---------------------------

def _evil_post(client, path: str, data: dict | None = None, page: str | None = None):
    """POST a form as a browser that reached the portal as evil.example (Host: evil.example)."""
    html = client.get(page or path, base_url=EVIL).get_data(as_text=True)
    match = _TOKEN.search(html)
    token = match.group(1) or match.group(2)
    return client.post(path, data={**(data or {}), "csrf_token": token}, base_url=EVIL)


@pytest.mark.parametrize("base", ["http://portal.test", None])
def test_forgot_password_with_a_forged_host_mails_the_configured_link(base, app, make, client, run_worker):
    app.config["PORTAL_BASE_URL"] = base
    expected = base or app.config.get("PORTAL_DEFAULT_BASE_URL", "http://127.0.0.1:5000")
    make.staff()
    response = _evil_post(client, "/staff/password/forgot", {"email": "staff@portal.example"})
    assert response.status_code == 200, response.get_data(as_text=True)
    [delivery] = _rows()
    found = _links_in(delivery)
    assert found
    assert all(link.startswith(expected + "/") for link in found), found
    assert not any("evil.example" in link for link in found)


@pytest.mark.parametrize("base", ["http://portal.test", None])
def test_invite_signin_and_pay_links_ignore_the_request_host(base, app, make, client):
    """Made by staff over HTTP (or in a request) with a forged Host: every link uses the configured base."""
    from portal.services import auth as auth_service
    from portal.services import invoices

    app.config["PORTAL_BASE_URL"] = base
    expected = base or app.config.get("PORTAL_DEFAULT_BASE_URL", "http://127.0.0.1:5000")
    make.business(name="Tidewater Studio", currency="EUR")
    make.staff()
    signed_in = _evil_post(client, "/staff/login", {"email": "staff@portal.example",
                                                    "password": "correct horse battery"})
    assert signed_in.status_code == 302
    acme = make.client()
    contact = acme.contacts[0]
    response = _evil_post(client, f"/staff/clients/{acme.id}/contacts/{contact.id}/portal-link", {"send": "y"},
                          page=f"/staff/clients/{acme.id}")
    assert response.status_code in (200, 302), response.get_data(as_text=True)
    shown = response.get_data(as_text=True)
    assert "evil.example" not in shown

    with app.test_request_context("/", base_url=EVIL):
        auth_service.invite_contact(contact, OWNER)
        draft = invoices.create_draft(acme, OWNER)
        invoices.save_draft(draft, invoices.DraftInput(currency="EUR", lines=[
            {"description": "Work", "quantity": "1", "unit_price": "10.00"}]), OWNER)
        invoices.send(draft, OWNER)
    rows = _rows()
    assert {d.template for d in rows} >= {"portal_link", "portal_invite", "templated"}
    for delivery in rows:
        found = _links_in(delivery)
        assert found, delivery.template
        assert all(link.startswith(expected + "/") for link in found), (delivery.template, found)


def test_links_made_in_a_job_use_the_base_url(app, make):
    """No request at all (a worker): the configured base, or the local default."""
    from portal.services.links import external_url

    app.config["PORTAL_BASE_URL"] = "https://billing.example/sub"
    assert external_url("pay.invoice", token="abc") == "https://billing.example/sub/pay/abc"
    app.config["PORTAL_BASE_URL"] = None
    assert external_url("pay.invoice", token="abc") == app.config["PORTAL_DEFAULT_BASE_URL"] + "/pay/abc"


# TRUSTED_HOSTS from the base URL ------------------------------------------------------------------

@pytest.fixture(params=["development", "production"])
def env_app(request, app, redis_server, monkeypatch, tmp_path):
    """An app built from the environment (PORTAL_BASE_URL set), on the test database."""
    from portal import create_app

    env = {"PORTAL_BASE_URL": "https://billing.example", "REDIS_URL": redis_server.url,
           "PORTAL_INSTANCE_PATH": str(tmp_path), "SECRET_KEY": "k" * 40}
    if request.param == "production":
        env.update(PRODUCTION, REDIS_URL=redis_server.url)
    for name in ("MAIL_SERVER", "PORTAL_ENV", "DATABASE_URL"):
        monkeypatch.delenv(name, raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    built = create_app({"SQLALCHEMY_DATABASE_URI": app.config["SQLALCHEMY_DATABASE_URI"]})
    yield built
    with built.app_context():
        db.session.remove()
        db.engine.dispose()


def test_other_hosts_get_400_when_the_base_url_is_set(env_app, make):
    make.staff()
    web = env_app.test_client()
    good = web.get("/staff/password/forgot", base_url="https://billing.example")
    assert good.status_code == 200

    for host in ("evil.example", "billing.example.evil.example", "localhost"):
        assert web.get("/staff/login", base_url=f"https://{host}").status_code == 400, host
        page = web.get("/staff/password/forgot", base_url="https://billing.example").get_data(as_text=True)
        token = re.search(r'name="csrf_token"[^>]*value="([^"]+)"', page).group(1)
        refused = web.post("/staff/password/forgot", data={"email": "staff@portal.example", "csrf_token": token},
                           base_url="https://billing.example", headers={"Host": host, "Referer": REFERER})
        assert refused.status_code == 400, host
    assert _rows() == []

    page = web.get("/staff/password/forgot", base_url="https://billing.example").get_data(as_text=True)
    token = re.search(r'name="csrf_token"[^>]*value="([^"]+)"', page).group(1)
    sent = web.post("/staff/password/forgot", data={"email": "staff@portal.example", "csrf_token": token},
                    base_url="https://billing.example", headers={"Referer": REFERER})
    assert sent.status_code == 200, sent.get_data(as_text=True)
    [delivery] = _rows()
    assert all(link.startswith("https://billing.example/staff/password/reset/") for link in _links_in(delivery))
