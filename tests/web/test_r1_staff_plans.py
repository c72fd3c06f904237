"""R1, staff, catalogue: plans (a service priced per cycle) on /staff/catalogue/plans: list, new, edit,
archive and restore, and a self-serve plan's public checkout link. Bad input is a field error (422)
and writes nothing."""
from __future__ import annotations

import html
import re

import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from portal.extensions import db
from portal.models import Event, Plan
from tests.support.web import post_form

XSS = "<script>alert(1)</script>"


def fresh():
    return Session(db.engine)


def count(model) -> int:
    with fresh() as s:
        return s.scalar(select(func.count()).select_from(model))


def plans() -> list[Plan]:
    with fresh() as s:
        rows = s.scalars(select(Plan).order_by(Plan.id)).all()
        s.expunge_all()
        return rows


def plan_events() -> list[str]:
    with fresh() as s:
        return list(s.scalars(select(Event.type).where(Event.subject_type == "plan").order_by(Event.id)))


def text(response) -> str:
    return response.get_data(as_text=True)


def field_error(page: str, field_id: str) -> str:
    match = re.search(rf'id="{field_id}-error"[^>]*>([^<]*)<', page)
    return html.unescape(match.group(1)).strip() if match else ""


def row(page: str, plan_id: int) -> str:
    found = re.search(rf'<tr id="plan-{plan_id}".*?</tr>', page, re.DOTALL)
    assert found, page
    return " ".join(html.unescape(re.sub(r"<[^>]+>", " ", found.group(0))).split())


@pytest.fixture
def business(make):
    return make.business(name="Tidewater Studio", currency="EUR", locale="en_IE")


GOOD = {"name": "Quarterly retainer", "description": "Design support", "unit_price": "49.00", "currency": "EUR",
        "unit": "month", "interval": "3", "tax_rate_id": "", "setup_fee": "100", "trial_days": "14",
        "self_serve": "y", "active": "y", "service_id": ""}


def add_plan(client, **values):
    return post_form(client, "/staff/catalogue/plans/new", {**GOOD, **values})


def test_staff_add_a_plan_and_see_it_in_the_catalogue(staff_client, business, make):
    vat = make.tax_rate()
    assert "Plans" in text(staff_client.get("/staff/catalogue"))
    form = text(staff_client.get("/staff/catalogue/plans/new"))
    assert 'name="unit_price"' in form and "VAT 23%" in form

    response = add_plan(staff_client, tax_rate_id=str(vat.id))
    assert response.status_code == 303
    [plan] = plans()
    assert (plan.name, plan.unit_price, plan.currency, plan.unit, plan.interval) == (
        "Quarterly retainer", 4900, "EUR", "month", 3)
    assert (plan.setup_fee, plan.trial_days, plan.self_serve, plan.active, plan.tax_rate_id) == (
        10000, 14, True, True, vat.id)
    assert plan_events() == ["plan.created"]

    page = text(staff_client.get("/staff/catalogue/plans"))
    assert "Plan “Quarterly retainer” added." in page
    shown = row(page, plan.id)
    assert "€49.00 every 3 months" in shown
    assert "VAT 23%" in shown and "€100.00" in shown and "14 days" in shown and "Active" in shown
    # A self-serve plan's public checkout link, built from the portal's base URL.
    assert re.search(rf'href="http://[^"]+/subscribe/{re.escape(plan.checkout_key)}"', page)
    edit = text(staff_client.get(f"/staff/catalogue/plans/{plan.id}/edit"))
    assert f"/subscribe/{plan.checkout_key}" in edit and 'value="49.00"' in edit


def test_a_plan_that_is_not_self_serve_has_no_checkout_link(staff_client, business):
    add_plan(staff_client, self_serve="")
    [plan] = plans()
    page = text(staff_client.get("/staff/catalogue/plans"))
    assert plan.checkout_key not in page
    assert "No" in row(page, plan.id)


@pytest.mark.parametrize("field, value, message", [
    ("unit_price", "0", "A plan's price must be above zero."),
    ("unit_price", "-5", None),
    ("unit_price", "", "Enter the price per cycle, like 49.00."),
    ("unit_price", "9" * 40, None),
    ("unit_price", "1e400", None),
    ("interval", "0", "Bill every 1 or more cycles."),
    ("interval", "-1", "Bill every 1 or more cycles."),
    ("interval", "61", "At most 60 months (five years)."),
    ("interval", "9" * 30, "Bill every 1 or more cycles."),
    ("unit", "fortnight", "Choose day, week, month or year."),
    ("currency", "EURO", "Use a three-letter currency code, like EUR."),
    ("trial_days", "731", "Use 0 to 730 days."),
    ("trial_days", "-1", "Use 0 to 730 days."),
    ("name", "", "Name the plan."),
    ("name", "x" * 201, "Keep the name under 200 characters."),
    ("setup_fee", "lots", None),
    ("tax_rate_id", "99999999999999999999999", None),
])
def test_bad_input_is_a_field_error_and_nothing_is_written(staff_client, business, field, value, message):
    response = add_plan(staff_client, **{field: value})
    page = text(response)
    assert response.status_code == 422
    assert "Nothing was saved." in page
    error = field_error(page, field)
    assert error, f"no message on {field}"
    if message:
        assert error == message
    assert 'aria-invalid="true"' in page
    if field != "name":
        assert 'value="Quarterly retainer"' in page  # what was typed is kept
    assert count(Plan) == 0
    assert plan_events() == []


def test_edit_a_plan_and_a_bad_edit_changes_nothing(staff_client, business):
    add_plan(staff_client)
    [plan] = plans()
    response = post_form(staff_client, f"/staff/catalogue/plans/{plan.id}/edit", {**GOOD, "unit_price": "59.50"})
    assert response.status_code == 303
    assert plans()[0].unit_price == 5950

    response = post_form(staff_client, f"/staff/catalogue/plans/{plan.id}/edit",
                         {**GOOD, "name": "Renamed", "unit_price": "0"})
    assert response.status_code == 422
    assert field_error(text(response), "unit_price") == "A plan's price must be above zero."
    [after] = plans()
    assert (after.name, after.unit_price) == ("Quarterly retainer", 5950)
    assert plan_events() == ["plan.created", "plan.updated"]


def test_a_plan_in_use_keeps_its_cycle(staff_client, business, make):
    add_plan(staff_client, trial_days="0")
    [plan] = plans()
    make.subscription(make.client(currency="EUR"), db.session.get(Plan, plan.id))
    response = post_form(staff_client, f"/staff/catalogue/plans/{plan.id}/edit", {**GOOD, "unit": "year"})
    assert response.status_code == 422
    assert "Make a new plan." in field_error(text(response), "unit")
    assert plans()[0].unit == "month"


def test_archive_and_restore(staff_client, business):
    add_plan(staff_client)
    [plan] = plans()
    assert staff_client.get(f"/staff/catalogue/plans/{plan.id}/archive").status_code == 405  # GET changes nothing
    response = post_form(staff_client, f"/staff/catalogue/plans/{plan.id}/archive")
    assert response.status_code == 303
    assert plans()[0].active is False
    page = text(staff_client.get("/staff/catalogue/plans"))
    assert "archived" in page and "Archived" in row(page, plan.id) and "Restore" in row(page, plan.id)
    assert plan.checkout_key not in page  # an archived plan can't be checked out
    assert post_form(staff_client, f"/staff/catalogue/plans/{plan.id}/restore").status_code == 303
    assert plans()[0].active is True
    assert plan_events() == ["plan.created", "plan.archived", "plan.activated"]


def test_csrf_is_required(staff_client, business):
    add_plan(staff_client)
    [plan] = plans()
    assert staff_client.post(f"/staff/catalogue/plans/{plan.id}/archive").status_code == 400
    assert staff_client.post("/staff/catalogue/plans/new", data=GOOD).status_code == 400
    assert plans()[0].active is True and count(Plan) == 1


@pytest.mark.parametrize("plan_id", ["abc", "99999999999999999999999", "0", "²", "-1"])
def test_hostile_or_unknown_plan_ids_are_404(staff_client, business, plan_id):
    assert staff_client.get(f"/staff/catalogue/plans/{plan_id}/edit").status_code == 404
    assert post_form(staff_client, f"/staff/catalogue/plans/{plan_id}/archive").status_code == 404


def test_plans_need_a_staff_login(client, make, business):
    plan = make.plan()
    assert client.get("/staff/catalogue/plans").status_code in (302, 401)
    contact = make.contact_with_login()
    post_form(client, "/portal/login", {"email": contact.email, "password": "client password 1"})
    assert client.get("/staff/catalogue/plans").status_code == 403
    assert client.get(f"/staff/catalogue/plans/{plan.id}/edit").status_code == 403


def test_a_plan_name_is_escaped(staff_client, business):
    add_plan(staff_client, name=XSS, description=XSS)
    [plan] = plans()
    for url in ("/staff/catalogue/plans", f"/staff/catalogue/plans/{plan.id}/edit"):
        page = text(staff_client.get(url))
        assert XSS not in page
        assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page


def test_the_demo_has_plans_and_subscriptions(cli, app):
    result = cli.invoke(args=["portal", "demo"])
    assert result.exit_code == 0, result.output
    from portal.services.demo import STAFF

    browser = app.test_client()
    assert post_form(browser, "/staff/login", {"email": STAFF[0], "password": STAFF[1]}).status_code == 302
    page = text(browser.get("/staff/catalogue/plans"))
    assert len(re.findall(r'<tr id="plan-\d+">', page)) == 3
    assert "€1,500.00 every 3 months" in page and "/subscribe/" in page  # the self-serve plan's link
    listing = text(browser.get("/staff/subscriptions"))
    assert "Acme Robotics Ltd" in listing and "Northwind Architects" in listing
    [manual] = re.findall(r'href="(/staff/subscriptions/\d+)">#', listing)[:1]
    assert "Make the first invoice now" in text(browser.get(manual))
