"""The guest page in Stripe mode (STRIPE_SECRET_KEY set): the Payment Element and the return page,
against the Stripe-compatible fake server (STRIPE_API_BASE)."""
from __future__ import annotations

import re

import pytest
from sqlalchemy import select

from portal.extensions import db
from portal.gateways import get_gateway
from portal.models import Event, Invoice, Payment
from portal.services import invoices
from portal.services.events import Actor
from tests.support.fake_stripe import FakeStripe
from tests.support.web import csrf_token, text_of

STAFF = Actor("staff", None, "staff@portal.example")
WHSEC = "whsec_test_portal_endpoint_secret"
PUBLISHABLE = "pk_test_portal_publishable"


@pytest.fixture
def fake():
    server = FakeStripe().start()
    yield server
    server.stop()
    assert server.errors == [], "the fake Stripe server raised:\n" + "\n".join(server.errors)


@pytest.fixture
def app_settings(smtp_server, fake) -> dict:
    return {"MAIL_SERVER": "127.0.0.1", "MAIL_PORT": smtp_server.port, "STRIPE_SECRET_KEY": fake.secret_key,
            "STRIPE_PUBLISHABLE_KEY": PUBLISHABLE, "STRIPE_WEBHOOK_SECRET": WHSEC, "STRIPE_API_BASE": fake.url}


def make_invoice(make, client_name="Acme Ltd", email="ana@acme.example"):
    make.business(name="Tidewater Studio", currency="EUR")
    client = make.client(name=client_name, contacts=[{"name": "Ana", "email": email, "receives_invoices": True}])
    invoice = make.invoice(client)
    return invoice.id, make.guest_link(invoice)


@pytest.fixture
def invoice(make):
    make.owner()
    return make_invoice(make)


def start(client, link):
    return client.post(f"{link}/pay", data={"csrf_token": csrf_token(client, link)})


def only_payment(invoice_id) -> Payment:
    db.session.expire_all()
    return db.session.scalars(select(Payment).where(Payment.invoice_id == invoice_id)).one()


def test_the_page_mounts_the_payment_element_for_a_real_intent(invoice, client, fake):
    invoice_id, link = invoice
    page = client.get(link)
    html = page.get_data(as_text=True)
    assert "Pay €100.00 online" in text_of(page) and f'action="{link}/pay"' in html
    assert "js.stripe.com" not in html, "nothing is started by just looking"
    assert not fake.intents

    response = start(client, link)
    assert response.status_code == 200
    html = response.get_data(as_text=True)
    payment = only_payment(invoice_id)
    assert payment.gateway == "stripe" and payment.status == "pending" and payment.amount == 10000
    intent = fake.intents[payment.gateway_intent_id]
    assert intent["amount"] == 10000 and intent["currency"] == "eur"
    assert intent["metadata"]["invoice_id"] == str(invoice_id)
    assert intent["payment_method_types"] == ["card", "sepa_debit"]
    assert 'id="payment-element"' in html
    assert f'data-client-secret="{intent["client_secret"]}"' in html
    assert f'data-publishable-key="{PUBLISHABLE}"' in html
    assert f'data-return-url="http://localhost{link}/done"' in html
    assert '<script src="https://js.stripe.com/v3/"></script>' in html
    assert '<script src="/static/js/stripe-pay.js"></script>' in html
    assert "<script>" not in html, "no inline script"
    assert "Test mode." in text_of(response), "sk_test_ keys are test mode"
    assert "js.stripe.com" in response.headers["Content-Security-Policy"]
    with client.get("/static/js/stripe-pay.js") as static:
        js = static.get_data(as_text=True)
    assert "confirmPayment" in js and "clientSecret" in js and "return_url" in js

    again = start(client, link)  # a second tab, a reload: the same intent
    assert f'data-client-secret="{intent["client_secret"]}"' in again.get_data(as_text=True)
    assert len(fake.intents) == 1


def test_the_return_page_applies_a_succeeded_intent(invoice, client, fake):
    invoice_id, link = invoice
    start(client, link)
    payment = only_payment(invoice_id)
    intent_id = payment.gateway_intent_id
    get_gateway().confirm_intent(intent_id, "pm_card_visa", "browser-confirm")  # what Stripe.js does

    done = client.get(f"{link}/done?payment_intent={intent_id}&redirect_status=succeeded")
    assert done.status_code == 200
    assert "Thank you!" in text_of(done) and "€100.00" in text_of(done)
    payment = only_payment(invoice_id)
    assert payment.status == "succeeded" and payment.method == "card"
    invoice_row = db.session.get(Invoice, invoice_id)
    assert invoice_row.status == "paid" and invoice_row.amount_due == 0
    client.get(f"{link}/done?payment_intent={intent_id}")  # a reload changes nothing
    assert len(db.session.scalars(select(Event).where(Event.type == "invoice.paid")).all()) == 1


def test_the_return_page_says_a_declined_payment_failed_once(invoice, client, fake):
    invoice_id, link = invoice
    start(client, link)
    intent_id = only_payment(invoice_id).gateway_intent_id
    with pytest.raises(Exception):
        get_gateway().confirm_intent(intent_id, "pm_card_chargeDeclined", "browser-confirm")
    for _ in range(2):
        done = client.get(f"{link}/done?payment_intent={intent_id}&redirect_status=failed")
        assert "Your payment didn't go through" in text_of(done) and "Your card was declined." in text_of(done)
    assert db.session.get(Invoice, invoice_id).status == "open"
    failed = db.session.scalars(select(Event).where(Event.type == "invoice.payment_failed")).all()
    assert len(failed) == 1, "a reload sends no second failure notice"


def test_a_bank_debit_shows_processing(invoice, client, fake):
    invoice_id, link = invoice
    start(client, link)
    intent_id = only_payment(invoice_id).gateway_intent_id
    get_gateway().confirm_intent(intent_id, "pm_sepaDebit", "browser-confirm")
    done = client.get(f"{link}/done?payment_intent={intent_id}&redirect_status=succeeded")
    assert "Your bank payment is on its way" in text_of(done)
    assert only_payment(invoice_id).status == "processing"
    assert db.session.get(Invoice, invoice_id).status == "open"


def test_the_return_page_ignores_another_invoices_intent(invoice, make, client, fake):
    invoice_id, link = invoice
    other_id, other_link = make_invoice(make, "Beta Co", "bo@beta.example")
    start(client, other_link)
    other_intent = only_payment(other_id).gateway_intent_id
    get_gateway().confirm_intent(other_intent, "pm_card_visa", "browser-confirm")

    response = client.get(f"{link}/done?payment_intent={other_intent}")
    assert response.status_code == 404
    assert client.get(f"{link}/done?payment_intent=pi_unknown").status_code == 404
    db.session.expire_all()
    assert db.session.get(Invoice, other_id).status == "open", "nothing applied through the wrong link"
    assert db.session.get(Invoice, invoice_id).status == "open"


def test_the_page_rechecks_before_stripe_confirms_and_a_settled_invoice_cancels_the_intent(
        invoice, client, fake, run_worker):
    """X1: the browser asks the server just before Stripe.js confirms; once staff recorded the
    payment by hand the answer is no, and the cancel job has cancelled the intent at Stripe."""
    invoice_id, link = invoice
    html = start(client, link).get_data(as_text=True)
    payment = only_payment(invoice_id)
    payment_id, intent_id = payment.id, payment.gateway_intent_id
    check_url = re.search(r'data-check-url="([^"]+)"', html).group(1)
    token = re.search(r'data-csrf-token="([^"]+)"', html).group(1)
    assert check_url == f"{link}/check/{payment_id}"
    ok = client.post(check_url, headers={"X-CSRFToken": token})
    assert ok.status_code == 200 and ok.get_json() == {"ok": True}
    assert client.post(check_url).status_code == 400, "CSRF applies"

    invoices.record_manual_payment(db.session.get(Invoice, invoice_id), "100.00", "wire", "", "", STAFF)
    refused = client.post(check_url, headers={"X-CSRFToken": token})
    assert refused.status_code == 409 and "This invoice is paid" in refused.get_json()["message"]
    run_worker()
    assert fake.intents[intent_id]["status"] == "canceled"
    db.session.expire_all()
    assert db.session.get(Payment, payment_id).status == "canceled"
    assert client.post(f"{link}/check/{payment_id + 999}", headers={"X-CSRFToken": token}).status_code == 404
