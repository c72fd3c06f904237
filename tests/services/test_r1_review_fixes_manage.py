"""Fixes from the R1 review (lifecycle): pause/resume keeps periods that began before the pause, a
manual-first-invoice subscription still bills after a pause, cancel credits unused time once after a
downgrade, the backlog is at most a year, no first invoice inside the trial, "keep" restores a fixed
end date, cancelling an unpaid checkout voids its first invoice."""
from __future__ import annotations
from datetime import UTC, date, datetime
from sqlalchemy import select, func
import pytest
from portal import clock
from portal.extensions import db
from portal.models import Invoice, Subscription, CreditEntry, CreditNote, SubscriptionPeriod
from portal.services import subscriptions, invoices as invoice_service
from portal.services.subscriptions import billing
from tests.support.make import STAFF


def at(d, h=10):
    return datetime(d.year, d.month, d.day, h, tzinfo=UTC)


@pytest.fixture
def acme(make):
    make.business(timezone="UTC", currency="EUR")
    return make.client(currency="EUR")


def fresh(sid):
    db.session.rollback(); db.session.expire_all()
    return db.session.get(Subscription, sid)


def test_pause_and_resume_keep_a_period_that_began_before_the_pause(make, acme):
    desk = make.plan("Hot desk", "120.00")
    with clock.frozen(at(date(2030, 6, 1), 9)):
        sub = make.subscription(acme, desk, start=date(2030, 6, 1), first_invoice="manual")
    sid = sub.id
    with clock.frozen(at(date(2030, 6, 3))):
        subscriptions.invoice_first_period(sid, STAFF)
    s = fresh(sid)
    assert s.next_period == 1 and s.next_invoice_on == date(2030, 7, 3)
    with clock.frozen(at(date(2030, 7, 2))):
        subscriptions.pause(sid, STAFF)
        subscriptions.resume(sid, STAFF)
    s = fresh(sid)
    assert s.next_period == 1, f"period 1 (Jul 1-31, began before the pause) skipped; next_period={s.next_period}"


def test_downgrade_then_cancel_with_credit_credits_the_unused_time_once(make, acme):
    desk = make.plan("Hot desk", "120.00")
    with clock.frozen(at(date(2030, 6, 1), 9)):
        sub = make.subscription(acme, desk, start=date(2030, 6, 1), quantity="2")
    sid = sub.id
    billing.bill_subscription(sid, at(date(2030, 6, 1)))
    [inv] = db.session.scalars(select(Invoice).where(Invoice.subscription_id == sid)).all()
    assert inv.total == 24000
    with clock.frozen(at(date(2030, 6, 16))):
        subscriptions.change_items(sid, [{"plan_id": str(desk.id), "quantity": "1"}], "now", STAFF)
        subscriptions.cancel(sid, "now", STAFF, credit_unused=True)
    db.session.rollback(); db.session.expire_all()
    credit = db.session.scalar(select(func.coalesce(func.sum(CreditEntry.amount), 0)).where(
        CreditEntry.client_id == acme.id, CreditEntry.kind == "credit"))
    notes = db.session.scalar(select(func.coalesce(func.sum(CreditNote.amount), 0)))

    # unused value: 15/30 of ONE desk after the downgrade already credited = 6000 + 6000 = 12000
    assert credit + notes == 12000, (credit, notes)


def test_a_backlog_longer_than_a_year_is_refused(make, acme):
    daily = make.plan("Daily", "1.00", unit="day")
    with clock.frozen(at(date(2030, 6, 1), 9)):
        with pytest.raises(subscriptions.SubscriptionInvalid) as refused:
            make.subscription(acme, daily, start=date(1990, 1, 1), backlog="bill")
        assert "start_date" in refused.value.errors
        assert db.session.scalar(select(func.count()).select_from(Subscription)) == 0
        within = make.subscription(acme, daily, start=date(2029, 7, 1), backlog="bill")
    assert fresh(within.id).anchor == date(2029, 7, 1)


def test_the_first_invoice_by_hand_is_refused_during_the_trial(make, acme):
    from portal.services.errors import ServiceError

    desk = make.plan("Hot desk", "120.00")
    with clock.frozen(at(date(2030, 6, 1), 9)):
        sub = make.subscription(acme, desk, start=date(2030, 6, 1), first_invoice="manual", trial_days="30")
    sid = sub.id
    with clock.frozen(at(date(2030, 6, 5))):
        with pytest.raises(ServiceError, match="trial"):
            subscriptions.invoice_first_period(sid, STAFF)
    assert fresh(sid).invoice_anchor is None
    with clock.frozen(at(date(2030, 7, 2))):
        invoice = subscriptions.invoice_first_period(sid, STAFF)
    assert invoice.issue_date == date(2030, 7, 2) and invoice.lines[0].period_start == date(2030, 7, 1)


def test_keep_restores_a_fixed_end_date(make, acme):
    desk = make.plan("Hot desk", "120.00")
    with clock.frozen(at(date(2030, 6, 1), 9)):
        sub = make.subscription(acme, desk, start=date(2030, 6, 1), ends_on="2030-12-31")
    sid = sub.id
    billing.bill_subscription(sid, at(date(2030, 6, 1)))
    with clock.frozen(at(date(2030, 6, 10))):
        subscriptions.cancel(sid, "period_end", STAFF)
        subscriptions.keep(sid, STAFF)
    s = fresh(sid)

    assert s.ends_on == date(2030, 12, 31)


def test_cancelling_an_unpaid_checkout_voids_its_first_invoice(make, app):
    make.business(name="T", currency="EUR", timezone="UTC")
    contact = make.contact_with_login()
    plan = make.plan(name="M", unit_price="100.00", self_serve=True)
    from portal.models import Contact
    with clock.frozen(at(date(2030, 6, 1))):
        sub = subscriptions.start_self_checkout(db.session.get(Contact, contact.id), plan.id, "1")
        sid = sub.id
        subscriptions.cancel(sid, "now", STAFF)
    s = fresh(sid)
    inv = db.session.scalar(select(Invoice).where(Invoice.subscription_id == sid))

    assert inv.status == "void"


def test_a_manual_first_invoice_subscription_paused_and_resumed_still_bills(make, acme):
    desk = make.plan("Hot desk", "120.00")
    with clock.frozen(at(date(2030, 6, 1), 9)):
        sub = make.subscription(acme, desk, start=date(2030, 6, 1), first_invoice="manual")
    sid = sub.id
    with clock.frozen(at(date(2030, 6, 10))):
        subscriptions.pause(sid, STAFF)
    with clock.frozen(at(date(2030, 7, 5))):
        subscriptions.resume(sid, STAFF)
    s = fresh(sid)
    assert s.next_period == 0 and s.invoice_anchor is None and s.status == "active"
    with clock.frozen(at(date(2030, 7, 6))):
        invoice = subscriptions.invoice_first_period(sid, STAFF)
    assert invoice is not None and invoice.lines[0].period_start == date(2030, 6, 1)
    n = db.session.scalar(select(func.count()).select_from(Invoice).where(Invoice.subscription_id == sid))
    assert n == 1 and fresh(sid).next_invoice_on == date(2030, 7, 30)  # the invoice anchor: Jun 30
