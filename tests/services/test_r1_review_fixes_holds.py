"""R1 review fixes (holds): a self-checkout starts only when its first invoice is paid. Voided or
written off unpaid by staff, the next billing run cancels the subscription: it is never made active
with autopay on, and no second invoice is billed (nor charged to the card on file). Dropping or
expiring a checkout voids its invoice and cancels the subscription in one transaction. (A past-due
subscription whose held invoice staff void is still released: tests/services/test_r1_failure.py.)"""
from __future__ import annotations

from datetime import UTC, datetime

import pytest
from sqlalchemy import select

from portal import clock
from portal.billing import states
from portal.extensions import db
from portal.models import Contact, Event, Invoice, Payment, Subscription
from portal.services import invoices, payment_methods, subscriptions
from portal.services.subscriptions import checkout as checkout_service
from portal.services.subscriptions import manage
from tests.support import make
from tests.support.jobs import tick
from tests.support.make import STAFF

JUN_1 = datetime(2027, 6, 1, 12, tzinfo=UTC)
JUN_2 = datetime(2027, 6, 2, 12, tzinfo=UTC)
JUL_1 = datetime(2027, 7, 1, 12, tzinfo=UTC)


@pytest.fixture
def checkout(app):
    """A self-checkout waiting for its first payment, the client having a saved card with autopay on."""
    make.business(name="Tidewater Studio", currency="EUR", timezone="UTC")
    contact = make.contact_with_login()
    plan = make.plan(name="Studio membership", unit_price="100.00", self_serve=True)
    method = payment_methods.add_in_sandbox(contact.client_id, None, "card", "4242424242424242", "12/34", "123")
    payment_methods.set_default(contact.client_id, method.id, STAFF)
    payment_methods.set_autopay(contact.client_id, True, STAFF)
    with clock.frozen(JUN_1):
        sub = subscriptions.start_self_checkout(db.session.get(Contact, contact.id), plan.id, "1")
    assert sub.status == "incomplete"
    return {"sub_id": sub.id, "contact_id": contact.id, "invoice_id": sub.held_invoice_id}


def sub_row(sub_id: int) -> Subscription:
    db.session.rollback()
    db.session.expire_all()
    return db.session.get(Subscription, sub_id)


def invoices_of(sub_id: int) -> list[Invoice]:
    db.session.expire_all()
    return list(db.session.scalars(select(Invoice).where(Invoice.subscription_id == sub_id).order_by(Invoice.id)))


def cancelled_events(sub_id: int) -> list[Event]:
    return list(db.session.scalars(select(Event).where(
        Event.subject_type == "subscription", Event.subject_id == sub_id, Event.type == "subscription.cancelled")))


def assert_cancelled_unstarted(sub_id: int) -> None:
    sub = sub_row(sub_id)
    assert sub.status == "cancelled"
    assert sub.cancelled_at is not None and sub.next_invoice_on is None
    assert sub.ends_on is not None
    [event] = cancelled_events(sub_id)
    assert event.data["when"] == "now" and event.data["reason"] == "first invoice not paid"
    assert not db.session.scalars(select(Event).where(
        Event.subject_id == sub_id, Event.type == "subscription.reactivated")).all()


def test_a_voided_first_invoice_cancels_the_checkout_at_the_next_run(checkout, cli):
    with clock.frozen(JUN_2):
        invoices.void(db.session.get(Invoice, checkout["invoice_id"]), STAFF, "Client changed their mind")
    tick(cli, JUL_1)
    assert_cancelled_unstarted(checkout["sub_id"])
    assert [i.status for i in invoices_of(checkout["sub_id"])] == ["void"], "no second invoice"
    assert db.session.scalars(select(Payment)).all() == [], "nothing charged to the saved card"
    tick(cli, datetime(2027, 8, 1, 12, tzinfo=UTC))
    assert len(invoices_of(checkout["sub_id"])) == 1 and len(cancelled_events(checkout["sub_id"])) == 1


def test_a_written_off_first_invoice_cancels_the_checkout_when_billed(checkout):
    """No "mark uncollectible" service exists yet: the state machine's transition, as a future one would."""
    with clock.frozen(JUN_2):
        invoice = db.session.get(Invoice, checkout["invoice_id"])
        invoice.status = states.transition(invoice.status, "mark_uncollectible")
        db.session.commit()
    with clock.frozen(JUL_1):
        outcome = subscriptions.bill_subscription(checkout["sub_id"], JUL_1)
    assert outcome.invoices == 0
    assert_cancelled_unstarted(checkout["sub_id"])
    assert len(invoices_of(checkout["sub_id"])) == 1


def test_the_payer_coming_back_after_a_void_finds_it_cancelled(checkout):
    with clock.frozen(JUN_2):
        invoices.void(db.session.get(Invoice, checkout["invoice_id"]), STAFF)
        assert subscriptions.activate_if_paid(checkout["sub_id"]) is False
    assert_cancelled_unstarted(checkout["sub_id"])


def test_dropping_a_checkout_voids_and_cancels_in_one_transaction(checkout, monkeypatch):
    def failing_cancel(*args, **kwargs):
        raise RuntimeError("the process dies before the cancellation commits")

    monkeypatch.setattr(manage, "cancel", failing_cancel)
    with clock.frozen(JUN_2), pytest.raises(RuntimeError):
        subscriptions.drop_checkout(db.session.get(Contact, checkout["contact_id"]), checkout["sub_id"])
    db.session.rollback()
    assert sub_row(checkout["sub_id"]).status == "incomplete"
    assert [i.status for i in invoices_of(checkout["sub_id"])] == ["open"], "the void did not commit alone"

    monkeypatch.undo()
    with clock.frozen(JUN_2):
        subscriptions.drop_checkout(db.session.get(Contact, checkout["contact_id"]), checkout["sub_id"])
    assert sub_row(checkout["sub_id"]).status == "cancelled"
    [invoice] = invoices_of(checkout["sub_id"])
    assert invoice.status == "void" and invoice.void_reason == "Self-checkout dropped before the first payment."


def test_an_expired_checkout_is_voided_and_cancelled_together(checkout, monkeypatch):
    def failing_cancel(*args, **kwargs):
        raise RuntimeError("the process dies before the cancellation commits")

    later = datetime(2027, 6, 4, 12, tzinfo=UTC)
    monkeypatch.setattr(manage, "cancel", failing_cancel)
    with clock.frozen(later), pytest.raises(RuntimeError):
        checkout_service.expire_checkouts(later)
    db.session.rollback()
    assert [i.status for i in invoices_of(checkout["sub_id"])] == ["open"]

    monkeypatch.undo()
    with clock.frozen(later):
        assert checkout_service.expire_checkouts(later) == 1
    assert sub_row(checkout["sub_id"]).status == "cancelled"
    assert [i.status for i in invoices_of(checkout["sub_id"])] == ["void"]
    assert db.session.scalars(select(Event).where(Event.subject_id == checkout["sub_id"],
                                                  Event.type == "subscription.checkout_expired")).one()


def test_the_run_finds_a_written_off_first_invoice(checkout, cli):
    """The tick's run finds it at once (before the two days after which an unpaid checkout expires)."""
    with clock.frozen(JUN_2):
        invoice = db.session.get(Invoice, checkout["invoice_id"])
        invoice.status = states.transition(invoice.status, "mark_uncollectible")
        db.session.commit()
    tick(cli, datetime(2027, 6, 2, 18, tzinfo=UTC))
    assert_cancelled_unstarted(checkout["sub_id"])
    assert len(invoices_of(checkout["sub_id"])) == 1
