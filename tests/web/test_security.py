"""CSRF on every state-changing request, rate limits, security headers, no state change on GET.

Every request here runs in its own app context (see ``IsolatedClient`` in conftest.py), as it
does in production, so nothing cached in ``flask.g`` leaks between requests.
"""
from __future__ import annotations

import html
import re
from datetime import timedelta
from urllib.parse import urlsplit

import pytest
from sqlalchemy import select

from tests.support.web import csrf_token, post_form

TOKEN_ARG = "t" * 43


def text_of(response) -> str:
    return html.unescape(response.get_data(as_text=True))


def fresh(model, **where):
    from portal.extensions import db

    db.session.expire_all()
    return db.session.scalars(select(model).filter_by(**where)).all()


def issue_token(purpose: str, principal) -> str:
    """A live single-use token, as the emails carry."""
    from portal.extensions import db
    from portal.services import tokens

    raw = tokens.issue(purpose, principal, timedelta(hours=1))
    db.session.commit()
    return raw


def _snapshot():
    from portal.models import AuthToken, Business, Client, Contact, Delivery, StaffUser

    return (
        sorted((c.id, c.name, c.email, c.notes) for c in fresh(Client)),
        sorted((c.id, c.name, c.email, c.portal_access, c.password_hash, c.session_nonce) for c in fresh(Contact)),
        sorted((s.id, s.email, s.password_hash, s.session_nonce) for s in fresh(StaffUser)),
        [(b.name, b.brand_color) for b in fresh(Business)],
        sorted((t.id, t.used_at, t.revoked_at) for t in fresh(AuthToken)),
        len(fresh(Delivery)),
    )


# CSRF --------------------------------------------------------------------------------------

def test_every_post_route_refuses_a_request_without_csrf_token(app, make, staff_client):
    from flask import url_for

    acme = make.client(name="Acme Ltd", contacts=[
        {"name": "Ana Ribeiro", "email": "ana@acme.example", "receives_invoices": True},
        {"name": "Bo Berg", "email": "bo@acme.example", "receives_invoices": False},
    ])
    ids = {"client_id": acme.id, "contact_id": acme.contacts[1].id}
    from portal.models import StaffUser

    contact = acme.contacts[0]
    tokens = {"auth.staff_reset": issue_token("password_reset", fresh(StaffUser)[0]),
              "auth.portal_invite": issue_token("portal_invite", contact),
              "auth.portal_magic": issue_token("portal_link", contact),
              "auth.portal_reset": issue_token("password_reset", contact)}
    before = _snapshot()

    rules = [r for r in app.url_map.iter_rules() if "POST" in r.methods
             and not r.rule.startswith(("/webhooks/", "/api/"))]
    with app.test_request_context():
        urls = []
        for rule in rules:
            values = {}
            for name in rule.arguments:
                if f"<int:{name}>" in rule.rule:
                    values[name] = ids.get(name, 1)
                else:
                    values[name] = tokens.get(rule.endpoint, TOKEN_ARG)
            urls.append(url_for(rule.endpoint, **values))
    assert len(urls) >= 15
    assert "/staff/logout" in urls and "/staff/settings" in urls and "/portal/login" in urls

    form = {"name": "Changed Name", "email": "changed@acme.example", "password": "a brand new password",
            "confirm": "a brand new password", "contact_name": "X", "contact_email": "x@acme.example",
            "send": "y", "notes": "changed", "brand_color": "#000000", "currency": "EUR", "timezone": "UTC",
            "locale": "en", "invoice_number_format": "C-{seq}", "payment_terms_days": "3", "kind": "company"}
    for url in urls:
        for headers in ({}, {"HX-Request": "true"}):
            response = staff_client.post(url, data=form, headers=headers)
            assert response.status_code == 400, f"POST {url} {headers} without a CSRF token: {response.status_code}"
            assert "Reload the page and try again" in text_of(response)

    assert _snapshot() == before, "a request without a CSRF token changed something"
    dashboard = staff_client.get("/staff/")
    assert dashboard.status_code == 200 and "Dashboard" in text_of(dashboard)


def test_logout_without_token_keeps_you_signed_in(staff_client):
    response = staff_client.post("/staff/logout")
    assert response.status_code == 400
    assert "Form expired" in text_of(response)
    assert staff_client.get("/staff/").status_code == 200


def test_a_token_from_another_session_is_refused(app, make, staff_client):
    from portal.models import Client

    stranger = app.test_client()
    foreign = csrf_token(stranger)
    response = staff_client.post("/staff/clients/new", data={
        "csrf_token": foreign, "name": "Forged Ltd", "kind": "company",
        "contact_name": "F", "contact_email": "f@forged.example"})
    assert response.status_code == 400
    assert fresh(Client, name="Forged Ltd") == []


def test_htmx_request_works_with_token_in_header_and_fails_without(make, staff_client):
    from portal.models import AuthToken

    acme = make.client()
    url = f"/staff/clients/{acme.id}/contacts/{acme.contacts[0].id}/portal-link"
    token = csrf_token(staff_client, f"/staff/clients/{acme.id}")

    refused = staff_client.post(url, headers={"HX-Request": "true"})
    assert refused.status_code == 400
    assert fresh(AuthToken) == []

    wrong = staff_client.post(url, headers={"HX-Request": "true", "X-CSRFToken": "not-" + token})
    assert wrong.status_code == 400
    assert fresh(AuthToken) == []

    accepted = staff_client.post(url, headers={"HX-Request": "true", "X-CSRFToken": token})
    assert accepted.status_code == 200
    body = text_of(accepted)
    assert 'id="portal-link"' in body and "Emailed to ana@acme.example" in body
    assert "/portal/link/" not in body, "a plain staff user never sees the link itself"
    assert "<html" not in body
    assert [t.purpose for t in fresh(AuthToken)] == ["portal_link"]


# Rate limits -------------------------------------------------------------------------------

@pytest.fixture
def app_settings(app_settings, request):
    """The suite's settings, plus whatever a test passes with ``indirect`` parametrization."""
    app_settings.update(getattr(request, "param", {}))
    return app_settings


@pytest.mark.parametrize("app_settings", [{"RATELIMIT_LOGIN": "3 per minute"}], indirect=True, ids=["3-per-minute"])
@pytest.mark.parametrize("kind", ["staff", "contact"])
def test_login_is_rate_limited_without_locking_the_account(app, kind, make, client, redis_server):
    assert app.config["RATELIMIT_LOGIN"] == "3 per minute"
    if kind == "staff":
        make.staff()
        url, email, password, home = "/staff/login", "staff@portal.example", "correct horse battery", "/staff/"
    else:
        make.contact_with_login()
        url, email, password, home = "/portal/login", "ana@acme.example", "client password 1", "/portal/"

    for _ in range(3):
        response = post_form(client, url, {"email": email, "password": "wrong password"})
        assert response.status_code == 200
        assert "don't match an account" in text_of(response)
    limited = post_form(client, url, {"email": email, "password": password})
    assert limited.status_code == 429
    assert "Too many attempts" in text_of(limited)
    assert client.get(home).status_code == 302, "a rate-limited attempt must not sign in"
    unknown = post_form(client, url, {"email": "nobody@portal.example", "password": "whatever 123"})
    assert unknown.status_code == 429

    # The window passes (the limiter's storage forgets): the right password works, no lockout.
    redis_server.client().flushall()
    response = post_form(client, url, {"email": email, "password": password})
    assert response.status_code == 302
    assert urlsplit(response.headers["Location"]).path == home
    assert client.get(home).status_code == 200


@pytest.mark.parametrize("app_settings", [{"RATELIMIT_RESET": "2 per minute"}], indirect=True, ids=["2-per-minute"])
def test_reset_request_is_rate_limited(app, make, client, redis_server):
    assert app.config["RATELIMIT_RESET"] == "2 per minute"
    make.staff()
    for email in ("staff@portal.example", "nobody@portal.example"):
        response = post_form(client, "/staff/password/forgot", {"email": email})
        assert response.status_code == 200
        assert "Check your email" in text_of(response)
    limited = post_form(client, "/staff/password/forgot", {"email": "staff@portal.example"})
    assert limited.status_code == 429
    assert "Too many attempts" in text_of(limited)
    # The portal's reset form is limited too.
    for _ in range(2):
        post_form(client, "/portal/password/forgot", {"email": "ana@acme.example"})
    assert post_form(client, "/portal/password/forgot", {"email": "ana@acme.example"}).status_code == 429
    # Viewing the form is not limited.
    assert client.get("/staff/password/forgot").status_code == 200


# Security headers ------------------------------------------------------------------------

def csp_directives(response) -> dict[str, list[str]]:
    policy = response.headers["Content-Security-Policy"]
    directives = {}
    for part in policy.split(";"):
        words = part.split()
        if words:
            directives[words[0]] = words[1:]
    return directives


@pytest.mark.parametrize("path, who", [
    ("/", None), ("/staff/login", None), ("/portal/login", None), ("/staff/password/forgot", None),
    ("/staff/", "staff"), ("/staff/clients", "staff"), ("/staff/settings", "staff"), ("/portal/", "contact"),
])
def test_pages_send_a_strict_content_security_policy(path, who, make, client, auth):
    if who == "staff":
        make.staff()
        auth.login_staff()
    elif who == "contact":
        make.contact_with_login()
        auth.login_contact()
    response = client.get(path)
    assert response.status_code == 200
    csp = csp_directives(response)
    assert csp["frame-ancestors"] == ["'none'"]
    assert csp["script-src"][0] == "'self'"
    assert "https://js.stripe.com" in csp["script-src"]
    assert set(csp["script-src"]) <= {"'self'", "https://js.stripe.com", "https://*.js.stripe.com"}
    for directive in ("script-src", "default-src"):
        assert "'unsafe-inline'" not in csp.get(directive, []) and "'unsafe-eval'" not in csp.get(directive, [])
    assert set(csp["frame-src"]) <= {"'self'", "https://js.stripe.com", "https://*.js.stripe.com",
                                     "https://hooks.stripe.com"}
    assert response.headers["X-Content-Type-Options"] == "nosniff"
    assert "HX-Request" in response.headers.get("Vary", "")
    # The page needs no inline script, so the policy does not break it.
    page = response.get_data(as_text=True)
    assert not re.search(r"<script(?![^>]*\ssrc=)[^>]*>", page), "inline <script> on the page"
    assert not re.search(r"<[^>]+\son[a-z]+\s*=", page), "inline event handler on the page"


def test_token_pages_send_no_referrer(app, make, client):
    make.staff()
    contact = make.contact_with_login()
    from portal.models import StaffUser

    staff = fresh(StaffUser)[0]
    pages = [
        f"/staff/password/reset/{issue_token('password_reset', staff)}",
        f"/portal/password/reset/{issue_token('password_reset', contact)}",
        f"/portal/invite/{issue_token('portal_invite', contact)}",
        f"/portal/link/{issue_token('portal_link', contact)}",
    ]
    for path in pages:
        response = client.get(path)
        assert response.status_code == 200, path
        assert response.headers["Referrer-Policy"] == "no-referrer", path
    # A used or unknown token's page does not leak its address either.
    for path in ("/staff/password/reset/" + TOKEN_ARG, "/portal/invite/" + TOKEN_ARG, "/portal/link/" + TOKEN_ARG):
        response = client.get(path)
        assert response.status_code == 410, path
        assert response.headers["Referrer-Policy"] == "no-referrer", path
    # Ordinary pages keep a referrer policy that never sends the path across origins.
    login = client.get("/staff/login")
    assert login.headers["Referrer-Policy"] in {"no-referrer", "strict-origin-when-cross-origin", "same-origin",
                                                 "strict-origin"}


def test_hsts_only_in_production(app, client, database_url, redis_server, instance_dir):
    from portal.extensions import db
    from tests.support.apps import make_app

    assert "Strict-Transport-Security" not in client.get("/staff/login").headers

    prod = make_app(database_url, redis_server.url, instance_dir, PRODUCTION=True, PORTAL_ENV="production",
                    PORTAL_BASE_URL="https://portal.example")
    try:
        response = prod.test_client().get("/staff/login", base_url="https://portal.example")
        assert response.status_code == 200
        hsts = response.headers["Strict-Transport-Security"]
        max_age = int(re.search(r"max-age=(\d+)", hsts).group(1))
        assert max_age >= 180 * 24 * 3600
    finally:
        with prod.app_context():
            db.session.remove()
            db.engine.dispose()


def test_htmx_pages_vary_on_hx_request(make, staff_client):
    full = staff_client.get("/staff/clients")
    partial = staff_client.get("/staff/clients", headers={"HX-Request": "true"})
    assert "<html" in full.get_data(as_text=True)
    assert "<html" not in partial.get_data(as_text=True)
    for response in (full, partial):
        assert "HX-Request" in response.headers["Vary"]


# No state change on GET -----------------------------------------------------------------------

def test_get_of_portal_link_does_not_sign_in_or_use_the_token(make, client):
    from portal.models import AuthToken

    contact = make.contact_with_login()
    raw = issue_token("portal_link", contact)
    path = f"/portal/link/{raw}"

    for _ in range(2):  # a mail scanner may fetch it more than once
        page = client.get(path)
        assert page.status_code == 200
        assert "Continue to the portal" in text_of(page)
        assert client.get("/portal/").status_code == 302, "a GET signed the visitor in"
    [token] = fresh(AuthToken)
    assert token.used_at is None

    signed_in = post_form(client, path)
    assert signed_in.status_code == 302
    assert urlsplit(signed_in.headers["Location"]).path == "/portal/"
    assert "Hello, Ana Ribeiro" in text_of(client.get("/portal/"))
    [token] = fresh(AuthToken)
    assert token.used_at is not None


def test_get_of_reset_and_invite_pages_does_not_use_the_token(make, client):
    from portal.models import AuthToken

    contact = make.contact_with_login()
    for purpose, path in (("password_reset", "/portal/password/reset/"), ("portal_invite", "/portal/invite/")):
        raw = issue_token(purpose, contact)
        assert client.get(path + raw).status_code == 200
        assert client.get(path + raw).status_code == 200
    assert all(t.used_at is None for t in fresh(AuthToken))
    assert client.get("/portal/").status_code == 302
