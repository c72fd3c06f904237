"""Signing in and out, keeping staff and client contacts apart, and sessions that end.

Every request here runs in its own app context (see ``IsolatedClient`` in conftest.py), as it
does in production, so nothing a request caches in ``flask.g`` (the signed-in
user, the CSRF token) leaks into the next request or another browser.
"""
from __future__ import annotations

import html
import re
from datetime import datetime, timedelta, timezone
from urllib.parse import parse_qs, urlsplit

import pytest
from sqlalchemy import select

from portal import clock
from tests.support.web import csrf_token, email_text, links, post_form

SESSION_COOKIE = "portal_session"
STAFF_AUTH_PAGES = {"auth.staff_login", "auth.staff_forgot", "auth.staff_reset"}
PORTAL_AUTH_PAGES = {"auth.portal_login", "auth.portal_forgot", "auth.portal_reset", "auth.portal_invite",
                     "auth.portal_magic"}


@pytest.fixture
def browser_b(app):
    """A second, independent browser."""
    return app.test_client()


def text_of(response) -> str:
    """The page as a reader sees its text (HTML entities decoded)."""
    return html.unescape(response.get_data(as_text=True))


def location_path(response) -> str:
    return urlsplit(response.headers["Location"]).path


def fresh(model, **where):
    """Rows as the database has them now (not as this test's session remembers them)."""
    from portal.extensions import db

    db.session.expire_all()
    return db.session.scalars(select(model).filter_by(**where)).all()


def without_csrf(html: str) -> str:
    html = re.sub(r'name="csrf_token"([^>]*)value="[^"]+"', r'name="csrf_token"\1value=""', html)
    return re.sub(r'"X-CSRFToken": "[^"]+"', '"X-CSRFToken": ""', html)


def is_signed_in_staff(client) -> bool:
    response = client.get("/staff/")
    return response.status_code == 200 and "Dashboard" in text_of(response)


def is_signed_in_contact(client) -> bool:
    response = client.get("/portal/")
    return response.status_code == 200 and "Hello, Ana Ribeiro" in text_of(response)


# Login and logout ---------------------------------------------------------------------

def test_staff_signs_in_sees_dashboard_and_signs_out(make, client, auth):
    make.staff()
    page = client.get("/staff/login")
    assert page.status_code == 200
    assert "Staff sign-in" in text_of(page)

    response = auth.login_staff()
    assert response.status_code == 302
    assert location_path(response) == "/staff/"
    dashboard = client.get("/staff/")
    assert dashboard.status_code == 200
    assert "Dashboard" in text_of(dashboard)
    assert "Signed in as staff@portal.example" in text_of(dashboard)

    response = auth.logout_staff()
    assert response.status_code == 302
    assert location_path(response) == "/staff/login"
    assert "You are signed out." in text_of(client.get("/staff/login"))
    after = client.get("/staff/")
    assert after.status_code == 302
    assert location_path(after) == "/staff/login"


def test_contact_signs_in_sees_portal_and_signs_out(make, client, auth):
    make.contact_with_login()
    page = client.get("/portal/login")
    assert page.status_code == 200
    assert "Client billing portal" in text_of(page)

    response = auth.login_contact()
    assert response.status_code == 302
    assert location_path(response) == "/portal/"
    home = client.get("/portal/")
    assert home.status_code == 200
    assert "Hello, Ana Ribeiro" in text_of(home)
    assert "Acme Ltd" in text_of(home)

    response = auth.logout_contact()
    assert response.status_code == 302
    assert location_path(response) == "/portal/login"
    assert "You are signed out." in text_of(client.get("/portal/login"))
    after = client.get("/portal/")
    assert after.status_code == 302
    assert location_path(after) == "/portal/login"


def test_staff_and_contact_logins_are_not_interchangeable(make, client, auth):
    make.staff(email="shared@acme.example", password="staff password 1")
    make.contact_with_login(email="shared@acme.example", password="client password 1")

    # The contact's password does not open the staff door, nor the other way round.
    response = auth.login_staff("shared@acme.example", "client password 1")
    assert response.status_code == 200
    assert "don't match an account" in text_of(response)
    response = auth.login_contact("shared@acme.example", "staff password 1")
    assert response.status_code == 200
    assert "don't match an account" in text_of(response)
    assert not is_signed_in_staff(client)


@pytest.mark.parametrize("kind", ["staff", "contact"])
def test_wrong_password_and_unknown_email_give_the_same_page(kind, make, client, auth):
    if kind == "staff":
        make.staff(email="known@portal.example")
        login = auth.login_staff
    else:
        make.contact_with_login(email="known@portal.example")
        login = auth.login_contact

    wrong_password = login("known@portal.example", "not the password")
    unknown_email = login("nobody@portal.example", "not the password")

    assert wrong_password.status_code == unknown_email.status_code == 200
    assert "That email and password don't match an account." in text_of(wrong_password)
    # Same page, once the email the visitor typed (echoed in the field) and the CSRF token are set aside.
    first = without_csrf(text_of(wrong_password)).replace("known@portal.example", "EMAIL")
    second = without_csrf(text_of(unknown_email)).replace("nobody@portal.example", "EMAIL")
    assert first == second
    assert not is_signed_in_staff(client)


# Contacts never reach /staff/, staff never reach the client portal -----------------------

SECRETS = ("Zebra Secret Holdings", "zed@zebra.example", "staff@portal.example", "Sam Staff")


def _fill(rule, ids: dict) -> str:
    from flask import url_for

    values = {}
    for name in rule.arguments:
        if f"<int:{name}>" in rule.rule:
            values[name] = ids.get(name, 1)
        else:
            values[name] = "x" * 43
    return url_for(rule.endpoint, **values)


def _rules_under(app, prefix: str, skip: set[str]):
    return [r for r in app.url_map.iter_rules() if r.rule.startswith(prefix) and r.endpoint not in skip]


def _snapshot():
    from portal.models import Business, Client, Contact, StaffUser

    return (
        sorted((c.id, c.name, c.email) for c in fresh(Client)),
        sorted((c.id, c.client_id, c.name, c.email, c.portal_access, c.password_hash, c.session_nonce)
               for c in fresh(Contact)),
        sorted((s.id, s.email, s.password_hash, s.role, s.session_nonce) for s in fresh(StaffUser)),
        [(b.name, b.brand_color) for b in fresh(Business)],
    )


def test_contact_is_refused_on_every_staff_route(app, make, client, auth):
    from portal.models import AuthToken, Delivery
    from portal.services.auth import request_password_reset

    make.staff()
    secret = make.client(name="Zebra Secret Holdings",
                         contacts=[{"name": "Zed Secret", "email": "zed@zebra.example", "receives_invoices": True}])
    request_password_reset("staff", "staff@portal.example")  # gives /staff/emails/<id> a real delivery
    ids = {"client_id": secret.id, "contact_id": secret.contacts[0].id,
           "delivery_id": fresh(Delivery)[0].id}
    make.contact_with_login()
    assert auth.login_contact().status_code == 302
    token = csrf_token(client, "/portal/")
    before = _snapshot()
    tokens_before = len(fresh(AuthToken))

    rules = _rules_under(app, "/staff/", STAFF_AUTH_PAGES)
    assert {r.endpoint for r in rules} >= {"staff.dashboard", "staff.clients", "staff.client_detail",
                                           "staff.settings", "staff.emails", "auth.staff_logout"}
    tried = []
    with app.test_request_context():
        urls = [(rule, _fill(rule, ids)) for rule in rules]
    for rule, url in urls:
        for method in sorted(rule.methods & {"GET", "POST"}):
            if method == "GET":
                response = client.get(url)
            else:
                response = client.post(url, data={
                    "csrf_token": token, "name": "Hacked Name", "email": "hacker@evil.example",
                    "contact_name": "Hacker", "contact_email": "hacker@evil.example", "send": "y",
                    "brand_color": "#000000", "currency": "EUR", "timezone": "UTC", "locale": "en",
                    "invoice_number_format": "H-{seq}", "payment_terms_days": "1",
                })
            where = f"{method} {url}"
            tried.append(where)
            assert response.status_code in (302, 403), f"{where} answered {response.status_code}"
            if response.status_code == 302:
                assert location_path(response) == "/portal/login", f"{where} sent the contact elsewhere"
            body = text_of(response)
            for secret_text in SECRETS:
                assert secret_text not in body, f"{where} leaked {secret_text!r}"
            assert "Dashboard" not in body and "Hacked Name" not in body

    assert len(tried) >= 15
    assert _snapshot() == before, "a contact changed staff data"
    assert len(fresh(AuthToken)) == tokens_before, "a contact made a token"
    assert is_signed_in_contact(client)


def test_staff_member_gets_no_client_portal(app, make, staff_client):
    make.contact_with_login()
    rules = _rules_under(app, "/portal/", PORTAL_AUTH_PAGES)
    assert {r.endpoint for r in rules} >= {"client.home", "auth.portal_logout"}
    token = csrf_token(staff_client, "/staff/")
    with app.test_request_context():
        urls = [(rule, _fill(rule, {})) for rule in rules]
    for rule, url in urls:
        for method in sorted(rule.methods & {"GET", "POST"}):
            response = (staff_client.get(url) if method == "GET"
                        else staff_client.post(url, data={"csrf_token": token}))
            where = f"{method} {url}"
            assert response.status_code in (302, 403), f"{where} answered {response.status_code}"
            if response.status_code == 302:
                assert location_path(response) == "/portal/login", where
            body = text_of(response)
            assert "Acme Ltd" not in body and "Hello," not in body, f"{where} showed a client's portal"


@pytest.mark.parametrize("path, login", [
    ("/staff/", "/staff/login"),
    ("/staff/clients", "/staff/login"),
    ("/staff/settings", "/staff/login"),
    ("/staff/emails", "/staff/login"),
    ("/portal/", "/portal/login"),
])
def test_anonymous_visitor_is_sent_to_the_right_login(path, login, make, client):
    make.staff()
    response = client.get(path)
    assert response.status_code == 302
    target = urlsplit(response.headers["Location"])
    assert target.path == login
    assert parse_qs(target.query)["next"] == [path]
    assert "Sign in" in text_of(client.get(response.headers["Location"]))


def test_after_login_the_visitor_lands_where_they_were_going(make, client):
    make.staff()
    response = client.get("/staff/clients?q=acme")
    login_url = response.headers["Location"]
    signed_in = post_form(client, login_url, {"email": "staff@portal.example", "password": "correct horse battery"})
    assert signed_in.status_code == 302
    assert signed_in.headers["Location"].endswith("/staff/clients?q=acme")


def test_anonymous_post_to_a_staff_action_changes_nothing(make, client):
    from portal.models import Client

    make.staff()
    response = post_form(client, "/staff/clients/new", {
        "name": "Sneaky Ltd", "kind": "company", "contact_name": "S", "contact_email": "s@sneaky.example"})
    assert response.status_code == 302
    assert location_path(response) == "/staff/login"
    assert fresh(Client, name="Sneaky Ltd") == []


# Sessions ------------------------------------------------------------------------------

def test_session_is_rotated_at_login(make, client, browser_b, auth):
    make.staff()
    login_page = client.get("/staff/login")
    old_token = re.search(r'name="csrf_token"[^>]*value="([^"]+)"', text_of(login_page)).group(1)
    before = client.get_cookie(SESSION_COOKIE)
    assert before is not None, "the login page should start a session (for its CSRF token)"

    assert auth.login_staff().status_code == 302
    after = client.get_cookie(SESSION_COOKIE)
    assert after is not None and after.value != before.value

    # Someone holding the pre-login cookie is not signed in.
    browser_b.set_cookie(SESSION_COOKIE, before.value)
    replay = browser_b.get("/staff/")
    assert replay.status_code == 302
    assert location_path(replay) == "/staff/login"

    # Nothing from the pre-login session carries over: its CSRF secret is gone.
    stale = client.post("/staff/logout", data={"csrf_token": old_token})
    assert stale.status_code == 400
    assert is_signed_in_staff(client)


def test_session_cookie_is_httponly_and_samesite_lax(make, client, auth):
    make.staff()
    response = auth.login_staff()
    cookies = [c for c in response.headers.getlist("Set-Cookie") if c.startswith(SESSION_COOKIE + "=")]
    assert cookies, response.headers
    for cookie in cookies:
        attributes = [part.strip().lower() for part in cookie.split(";")]
        assert "httponly" in attributes
        assert "samesite=lax" in attributes
        assert "secure" not in attributes  # plain http in development


def test_session_cookie_is_secure_in_production(app, database_url, redis_server, instance_dir):
    from portal.extensions import db
    from tests.support.apps import make_app

    prod = make_app(database_url, redis_server.url, instance_dir, PRODUCTION=True, PORTAL_ENV="production",
                    SESSION_COOKIE_SECURE=True, REMEMBER_COOKIE_SECURE=True,
                    PORTAL_BASE_URL="https://portal.example")
    try:
        from portal.config import from_environment

        settings = from_environment({"PORTAL_ENV": "production", "DATABASE_URL": "postgresql://db/portal",
                                     "REDIS_URL": "redis://127.0.0.1:1/0", "SECRET_KEY": "k" * 40,
                                     "STRIPE_SECRET_KEY": "sk_live_" + "x" * 24,
                                     "PORTAL_BASE_URL": "https://portal.example"})
        assert settings["SESSION_COOKIE_SECURE"] is True
        assert settings["SESSION_COOKIE_HTTPONLY"] is True and settings["SESSION_COOKIE_SAMESITE"] == "Lax"

        web = prod.test_client()
        response = web.get("/staff/login", base_url="https://portal.example")
        assert response.status_code == 200
        [cookie] = [c for c in response.headers.getlist("Set-Cookie") if c.startswith(SESSION_COOKIE + "=")]
        attributes = [part.strip().lower() for part in cookie.split(";")]
        assert {"secure", "httponly", "samesite=lax"} <= set(attributes)
    finally:
        with prod.app_context():
            db.session.remove()
            db.engine.dispose()


@pytest.mark.parametrize("kind", ["staff", "contact"])
def test_idle_session_ends_and_sends_the_user_to_login(kind, app, make, client, auth):
    idle = app.config["IDLE_TIMEOUT"]
    start = datetime.now(timezone.utc).replace(microsecond=0)
    if kind == "staff":
        make.staff()
        login, home, login_path = auth.login_staff, "/staff/", "/staff/login"
    else:
        make.contact_with_login()
        login, home, login_path = auth.login_contact, "/portal/", "/portal/login"

    with clock.frozen(start):
        assert login().status_code == 302
        assert client.get(home).status_code == 200
    with clock.frozen(start + idle - timedelta(minutes=1)):
        assert client.get(home).status_code == 200  # activity keeps the session alive
    later = start + idle - timedelta(minutes=1) + idle + timedelta(minutes=1)
    with clock.frozen(later):
        response = client.get(home)
        assert response.status_code == 302
        target = urlsplit(response.headers["Location"])
        assert target.path == login_path
        assert parse_qs(target.query).get("expired") == ["1"]
        page = client.get(response.headers["Location"])
        assert "Your session ended after a period of inactivity" in text_of(page)
        again = client.get(home)
        assert again.status_code == 302 and location_path(again) == login_path


def test_contact_whose_access_is_revoked_is_signed_out_on_next_request(make, client, browser_b, auth):
    contact = make.contact_with_login()
    contact_id, client_id = contact.id, contact.client_id
    make.staff()
    assert auth.login_contact().status_code == 302
    assert is_signed_in_contact(client)

    assert post_form(browser_b, "/staff/login",
                     {"email": "staff@portal.example", "password": "correct horse battery"}).status_code == 302
    revoked = post_form(browser_b, f"/staff/clients/{client_id}/contacts/{contact_id}/revoke")
    assert revoked.status_code == 302
    assert "can no longer sign in to the portal" in text_of(browser_b.get(revoked.headers["Location"]))

    response = client.get("/portal/")
    assert response.status_code == 302
    assert location_path(response) == "/portal/login"
    again = auth.login_contact()
    assert again.status_code == 200
    assert "don't match an account" in text_of(again)


def test_password_reset_ends_the_users_other_sessions(app, make, client, browser_b, run_worker, smtp_server):
    from portal.models import StaffUser

    make.staff()
    nonce_before = fresh(StaffUser)[0].session_nonce
    credentials = {"email": "staff@portal.example", "password": "correct horse battery"}
    assert post_form(browser_b, "/staff/login", credentials).status_code == 302
    assert is_signed_in_staff(browser_b)

    third = app.test_client()
    assert post_form(third, "/staff/password/forgot", {"email": "staff@portal.example"}).status_code == 200
    assert run_worker() == 1
    [message] = smtp_server.to("staff@portal.example")
    [link] = [u for u in links(email_text(message)) if "/staff/password/reset/" in u]
    done = post_form(third, urlsplit(link).path, {"password": "brand new password", "confirm": "brand new password"})
    assert done.status_code == 302
    assert is_signed_in_staff(third)

    assert fresh(StaffUser)[0].session_nonce != nonce_before
    response = browser_b.get("/staff/")
    assert response.status_code == 302
    assert location_path(response) == "/staff/login"
    # The session that did the reset carries on.
    assert is_signed_in_staff(third)
