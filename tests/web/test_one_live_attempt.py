"""X1 point 1: never charge twice. An invoice has at most one live payment attempt of any kind;
an intent left open while the invoice is settled another way is cancelled (by a job), and a success
that still arrives is refunded automatically (or kept as credit, by setting), with client and staff told.

The "late confirm" here is what Stripe.js does in the payer's browser: a confirm sent straight to
the gateway, which our server never sees before the webhook (``apply_intent``) reports it."""
from __future__ import annotations

import re
import threading
from datetime import timedelta

import pytest
from sqlalchemy import func, select

from portal import clock
from portal.extensions import db
from portal.gateways import get_gateway
from portal.models import Business, CreditEntry, Delivery, Event, Invoice, Payment, Refund
from portal.services import credits, invoices, payments
from portal.services.events import Actor
from tests.support import make
from tests.support.jobs import run_jobs
from tests.support.web import csrf_token, post_form, text_of

STAFF = Actor("staff", None, "staff@portal.example")
CONTACT = Actor("contact", None, "ana@acme.example")
VISA = "4242 4242 4242 4242"
CARD = "card:4242424242424242"


@pytest.fixture
def acme(make):
    make.business(name="Tidewater Studio", currency="EUR")
    make.owner()
    contact = make.contact_with_login()
    db.session.commit()
    return contact


def fresh(model, ident):
    db.session.expire_all()
    return db.session.get(model, ident)


def succeeded_charges(client_id: int) -> list[Payment]:
    db.session.expire_all()
    return list(db.session.scalars(select(Payment).where(Payment.client_id == client_id, Payment.gateway.is_not(None),
                                                         Payment.status == "succeeded")))


def browser_confirm(payment: Payment):
    """What Stripe.js does on the payer's page: confirm straight at the gateway."""
    return get_gateway().confirm_intent(payment.gateway_intent_id, CARD, f"browser-{payment.id}")


def quote_of(html: str) -> str:
    return re.search(r'name="quote" value="([^"]*)"', html).group(1)


# Two paths racing for one invoice ---------------------------------------------------------------

def test_guest_link_and_pay_all_racing_charge_once(acme, app, db_kind):
    """The drill: a guest link and the portal's "Pay all" on the same invoice at the same moment,
    five rounds (4 of 5 charged twice before). Each round: exactly one charge, no credit made."""
    if db_kind != "postgresql":
        pytest.skip("row locks under real concurrency are PostgreSQL's; SQLite serialises writers")
    from portal.models import Client

    client_id = acme.client_id
    for round_no in range(5):
        invoice = make.invoice(db.session.get(Client, client_id), "120.00", due_in_days=10)
        link = make.guest_link(invoice)
        invoice_id, total = invoice.id, invoice.total
        guest, portal = app.test_client(), app.test_client()
        assert post_form(portal, "/portal/login", {"email": "ana@acme.example",
                                                   "password": "client password 1"}).status_code == 302
        guest_token = csrf_token(guest, link)
        page = portal.get("/portal/pay-all?currency=EUR").get_data(as_text=True)
        portal_data = {"currency": "EUR", "method": "card", "card_number": VISA, "expiry": "12/34", "cvc": "123",
                       "quote": quote_of(page), "csrf_token": csrf_token(portal, "/portal/")}
        db.session.remove()
        barrier = threading.Barrier(2)
        statuses: dict[str, int] = {}
        errors: list[BaseException] = []

        def go(name, fn):
            try:
                barrier.wait(timeout=30)
                statuses[name] = fn().status_code
            except BaseException as exc:  # noqa: BLE001 - reported below
                errors.append(exc)

        threads = [
            threading.Thread(target=go, args=("guest", lambda: guest.post(
                f"{link}/pay", data={"method": "card", "card_number": VISA, "csrf_token": guest_token}))),
            threading.Thread(target=go, args=("portal", lambda: portal.post("/portal/pay-all", data=portal_data))),
        ]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=60)
        assert not errors, errors
        assert 500 not in statuses.values(), statuses
        charged = [p for p in succeeded_charges(client_id) if invoice_id in ([p.invoice_id] + list(p.invoice_ids or []))]
        assert sum(p.amount for p in charged) == total, f"round {round_no}: charged {[p.amount for p in charged]}"
        assert len(charged) == 1, f"round {round_no}: {len(charged)} charges"
        assert fresh(Invoice, invoice_id).status == "paid"
        assert credits.balance(client_id, "EUR") == 0, f"round {round_no}: nothing went to credit"


def test_pay_all_cancels_the_guest_links_open_intent_first(acme):
    invoice = make.invoice(acme.client, "80.00", due_in_days=10)
    single = payments.start_payment(invoice.id)
    started = payments.start_pay_all(acme.client_id, "EUR", CONTACT)
    assert get_gateway().retrieve_intent(single.gateway_intent_id).status == "canceled"
    assert fresh(Payment, single.id).status == "canceled"
    with pytest.raises(Exception):
        browser_confirm(fresh(Payment, single.id))  # the old page can no longer charge
    payments.confirm_in_sandbox(fresh(Payment, started.id), CARD)
    assert [p.amount for p in succeeded_charges(acme.client_id)] == [8000]


def test_a_bank_debit_on_its_way_blocks_every_other_path(acme):
    invoice = make.invoice(acme.client, "80.00", due_in_days=10)
    first = payments.start_payment(invoice.id)
    payments.confirm_in_sandbox(first, "sepa_debit:DE89370400440532013000")
    assert fresh(Payment, first.id).status == "processing"
    from portal.services.errors import ServiceError
    with pytest.raises(ServiceError, match="already on its way"):
        payments.start_payment(invoice.id)
    with pytest.raises(ServiceError, match="Nothing is due"):
        payments.start_pay_all(acme.client_id, "EUR", CONTACT)


# An intent left open while the invoice is settled another way -----------------------------------

def _settle_by_hand(staff_client, invoice_id: int, how: str) -> None:
    url = f"/staff/invoices/{invoice_id}"
    if how == "manual":
        response = post_form(staff_client, f"{url}/payments", {"amount": "100.00", "method": "wire",
                                                                 "received_on": "", "reference": "T1"})
    else:  # a credit note that lowers the amount due to nothing
        response = post_form(staff_client, f"{url}/credit-notes", {"to_due": "100.00", "reason": "other"})
    assert response.status_code in (302, 303), text_of(response)
    assert fresh(Invoice, invoice_id).status == "paid"


@pytest.mark.parametrize("how", ["manual", "credit_note"])
@pytest.mark.parametrize("path", ["guest", "pay_all"])
def test_open_intent_is_cancelled_when_the_invoice_is_settled(acme, staff_client, run_worker, path, how):
    invoice = make.invoice(acme.client, "100.00", due_in_days=10)
    attempt = (payments.start_payment(invoice.id) if path == "guest"
               else payments.start_pay_all(acme.client_id, "EUR", CONTACT))
    attempt_id, intent_id, client_id, invoice_id = attempt.id, attempt.gateway_intent_id, acme.client_id, invoice.id
    _settle_by_hand(staff_client, invoice_id, how)
    assert run_worker() >= 1  # the cancel job
    assert get_gateway().retrieve_intent(intent_id).status == "canceled"
    assert fresh(Payment, attempt_id).status == "canceled"
    with pytest.raises(Exception):
        browser_confirm(fresh(Payment, attempt_id))  # the page left open charges nothing
    assert succeeded_charges(client_id) == []
    assert credits.balance(client_id, "EUR") == 0


def test_the_guest_page_rechecks_before_confirming(acme, app):
    invoice = make.invoice(acme.client, "100.00", due_in_days=10)
    link = make.guest_link(invoice)
    guest = app.test_client()
    token = csrf_token(guest, link)
    invoices.record_manual_payment(fresh(Invoice, invoice.id), "100.00", "wire", "", "", STAFF)
    response = guest.post(f"{link}/pay", data={"method": "card", "card_number": VISA, "csrf_token": token})
    assert response.status_code == 422 and "This invoice is paid" in text_of(response)
    assert succeeded_charges(acme.client_id) == []


def _late_success(acme, path: str, how: str, staff_client) -> tuple[Invoice, Payment]:
    """The payer confirms in the browser in the moment before the cancel job runs."""
    invoice = make.invoice(acme.client, "100.00", due_in_days=10)
    attempt = (payments.start_payment(invoice.id) if path == "guest"
               else payments.start_pay_all(acme.client_id, "EUR", CONTACT))
    _settle_by_hand(staff_client, invoice.id, how)
    intent = browser_confirm(attempt)
    assert intent.status == "succeeded"
    payments.apply_intent(intent)  # the webhook
    return invoice, fresh(Payment, attempt.id)


@pytest.mark.parametrize("how", ["manual", "credit_note"])
@pytest.mark.parametrize("path", ["guest", "pay_all"])
def test_a_late_success_is_refunded_and_both_sides_are_told(acme, staff_client, run_worker, path, how):
    invoice, payment = _late_success(acme, path, how, staff_client)
    assert payment.status == "succeeded" and payment.credited_amount == 10000
    assert payment.excess_state == "refund_due"
    payment_id, invoice_id, client_id = payment.id, invoice.id, acme.client_id
    run_worker()
    payment = fresh(Payment, payment_id)
    assert payment.excess_state == "refunded" and payment.refunded_amount == 10000
    refunds = db.session.scalars(select(Refund).where(Refund.payment_id == payment.id)).all()
    assert [(r.amount, r.from_credit, r.status) for r in refunds] == [(10000, 10000, "succeeded")]
    assert get_gateway().retrieve_intent(payment.gateway_intent_id).status == "succeeded"
    assert credits.balance(client_id, "EUR") == 0, "nothing silently kept"
    inv = fresh(Invoice, invoice_id)
    assert (inv.status, inv.amount_due) == ("paid", 0)
    told = [d for d in db.session.scalars(select(Delivery)) if d.recipient == "ana@acme.example"]
    assert any("we refunded €100.00" in (d.payload or {}).get("text", "") for d in told), \
        [d.subject for d in told]
    staff = [d.subject for d in db.session.scalars(select(Delivery)) if d.recipient == "owner@portal.example"]
    assert any(s.startswith("Paid twice") for s in staff) and any(s.startswith("Late payment refunded")
                                                                  for s in staff)
    # Running the job again, or the tick, refunds nothing more.
    assert payments.refund_excess(payment_id) == "nothing to do"
    payments.reconcile(clock.now() + timedelta(hours=1))
    assert fresh(Payment, payment_id).refunded_amount == 10000


def test_a_late_success_is_kept_as_credit_when_the_setting_says_so(acme, staff_client, run_worker):
    business = db.session.scalar(select(Business))
    business.refund_late_payments = False
    db.session.commit()
    invoice, payment = _late_success(acme, "guest", "manual", staff_client)
    payment_id, client_id = payment.id, acme.client_id
    run_worker()
    payment = fresh(Payment, payment_id)
    assert payment.excess_state == "credited" and payment.refunded_amount == 0
    assert credits.balance(client_id, "EUR") == 10000
    told = [d for d in db.session.scalars(select(Delivery)) if d.recipient == "ana@acme.example"]
    assert any("added to your credit balance" in (d.payload or {}).get("text", "") for d in told)


def lose_queued_jobs() -> None:
    """What a Redis outage or a crashed worker does to queued jobs (the sandbox's intents, also in
    Redis, must survive, so the queue is emptied rather than the server stopped)."""
    from portal.queues import queue

    queue().empty()


def test_refund_of_a_late_success_whose_job_was_lost_is_done_by_the_tick(acme, staff_client):
    invoice = make.invoice(acme.client, "100.00", due_in_days=10)
    attempt = payments.start_payment(invoice.id)
    invoices.record_manual_payment(fresh(Invoice, invoice.id), "100.00", "wire", "", "", STAFF)
    intent = browser_confirm(attempt)
    payment = payments.apply_intent(intent)
    assert payment.excess_state == "refund_due"
    lose_queued_jobs()
    from portal.services.scheduler import run_tick

    run_tick(clock.now())
    run_jobs()  # what the tick enqueued
    payment = fresh(Payment, attempt.id)
    assert payment.excess_state == "refunded" and payment.refunded_amount == 10000
    assert credits.balance(acme.client_id, "EUR") == 0


def test_the_tick_cancels_stale_intents_a_lost_job_missed(acme):
    invoice = make.invoice(acme.client, "100.00", due_in_days=10)
    attempt = payments.start_payment(invoice.id)
    invoices.record_manual_payment(fresh(Invoice, invoice.id), "40.00", "wire", "", "", STAFF)
    lose_queued_jobs()
    assert fresh(Payment, attempt.id).status == "pending"
    from portal.services.scheduler import run_tick

    run_tick(clock.now())
    run_jobs()  # what the tick enqueued
    assert fresh(Payment, attempt.id).status == "canceled", "the amount due changed: the intent was stale"
    # Paying now charges what is left, once.
    again = payments.start_payment(invoice.id)
    assert again.amount == 6000
    payments.confirm_in_sandbox(again, CARD)
    assert [p.amount for p in succeeded_charges(acme.client_id)] == [6000]


def test_retry_with_another_card_after_an_interrupted_success_says_paid(acme, app):
    invoice = make.invoice(acme.client, "100.00", due_in_days=10)
    link = make.guest_link(invoice)
    attempt = payments.start_payment(invoice.id)
    browser_confirm(attempt)  # succeeded at the gateway; our server never heard (interrupted)
    guest = app.test_client()
    token = csrf_token(guest, link)
    response = guest.post(f"{link}/pay", data={"method": "card", "card_number": "5555 5555 5555 4444",
                                               "csrf_token": token})
    body = text_of(response) if response.status_code != 303 else text_of(guest.get(response.headers["Location"]))
    assert "already succeeded" not in body
    assert "paid" in body.lower()
    assert [p.amount for p in succeeded_charges(acme.client_id)] == [10000]
    assert db.session.scalar(select(func.count()).select_from(CreditEntry)) == 0
    assert not db.session.scalars(select(Event).where(Event.type == "payment.excess")).all()


@pytest.mark.parametrize("number", ["1234 5678 9012 3456", "4242 4242 4242 4241", "abcd", "4242",
                                    "4" * 64, "٤٢٤٢٤٢٤٢٤٢٤٢٤٢٤٢"])
def test_a_garbage_card_number_is_a_field_error_with_no_attempt_and_no_email(acme, app, number):
    invoice = make.invoice(acme.client, "100.00", due_in_days=10)
    link = make.guest_link(invoice)
    invoice_id = invoice.id
    guest = app.test_client()
    token = csrf_token(guest, link)
    deliveries_before = db.session.scalar(select(func.count()).select_from(Delivery))
    response = guest.post(f"{link}/pay", data={"method": "card", "card_number": number, "csrf_token": token})
    assert response.status_code == 422
    assert "card number is not valid" in text_of(response)
    assert db.session.scalar(select(func.count()).select_from(Payment).where(Payment.invoice_id == invoice_id)) == 0
    assert db.session.scalar(select(func.count()).select_from(Delivery)) == deliveries_before


def test_an_attempt_left_unconfirmed_for_a_day_is_cancelled_and_no_longer_polled(acme, make):
    from portal.services.scheduler import run_tick

    invoice = make.invoice(acme.client, "100.00", due_in_days=10)
    attempt = payments.start_payment(invoice.id)
    attempt_id, intent_id = attempt.id, attempt.gateway_intent_id
    run_tick(clock.now() + timedelta(hours=23))
    run_jobs()  # what the tick enqueued
    assert fresh(Payment, attempt_id).status == "pending", "still within its day"
    run_tick(clock.now() + timedelta(hours=25))
    run_jobs()  # what the tick enqueued
    assert fresh(Payment, attempt_id).status == "canceled"
    assert get_gateway().retrieve_intent(intent_id).status == "canceled"
    why = [e.data.get("why") for e in db.session.scalars(select(Event).where(Event.type == "payment.canceled"))]
    assert why == ["left unconfirmed for a day"]
    # The payer comes back later: a new attempt, paid once.
    again = payments.start_payment(invoice.id)
    payments.confirm_in_sandbox(again, CARD)
    assert [p.amount for p in succeeded_charges(acme.client_id)] == [10000]
