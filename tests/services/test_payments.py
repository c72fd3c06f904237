"""Paying through the sandbox gateway, at the service level."""
from datetime import timedelta

import pytest
from sqlalchemy import select

from portal import clock
from portal.extensions import db
from portal.models import Event, Invoice, Payment
from portal.services import invoices, payments
from portal.services.errors import ServiceError
from portal.services.events import Actor
from tests.support.jobs import run_jobs

STAFF = Actor("staff", None, "staff@portal.example")


@pytest.fixture
def invoice(make):
    make.business(name="Tidewater Studio", currency="EUR")
    make.owner()
    return make.invoice(make.client())


def test_4242_pays_the_invoice_and_sends_a_receipt(invoice, run_worker, smtp_server):
    payment = payments.start_payment(invoice.id)
    payments.confirm_in_sandbox(payment, "card:4242424242424242")
    db.session.expire_all()
    paid = db.session.get(Invoice, invoice.id)
    assert paid.status == "paid" and paid.amount_due == 0
    run_worker()
    receipt = smtp_server.to("ana@acme.example")
    assert receipt and "Receipt" in receipt[0]["Subject"]
    assert smtp_server.to("owner@portal.example")


def test_decline_then_retry_on_the_same_intent(invoice):
    payment = payments.start_payment(invoice.id)
    with pytest.raises(ServiceError) as caught:
        payments.confirm_in_sandbox(payment, "card:4000000000000002")
    assert "declined" in caught.value.message
    db.session.expire_all()
    assert db.session.get(Invoice, invoice.id).status == "open"
    again = payments.start_payment(invoice.id)
    assert again.gateway_intent_id == payment.gateway_intent_id
    payments.confirm_in_sandbox(again, "card:4242424242424242")
    db.session.expire_all()
    assert db.session.get(Invoice, invoice.id).status == "paid"
    with pytest.raises(ServiceError):
        payments.start_payment(invoice.id)
    failed = db.session.scalars(select(Event).where(Event.type == "invoice.payment_failed")).all()
    assert len(failed) == 1


def test_bank_debit_processes_then_the_tick_settles_it(invoice, cli):
    payment = payments.start_payment(invoice.id)
    payments.confirm_in_sandbox(payment, "sepa_debit:DE89370400440532013000")
    db.session.expire_all()
    assert db.session.get(Payment, payment.id).status == "processing"
    assert db.session.get(Invoice, invoice.id).status == "open"
    later = (clock.now() + timedelta(minutes=11)).isoformat()
    assert cli.invoke(args=["portal", "tick", "--at", later]).exit_code == 0
    run_jobs()
    db.session.expire_all()
    assert db.session.get(Invoice, invoice.id).status == "paid"


def test_refunds_follow_the_books_and_never_exceed_the_payment(invoice):
    payment = payments.start_payment(invoice.id)
    payments.confirm_in_sandbox(payment, "card:4242424242424242")
    payments.refund(payment.id, "30.00", "goodwill", STAFF)
    db.session.expire_all()
    assert db.session.get(Invoice, invoice.id).amount_paid == 7000
    with pytest.raises(ServiceError):
        payments.refund(payment.id, "70.01", "", STAFF)
    payments.refund(payment.id, "70.00", "", STAFF)
    db.session.expire_all()
    assert db.session.get(Payment, payment.id).refunded_amount == 10000


def test_a_decline_is_reported_once_however_often_it_is_reconciled(invoice, cli, run_worker, smtp_server):
    payment = payments.start_payment(invoice.id)
    with pytest.raises(ServiceError):
        payments.confirm_in_sandbox(payment, "card:4000000000000002")
    for minutes in (11, 12, 13):
        at = (clock.now() + timedelta(minutes=minutes)).isoformat()
        assert cli.invoke(args=["portal", "tick", "--at", at]).exit_code == 0
        run_jobs()
    failed = db.session.scalars(select(Event).where(Event.type == "invoice.payment_failed")).all()
    assert len(failed) == 1
    run_worker()
    assert len([m for m in smtp_server.to("ana@acme.example") if "didn't go through" in m["Subject"]]) == 1


def test_a_payment_taken_at_the_gateway_is_never_dropped_when_the_amount_changes(invoice):
    from portal.gateways import get_gateway

    payment = payments.start_payment(invoice.id)
    # The payer's browser confirmed at the gateway; no webhook has arrived yet.
    get_gateway().confirm_intent(payment.gateway_intent_id, "card:4242424242424242", "browser-confirm")
    invoices.record_manual_payment(db.session.get(Invoice, invoice.id), "10.00", "cash", "", "", STAFF)
    with pytest.raises(ServiceError):
        payments.start_payment(invoice.id)  # would cancel the stale intent; finds it paid instead
    db.session.expire_all()
    assert db.session.get(Payment, payment.id).status == "succeeded"
    # Both payments are kept: the invoice is paid in full, the 10.00 paid twice is credit.
    paid = db.session.get(Invoice, invoice.id)
    assert (paid.status, paid.amount_paid, paid.amount_due) == ("paid", 10000, 0)
    assert db.session.get(Payment, payment.id).credited_amount == 1000
    from portal.services import credits
    assert credits.balance(paid.client_id, paid.currency) == 1000
