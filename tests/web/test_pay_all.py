"""F4 client portal: "Pay all open invoices" -- one payment, spread oldest first, exact to the cent."""
from __future__ import annotations

import re
from datetime import timedelta

import pytest
from sqlalchemy import select

from portal import clock
from portal.extensions import db
from portal.models import CreditEntry, Delivery, Invoice, Payment, PaymentAllocation
from portal.services import credits, invoices, payments
from portal.services.events import Actor
from tests.support.web import csrf_token, text_of
from tests.support.jobs import run_jobs

STAFF = Actor("staff", None, "staff@portal.example")
CONTACT = Actor("contact", None, "ana@acme.example")
VISA = "4242 4242 4242 4242"
DECLINED = "4000 0000 0000 0002"


@pytest.fixture
def setup(make, client, auth):
    """Four open invoices, created newest-due first so that id order is not the oldest-first order:
    1,000.66 (due in 30 days), 0.01 (20), 33.33 (10), and 250.00 (5) of which 100.00 is paid."""
    make.business(name="Tidewater Studio", currency="EUR")
    make.owner()
    contact = make.contact_with_login()
    big = make.invoice(contact.client, "1000.66", due_in_days=30)
    cent = make.invoice(contact.client, "0.01", due_in_days=20)
    odd = make.invoice(contact.client, "33.33", due_in_days=10)
    part = make.invoice(contact.client, "250.00", due_in_days=5)
    invoices.record_manual_payment(part, "100.00", "wire", "", "", STAFF)
    other = make.client(name="Other Co", contacts=[{"name": "Olu", "email": "olu@other.example",
                                                    "receives_invoices": True}])
    theirs = make.invoice(other, "70.00", due_in_days=1)
    db.session.commit()
    assert auth.login_contact().status_code == 302
    return {"contact": contact, "client_id": contact.client_id, "order": [part.id, odd.id, cent.id, big.id],
            "numbers": [part.number, odd.number, cent.number, big.number], "theirs": theirs.id,
            "theirs_number": theirs.number}


def quote_of(html: str) -> str:
    match = re.search(r'name="quote" value="([^"]*)"', html)
    assert match, "the pay-all form carries what it pays"
    return match.group(1)


def pay_all(client, currency="EUR", quote=None, **fields):
    page = client.get(f"/portal/pay-all?currency={currency}")
    data = {"currency": currency, "method": "card", "expiry": "12/34", "cvc": "123", **fields,
            "quote": quote if quote is not None else quote_of(page.get_data(as_text=True)),
            "csrf_token": csrf_token(client, "/portal/")}
    return client.post("/portal/pay-all", data=data)


def rows(model, **where):
    db.session.expire_all()
    query = select(model)
    for key, value in where.items():
        query = query.where(getattr(model, key) == value)
    return db.session.scalars(query.order_by(model.id)).all()


def test_the_billing_tab_offers_pay_all_with_count_and_total(setup, client):
    home = client.get("/portal/")
    assert "Pay all open invoices (4, €1,184.00)" in text_of(home)
    assert 'href="/portal/pay-all?currency=EUR"' in home.get_data(as_text=True)


def test_the_pay_all_page_lists_the_invoices_oldest_first_with_their_amounts(setup, client):
    page = client.get("/portal/pay-all?currency=EUR")
    assert page.status_code == 200
    text = text_of(page)
    positions = [text.index(number) for number in setup["numbers"]]
    assert positions == sorted(positions), "oldest due first"
    for number, amount in zip(setup["numbers"], ["€150.00", "€33.33", "€0.01", "€1,000.66"]):
        assert re.search(re.escape(number) + r" .*?" + re.escape(amount), text)
    assert "One payment of €1,184.00 pays these invoices" in text and "Pay €1,184.00" in text
    assert setup["theirs_number"] not in text, "another client's invoice never appears"
    html = page.get_data(as_text=True)
    assert 'action="/portal/pay-all"' in html and 'name="csrf_token"' in html and 'name="card_number"' in html


def test_pay_all_allocates_oldest_first_exact_to_the_cent(setup, client):
    response = pay_all(client, card_number=VISA)
    assert response.status_code == 303
    payment = rows(Payment, client_id=setup["client_id"], gateway="sandbox")[-1]
    assert response.headers["Location"].endswith(f"/portal/payments/{payment.id}/receipt")
    assert payment.status == "succeeded" and payment.invoice_id is None
    assert payment.invoice_ids == setup["order"] and payment.amount == 118400 and payment.credited_amount == 0

    allocations = rows(PaymentAllocation, payment_id=payment.id)
    assert [(a.invoice_id, a.amount) for a in allocations] == list(zip(setup["order"], [15000, 3333, 1, 100066]))
    for invoice_id, total in zip(setup["order"], [25000, 3333, 1, 100066]):
        invoice = db.session.get(Invoice, invoice_id)
        assert (invoice.status, invoice.amount_paid, invoice.amount_due) == ("paid", total, 0)
    assert credits.balance(setup["client_id"], "EUR") == 0
    assert db.session.get(Invoice, setup["theirs"]).status == "open"

    receipt = client.get(response.headers["Location"])
    assert receipt.status_code == 200
    text = text_of(receipt)
    assert "Payment received. Thank you!" in text
    for number, amount in zip(setup["numbers"], ["€150.00", "€33.33", "€0.01", "€1,000.66"]):
        assert f"Invoice {number} {amount}" in text
    assert "Total paid €1,184.00" in text and "credit balance" not in text
    assert "Pay all open invoices" not in text_of(client.get("/portal/")), "nothing left to pay"
    receipts = [d for d in rows(Delivery) if d.recipient == "ana@acme.example" and "Receipt" in (d.subject or "")]
    assert len(receipts) == 1, "one receipt email for the one payment"


def test_paying_one_invoice_cancels_the_open_pay_all_attempt(setup, client):
    """The pay-all intent is started (the payer is on the form), then one of its invoices is paid on
    its own: the pay-all intent is cancelled at the gateway before the single one is made, so
    confirming it later charges nothing; paying all again charges only what is left."""
    from portal.gateways import get_gateway
    from portal.services.errors import ServiceError

    started = payments.start_pay_all(setup["client_id"], "EUR", CONTACT)
    odd_id = setup["order"][1]
    single = payments.start_payment(odd_id)
    assert get_gateway().retrieve_intent(started.gateway_intent_id).status == "canceled"
    payments.confirm_in_sandbox(single, "card:4242424242424242")
    with pytest.raises(ServiceError, match="replaced by another one"):
        payments.confirm_in_sandbox(db.session.get(Payment, started.id), "card:4242424242424242")
    assert rows(Payment, id=started.id)[0].status == "canceled"
    assert credits.balance(setup["client_id"], "EUR") == 0

    again = payments.start_pay_all(setup["client_id"], "EUR", CONTACT)
    payment = payments.confirm_in_sandbox(again, "card:4242424242424242")
    assert payment.status == "succeeded" and payment.amount == 118400 - 3333 and payment.credited_amount == 0
    odd = db.session.get(Invoice, odd_id)
    assert (odd.status, odd.amount_paid, odd.amount_due) == ("paid", 3333, 0), "never overpaid"
    charged = [p.amount for p in rows(Payment)
               if p.status == "succeeded" and p.gateway and p.client_id == setup["client_id"]]
    assert sorted(charged) == [3333, 118400 - 3333], "each invoice charged once"


def test_a_page_that_no_longer_matches_charges_nothing(setup, client):
    stale = quote_of(client.get("/portal/pay-all?currency=EUR").get_data(as_text=True))
    invoices.record_manual_payment(db.session.get(Invoice, setup["order"][1]), "33.33", "wire", "", "", STAFF)
    response = pay_all(client, quote=stale, card_number=VISA)
    assert response.status_code == 422
    assert "The invoices to pay changed" in text_of(response)
    assert "Pay €1,150.67" in text_of(response), "the page shows the new total"
    assert not rows(Payment, gateway="sandbox")
    assert db.session.get(Invoice, setup["order"][0]).amount_due == 15000


def test_a_declined_pay_all_changes_nothing(setup, client):
    response = pay_all(client, card_number=DECLINED)
    assert response.status_code == 422
    text = text_of(response)
    assert "Your card was declined." in text
    assert 'value="4000 0000 0000 0002"' in response.get_data(as_text=True), "what was typed stays"
    for invoice_id, due in zip(setup["order"], [15000, 3333, 1, 100066]):
        invoice = db.session.get(Invoice, invoice_id)
        assert invoice.amount_due == due and invoice.status == "open"
    attempt = rows(Payment, gateway="sandbox")[0]
    assert attempt.status == "pending" and attempt.failure_code == "card_declined"
    assert not rows(PaymentAllocation, payment_id=attempt.id)
    assert credits.balance(setup["client_id"], "EUR") == 0

    again = pay_all(client, card_number=VISA)  # a retry on the same attempt
    assert again.status_code == 303
    attempts = rows(Payment, gateway="sandbox")
    assert len(attempts) == 1 and attempts[0].status == "succeeded"


def test_a_second_submit_charges_nothing_more(setup, client):
    page = client.get("/portal/pay-all?currency=EUR").get_data(as_text=True)
    first = pay_all(client, quote=quote_of(page), card_number=VISA)
    second = pay_all(client, quote=quote_of(page), card_number=VISA)  # a double click
    assert first.status_code == 303 and second.status_code == 422
    assert "Nothing is due in EUR" in text_of(second)
    assert len(rows(Payment, gateway="sandbox")) == 1


def test_one_pay_all_per_currency(setup, make, client):
    usd = make.invoice(setup["contact"].client, "12.50", due_in_days=3, currency="USD")
    db.session.commit()
    text = text_of(client.get("/portal/"))
    assert "Pay all open invoices (4, €1,184.00)" in text and "Pay all open invoices (1, $12.50)" in text
    response = pay_all(client, currency="USD", card_number=VISA)
    assert response.status_code == 303
    assert db.session.get(Invoice, usd.id).status == "paid"
    assert all(db.session.get(Invoice, i).status == "open" for i in setup["order"])


def test_nothing_to_pay_and_csrf(setup, client):
    assert "Nothing is due in GBP" in text_of(client.get("/portal/pay-all?currency=GBP"))
    response = client.post("/portal/pay-all", data={"currency": "EUR", "method": "card", "card_number": VISA})
    assert response.status_code == 400
    assert not rows(Payment, gateway="sandbox")


def test_staff_cannot_use_the_portal_pay_all(setup, make, app):
    staff = app.test_client()
    user = make.staff()
    from tests.support.web import post_form

    post_form(staff, "/staff/login", {"email": user.email, "password": user.plain_password})
    assert staff.get("/portal/pay-all?currency=EUR").status_code == 403


# With the default saved method ------------------------------------------------------------------

def save_card(client_id: int, number: str):
    from portal.services import payment_methods

    return payment_methods.add_in_sandbox(client_id, None, "card", number, "12/34", "123")


def test_pay_all_with_the_default_saved_card(setup, client):
    method = save_card(setup["client_id"], "4242424242424242")
    page = client.get("/portal/pay-all?currency=EUR")
    assert "Pay €1,184.00 with VISA •••• 4242" in text_of(page)
    response = pay_all(client, use_saved="1")
    assert response.status_code == 303
    [payment] = rows(Payment, gateway="sandbox")
    assert (payment.status, payment.payment_method_id, payment.off_session) == ("succeeded", method.id, False)
    assert payment.invoice_ids == setup["order"] and payment.amount == 118400
    assert all(db.session.get(Invoice, i).status == "paid" for i in setup["order"])
    receipt = text_of(client.get(response.headers["Location"]))
    assert "Method Card · VISA •••• 4242" in receipt and f"Invoice {setup['numbers'][3]} €1,000.66" in receipt


def test_a_declined_saved_card_changes_nothing(setup, client):
    save_card(setup["client_id"], "4000000000000341")
    response = pay_all(client, use_saved="1")
    assert response.status_code == 422
    assert "VISA •••• 0341 was declined: Your card was declined." in text_of(response)
    [payment] = rows(Payment, gateway="sandbox")
    assert payment.status == "failed" and not rows(PaymentAllocation, payment_id=payment.id)
    for invoice_id, due in zip(setup["order"], [15000, 3333, 1, 100066]):
        assert db.session.get(Invoice, invoice_id).amount_due == due
    assert credits.balance(setup["client_id"], "EUR") == 0
    again = pay_all(client, card_number=VISA)  # then by hand with another card
    assert again.status_code == 303
    assert all(db.session.get(Invoice, i).status == "paid" for i in setup["order"])


# With Stripe (the Payment Element, against the Stripe-compatible fake server) ---------------------

class TestWithStripe:
    @pytest.fixture
    def fake(self):
        from tests.support.fake_stripe import FakeStripe

        server = FakeStripe().start()
        yield server
        server.stop()
        assert server.errors == [], "the fake Stripe server raised:\n" + "\n".join(server.errors)

    @pytest.fixture
    def app_settings(self, smtp_server, fake) -> dict:
        return {"MAIL_SERVER": "127.0.0.1", "MAIL_PORT": smtp_server.port, "STRIPE_SECRET_KEY": fake.secret_key,
                "STRIPE_PUBLISHABLE_KEY": "pk_test_portal", "STRIPE_WEBHOOK_SECRET": "whsec_test",
                "STRIPE_API_BASE": fake.url}

    def test_the_payment_element_then_the_return_books_it_oldest_first(self, setup, client, fake):
        from portal.gateways import get_gateway

        page = client.get("/portal/pay-all?currency=EUR")
        assert "Pay €1,184.00 online" in text_of(page) and "js.stripe.com" not in page.get_data(as_text=True)
        assert not fake.intents, "nothing is started by just looking"

        response = pay_all(client)
        assert response.status_code == 200
        html = response.get_data(as_text=True)
        [payment] = rows(Payment, gateway="stripe")
        intent = fake.intents[payment.gateway_intent_id]
        assert intent["amount"] == 118400 and intent["currency"] == "eur"
        assert intent["metadata"]["pay_all"] == "1" and intent["metadata"]["client_id"] == str(setup["client_id"])
        assert f'data-client-secret="{intent["client_secret"]}"' in html
        assert 'data-return-url="http://localhost/portal/pay-all/done"' in html
        assert '<script src="/static/js/stripe-pay.js"></script>' in html and "<script>" not in html
        again = pay_all(client)  # a reload, a second tab: the same intent
        assert f'data-client-secret="{intent["client_secret"]}"' in again.get_data(as_text=True)
        assert len(fake.intents) == 1

        get_gateway().confirm_intent(payment.gateway_intent_id, "pm_card_visa", "browser-confirm")
        done = client.get(f"/portal/pay-all/done?payment_intent={payment.gateway_intent_id}&redirect_status=succeeded")
        assert done.status_code == 303 and done.headers["Location"].endswith(f"/portal/payments/{payment.id}/receipt")
        allocations = rows(PaymentAllocation, payment_id=payment.id)
        assert [(a.invoice_id, a.amount) for a in allocations] == list(zip(setup["order"], [15000, 3333, 1, 100066]))
        assert all(db.session.get(Invoice, i).status == "paid" for i in setup["order"])
        client.get(f"/portal/pay-all/done?payment_intent={payment.gateway_intent_id}")  # a reload changes nothing
        assert len(rows(PaymentAllocation, payment_id=payment.id)) == 4

    def test_the_return_ignores_an_intent_that_is_not_the_clients_pay_all(self, setup, client, fake):
        single = payments.start_payment(setup["order"][0])
        assert client.get(f"/portal/pay-all/done?payment_intent={single.gateway_intent_id}").status_code == 404
        assert client.get("/portal/pay-all/done?payment_intent=pi_unknown").status_code == 404


def test_a_saved_card_that_needs_the_payer_to_authenticate_is_cancelled(setup, client):
    save_card(setup["client_id"], "4000002760003184")
    response = pay_all(client, use_saved="1")
    assert response.status_code == 422
    assert "Your bank wants to confirm this payment. Pay with the form below instead." in text_of(response)
    [payment] = rows(Payment, gateway="sandbox")
    assert payment.status == "canceled"
    assert all(db.session.get(Invoice, i).status == "open" for i in setup["order"])


def test_a_pay_all_bank_debit_processes_then_a_bounce_tells_the_client(setup, make, client, cli):
    make.business(accept_sepa_debit=True)
    response = pay_all(client, method="sepa_debit", account="DE62 3704 0044 0532 0130 01")
    assert response.status_code == 303
    receipt = text_of(client.get(response.headers["Location"]))
    assert "Your bank payment is processing" in receipt and "still clearing" in receipt
    assert f"Invoice {setup['numbers'][0]} when the payment clears" in receipt
    assert "Pay all open invoices" not in text_of(client.get("/portal/")), "not offered twice while it clears"
    # Nor can one of its invoices be paid again on its own page while the debit clears.
    again = client.post(f"/portal/invoices/{setup['order'][0]}/pay", data={
        "method": "card", "card_number": "4242 4242 4242 4242", "expiry": "12/34", "cvc": "123",
        "csrf_token": csrf_token(client, "/portal/")})
    assert again.status_code == 422
    assert "A bank payment for this invoice is already on its way." in text_of(again)
    assert len(rows(Payment, gateway="sandbox")) == 1

    later = (clock.now() + timedelta(minutes=11)).isoformat()
    assert cli.invoke(args=["portal", "tick", "--at", later]).exit_code == 0
    run_jobs()  # the tick enqueued the reconciliation; a worker runs it
    [payment] = rows(Payment, gateway="sandbox")
    assert payment.status == "failed" and payment.failure_code == "debit_failed"
    assert all(db.session.get(Invoice, i).status == "open" for i in setup["order"])
    bounced = [d for d in rows(Delivery) if d.recipient == "ana@acme.example" and "didn't go through" in d.subject]
    assert len(bounced) == 1 and "The bank debit failed" in bounced[0].payload["text"]
    assert "Pay all open invoices (4, €1,184.00)" in text_of(client.get("/portal/")), "offered again"
