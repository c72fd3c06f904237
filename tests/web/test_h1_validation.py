"""H1 (4): one home for validation.

Each rule lives in a service: the page shows the service's own message for a bad value (422) and
changes nothing, and the same service called directly, with no form in between, refuses the same
value with the same field error. Hostile input (no CSRF token, huge numbers, 1,000 lines, markup,
template syntax, 100 KB strings) is a 4xx with a message, never a 500 and never a change. Markup
and template syntax in free text are kept as typed and shown escaped, never run or evaluated.
"""
from __future__ import annotations

import html
import re
import time

import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from portal.extensions import db
from portal.models import Business, Client, Contact, Event, Invoice, InvoiceLine, Payment, Service, TaxRate
from portal.services import catalogue, clients, invoices, payments
from portal.services import settings as settings_service
from portal.services.errors import ServiceError
from portal.services.events import Actor
from tests.support.web import csrf_token, post_form

STAFF = Actor("staff", None, "staff@portal.example")
SCRIPT = "<script>alert(1)</script>"
TEMPLATE = "{{7*7}}"
BIG = "x" * 100_000
HUGE = "9" * 40
EXPONENT = "1e999999999"


def count(model, *where) -> int:
    with Session(db.engine) as s:
        return s.scalar(select(func.count()).select_from(model).where(*where))


def field_error(page: str, field_id: str) -> str:
    match = re.search(rf'id="{re.escape(field_id)}-error"[^>]*>([^<]*)<', page)
    return html.unescape(match.group(1)).strip() if match else ""


def text(response) -> str:
    return response.get_data(as_text=True)


def refused(call) -> dict[str, str]:
    """The field errors a service raises for ``call()`` (it must refuse)."""
    with pytest.raises(ServiceError) as caught:
        call()
    db.session.rollback()
    return dict(caught.value.errors)


def events_count() -> int:
    return count(Event)


# Clients and contacts ---------------------------------------------------------------------------

NEW_CLIENT = {"name": "Harbour Lights Ltd", "kind": "company", "email": "accounts@harbour.example", "phone": "",
              "address": "", "tax_id": "", "currency": "gbp", "notes": "", "contact_name": "Nia Lewis",
              "contact_email": "nia@harbour.example", "contact_receives_invoices": "y"}
CONTACT_FIELDS = {"contact_name": "name", "contact_email": "email", "contact_receives_invoices": "receives_invoices"}


def _service_new_client(form: dict):
    values = {k: v for k, v in form.items() if k in clients.CLIENT_FIELDS}
    contact = {CONTACT_FIELDS[k]: v for k, v in form.items() if k in CONTACT_FIELDS}
    contact["receives_invoices"] = bool(contact.get("receives_invoices"))
    return lambda: clients.create_client(values, [contact], STAFF)


@pytest.mark.parametrize("change, field", [
    ({"name": BIG}, "name"),
    ({"name": "   "}, "name"),
    ({"email": SCRIPT}, "email"),
    ({"email": TEMPLATE}, "email"),
    ({"email": BIG + "@harbour.example"}, "email"),
    ({"currency": TEMPLATE}, "currency"),
    ({"currency": "ZZZ"}, "currency"),
    ({"kind": SCRIPT}, "kind"),
    ({"phone": BIG}, "phone"),
    ({"notes": BIG}, "notes"),
    ({"contact_name": ""}, "contact_name"),
    ({"contact_email": SCRIPT}, "contact_email"),
    ({"contact_email": BIG}, "contact_email"),
])
def test_a_bad_new_client_is_refused_by_the_service_with_the_message_the_page_shows(staff_client, change, field):
    form = {**NEW_CLIENT, **change}
    errors = refused(_service_new_client(form))
    service_field = {"contact_name": "contacts-0-name", "contact_email": "contacts-0-email"}.get(field, field)
    assert service_field in errors
    before = events_count()

    response = post_form(staff_client, "/staff/clients/new", form)
    assert response.status_code == 422
    assert field_error(text(response), field) == errors[service_field]
    assert count(Client) == 0 and count(Contact) == 0 and events_count() == before


def test_client_and_contact_edits_are_refused_by_the_service_too(staff_client, make):
    acme = make.client(name="Acme Ltd")
    ana = acme.contacts[0]
    bad_client = {"name": "Acme Holdings", "kind": "company", "email": BIG, "currency": "EURO"}
    errors = refused(lambda: clients.update_client(acme, bad_client, STAFF))
    assert set(errors) == {"email", "currency"}
    response = post_form(staff_client, f"/staff/clients/{acme.id}/edit", bad_client)
    assert response.status_code == 422
    assert {f: field_error(text(response), f) for f in errors} == errors

    bad_contact = {"name": SCRIPT, "email": TEMPLATE, "phone": BIG}
    errors = refused(lambda: clients.update_contact(ana, bad_contact, STAFF))
    assert set(errors) == {"email", "phone"}  # markup in a name is a name: kept as typed, shown escaped
    response = post_form(staff_client, f"/staff/clients/{acme.id}/contacts/{ana.id}/edit", bad_contact)
    assert response.status_code == 422
    assert {f: field_error(text(response), f) for f in errors} == errors
    errors = refused(lambda: clients.add_contact(acme, {"name": "", "email": ""}, STAFF))
    assert errors == {"name": "Enter the contact's name.", "email": "Enter an email address."}
    response = post_form(staff_client, f"/staff/clients/{acme.id}/contacts/new", {"name": "", "email": ""})
    assert response.status_code == 422
    assert {f: field_error(text(response), f) for f in errors} == errors

    with Session(db.engine) as s:
        assert s.get(Client, acme.id).name == "Acme Ltd" and s.get(Client, acme.id).currency is None
        assert (s.get(Contact, ana.id).name, s.get(Contact, ana.id).email) == ("Ana Ribeiro", "ana@acme.example")
        assert s.scalar(select(func.count()).select_from(Contact)) == 1


def test_markup_and_template_syntax_in_a_name_are_kept_as_typed_and_shown_escaped(staff_client):
    name = f"{SCRIPT} {TEMPLATE}"
    response = post_form(staff_client, "/staff/clients/new", {**NEW_CLIENT, "name": name})
    assert response.status_code == 302
    with Session(db.engine) as s:
        assert s.scalars(select(Client.name)).one() == name
    page = text(staff_client.get(response.headers["Location"]))
    assert SCRIPT not in page and "&lt;script&gt;alert(1)&lt;/script&gt; {{7*7}}" in page
    assert ">49<" not in page and " 49 " not in page


# The catalogue ----------------------------------------------------------------------------------

@pytest.mark.parametrize("values, field", [
    ({"unit_price": HUGE}, "unit_price"),
    ({"unit_price": EXPONENT}, "unit_price"),
    ({"unit_price": TEMPLATE}, "unit_price"),
    ({"name": BIG}, "name"),
    ({"name": ""}, "name"),
    ({"description": BIG}, "description"),
    ({"currency": SCRIPT}, "currency"),
    ({"tax_rate_id": "\u00b2"}, "tax_rate_id"),  # a digit to str.isdigit, not to int()
    ({"tax_rate_id": HUGE * 100}, "tax_rate_id"),
])
def test_a_bad_catalogue_service_is_refused_by_the_service_with_the_message_the_page_shows(staff_client, values,
                                                                                          field):
    form = {"name": "Workshop", "description": "", "unit_price": "120.00", "currency": "EUR", "tax_rate_id": "",
            "active": "y", **values}
    errors = refused(lambda: catalogue.create_service(form, STAFF))
    assert field in errors
    response = post_form(staff_client, "/staff/catalogue/services/new", form)
    assert response.status_code == 422
    assert field_error(text(response), field) == errors[field]
    assert count(Service) == 0


@pytest.mark.parametrize("percent", [HUGE, EXPONENT, TEMPLATE, SCRIPT, BIG, "-1", "NaN"])
def test_a_bad_tax_rate_is_refused_by_the_service_with_the_message_the_page_shows(staff_client, percent):
    form = {"name": "VAT", "percent": percent, "inclusive": "exclusive", "active": "y"}
    errors = refused(lambda: catalogue.create_tax_rate(form, STAFF))
    assert set(errors) == {"percent"}
    response = post_form(staff_client, "/staff/catalogue/tax-rates/new", form)
    assert response.status_code == 422
    assert field_error(text(response), "percent") == errors["percent"]
    assert count(TaxRate) == 0


# Settings ---------------------------------------------------------------------------------------

SETTINGS = {
    "name": "Tidewater Studio", "brand_color": "#3355cc", "currency": "EUR", "timezone": "UTC", "locale": "en_IE",
    "invoice_number_format": "INV-{seq:04d}", "credit_note_number_format": "CN-{seq:04d}", "payment_terms": "net",
    "payment_terms_days": "30", "invoice_next_number": "1", "invoice_next_number_was": "1", "invoice_memo": "",
    "invoice_footer": "", "accept_card": "y", "autopay_timing": "on_issue", "card_expiry_notice_days": "30",
}


def stored_business() -> dict:
    with Session(db.engine) as s:
        row = s.scalars(select(Business)).one()
        return {c.name: getattr(row, c.name) for c in Business.__table__.columns}


@pytest.mark.parametrize("field, value, service_value", [
    ("name", BIG, BIG),
    ("name", "", ""),
    ("email", SCRIPT, SCRIPT),
    ("email", BIG, BIG),
    ("phone", BIG, BIG),
    ("website", BIG, BIG),
    ("invoice_memo", BIG, BIG),
    ("invoice_footer", BIG, BIG),
    ("brand_color", SCRIPT, SCRIPT),
    ("currency", TEMPLATE, TEMPLATE),
    ("timezone", BIG, BIG),
    ("locale", BIG, BIG),
    ("invoice_number_format", TEMPLATE, TEMPLATE),
    ("invoice_number_format", "{seq:>999999999}", "{seq:>999999999}"),
    ("payment_terms_days", HUGE, int(HUGE)),
    ("payment_terms_days", "ten", "ten"),
    ("payment_terms_days", "", None),
    ("invoice_next_number", HUGE, int(HUGE)),
    ("invoice_next_number", EXPONENT, EXPONENT),
    ("autopay_timing", SCRIPT, SCRIPT),
    ("card_expiry_notice_days", "9" * 5000, "9" * 5000),
    ("restrict_overdue_days", "-3", -3),
])
def test_a_bad_setting_is_refused_by_the_service_with_the_message_the_page_shows(owner_client, make, field, value,
                                                                                  service_value):
    make.business(name="Tidewater Studio", currency="EUR", locale="en_IE", timezone="UTC")
    before = stored_business()
    errors = refused(lambda: settings_service.update_business({"name": "Tidewater Studio", field: service_value},
                                                               STAFF))
    assert field in errors
    response = post_form(owner_client, "/staff/settings", {**SETTINGS, field: value})
    assert response.status_code == 422
    assert field_error(text(response), field) == errors[field]
    assert stored_business() == before
    assert count(Event, Event.type == "settings.updated") == 0


def test_markup_and_template_syntax_in_the_memo_are_kept_as_typed_and_shown_escaped(owner_client, make):
    make.business(name="Tidewater Studio", currency="EUR", locale="en_IE", timezone="UTC")
    memo = f"{SCRIPT}\n{TEMPLATE}"
    response = post_form(owner_client, "/staff/settings", {**SETTINGS, "invoice_memo": memo})
    assert response.status_code == 302
    assert stored_business()["invoice_memo"] == memo
    page = text(owner_client.get("/staff/settings"))
    assert SCRIPT not in page and "&lt;script&gt;" in page and TEMPLATE in page


# The invoice editor -------------------------------------------------------------------------------

LINE = {"description": "Design work", "quantity": "1", "unit_price": "100.00", "discount_kind": "",
        "discount_value": "", "tax_rate_id": "", "service_id": "", "charge_id": ""}


def editor_form(lines: dict[int, dict], **header) -> dict:
    data = {"currency": "EUR", "due_date": "", "memo": "", "footer": "", "discount_kind": "", "discount_value": ""}
    data.update(header)
    for i, line in lines.items():
        for key, value in line.items():
            data[f"lines-{i}-{key}"] = value
    return data


def draft_input(lines: list[dict], **header) -> invoices.DraftInput:
    values = {"currency": "EUR", "due_date": "", "memo": "", "footer": "", "discount_kind": "", "discount_value": ""}
    values.update(header)
    return invoices.DraftInput(lines=[dict(line) for line in lines], **values)


@pytest.fixture
def draft(make, staff_client):
    return make.invoice(make.client(), status="draft", description="Kept line", amount="10.00")


def lines_of(invoice_id: int) -> list[str]:
    with Session(db.engine) as s:
        return list(s.scalars(select(InvoiceLine.description).where(InvoiceLine.invoice_id == invoice_id)
                              .order_by(InvoiceLine.position)))


@pytest.mark.parametrize("lines, header, field", [
    ([{**LINE, "unit_price": HUGE}], {}, "lines-0-unit_price"),
    ([{**LINE, "unit_price": EXPONENT}], {}, "lines-0-unit_price"),
    ([{**LINE, "quantity": HUGE}], {}, "lines-0-quantity"),
    ([{**LINE, "quantity": TEMPLATE}], {}, "lines-0-quantity"),
    ([{**LINE, "description": BIG}], {}, "lines-0-description"),
    ([{**LINE, "discount_kind": "percent", "discount_value": SCRIPT}], {}, "lines-0-discount_value"),
    ([{**LINE, "tax_rate_id": HUGE}], {}, "lines-0-tax_rate_id"),
    ([LINE], {"memo": BIG}, "memo"),
    ([LINE], {"currency": TEMPLATE}, "currency"),
    ([LINE], {"due_date": SCRIPT}, "due_date"),
    ([LINE], {"discount_kind": "fixed", "discount_value": HUGE}, "discount_value"),
])
def test_a_bad_draft_is_refused_by_the_service_with_the_message_the_editor_shows(staff_client, draft, lines,
                                                                                  header, field):
    errors = refused(lambda: invoices.save_draft(draft, draft_input(lines, **header), STAFF))
    assert field in errors
    before = events_count()
    response = post_form(staff_client, f"/staff/invoices/{draft.id}", editor_form(dict(enumerate(lines)), **header))
    assert response.status_code == 422
    assert field_error(text(response), field) == errors[field]
    assert lines_of(draft.id) == ["Kept line"] and events_count() == before


def test_a_thousand_lines_are_refused_by_the_service_and_save_nothing(staff_client, draft):
    lines = [{**LINE, "description": f"Line {i}"} for i in range(1000)]
    errors = refused(lambda: invoices.save_draft(draft, draft_input(lines), STAFF))
    assert errors["lines"] == f"An invoice has at most {invoices.MAX_LINES} lines."
    started = time.monotonic()
    response = post_form(staff_client, f"/staff/invoices/{draft.id}", editor_form(dict(enumerate(lines))))
    assert time.monotonic() - started < 60  # a bound on hostile work, not a benchmark
    assert response.status_code == 422
    assert errors["lines"] in text(response)
    assert lines_of(draft.id) == ["Kept line"]
    # The live totals and the line buttons take the same posts without saving anything (and without a 500).
    form = editor_form(dict(enumerate(lines)))
    assert post_form(staff_client, f"/staff/invoices/{draft.id}/preview", form, htmx=True).status_code == 200
    assert post_form(staff_client, f"/staff/invoices/{draft.id}/editor", {**form, "op": "add"},
                     htmx=True).status_code == 200
    assert lines_of(draft.id) == ["Kept line"]


def test_line_indexes_are_read_in_order_gaps_closed_and_hostile_ones_ignored(staff_client, draft):
    form = editor_form({999999: {**LINE, "description": "Last"}, 3: {**LINE, "description": "First"},
                        40: {**LINE, "description": "Middle"}})
    form.update({"lines-1000000-description": "seven digits: ignored", "lines-\u00b2-description": "not ASCII",
                 "lines-\u0661-description": "Arabic-Indic one", "lines-5-bogus": "not a line field",
                 "lines--1-description": "negative", "lines-5": "no field"})
    response = post_form(staff_client, f"/staff/invoices/{draft.id}", form)
    assert response.status_code == 303
    assert lines_of(draft.id) == ["First", "Middle", "Last"]


def test_ids_the_service_cannot_read_are_field_errors_or_name_nothing(staff_client, draft):
    # A tax rate id int() can't read, or too long for the database: the service's "choose from the list".
    for tax_rate_id in ("\u00b2", HUGE * 100):
        response = post_form(staff_client, f"/staff/invoices/{draft.id}",
                             editor_form({0: {**LINE, "tax_rate_id": tax_rate_id}}))
        assert response.status_code == 422
        assert field_error(text(response), "lines-0-tax_rate_id") == "Choose a tax rate from the list."
    # The hidden catalogue service and open charge ids: a hostile one names nothing.
    response = post_form(staff_client, f"/staff/invoices/{draft.id}",
                         editor_form({0: {**LINE, "service_id": "\u00b2", "charge_id": HUGE * 100}}))
    assert response.status_code == 303
    with Session(db.engine) as s:
        line = s.scalars(select(InvoiceLine).where(InvoiceLine.invoice_id == draft.id)).one()
        assert (line.description, line.service_id, line.charge_id) == ("Design work", None, None)


def test_blank_trailing_lines_are_not_part_of_the_invoice(staff_client, draft):
    blank = {key: "" for key in LINE} | {"quantity": "1"}
    response = post_form(staff_client, f"/staff/invoices/{draft.id}",
                         editor_form({0: {**LINE, "description": "Only line"}, 1: blank, 2: blank}))
    assert response.status_code == 303
    assert lines_of(draft.id) == ["Only line"]


@pytest.mark.parametrize("op", ["remove-" + "9" * 5000, "up-\u00b2", "down-" + "9" * 7, SCRIPT, ""])
def test_a_hostile_line_button_is_a_400(staff_client, draft, op):
    form = editor_form({0: LINE})
    assert post_form(staff_client, f"/staff/invoices/{draft.id}/editor", {**form, "op": op}).status_code == 400
    assert lines_of(draft.id) == ["Kept line"]


@pytest.mark.parametrize("service_id", ["\u00b2", HUGE * 100, SCRIPT])
def test_a_hostile_catalogue_pick_is_a_field_error(staff_client, draft, service_id):
    response = post_form(staff_client, f"/staff/invoices/{draft.id}/editor",
                         {**editor_form({0: LINE}), "op": "add-service", "add_service_id": service_id})
    assert response.status_code == 200
    assert field_error(text(response), "add_service_id") == "Choose a service from the catalogue."
    assert lines_of(draft.id) == ["Kept line"]


def test_markup_and_template_syntax_in_a_line_are_kept_as_typed_and_shown_escaped(staff_client, draft):
    description = f"{SCRIPT} {TEMPLATE}"
    response = post_form(staff_client, f"/staff/invoices/{draft.id}",
                         editor_form({0: {**LINE, "description": description}}))
    assert response.status_code == 303
    assert lines_of(draft.id) == [description]
    page = text(staff_client.get(f"/staff/invoices/{draft.id}"))
    assert SCRIPT not in page and "&lt;script&gt;alert(1)&lt;/script&gt; {{7*7}}" in page


# Paying: the guest page, an invoice in the portal, "pay all" ----------------------------------------

BAD_PAYMENTS = [
    ({"method": "card", "card_number": BIG}, "card_number"),
    ({"method": "card", "card_number": SCRIPT}, "card_number"),
    ({"method": "card", "card_number": TEMPLATE}, "card_number"),
    ({"method": "card", "card_number": HUGE}, "card_number"),
    ({"method": "card", "card_number": ""}, "card_number"),
    ({"method": SCRIPT, "card_number": "4242424242424242"}, "method"),
    ({"method": "sepa_debit", "account": TEMPLATE}, "account"),
]


def pay_error(page: str) -> str:
    match = re.search(r'id="pay-error">([^<]*)<', page)
    return html.unescape(match.group(1)).strip() if match else ""


def nothing_paid(invoice_id: int, due: int) -> bool:
    with Session(db.engine) as s:
        return s.get(Invoice, invoice_id).amount_due == due and s.scalar(
            select(func.count()).select_from(Payment).where(Payment.status == "succeeded")) == 0


def service_refusal(call) -> tuple[str | None, str]:
    with pytest.raises(ServiceError) as caught:
        call()
    db.session.rollback()
    return caught.value.field, caught.value.message


@pytest.fixture
def open_invoice(make):
    make.business(name="Tidewater Studio", currency="EUR")
    return make.invoice(make.client(), "120.00", currency="EUR")


@pytest.mark.parametrize("typed, field", BAD_PAYMENTS)
def test_a_bad_guest_payment_is_refused_by_the_service_with_the_message_the_page_shows(client, make, open_invoice,
                                                                                        typed, field):
    number = typed.get("card_number", typed.get("account", ""))
    refused_field, message = service_refusal(lambda: payments.guest_pay(open_invoice.id, typed["method"],
                                                                        number[:64]))
    assert refused_field == field
    link = make.guest_link(open_invoice)
    response = client.post(f"{link}/pay", data={**typed, "csrf_token": csrf_token(client, link)})
    assert response.status_code == 422
    assert pay_error(text(response)) == message
    assert SCRIPT not in text(response)
    assert nothing_paid(open_invoice.id, 12000)


@pytest.mark.parametrize("typed, field", BAD_PAYMENTS[:4])
def test_a_bad_portal_payment_is_refused_with_the_same_message(client, make, auth, typed, field):
    make.business(name="Tidewater Studio", currency="EUR")
    contact = make.contact_with_login()
    invoice = make.invoice(contact.client, "120.00", currency="EUR")
    _, message = service_refusal(lambda: payments.guest_pay(invoice.id, "card", typed["card_number"][:64]))
    auth.login_contact()
    response = post_form(client, f"/portal/invoices/{invoice.id}/pay", typed)
    assert response.status_code == 422
    assert pay_error(text(response)) == message
    assert nothing_paid(invoice.id, 12000)


@pytest.mark.parametrize("typed, field", BAD_PAYMENTS[:4])
def test_a_bad_pay_all_is_refused_with_the_same_message(client, make, auth, typed, field):
    make.business(name="Tidewater Studio", currency="EUR")
    contact = make.contact_with_login()
    invoice = make.invoice(contact.client, "120.00", currency="EUR")
    auth.login_contact()
    page = text(client.get("/portal/pay-all?currency=EUR"))
    quote = re.search(r'name="quote" value="([^"]*)"', page).group(1)
    _, message = service_refusal(lambda: payments.pay_all(contact.client_id, "EUR", STAFF, "card",
                                                          typed["card_number"][:64], html.unescape(quote)))
    response = post_form(client, "/portal/pay-all", {"currency": "EUR", "quote": html.unescape(quote), **typed})
    assert response.status_code == 422
    assert pay_error(text(response)) == message
    assert nothing_paid(invoice.id, 12000)


# No CSRF token: 400, nothing changed --------------------------------------------------------------------

def test_every_form_without_its_csrf_token_is_a_400_that_changes_nothing(staff_client, owner_client, make):
    acme = make.client(name="Acme Ltd")
    draft = make.invoice(acme, status="draft", description="Kept line")
    ana = acme.contacts[0]
    posts = [
        ("/staff/clients/new", NEW_CLIENT),
        (f"/staff/clients/{acme.id}/edit", {**NEW_CLIENT, "name": "Changed"}),
        (f"/staff/clients/{acme.id}/contacts/new", {"name": "Bo", "email": "bo@acme.example"}),
        (f"/staff/clients/{acme.id}/contacts/{ana.id}/edit", {"name": "Changed", "email": "x@acme.example"}),
        ("/staff/catalogue/services/new", {"name": "Workshop", "unit_price": "1.00", "currency": "EUR"}),
        ("/staff/catalogue/tax-rates/new", {"name": "VAT", "percent": "23"}),
        ("/staff/settings", {**SETTINGS, "name": "Changed"}),
        (f"/staff/invoices/{draft.id}", editor_form({0: {**LINE, "description": "Changed"}})),
    ]
    before = (count(Client), count(Contact), count(Service), count(TaxRate), events_count(), stored_business())
    for url, data in posts:
        assert owner_client.post(url, data=data).status_code == 400, url
    assert (count(Client), count(Contact), count(Service), count(TaxRate), events_count(),
            stored_business()) == before
    assert lines_of(draft.id) == ["Kept line"]


def test_the_pay_forms_without_their_csrf_token_are_a_400_that_pays_nothing(client, make, auth):
    make.business(name="Tidewater Studio", currency="EUR")
    contact = make.contact_with_login()
    invoice = make.invoice(contact.client, "120.00", currency="EUR")
    card = {"method": "card", "card_number": "4242424242424242", "expiry": "12/34", "cvc": "123"}
    link = make.guest_link(invoice)
    assert client.post(f"{link}/pay", data=card).status_code == 400
    auth.login_contact()
    assert client.post(f"/portal/invoices/{invoice.id}/pay", data=card).status_code == 400
    assert client.post("/portal/pay-all", data={**card, "currency": "EUR"}).status_code == 400
    assert client.post("/portal/payment-methods/add", data=card).status_code == 400
    assert nothing_paid(invoice.id, 12000) and count(Payment) == 0
