"""Password reset, portal invitations and portal links, from the emailed link on.

Emails are the real ones: queued by the request, sent by a burst RQ worker to
the test SMTP server, and read from there. Every request runs in its own app
context (see ``IsolatedClient`` in conftest.py), as it does in production.
"""
from __future__ import annotations

import html
import re
from datetime import datetime, timedelta, timezone
from urllib.parse import urlsplit

import pytest
from sqlalchemy import select

from portal import clock
from tests.support.web import email_text, links, post_form

STAFF = {"email": "staff@portal.example", "password": "correct horse battery"}
CONTACT = {"email": "ana@acme.example", "password": "client password 1"}
KINDS = {
    "staff": {"forgot": "/staff/password/forgot", "login": "/staff/login", "home": "/staff/",
              "reset": "/staff/password/reset/", "greeting": "Dashboard", **STAFF},
    "contact": {"forgot": "/portal/password/forgot", "login": "/portal/login", "home": "/portal/",
                "reset": "/portal/password/reset/", "greeting": "Hello, Ana Ribeiro", **CONTACT},
}


def text_of(response) -> str:
    return html.unescape(response.get_data(as_text=True))


def fresh(model, **where):
    from portal.extensions import db

    db.session.expire_all()
    return db.session.scalars(select(model).filter_by(**where)).all()


def without_csrf(page: str) -> str:
    page = re.sub(r'name="csrf_token"([^>]*)value="[^"]+"', r'name="csrf_token"\1value=""', page)
    return re.sub(r'"X-CSRFToken": "[^"]+"', '"X-CSRFToken": ""', page)


def link_in_email(smtp_server, address: str, path_part: str) -> str:
    """The path of the one link in the one email ``address`` received."""
    messages = smtp_server.to(address)
    assert len(messages) == 1, [m["Subject"] for m in messages]
    found = [u for u in links(email_text(messages[0])) if path_part in u]
    assert found, email_text(messages[0])
    return urlsplit(found[0]).path


def sign_in(client, kind: str, password: str):
    k = KINDS[kind]
    return post_form(client, k["login"], {"email": k["email"], "password": password})


def set_password(client, path: str, password: str, confirm: str | None = None):
    return post_form(client, path, {"password": password, "confirm": password if confirm is None else confirm})


def make_principal(make, kind: str):
    return make.staff() if kind == "staff" else make.contact_with_login()


def request_reset(client, kind: str, email: str | None = None):
    return post_form(client, KINDS[kind]["forgot"], {"email": email or KINDS[kind]["email"]})


# Reset link ---------------------------------------------------------------------------------------

@pytest.mark.parametrize("kind", ["staff", "contact"])
def test_reset_link_works_once(kind, app, make, client, run_worker, smtp_server):
    k = KINDS[kind]
    make_principal(make, kind)
    sent = request_reset(client, kind)
    assert sent.status_code == 200
    assert "Check your email" in text_of(sent)
    assert run_worker() == 1
    path = link_in_email(smtp_server, k["email"], k["reset"])

    form = client.get(path)
    assert form.status_code == 200
    assert "Choose a new password" in text_of(form)

    done = set_password(client, path, "a fresh password 42")
    assert done.status_code == 302
    assert urlsplit(done.headers["Location"]).path == k["home"]
    home = client.get(k["home"])
    assert home.status_code == 200 and k["greeting"] in text_of(home)
    assert "Your password is set" in text_of(home)

    other = app.test_client()
    old = sign_in(other, kind, k["password"])
    assert old.status_code == 200
    assert "don't match an account" in text_of(old)
    assert sign_in(other, kind, "a fresh password 42").status_code == 302

    # The same link a second time: the "no longer works" page, and nothing changes.
    third = app.test_client()
    again = third.get(path)
    assert again.status_code == 410
    assert "This link no longer works" in text_of(again)
    reused = set_password(third, path, "an attacker password")
    assert reused.status_code == 410
    assert "This link no longer works" in text_of(reused)
    assert third.get(k["home"]).status_code == 302
    assert sign_in(app.test_client(), kind, "an attacker password").status_code == 200
    assert sign_in(app.test_client(), kind, "a fresh password 42").status_code == 302


@pytest.mark.parametrize("kind", ["staff", "contact"])
def test_reset_link_fails_after_its_expiry(kind, app, make, client, run_worker, smtp_server):
    k = KINDS[kind]
    ttl = app.config["PASSWORD_RESET_TTL"]
    make_principal(make, kind)
    asked_at = datetime.now(timezone.utc)
    with clock.frozen(asked_at):
        assert request_reset(client, kind).status_code == 200
    assert run_worker() == 1
    path = link_in_email(smtp_server, k["email"], k["reset"])

    with clock.frozen(asked_at + ttl - timedelta(minutes=1)):
        assert client.get(path).status_code == 200  # still good just before it expires

    with clock.frozen(asked_at + ttl + timedelta(seconds=1)):
        page = client.get(path)
        assert page.status_code == 410
        assert "This link no longer works" in text_of(page)
        late = set_password(client, path, "a too late password")
        assert late.status_code == 410
        assert "This link no longer works" in text_of(late)
        assert client.get(k["home"]).status_code == 302

    assert sign_in(app.test_client(), kind, "a too late password").status_code == 200
    assert sign_in(app.test_client(), kind, k["password"]).status_code == 302


@pytest.mark.parametrize("kind", ["staff", "contact"])
def test_known_and_unknown_email_get_identical_answers(kind, app, make, run_worker, smtp_server):
    k = KINDS[kind]
    make_principal(make, kind)
    # A staff login with the contact's address (and the other way round) is "unknown" for this form.
    if kind == "staff":
        make.client(name="Other Co", contacts=[{"name": "O", "email": "other@other.example",
                                                "receives_invoices": True}])
    else:
        make.staff(email="other@other.example")

    answers = {}
    for email in (k["email"], "nobody@portal.example", "other@other.example", k["email"].upper()):
        browser = app.test_client()
        browser.get(k["forgot"])
        answers[email] = request_reset(browser, kind, email)

    bodies = {email: without_csrf(r.get_data(as_text=True)) for email, r in answers.items()}
    known = bodies[k["email"]]
    assert "Check your email" in html.unescape(known)
    for email, body in bodies.items():
        assert answers[email].status_code == 200, (email, answers[email].get_data(as_text=True)[-800:])
        assert body == known, f"the answer for {email} differs"
        assert answers[email].headers.get("Content-Type") == answers[k["email"]].headers.get("Content-Type")

    run_worker()
    # Only the known address got an email (once for each of its two spellings), nobody else.
    assert {m["X-Envelope-To"] for m in smtp_server.messages} == {k["email"]}
    assert len(smtp_server.messages) == 2


@pytest.mark.parametrize("kind", ["staff", "contact"])
def test_bad_new_password_re_renders_with_an_error_and_keeps_the_link(kind, app, make, client, run_worker,
                                                                      smtp_server):
    from portal.models import AuthToken

    k = KINDS[kind]
    make_principal(make, kind)
    request_reset(client, kind)
    run_worker()
    path = link_in_email(smtp_server, k["email"], k["reset"])

    for password, confirm, message in (
        ("short", "short", "Use at least 10 characters."),
        ("long enough password", "something else entirely", "The passwords don't match."),
        (k["email"], k["email"], "Your password can't be your email address."),
    ):
        response = set_password(client, path, password, confirm)
        assert response.status_code in (200, 422), password
        page = text_of(response)
        assert message in page
        assert 'aria-invalid="true"' in page
        assert "Choose a new password" in page
        assert client.get(k["home"]).status_code == 302
    assert all(t.used_at is None for t in fresh(AuthToken))
    assert sign_in(app.test_client(), kind, k["password"]).status_code == 302

    assert set_password(client, path, "finally a good one").status_code == 302
    assert client.get(k["home"]).status_code == 200


def test_a_staff_reset_link_does_not_work_on_the_portal(make, client, run_worker, smtp_server):
    make.staff()
    request_reset(client, "staff")
    run_worker()
    path = link_in_email(smtp_server, STAFF["email"], "/staff/password/reset/")
    token = path.rsplit("/", 1)[1]
    assert client.get(f"/portal/password/reset/{token}").status_code == 410
    assert set_password(client, f"/portal/password/reset/{token}", "a portal password").status_code == 410
    assert client.get(path).status_code == 200  # still good where it belongs


# Portal invitation ----------------------------------------------------------------------------------

def test_staff_invites_a_contact_who_sets_a_password_and_signs_in(app, make, staff_client, run_worker, smtp_server):
    from portal.models import Contact

    acme = make.client()
    client_id, contact_id = acme.id, acme.contacts[0].id
    page = text_of(staff_client.get(f"/staff/clients/{client_id}"))
    assert "No access" in page
    invite_action = f"/staff/clients/{client_id}/contacts/{contact_id}/invite"
    form = re.search(r'<form method="post" action="' + re.escape(invite_action) + r'".*?</form>', page, re.S)
    assert form and "Invite to portal" in form.group(0), "no 'Invite to portal' button on the client page"

    invited = post_form(staff_client, invite_action)
    assert invited.status_code == 302
    after = text_of(staff_client.get(invited.headers["Location"]))
    assert "Invitation sent to ana@acme.example" in after
    assert "Invited" in after

    assert run_worker() == 1
    [message] = smtp_server.to("ana@acme.example")
    assert "invited you" in email_text(message)
    path = link_in_email(smtp_server, "ana@acme.example", "/portal/invite/")

    contact_browser = app.test_client()
    welcome = contact_browser.get(path)
    assert welcome.status_code == 200
    assert "Welcome! Choose a password" in text_of(welcome)
    done = set_password(contact_browser, path, "my portal password")
    assert done.status_code == 302
    assert urlsplit(done.headers["Location"]).path == "/portal/"
    home = contact_browser.get("/portal/")
    assert home.status_code == 200
    assert "Hello, Ana Ribeiro" in text_of(home) and "Acme Ltd" in text_of(home)

    assert post_form(contact_browser, "/portal/logout").status_code == 302
    assert contact_browser.get("/portal/").status_code == 302
    later = sign_in(contact_browser, "contact", "my portal password")
    assert later.status_code == 302
    assert "Hello, Ana Ribeiro" in text_of(contact_browser.get("/portal/"))

    # The invitation link was single-use; the staff page shows the contact as active.
    assert app.test_client().get(path).status_code == 410
    assert "Active" in text_of(staff_client.get(f"/staff/clients/{client_id}"))
    [contact] = fresh(Contact, id=contact_id)
    assert contact.portal_access and contact.password_hash


# Portal link ---------------------------------------------------------------------------------------

def test_the_owner_makes_a_portal_link_that_signs_the_contact_in_once(app, make, owner_client):
    acme = make.client()
    url = f"/staff/clients/{acme.id}/contacts/{acme.contacts[0].id}/portal-link"

    block = post_form(owner_client, url, htmx=True)
    assert block.status_code == 200
    body = text_of(block)
    assert "<html" not in body and "<nav" not in body and "Activity" not in body
    assert 'id="portal-link"' in body
    assert "Sign-in link for Ana Ribeiro" in body
    [link] = re.findall(r'value="(https?://[^"]*/portal/link/[^"]+)"', body)
    path = urlsplit(link).path

    contact_browser = app.test_client()
    page = contact_browser.get(path)
    assert page.status_code == 200
    assert re.search(r"<button[^>]*>\s*Continue to the portal", page.get_data(as_text=True))
    assert contact_browser.get("/portal/").status_code == 302

    signed_in = post_form(contact_browser, path)
    assert signed_in.status_code == 302
    assert urlsplit(signed_in.headers["Location"]).path == "/portal/"
    assert "Hello, Ana Ribeiro" in text_of(contact_browser.get("/portal/"))

    # Single use: the same link in another browser no longer works, and signs nobody in.
    someone = app.test_client()
    assert someone.get(path).status_code == 410
    reused = post_form(someone, path)
    assert reused.status_code == 410
    assert "This link no longer works" in text_of(reused)
    assert someone.get("/portal/").status_code == 302


def test_portal_link_without_htmx_answers_the_whole_page(make, staff_client, run_worker, smtp_server):
    acme = make.client()
    url = f"/staff/clients/{acme.id}/contacts/{acme.contacts[0].id}/portal-link"
    full = post_form(staff_client, url, {"send": "y"})
    assert full.status_code == 200
    body = text_of(full)
    assert "<html" in body and "Acme Ltd" in body
    assert "Emailed to ana@acme.example" in body
    assert run_worker() == 1
    path = link_in_email(smtp_server, "ana@acme.example", "/portal/link/")
    assert path not in body and "/portal/link/" not in body, "a plain staff user never sees a sign-in link"


def test_plain_staff_never_see_a_sign_in_link_it_is_emailed_instead(make, staff_client, run_worker, smtp_server):
    acme = make.client()
    url = f"/staff/clients/{acme.id}/contacts/{acme.contacts[0].id}/portal-link"
    block = post_form(staff_client, url, htmx=True)  # "Portal link" without "email it"
    assert block.status_code == 200
    body = block.get_data(as_text=True)
    assert "/portal/link/" not in body and "Only the owner can see sign-in links" in text_of(block)
    assert "Emailed to ana@acme.example" in text_of(block)
    assert run_worker() == 1
    assert link_in_email(smtp_server, "ana@acme.example", "/portal/link/")
