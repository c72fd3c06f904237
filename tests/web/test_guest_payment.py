"""Paying from the emailed link (/pay/<token>) with the sandbox gateway (the embedded default)."""
from __future__ import annotations

import re
import threading
from datetime import timedelta

import pytest
from sqlalchemy import select

from portal import clock
from portal.extensions import db
from portal.models import Event, Invoice, Payment
from portal.services import invoices
from portal.services.events import Actor
from tests.support.web import csrf_token, email_text, text_of
from tests.support.jobs import run_jobs

STAFF = Actor("staff", None, "staff@portal.example")
VISA = "4242 4242 4242 4242"
DECLINED = "4000 0000 0000 0002"


def payment_section(response) -> str:
    html = response.get_data(as_text=True)
    return html.split('id="payment"')[1].split("</section>")[0]


def make_invoice(make, currency="EUR", amount="100.00"):
    make.business(name="Tidewater Studio", currency=currency)
    make.owner()
    invoice = make.invoice(make.client(), amount, currency=currency)
    return invoice.id, make.guest_link(invoice)


@pytest.fixture
def eur(make):
    return make_invoice(make, "EUR")


@pytest.fixture
def usd(make):
    return make_invoice(make, "USD")


def pay(client, link, **fields):
    data = {"method": "card", **fields, "csrf_token": csrf_token(client, link)}
    return client.post(f"{link}/pay", data=data)


def invoice_row(invoice_id) -> Invoice:
    db.session.expire_all()
    return db.session.get(Invoice, invoice_id)


def events(kind: str) -> list[Event]:
    return db.session.scalars(select(Event).where(Event.type == kind)).all()


# The page ------------------------------------------------------------------------------------------

def test_the_page_offers_card_and_sepa_debit_in_test_mode(eur, client):
    _, link = eur
    response = client.get(link)
    assert response.status_code == 200
    page = text_of(response)
    assert "Test mode. No real money moves." in page
    section = payment_section(response)
    assert f'action="{link}/pay"' in section and 'name="csrf_token"' in section
    assert 'name="card_number"' in section and 'name="expiry"' in section and 'name="cvc"' in section
    assert 'value="sepa_debit"' in section and "IBAN" in section
    assert 'value="us_bank_account"' not in section
    assert "Pay €100.00" in text_of(response)
    assert "js.stripe.com" not in response.get_data(as_text=True), "the sandbox loads no Stripe.js"


def test_a_usd_invoice_offers_a_us_bank_account(usd, client):
    _, link = usd
    section = payment_section(client.get(link))
    assert 'value="us_bank_account"' in section and "Account number" in section
    assert 'value="sepa_debit"' not in section


def test_paying_with_4242_confirms_marks_paid_and_emails_a_receipt(eur, client, run_worker, smtp_server):
    invoice_id, link = eur
    response = pay(client, link, card_number=VISA, expiry="12/34", cvc="123")
    assert response.status_code == 303
    assert response.headers["Location"].endswith(f"{link}/done")

    done = client.get(response.headers["Location"])
    assert done.status_code == 200
    page = text_of(done)
    assert "Thank you!" in page and "Your payment of €100.00 for invoice" in page
    invoice = invoice_row(invoice_id)
    assert invoice.status == "paid" and invoice.amount_due == 0 and invoice.amount_paid == invoice.total
    [payment] = db.session.scalars(select(Payment).where(Payment.invoice_id == invoice_id)).all()
    assert payment.status == "succeeded" and payment.method == "card" and payment.gateway == "sandbox"
    assert events("invoice.paid")
    number = invoice.number

    run_worker()
    [receipt] = smtp_server.to("ana@acme.example")
    assert "Receipt" in receipt["Subject"] and number in receipt["Subject"]
    body = email_text(receipt)
    assert "€100.00" in body and "Card" in body
    assert smtp_server.to("owner@portal.example"), "the owner is told about the payment"

    again = client.get(link)
    assert "This invoice is paid" in text_of(again) and "<form" not in payment_section(again)


def test_a_declined_card_says_so_keeps_the_invoice_open_and_a_retry_succeeds(eur, client):
    invoice_id, link = eur
    response = pay(client, link, card_number=DECLINED, expiry="12/34", cvc="123")
    assert response.status_code == 422
    page = text_of(response)
    assert "Your card was declined." in page
    html = response.get_data(as_text=True)
    assert 'value="4000 0000 0000 0002"' in html, "what was typed stays"
    assert re.search(r'id="card_number"[^>]*aria-invalid="true"', html)
    invoice = invoice_row(invoice_id)
    assert invoice.status == "open" and invoice.amount_paid == 0
    assert len(events("invoice.payment_failed")) == 1

    response = pay(client, link, card_number=VISA, expiry="12/34", cvc="123")
    assert response.status_code == 303
    assert "Thank you!" in text_of(client.get(response.headers["Location"]))
    assert invoice_row(invoice_id).status == "paid"
    payments = db.session.scalars(select(Payment).where(Payment.invoice_id == invoice_id)).all()
    assert [p.status for p in payments] == ["succeeded"], "the retry reused the same attempt"


def test_insufficient_funds_and_missing_numbers_are_explained(eur, client):
    invoice_id, link = eur
    assert "insufficient funds" in text_of(pay(client, link, card_number="4000000000009995"))
    response = pay(client, link, card_number="")
    assert response.status_code == 422 and "Enter the card number." in text_of(response)
    response = pay(client, link, method="sepa_debit", account="")
    assert response.status_code == 422 and "Enter your IBAN." in text_of(response)
    response = pay(client, link, method="us_bank_account", account="000123456789")
    assert response.status_code == 422 and "Choose how you want to pay." in text_of(response)
    assert invoice_row(invoice_id).status == "open"


def test_a_sepa_debit_processes_then_the_tick_settles_it(eur, client, cli, run_worker, smtp_server):
    invoice_id, link = eur
    response = pay(client, link, method="sepa_debit", account="DE89 3704 0044 0532 0130 00")
    assert response.status_code == 303
    page = text_of(client.get(response.headers["Location"]))
    assert "Your bank payment is on its way" in page and "€100.00" in page
    assert invoice_row(invoice_id).status == "open"
    again = client.get(link)
    assert "already on its way" in text_of(pay(client, link, card_number=VISA)), "no second charge meanwhile"
    assert again.status_code == 200

    later = (clock.now() + timedelta(minutes=11)).isoformat()
    assert cli.invoke(args=["portal", "tick", "--at", later]).exit_code == 0
    run_jobs()  # the tick enqueued the reconciliation; a worker runs it
    invoice = invoice_row(invoice_id)
    assert invoice.status == "paid" and invoice.amount_due == 0
    payment = db.session.scalars(select(Payment).where(Payment.invoice_id == invoice_id)).one()
    assert payment.status == "succeeded" and payment.method == "sepa_debit"
    assert "Thank you!" in text_of(client.get(f"{link}/done"))
    run_worker()
    assert any("Receipt" in m["Subject"] for m in smtp_server.to("ana@acme.example"))


def test_a_us_bank_debit_that_fails_leaves_the_invoice_open_and_says_so(usd, client, cli, run_worker,
                                                                        smtp_server):
    invoice_id, link = usd
    response = pay(client, link, method="us_bank_account", account="000111111116")
    assert response.status_code == 303
    assert "Your bank payment is on its way" in text_of(client.get(response.headers["Location"]))

    later = (clock.now() + timedelta(minutes=11)).isoformat()
    assert cli.invoke(args=["portal", "tick", "--at", later]).exit_code == 0
    run_jobs()  # the tick enqueued the reconciliation; a worker runs it
    invoice = invoice_row(invoice_id)
    assert invoice.status == "open" and invoice.amount_paid == 0
    assert len(events("invoice.payment_failed")) == 1
    assert "didn't go through" in text_of(client.get(f"{link}/done"))
    run_worker()
    failed = [m for m in smtp_server.to("ana@acme.example") if "didn't go through" in m["Subject"]]
    assert len(failed) == 1
    assert "bank debit failed" in email_text(failed[0])
    # The invoice takes a new attempt.
    assert pay(client, link, card_number=VISA).status_code == 303
    assert invoice_row(invoice_id).status == "paid"


def test_ten_concurrent_attempts_charge_once(eur, app, db_kind):
    if db_kind != "postgresql":
        pytest.skip("row locks under real concurrency are PostgreSQL's; SQLite serialises writers")
    invoice_id, link = eur
    clients = [app.test_client() for _ in range(10)]
    tokens = [csrf_token(c, link) for c in clients]
    db.session.remove()
    barrier = threading.Barrier(len(clients))
    statuses: list[int] = []
    errors: list[BaseException] = []

    def attempt(i: int) -> None:
        try:
            barrier.wait(timeout=30)
            response = clients[i].post(f"{link}/pay", data={"method": "card", "card_number": VISA,
                                                            "csrf_token": tokens[i]})
            statuses.append(response.status_code)
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=attempt, args=(i,)) for i in range(10)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert not errors, errors
    assert len(statuses) == 10 and set(statuses) <= {303, 422} and 500 not in statuses
    invoice = invoice_row(invoice_id)
    succeeded = db.session.scalars(select(Payment).where(Payment.invoice_id == invoice_id,
                                                         Payment.status == "succeeded")).all()
    assert len(succeeded) == 1
    assert invoice.status == "paid" and invoice.amount_paid == invoice.total
    assert len(events("invoice.paid")) == 1 and not events("invoice.overpaid")


def test_a_void_invoice_takes_no_payment(eur, client):
    invoice_id, link = eur
    invoices.void(db.session.get(Invoice, invoice_id), STAFF, "Duplicate")
    response = client.get(link)
    assert "This invoice was cancelled" in text_of(response)
    assert "<form" not in payment_section(response)
    response = pay(client, link, card_number=VISA)
    assert response.status_code == 422
    assert "cancelled and takes no payment" in text_of(response)
    assert not db.session.scalars(select(Payment)).all()


def test_a_paid_invoice_refuses_a_second_payment(eur, client):
    invoice_id, link = eur
    assert pay(client, link, card_number=VISA).status_code == 303
    response = pay(client, link, card_number=VISA)
    assert response.status_code == 422 and "This invoice is paid" in text_of(response)
    assert len(db.session.scalars(select(Payment)).all()) == 1


def test_wrong_and_revoked_tokens_are_404(eur, client):
    invoice_id, link = eur
    token = csrf_token(client, link)
    for url in ("/pay/not-a-token/pay",):
        assert client.post(url, data={"csrf_token": token, "card_number": VISA}).status_code == 404
    assert client.get("/pay/not-a-token/done").status_code == 404
    invoices.revoke_guest_tokens(db.session.get(Invoice, invoice_id), STAFF)
    assert client.post(f"{link}/pay", data={"csrf_token": token, "card_number": VISA}).status_code == 404
    assert client.get(f"{link}/done").status_code == 404
    assert not db.session.scalars(select(Payment)).all()


def test_one_invoices_link_never_shows_or_pays_another(make, client):
    first_id, first = make_invoice(make)
    draft = invoices.create_draft(make.client(name="Beta Co", contacts=[
        {"name": "Bo", "email": "bo@beta.example", "receives_invoices": True}]), STAFF)
    invoices.save_draft(draft, invoices.DraftInput(currency="EUR", lines=[
        {"description": "Other", "quantity": "1", "unit_price": "55.00"}]), STAFF)
    other = invoices.finalize(draft, STAFF)
    other_id, other_number = other.id, other.number
    assert other_number not in text_of(client.get(first))
    assert pay(client, first, card_number=VISA).status_code == 303
    assert invoice_row(other_id).status == "open" and invoice_row(first_id).status == "paid"


def test_posting_without_csrf_changes_nothing(eur, client):
    invoice_id, link = eur
    client.get(link)
    response = client.post(f"{link}/pay", data={"method": "card", "card_number": VISA})
    assert response.status_code == 400
    assert invoice_row(invoice_id).status == "open"


@pytest.mark.parametrize("app_settings", [{"RATELIMIT_TOKEN_PAGE": "3 per minute"}], ids=["3-per-minute"])
def test_paying_is_rate_limited_with_the_page(app, eur, client):
    assert app.config["RATELIMIT_TOKEN_PAGE"] == "3 per minute"
    _, link = eur
    token = csrf_token(client, link)  # 1
    for _ in range(2):               # 2, 3
        assert client.post(f"{link}/pay", data={"csrf_token": token, "card_number": DECLINED}).status_code == 422
    assert client.post(f"{link}/pay", data={"csrf_token": token, "card_number": VISA}).status_code == 429
