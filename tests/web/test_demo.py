"""`flask portal demo` loads a demo business whose printed logins work."""
from __future__ import annotations

import re

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from portal.extensions import db
from portal.models import Business, Client, Contact, StaffUser
from tests.support.web import post_form


LOGIN_LINE = re.compile(r"^\s+(owner|staff|client)\s+(\S+@\S+) / (\S+)\s*$", re.M)


def printed_logins(output: str) -> dict[str, tuple[str, str]]:
    return {role: (email, password) for role, email, password in LOGIN_LINE.findall(output)}


def counts() -> dict[str, int]:
    with Session(db.engine) as s:
        return {model.__name__: s.scalar(select(func.count()).select_from(model))
                for model in (Business, StaffUser, Client, Contact)}


def test_demo_loads_business_people_and_clients(cli):
    result = cli.invoke(args=["portal", "demo"])
    assert result.exit_code == 0, result.output
    assert "Demo business loaded." in result.output

    with Session(db.engine) as s:
        [business] = s.scalars(select(Business)).all()
        assert business.name == "Tidewater Studio"
        assert business.brand_color == "#0f766e"
        assert business.logo and business.logo_content_type.startswith("image/")
        assert "Lisboa" in business.address
        assert business.currency == "EUR"
        assert business.timezone == "Europe/Lisbon"

        staff = {u.role: u.email for u in s.scalars(select(StaffUser))}
        assert set(staff) == {"owner", "staff"}

        clients = s.scalars(select(Client)).all()
        assert len(clients) >= 3
        assert all(client.contacts for client in clients)
        portal_contacts = s.scalars(select(Contact).where(Contact.portal_access.is_(True))).all()
        assert len(portal_contacts) == 1
        assert portal_contacts[0].password_hash

    logins = printed_logins(result.output)
    assert set(logins) == {"owner", "staff", "client"}
    assert logins["owner"][0] == staff["owner"]
    assert logins["staff"][0] == staff["staff"]
    assert logins["client"][0] == portal_contacts[0].email


def test_printed_logins_work_on_the_login_pages(cli, app):
    result = cli.invoke(args=["portal", "demo"])
    logins = printed_logins(result.output)

    for role in ("owner", "staff"):
        browser = app.test_client()
        email, password = logins[role]
        response = post_form(browser, "/staff/login", {"email": email, "password": password})
        assert response.status_code == 302, f"{role} login failed"
        page = browser.get("/staff/").get_data(as_text=True)
        assert "<h1>Dashboard</h1>" in page
        assert "Tidewater Studio" in page
        settings = browser.get("/staff/settings").get_data(as_text=True)
        assert ("Only the owner can change these settings." in settings) == (role == "staff")

    browser = app.test_client()
    email, password = logins["client"]
    response = post_form(browser, "/portal/login", {"email": email, "password": password})
    assert response.status_code == 302, "client login failed"
    page = browser.get("/portal/").get_data(as_text=True)
    assert "Tidewater Studio" in page
    assert "Acme Robotics Ltd" in page
    assert "Ana Ribeiro" in page
    # The demo's client is not staff.
    assert browser.get("/staff/").status_code in (302, 403)

    logo = app.test_client().get("/branding/logo")
    assert logo.status_code == 200 and logo.mimetype.startswith("image/")
    assert "--brand:#0f766e" in app.test_client().get("/branding.css").get_data(as_text=True)


def test_demo_refuses_a_second_run_and_if_empty_skips(cli):
    assert cli.invoke(args=["portal", "demo"]).exit_code == 0
    before = counts()

    again = cli.invoke(args=["portal", "demo"])
    assert again.exit_code != 0
    assert "already has staff users" in again.output
    assert "only into an empty" in again.output
    assert "Traceback" not in again.output
    assert counts() == before

    skipped = cli.invoke(args=["portal", "demo", "--if-empty"])
    assert skipped.exit_code == 0
    assert "demo not loaded" in skipped.output
    assert counts() == before


def test_demo_refuses_when_staff_exist(cli, make):
    make.owner()
    result = cli.invoke(args=["portal", "demo"])
    assert result.exit_code != 0
    assert "already has staff users" in result.output
    assert counts()["Client"] == 0


def test_if_empty_loads_into_an_empty_database(cli):
    result = cli.invoke(args=["portal", "demo", "--if-empty"])
    assert result.exit_code == 0
    assert "Demo business loaded." in result.output
    assert counts()["StaffUser"] == 2
