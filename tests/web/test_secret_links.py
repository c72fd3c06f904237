"""Secret links in the delivery log (issue X1, point 5).

A plain staff user reads the staff Emails page (list, status filters, the htmx
partial, the detail page and the framed HTML body) and never sees a live
secret: not the owner's password-reset link, not a contact's invitation or
sign-in link, not a guest pay link, whatever the delivery's status (waiting,
retrying, failed, sent, or kept in the log because no mail server is set).
The owner sees them (for what is still stored). The owner's own reset link
can also be had from ``flask portal reset-link EMAIL``.
"""
from __future__ import annotations

import html
from urllib.parse import urlsplit

import pytest
from sqlalchemy import select, update

from portal.extensions import db
from portal.models import Delivery
from portal.services.events import Actor
from tests.support.web import links, post_form

OWNER = {"email": "owner@portal.example", "password": "correct horse battery"}
STAFF = {"email": "staff@portal.example", "password": "correct horse battery"}
SYSTEM_STAFF = Actor("staff", None, "owner@portal.example")
KINDS = ["reset", "invite", "signin", "pay"]
STATUSES = ["pending", "retrying", "failed", "sent", "logged"]


def _rows() -> list[Delivery]:
    db.session.rollback()
    db.session.expire_all()
    return list(db.session.scalars(select(Delivery).order_by(Delivery.id)).all())


def _queue(kind: str, make) -> Delivery:
    """Queue one email of ``kind`` that carries a secret link; returns its delivery."""
    from portal.services import auth as auth_service

    before = {d.id for d in _rows()}
    if kind == "reset":
        auth_service.request_password_reset("staff", OWNER["email"])
    elif kind == "invite":
        contact = make.client(name="Invitee Ltd", contacts=[
            {"name": "Ivy Invitee", "email": "ivy@invitee.example", "receives_invoices": True}]).contacts[0]
        auth_service.invite_contact(contact, SYSTEM_STAFF)
    elif kind == "signin":
        contact = make.client(name="Linked Ltd", contacts=[
            {"name": "Lin Linked", "email": "lin@linked.example", "receives_invoices": True}]).contacts[0]
        auth_service.create_portal_link(contact, SYSTEM_STAFF, send=True)
    else:
        from portal.services import invoices

        client = make.client(name="Payer Ltd", contacts=[
            {"name": "Pat Payer", "email": "pat@payer.example", "receives_invoices": True}])
        draft = invoices.create_draft(client, SYSTEM_STAFF)
        invoices.save_draft(draft, invoices.DraftInput(currency="EUR", lines=[
            {"description": "Work", "quantity": "1", "unit_price": "100.00"}]), SYSTEM_STAFF)
        invoices.send(draft, SYSTEM_STAFF)
    [delivery] = [d for d in _rows() if d.id not in before]
    return delivery


def _bring_to(status: str, delivery: Delivery, app, run_worker, smtp_server) -> None:
    if status == "pending":
        return
    if status == "logged":
        app.config["MAIL_SERVER"] = None
    if status in ("retrying", "failed"):
        smtp_server.refuse = True
    if status == "failed":
        db.session.execute(update(Delivery).where(Delivery.id == delivery.id).values(max_attempts=1))
        db.session.commit()
    assert run_worker() >= 1
    smtp_server.refuse = False
    [row] = [d for d in _rows() if d.id == delivery.id]
    assert row.status == status, (row.status, row.last_error)


def _sign_in(app, who: dict):
    web = app.test_client()
    response = post_form(web, "/staff/login", {"email": who["email"], "password": who["password"]})
    assert response.status_code == 302, response.get_data(as_text=True)
    return web


def _pages(web, delivery: Delivery, status: str) -> dict[str, str]:
    """Every page of the Emails log that shows this delivery, as the viewer gets it."""
    urls = ["/staff/emails", f"/staff/emails?status={status}", f"/staff/emails/{delivery.id}",
            f"/staff/emails/{delivery.id}/body"]
    bodies = {}
    for url in urls:
        response = web.get(url)
        assert response.status_code == 200, (url, response.status_code)
        bodies[url] = response.get_data(as_text=True)
    partial = web.get(f"/staff/emails?status={status}", headers={"HX-Request": "true"})
    assert partial.status_code == 200
    bodies["htmx partial"] = partial.get_data(as_text=True)
    return bodies


@pytest.fixture
def people(make):
    make.business(name="Tidewater Studio", currency="EUR")
    make.owner()
    make.staff()


@pytest.mark.parametrize("status", STATUSES)
@pytest.mark.parametrize("kind", KINDS)
def test_plain_staff_never_sees_a_secret_link(kind, status, app, make, people, run_worker, smtp_server):
    delivery = _queue(kind, make)
    secrets = list(delivery.payload["redact"])
    assert secrets and all(len(s) >= 32 for s in secrets)
    _bring_to(status, delivery, app, run_worker, smtp_server)

    staff = _sign_in(app, STAFF)
    pages = _pages(staff, delivery, status)
    for where, body in pages.items():
        for secret in secrets:
            assert secret not in body, f"{kind}/{status}: the secret shows on {where}"
            assert secret not in html.unescape(body), f"{kind}/{status}: the secret shows on {where}"
    # The email is still listed and readable, with the link visibly held back.
    assert f"/staff/emails/{delivery.id}" in pages["/staff/emails"]
    detail = pages[f"/staff/emails/{delivery.id}"]
    assert delivery.recipient in detail
    if status != "sent":  # a sent copy had its secret removed already
        assert "[link hidden]" in pages[f"/staff/emails/{delivery.id}/body"]
        assert "[link hidden]" in detail


@pytest.mark.parametrize("status", ["pending", "failed", "logged"])
@pytest.mark.parametrize("kind", KINDS)
def test_the_owner_sees_the_link_while_it_is_stored(kind, status, app, make, people, run_worker, smtp_server):
    delivery = _queue(kind, make)
    secrets = list(delivery.payload["redact"])
    _bring_to(status, delivery, app, run_worker, smtp_server)

    owner = _sign_in(app, OWNER)
    pages = _pages(owner, delivery, status)
    for secret in secrets:
        assert secret in pages[f"/staff/emails/{delivery.id}/body"]
        assert secret in pages[f"/staff/emails/{delivery.id}"]  # the plain-text part
    assert "[link hidden]" not in pages[f"/staff/emails/{delivery.id}/body"]


def test_owner_reset_link_in_the_log_works_only_for_the_owner(app, make, people, run_worker):
    """No mail server: a staff user who asks for the owner's reset cannot use the log to take it over."""
    app.config["MAIL_SERVER"] = None
    staff = _sign_in(app, STAFF)
    response = post_form(staff, "/staff/password/forgot", {"email": OWNER["email"]})
    assert response.status_code == 200
    assert run_worker() == 1
    [delivery] = _rows()
    assert delivery.status == "logged"
    body = staff.get(f"/staff/emails/{delivery.id}/body").get_data(as_text=True)
    reset_links = [u for u in links(body) if "/staff/password/reset/" in u]
    for link in reset_links:
        assert app.test_client().get(urlsplit(link).path).status_code in (404, 410)


# The owner's reset link from the command line --------------------------------------------------

def test_cli_prints_a_working_reset_link_for_the_owner(app, make, people, cli):
    result = cli.invoke(args=["portal", "reset-link", OWNER["email"].upper()])
    assert result.exit_code == 0, result.output
    found = [u for u in links(result.output) if "/staff/password/reset/" in u]
    assert len(found) == 1, result.output
    [link] = found
    assert link.startswith(app.config["PORTAL_BASE_URL"] + "/staff/password/reset/")
    assert _rows() == []  # printed, not emailed: nothing lands in the log

    web = app.test_client()
    path = urlsplit(link).path
    form = web.get(path)
    assert form.status_code == 200
    assert "Choose a new password" in form.get_data(as_text=True)
    done = post_form(web, path, {"password": "a brand new owner pass", "confirm": "a brand new owner pass"})
    assert done.status_code == 302, done.get_data(as_text=True)
    assert _sign_in(app, {"email": OWNER["email"], "password": "a brand new owner pass"})
    # Single use.
    assert app.test_client().get(path).status_code == 410


def test_cli_reset_link_for_a_contact(app, make, people, cli):
    make.contact_with_login()
    result = cli.invoke(args=["portal", "reset-link", "ana@acme.example"])
    assert result.exit_code == 0, result.output
    [link] = [u for u in links(result.output) if "/portal/password/reset/" in u]
    assert link.startswith(app.config["PORTAL_BASE_URL"])
    assert app.test_client().get(urlsplit(link).path).status_code == 200


def test_cli_reset_link_for_an_unknown_email_fails_cleanly(app, make, people, cli):
    result = cli.invoke(args=["portal", "reset-link", "nobody@nowhere.example"])
    assert result.exit_code != 0
    assert "nobody@nowhere.example" in result.output
    assert "/password/reset/" not in result.output
