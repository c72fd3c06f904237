"""Who may see which invoice: the client portal's scoping, the guest link's token, drafts never.

Everything goes through the user's door: the portal as a signed-in contact,
the guest page with nothing but the link.
"""
from __future__ import annotations


import pytest
from sqlalchemy import select

from portal.extensions import db
from portal.models import Event, Invoice, InvoiceToken
from portal.services import guest_links, invoices
from portal.services.errors import ServiceError
from portal.services.events import Actor
from tests.support import make
from tests.support.web import post_form

STAFF = Actor("staff", None, "staff@portal.example")


@pytest.fixture
def app_settings(app_settings, request):
    app_settings.update(getattr(request, "param", {}))
    return app_settings


@pytest.fixture
def vat(app):
    return make.tax_rate()  # VAT 23 %, on top of prices


@pytest.fixture
def business(make):
    return make.business(name="Tidewater Studio", currency="EUR", invoice_number_format="INV-{seq:04d}")


def text(response) -> str:
    return response.get_data(as_text=True)


@pytest.fixture
def two_clients(business, make, vat):
    """Ana (portal login) at Acme, Bo (portal login) at Globex; each with a sent invoice and a draft."""
    ana = make.contact_with_login(email="ana@acme.example", client_name="Acme Ltd")
    bo = make.contact_with_login(email="bo@globex.example", client_name="Globex Corp")
    acme, globex = ana.client, bo.client
    out = {
        "acme": acme, "globex": globex,
        "acme_sent": make.invoice(acme, tax_rate=vat, description="Acme logo design"),
        "acme_draft": make.invoice(acme, tax_rate=vat, status="draft", description="Acme unfinished draft"),
        "globex_sent": make.invoice(globex, tax_rate=vat, description="Globex website"),
        "globex_draft": make.invoice(globex, tax_rate=vat, status="draft", description="Globex secret draft"),
    }
    return {k: (v.id if isinstance(v, Invoice) else v) for k, v in out.items()} | {
        "numbers": {k: v.number for k, v in out.items() if isinstance(v, Invoice) and v.number}}


# Drafts are never shown to clients ------------------------------------------------------------

def test_drafts_never_appear_in_the_client_portal(two_clients, client, auth):
    auth.login_contact("ana@acme.example")
    for url in ("/portal/", "/portal/invoices"):
        page = text(client.get(url))
        assert two_clients["numbers"]["acme_sent"] in page
        assert "Acme unfinished draft" not in page and "Draft" not in page
    draft_id = two_clients["acme_draft"]
    assert client.get(f"/portal/invoices/{draft_id}").status_code == 404
    assert client.get(f"/portal/invoices/{draft_id}/pdf").status_code == 404


def test_a_draft_has_no_guest_link_and_a_stray_token_for_one_opens_nothing(business, make, vat, client):
    acme = make.client(name="Acme Ltd")
    invoice = make.invoice(acme, tax_rate=vat, status="draft")
    with pytest.raises(ServiceError, match="Drafts have no payment link"):
        invoices.issue_guest_token(invoice)
    assert db.session.scalars(select(InvoiceToken)).all() == []

    # Even a token row pointing at a draft (made behind the services' back) opens nothing.
    raw = "x" * 43
    db.session.add(InvoiceToken(invoice_id=invoice.id, token_hash=guest_links.token_hash(raw)))
    db.session.commit()
    for url in (f"/pay/{raw}", f"/pay/{raw}/pdf"):
        response = client.get(url)
        assert response.status_code == 404
        assert "Design work" not in text(response)
    assert db.session.scalars(select(Event).where(Event.type == "invoice.viewed")).all() == []


def test_sending_a_draft_finalizes_it_before_its_link_exists(business, make, vat, client):
    """Sending a draft finalizes it first, so the emailed link never shows a draft."""
    acme = make.client(name="Acme Ltd")
    invoice = make.invoice(acme, tax_rate=vat, status="draft")
    invoices.send(invoice, STAFF)
    assert invoice.status == "open"
    [token] = db.session.scalars(select(InvoiceToken)).all()
    assert token.invoice_id == invoice.id


# The client portal is scoped to the contact's own client --------------------------------------

def test_a_contact_of_client_a_gets_404_for_client_b_invoices(two_clients, client, auth):
    auth.login_contact("ana@acme.example")
    globex_id = two_clients["globex_sent"]
    for url in (f"/portal/invoices/{globex_id}", f"/portal/invoices/{globex_id}/pdf",
                f"/portal/invoices/{two_clients['globex_draft']}"):
        response = client.get(url)
        assert response.status_code == 404, url
        assert "Globex" not in text(response)
    for url in ("/portal/", "/portal/invoices"):
        page = text(client.get(url))
        assert two_clients["numbers"]["globex_sent"] not in page and "Globex" not in page

    own = client.get(f"/portal/invoices/{two_clients['acme_sent']}")
    assert own.status_code == 200 and "Acme logo design" in text(own)
    assert client.get(f"/portal/invoices/{two_clients['acme_sent']}/pdf").mimetype == "application/pdf"
    assert client.get("/portal/invoices/999999").status_code == 404

    # And the other way round.
    auth.logout_contact()
    auth.login_contact("bo@globex.example")
    assert client.get(f"/portal/invoices/{two_clients['acme_sent']}").status_code == 404
    assert client.get(f"/portal/invoices/{two_clients['acme_sent']}/pdf").status_code == 404
    assert client.get(f"/portal/invoices/{globex_id}").status_code == 200


def test_portal_invoice_pages_need_a_contact_login(two_clients, client, make, auth):
    url = f"/portal/invoices/{two_clients['acme_sent']}"
    response = client.get(url)
    assert response.status_code == 302 and "/portal/login" in response.headers["Location"]
    assert client.get(url + "/pdf").status_code == 302
    staff = make.staff()
    auth.login_staff(staff.email, staff.plain_password)
    assert client.get(url).status_code == 403


# Guest tokens -----------------------------------------------------------------------------------

def test_the_token_of_invoice_x_opens_x_and_only_x(business, make, vat, client):
    acme = make.client(name="Acme Ltd")
    x = make.invoice(acme, tax_rate=vat, description="Invoice X work", amount="111.00")
    y = make.invoice(acme, tax_rate=vat, description="Invoice Y work", amount="222.00")
    link_x, link_y = make.guest_link(x), make.guest_link(y)
    x_number, y_number = x.number, y.number

    page = text(client.get(link_x))
    assert x_number in page and "Invoice X work" in page
    assert y_number not in page and "Invoice Y work" not in page
    pdf = client.get(link_x + "/pdf")
    assert f"filename={x_number}.pdf" in pdf.headers["Content-Disposition"]
    assert y_number in text(client.get(link_y))

    # Nothing but the exact token: not a prefix, not a case change, not a guessed one.
    token = link_x.rsplit("/", 1)[1]
    for bad in (token[:-1], token + "a", token.swapcase(), "0" * len(token), "x" * 300):
        assert client.get(f"/pay/{bad}").status_code == 404
        assert client.get(f"/pay/{bad}/pdf").status_code == 404
    assert len(token) >= 22, "at least 128 bits of randomness, URL-safe"
    assert db.session.scalar(select(InvoiceToken.token_hash).limit(1)) != token


def test_revoked_tokens_are_404(business, make, vat, client):
    acme = make.client(name="Acme Ltd")
    invoice = make.invoice(acme, tax_rate=vat)
    old = make.guest_link(invoice)
    assert client.get(old).status_code == 200
    invoices.revoke_guest_tokens(invoice, STAFF)
    assert client.get(old).status_code == 404
    assert client.get(old + "/pdf").status_code == 404
    new = make.guest_link(invoice)
    assert client.get(new).status_code == 200


def test_a_void_invoice_link_still_opens_and_says_cancelled(business, make, vat, client):
    acme = make.client(name="Acme Ltd")
    invoice = make.invoice(acme, tax_rate=vat)
    link = make.guest_link(invoice)
    invoices.void(invoice, STAFF, "Billed to the wrong company")
    page = text(client.get(link))
    assert "Cancelled" in page and "Billed to the wrong company" in page
    assert "Nothing is due" in page


# Headers and limits on the guest pages --------------------------------------------------------

def test_guest_pages_send_no_referrer_and_are_not_cached(business, make, vat, client):
    acme = make.client(name="Acme Ltd")
    link = make.guest_link(make.invoice(acme, tax_rate=vat))
    for url, status in ((link, 200), (link + "/pdf", 200), ("/pay/not-a-token", 404),
                        ("/pay/not-a-token/pdf", 404)):
        response = client.get(url)
        assert response.status_code == status, url
        assert response.headers["Referrer-Policy"] == "no-referrer", url
        assert response.headers["Cache-Control"] == "no-store", url


@pytest.mark.parametrize("app_settings", [{"RATELIMIT_TOKEN_PAGE": "3 per minute"}], indirect=True,
                         ids=["3-per-minute"])
def test_guest_pages_are_rate_limited(app, business, make, vat, client, redis_server):
    assert app.config["RATELIMIT_TOKEN_PAGE"] == "3 per minute"
    acme = make.client(name="Acme Ltd")
    link = make.guest_link(make.invoice(acme, tax_rate=vat))
    assert client.get(link).status_code == 200
    assert client.get("/pay/guess-one").status_code == 404
    assert client.get(link + "/pdf").status_code == 200
    # Guessing (or reading) past the budget is refused, on the page and the PDF alike.
    for url in (link, link + "/pdf", "/pay/guess-two"):
        limited = client.get(url)
        assert limited.status_code == 429, url
        assert "Too many attempts" in text(limited)
        assert limited.headers["Referrer-Policy"] == "no-referrer"
        assert "Design work" not in text(limited)
    # Other pages are not limited by it.
    assert client.get("/").status_code == 200

    redis_server.client().flushall()  # the window passes
    assert client.get(link).status_code == 200


def test_portal_sign_out_still_works_after_browsing_invoices(two_clients, client, auth):
    auth.login_contact("ana@acme.example")
    client.get(f"/portal/invoices/{two_clients['acme_sent']}")
    response = post_form(client, "/portal/logout")
    assert response.status_code == 302
    assert client.get("/portal/invoices").status_code == 302
