"""The credit balance through the pages: staff add credit and one-time charges on the client page,
apply credit on the invoice page (and automatically at finalize); contacts read their own ledger."""
from __future__ import annotations

import re

import pytest
from sqlalchemy import func, select

from portal.extensions import db
from portal.models import CreditEntry, Invoice
from portal.services import credits, invoices
from portal.services.events import Actor
from tests.support.web import post_form

STAFF = Actor("staff", None, "staff@portal.example")


def text_of(response) -> str:
    html = response.get_data(as_text=True)
    html = re.sub(r"<(script|style)[^>]*>.*?</\1>", " ", html, flags=re.S)
    return " ".join(re.sub(r"<[^>]+>", " ", html).replace("&amp;", "&").replace("&#39;", "'")
                    .replace("&#34;", '"').split())


def section(response, marker: str) -> str:
    html = response.get_data(as_text=True)
    assert marker in html, f"{marker} not on the page"
    return html.split(marker, 1)[1].split("</section>", 1)[0]


def entries(client_id=None) -> int:
    query = select(func.count()).select_from(CreditEntry)
    if client_id is not None:
        query = query.where(CreditEntry.client_id == client_id)
    return db.session.scalar(query)


def fresh_invoice(invoice_id) -> Invoice:
    db.session.expire_all()
    return db.session.get(Invoice, invoice_id)


@pytest.fixture
def acme(make):
    make.business(name="Tidewater Studio", currency="EUR")
    return make.client()


# Staff: the client page --------------------------------------------------------------------------

def test_the_client_page_shows_the_credit_section_and_both_forms(acme, staff_client):
    page = staff_client.get(f"/staff/clients/{acme.id}")
    credit = section(page, 'id="credit"')
    assert "No credit balance." in credit and "No credit movements yet." in credit
    assert f'action="/staff/clients/{acme.id}/credits#add-credit"' in credit
    assert f'action="/staff/clients/{acme.id}/one-time-charges#add-charge"' in credit
    assert 'name="csrf_token"' in credit and 'value="EUR"' in credit
    assert "Charge the credit balance" in credit and "below zero it shows as owed" in credit


def test_adding_credit_shows_in_the_balance_and_the_ledger(acme, staff_client):
    response = post_form(staff_client, f"/staff/clients/{acme.id}/credits",
                         {"amount": "25.00", "currency": "EUR", "description": "Sorry for the delay"})
    assert response.status_code == 303
    assert response.headers["Location"].endswith(f"/staff/clients/{acme.id}#credit")
    page = staff_client.get(f"/staff/clients/{acme.id}")
    text = text_of(page)
    assert "Credit of €25.00 added." in text
    credit = text_of_html(section(page, 'id="credit"'))
    assert "€25.00 credit available" in credit
    assert "Credit Sorry for the delay €25.00 €25.00" in credit
    assert credits.balance(acme.id, "EUR") == 2500


def test_a_one_time_charge_beyond_the_credit_shows_as_owed(acme, staff_client):
    credits.add_credit(acme.id, "10.00", "EUR", "Credit", STAFF)
    response = post_form(staff_client, f"/staff/clients/{acme.id}/one-time-charges",
                         {"amount": "15.00", "currency": "eur", "description": "Rush fee"})
    assert response.status_code == 303
    page = staff_client.get(f"/staff/clients/{acme.id}")
    assert "One-time charge of €15.00 taken from the credit balance." in text_of(page)
    credit = text_of_html(section(page, 'id="credit"'))
    assert "€5.00 owed" in credit
    assert "One-time charge Rush fee -€15.00 €5.00 owed" in credit
    assert credits.balance(acme.id, "EUR") == -500


@pytest.mark.parametrize("path, kind", [("credits", "credit"), ("one-time-charges", "charge")])
def test_a_bad_amount_rerenders_with_field_errors_and_writes_nothing(acme, staff_client, path, kind):
    response = post_form(staff_client, f"/staff/clients/{acme.id}/{path}",
                         {"amount": "12,5x", "currency": "EUR", "description": "Kept <as typed>"})
    assert response.status_code == 422
    html = response.get_data(as_text=True)
    form = html.split(f'id="add-{kind}"', 1)[1].split("</details>", 1)[0]
    assert "open" in form.split(">", 1)[0]
    assert f'id="{kind}-amount-error"' in form and "Use an amount like 25.00." in form
    assert 'value="Kept &lt;as typed&gt;"' in form
    assert "Contacts" in text_of(response)  # the whole client page, as staff were on it
    assert entries() == 0

    missing = post_form(staff_client, f"/staff/clients/{acme.id}/{path}",
                        {"amount": "5.00", "currency": "QQQ", "description": ""})
    assert missing.status_code == 422
    text = text_of(missing)
    assert "Use a three-letter currency code" in text and "Say what it is for" in text
    assert entries() == 0


def test_credit_routes_are_staff_only(acme, make, app, client):
    url = f"/staff/clients/{acme.id}/credits"
    anonymous = post_form(client, url, {"amount": "5.00", "description": "x"})
    assert anonymous.status_code in (302, 303) and "/staff/login" in anonymous.headers["Location"]
    contact = make.contact_with_login(email="ben@other.example", client_name="Other Co")
    browser = app.test_client()
    assert post_form(browser, "/portal/login", {"email": contact.email,
                                                "password": contact.plain_password}).status_code == 302
    for path in (url, f"/staff/clients/{acme.id}/one-time-charges"):
        assert post_form(browser, path, {"amount": "5.00", "description": "x"}).status_code == 403
    invoice = make.invoice(acme)
    assert post_form(browser, f"/staff/invoices/{invoice.id}/apply-credit", {"amount": ""}).status_code == 403
    assert entries() == 0


def test_an_unknown_client_is_404(acme, staff_client):
    assert post_form(staff_client, "/staff/clients/999999/credits",
                     {"amount": "5.00", "description": "x"}).status_code == 404
    assert post_form(staff_client, "/staff/invoices/999999/apply-credit", {"amount": ""}).status_code == 404


def test_the_staff_ledger_pages_with_htmx(acme, staff_client):
    for n in range(credits.LEDGER_PAGE_SIZE + 3):
        credits.add_credit(acme.id, f"{n + 1}.00", "EUR", f"credit number {n + 1}", STAFF)
    page = staff_client.get(f"/staff/clients/{acme.id}")
    ledger = text_of_html(section(page, 'id="credit-ledger"'))
    assert "credit number 23" in ledger and "credit number 4 " in ledger + " "
    assert "credit number 3 " not in ledger + " " and "Page 1 of 2" in ledger
    fragment = staff_client.get(f"/staff/clients/{acme.id}/credits?page=2", headers={"HX-Request": "true"})
    html = fragment.get_data(as_text=True)
    assert fragment.status_code == 200 and "<html" not in html and html.lstrip().startswith('<div id="credit-ledger"')
    text = text_of(fragment)
    assert "credit number 3 €3.00 €6.00" in text and "credit number 1 €1.00 €1.00" in text
    full = staff_client.get(f"/staff/clients/{acme.id}/credits?page=2")
    assert "<html" in full.get_data(as_text=True) and "credit number 1 €1.00" in text_of(full)


def text_of_html(html: str) -> str:
    return " ".join(re.sub(r"<[^>]+>", " ", html).replace("&amp;", "&").replace("&#39;", "'").split())


# Staff: applying credit on the invoice page ---------------------------------------------------------

@pytest.fixture
def with_credit(make, acme):
    """€60.00 of credit (no automatic application) and an open €100.00 invoice."""
    make.business(auto_apply_credit=False)
    credits.add_credit(acme.id, "60.00", "EUR", "Prepaid", STAFF)
    return make.invoice(acme)


def apply(staff_client, invoice_id, amount):
    return post_form(staff_client, f"/staff/invoices/{invoice_id}/apply-credit", {"amount": amount})


def test_the_invoice_page_offers_the_credit_prefilled_with_the_most_it_can(with_credit, staff_client):
    page = staff_client.get(f"/staff/invoices/{with_credit.id}")
    panel = page.get_data(as_text=True).split('id="apply-credit"', 1)[1].split("</details>", 1)[0]
    assert f'action="/staff/invoices/{with_credit.id}/apply-credit#apply-credit"' in panel
    assert 'name="amount"' in panel and 'value="60.00"' in panel
    assert "The client has €60.00 of credit." in text_of_html(panel)


def test_apply_part_then_the_rest_until_paid(acme, with_credit, staff_client):
    response = apply(staff_client, with_credit.id, "20.00")
    assert response.status_code == 303
    page = staff_client.get(response.headers["Location"])
    text = text_of(page)
    assert "€20.00 of credit applied." in text and "€20.00 of credit applied to this invoice." in text
    invoice = fresh_invoice(with_credit.id)
    assert (invoice.status, invoice.credit_applied, invoice.amount_due) == ("open", 2000, 8000)

    credits.add_credit(acme.id, "100.00", "EUR", "More", STAFF)  # €140.00 now; €80.00 is due
    page = staff_client.get(f"/staff/invoices/{with_credit.id}")
    assert 'value="80.00"' in page.get_data(as_text=True).split('id="apply-credit"', 1)[1]
    response = apply(staff_client, with_credit.id, "80.00")
    page = staff_client.get(response.headers["Location"])
    assert "€80.00 of credit applied. The invoice is paid." in text_of(page)
    invoice = fresh_invoice(with_credit.id)
    assert (invoice.status, invoice.credit_applied, invoice.amount_due) == ("paid", 10000, 0)
    assert credits.balance(acme.id, "EUR") == 6000


def test_a_blank_amount_applies_the_most_it_can(acme, with_credit, staff_client):
    apply(staff_client, with_credit.id, "")
    assert fresh_invoice(with_credit.id).credit_applied == 6000
    assert credits.balance(acme.id, "EUR") == 0


@pytest.mark.parametrize("typed, message", [
    ("60.01", "The client has only €60.00 of credit."),
    ("0", "Enter an amount above zero."),
    ("lots", "Use an amount like 25.00."),
])
def test_apply_refuses_more_than_the_balance_in_place(acme, with_credit, staff_client, typed, message):
    response = apply(staff_client, with_credit.id, typed)
    assert response.status_code == 422
    panel = response.get_data(as_text=True).split('id="apply-credit"', 1)[1].split("</details>", 1)[0]
    assert message in text_of_html(panel) and f'value="{typed}"' in panel
    assert 'id="apply-credit-error"' in panel
    assert fresh_invoice(with_credit.id).credit_applied == 0
    assert credits.balance(acme.id, "EUR") == 6000


def test_apply_refuses_more_than_is_due(make, acme, staff_client):
    make.business(auto_apply_credit=False)
    credits.add_credit(acme.id, "60.00", "EUR", "Prepaid", STAFF)
    invoice = make.invoice(acme, "30.00")
    response = apply(staff_client, invoice.id, "30.01")
    assert response.status_code == 422
    assert "Only €30.00 is due on this invoice." in text_of(response)
    assert fresh_invoice(invoice.id).credit_applied == 0


def test_a_paid_invoice_takes_no_credit(acme, with_credit, staff_client):
    apply(staff_client, with_credit.id, "60.00")
    invoices.record_manual_payment(fresh_invoice(with_credit.id), "40.00", "wire", "", "", STAFF)
    page = staff_client.get(f"/staff/invoices/{with_credit.id}")
    assert "Apply credit" not in text_of(page) and "€60.00 of credit applied to this invoice." in text_of(page)
    response = apply(staff_client, with_credit.id, "1.00")
    assert response.status_code == 303
    assert "Credit can't be applied to an invoice that is paid." in text_of(
        staff_client.get(response.headers["Location"]))


# Automatic application at finalize ---------------------------------------------------------------

@pytest.mark.parametrize("business_default, client_setting, applied", [
    (True, None, "€30.00"),
    (False, None, None),
    (False, True, "€30.00"),
    (True, False, None),
])
def test_finalizing_applies_credit_when_the_setting_says_so(make, acme, staff_client, business_default,
                                                            client_setting, applied):
    make.business(auto_apply_credit=business_default)
    acme.auto_apply_credit = client_setting
    db.session.commit()
    credits.add_credit(acme.id, "30.00", "EUR", "Prepaid", STAFF)
    draft = make.invoice(acme, status="draft")
    response = post_form(staff_client, f"/staff/invoices/{draft.id}/finalize")
    assert response.status_code == 303
    text = text_of(staff_client.get(f"/staff/invoices/{draft.id}"))
    invoice = fresh_invoice(draft.id)
    if applied:
        assert f"{applied} of credit applied to this invoice." in text
        assert "Invoice credit applied" in text  # the timeline
        assert (invoice.credit_applied, invoice.amount_due) == (3000, 7000)
        assert credits.balance(acme.id, "EUR") == 0
    else:
        assert "of credit applied to this invoice" not in text
        assert "The client has €30.00 of credit." in text
        assert (invoice.credit_applied, invoice.amount_due) == (0, 10000)


# The client portal -----------------------------------------------------------------------------------

@pytest.fixture
def portal(make, auth):
    make.business(name="Tidewater Studio", currency="EUR")
    contact = make.contact_with_login()
    mine = contact.client
    credits.add_credit(mine.id, "50.00", "EUR", "Welcome credit", STAFF)
    invoice = make.invoice(mine, "20.00")  # the business default applies €20.00 at finalize
    other = make.client(name="Other Co", contacts=[{"name": "Olu", "email": "olu@other.example",
                                                   "receives_invoices": True}])
    credits.add_credit(other.id, "77.00", "EUR", "Secret credit of Other Co", STAFF)
    other_invoice = make.invoice(other, "10.00")
    assert auth.login_contact().status_code == 302
    return {"client": mine, "invoice": invoice, "other": other, "other_invoice": other_invoice}


def test_the_portal_credit_page_shows_the_balance_and_the_ledger_with_links(portal, client):
    response = client.get("/portal/credit")
    assert response.status_code == 200
    text = text_of(response)
    assert "€30.00 available" in text
    invoice = portal["invoice"]
    assert f"Applied to invoice Applied to invoice {invoice.number} {invoice.number} -€20.00 €30.00" in text
    assert "Credit Welcome credit — €50.00 €50.00" in text
    assert f'href="/portal/invoices/{invoice.id}"' in response.get_data(as_text=True)
    assert "Secret credit" not in text and "€77.00" not in text and portal["other_invoice"].number not in text
    assert client.get(f"/portal/invoices/{invoice.id}").status_code == 200


def test_the_billing_tab_shows_the_balance_and_links_to_the_ledger(portal, client):
    home = client.get("/portal/")
    summary = section(home, 'id="credit-summary"')
    assert "€30.00" in text_of_html(summary) and 'href="/portal/credit"' in summary


def test_a_contact_of_another_client_sees_none_of_it(portal, app, make):
    from portal.extensions import db as _db
    from portal.services.passwords import hash_password

    olu = portal["other"].contacts[0]
    olu.portal_access = True
    olu.password_hash = hash_password("other password 1")
    _db.session.commit()
    browser = app.test_client()
    assert post_form(browser, "/portal/login", {"email": "olu@other.example",
                                                "password": "other password 1"}).status_code == 302
    text = text_of(browser.get("/portal/credit"))
    assert "Secret credit of Other Co" in text and "€67.00 available" in text
    assert "Welcome credit" not in text and portal["invoice"].number not in text
    assert browser.get(f"/portal/invoices/{portal['invoice'].id}").status_code == 404


def test_a_client_with_no_credit_sees_an_empty_page(make, auth, client):
    make.business(name="Tidewater Studio", currency="EUR")
    make.contact_with_login()
    assert auth.login_contact().status_code == 302
    text = text_of(client.get("/portal/credit"))
    assert "You have no credit balance." in text and "No credit movements yet." in text
    assert "You have no credit balance." in text_of(client.get("/portal/"))


def test_an_owed_balance_reads_as_owed_in_the_portal(make, auth, client):
    make.business(name="Tidewater Studio", currency="EUR")
    contact = make.contact_with_login()
    credits.add_charge(contact.client_id, "12.00", "EUR", "Late setup fee", STAFF)
    assert auth.login_contact().status_code == 302
    text = text_of(client.get("/portal/credit"))
    assert "€12.00 owed to Tidewater Studio" in text
    assert "One-time charge Late setup fee — -€12.00 €12.00 owed" in text


def test_the_portal_ledger_is_paginated_with_htmx(make, auth, client):
    make.business(name="Tidewater Studio", currency="EUR")
    contact = make.contact_with_login()
    for n in range(credits.LEDGER_PAGE_SIZE + 2):
        credits.add_credit(contact.client_id, f"{n + 1}.00", "EUR", f"gift {n + 1}", STAFF)
    assert auth.login_contact().status_code == 302
    first = text_of(client.get("/portal/credit"))
    assert "Page 1 of 2" in first and "gift 22" in first and "gift 2 " not in first
    fragment = client.get("/portal/credit?page=2", headers={"HX-Request": "true"})
    html = fragment.get_data(as_text=True)
    assert "<html" not in html and html.lstrip().startswith('<div id="credit-rows"')
    assert "gift 2 — €2.00 €3.00" in text_of(fragment) and "gift 1 — €1.00 €1.00" in text_of(fragment)
