"""Seed 004's failure rule, through the tick: when a cycle invoice's automatic charge fails, the invoice
stays open, the subscription is past due, no later period is invoiced until that invoice is paid (or
staff settle it), and the client and the owners are told; once paid, the subscription is active again
and the held periods are billed once. Paid by link (no autopay), invoices keep repeating.

The client saves Stripe's declining test card 4000 0000 0000 0002 (the sandbox saves it; every
charge declines) and turns autopay on, as tests/services/test_autopay.py does.
"""
from __future__ import annotations

from datetime import UTC, date, datetime

import pytest
from sqlalchemy import select

from portal import clock
from portal.extensions import db
from portal.models import (
    Client,
    Delivery,
    Event,
    Invoice,
    Payment,
    Subscription,
    SubscriptionPeriod,
)
from portal.services import invoices, payment_methods
from tests.support.jobs import tick
from tests.support.make import STAFF

DECLINES = "4000000000000002"
GOOD = "4242424242424242"
OWNER = "owner@portal.example"
CLIENT = "ana@acme.example"


@pytest.fixture
def acme(make):
    make.business(name="Tidewater Studio", timezone="Europe/Lisbon", currency="EUR", autopay_timing="on_issue")
    make.owner(email=OWNER)
    return make.client(currency="EUR")


@pytest.fixture
def desk(make, acme):
    return make.plan("Hot desk", "120.00")


def at(day: date, hour: int = 10) -> datetime:
    return datetime(day.year, day.month, day.day, hour, tzinfo=UTC)


def with_card(client: Client, number: str, autopay: bool = True) -> None:
    method = payment_methods.add_in_sandbox(client.id, None, "card", number, "12/34", "123")
    payment_methods.set_default(client.id, method.id, STAFF)
    if autopay:
        payment_methods.set_autopay(client.id, True, STAFF)


def fresh() -> None:
    db.session.rollback()
    db.session.expire_all()


def sub_row(subscription_id: int) -> Subscription:
    fresh()
    return db.session.get(Subscription, subscription_id)


def invoices_of(subscription_id: int) -> list[Invoice]:
    fresh()
    return list(db.session.scalars(select(Invoice).where(Invoice.subscription_id == subscription_id)
                                   .order_by(Invoice.id)))


def period_starts(subscription_id: int) -> list[date]:
    fresh()
    return list(db.session.scalars(select(SubscriptionPeriod.period_start)
                                   .where(SubscriptionPeriod.subscription_id == subscription_id)
                                   .order_by(SubscriptionPeriod.period_index)))


def emails(recipient: str, subject_part: str) -> list[Delivery]:
    fresh()
    return [d for d in db.session.scalars(select(Delivery).where(Delivery.recipient == recipient)
                                          .order_by(Delivery.id))
            if subject_part in (d.subject or "")]


def events(subscription_id: int, kind: str) -> list[Event]:
    fresh()
    return list(db.session.scalars(select(Event).where(Event.subject_type == "subscription",
                                                       Event.subject_id == subscription_id, Event.type == kind)))


def payments_of(invoice_id: int) -> list[Payment]:
    fresh()
    return list(db.session.scalars(select(Payment).where(Payment.invoice_id == invoice_id).order_by(Payment.id)))


def first_of_month(m: int) -> date:
    return date(2030, m, 1)


def test_a_declined_autopay_holds_the_subscription_until_paid_then_the_held_periods_are_billed_once(
        make, acme, desk, cli):
    with_card(acme, DECLINES)
    with clock.frozen(at(first_of_month(1), 9)):
        sub = make.subscription(acme, desk, start=first_of_month(1))

    tick(cli, at(first_of_month(1)))
    [january] = invoices_of(sub.id)
    [declined] = payments_of(january.id)
    assert (declined.status, declined.failure_code, declined.off_session) == ("failed", "card_declined", True)
    assert (january.status, january.amount_due) == ("open", 12000)
    held = sub_row(sub.id)
    assert (held.status, held.held_invoice_id) == ("past_due", january.id)
    [past_due] = events(sub.id, "subscription.past_due")
    assert past_due.data["invoice_id"] == january.id
    # The client is asked to pay; the owners hear the subscription is past due.
    assert len(emails(CLIENT, "didn't go through")) == 1
    [to_owner] = emails(OWNER, "Subscription past due: Acme Ltd")
    assert january.number in to_owner.payload["text"]

    # No further period is invoiced (nor charged, nor announced again) while the invoice is unpaid.
    tick(cli, at(first_of_month(2)))
    tick(cli, at(first_of_month(3)))
    assert [i.id for i in invoices_of(sub.id)] == [january.id]
    assert sub_row(sub.id).status == "past_due"
    assert len(payments_of(january.id)) == 1, "one automatic attempt; retries are dunning's"
    assert len(emails(OWNER, "Subscription past due")) == 1 and len(emails(CLIENT, "didn't go through")) == 1

    # The client saves a good card and pays the invoice with it; the next tick releases the hold
    # and bills February and March once each, charging the good card.
    with_card(acme, GOOD)
    with clock.frozen(at(date(2030, 3, 10))):
        make.card_payment(invoices_of(sub.id)[0])
    assert invoices_of(sub.id)[0].status == "paid"
    tick(cli, at(date(2030, 3, 10), 11))
    assert period_starts(sub.id) == [first_of_month(1), first_of_month(2), first_of_month(3)]
    active = sub_row(sub.id)
    assert (active.status, active.held_invoice_id, active.next_invoice_on) == ("active", None, first_of_month(4))
    assert len(events(sub.id, "subscription.reactivated")) == 1
    [caught_up] = events(sub.id, "subscription.caught_up")
    assert caught_up.data["periods"] == 2
    rows = invoices_of(sub.id)
    assert [i.status for i in rows] == ["paid", "paid", "paid"]
    assert [len(payments_of(i.id)) for i in rows] == [2, 1, 1]

    tick(cli, at(date(2030, 3, 10), 12))
    tick(cli, at(date(2030, 3, 31), 12))
    assert len(invoices_of(sub.id)) == 3
    tick(cli, at(first_of_month(4)))
    assert period_starts(sub.id)[-1] == first_of_month(4) and invoices_of(sub.id)[-1].status == "paid"


def test_a_manual_payment_releases_the_hold_too(make, acme, desk, cli):
    with_card(acme, DECLINES)
    with clock.frozen(at(first_of_month(1), 9)):
        sub = make.subscription(acme, desk, start=first_of_month(1))
    tick(cli, at(first_of_month(1)))
    tick(cli, at(first_of_month(2)))
    assert sub_row(sub.id).status == "past_due" and len(invoices_of(sub.id)) == 1
    payment_methods.set_autopay(acme.id, False, STAFF)  # the client pays by wire from now on
    with clock.frozen(at(date(2030, 2, 5))):
        make.payment(invoices_of(sub.id)[0])
    tick(cli, at(date(2030, 2, 5), 11))
    assert period_starts(sub.id) == [first_of_month(1), first_of_month(2)]
    assert sub_row(sub.id).status == "active"
    assert [i.status for i in invoices_of(sub.id)] == ["paid", "open"]


def test_staff_settle_the_held_invoice_by_voiding_it(make, acme, desk, cli):
    with_card(acme, DECLINES)
    with clock.frozen(at(first_of_month(1), 9)):
        sub = make.subscription(acme, desk, start=first_of_month(1))
    tick(cli, at(first_of_month(1)))
    payment_methods.set_autopay(acme.id, False, STAFF)
    with clock.frozen(at(date(2030, 1, 20))):
        invoices.void(invoices_of(sub.id)[0], STAFF)
    tick(cli, at(date(2030, 1, 20), 11))
    assert sub_row(sub.id).status == "active"
    assert len(invoices_of(sub.id)) == 1, "nothing else was due yet"
    tick(cli, at(first_of_month(2)))
    assert period_starts(sub.id) == [first_of_month(1), first_of_month(2)]


def test_a_decline_on_the_due_date_holds_from_the_next_tick(make, acme, desk, cli):
    """Charged on the due date (the tick's autopay step, outside the billing run): the next tick marks
    the subscription past due, and the next period is not invoiced."""
    make.business(autopay_timing="on_due_date", payment_terms_days=10)
    with_card(acme, DECLINES)
    with clock.frozen(at(first_of_month(1), 9)):
        sub = make.subscription(acme, desk, start=first_of_month(1))
    tick(cli, at(first_of_month(1)))
    [january] = invoices_of(sub.id)
    assert january.autopay_on == date(2030, 1, 11) and payments_of(january.id) == []
    assert sub_row(sub.id).status == "active"

    tick(cli, at(date(2030, 1, 11)))  # the charge declines
    assert [p.status for p in payments_of(january.id)] == ["failed"]
    tick(cli, at(date(2030, 1, 11), 11))
    assert sub_row(sub.id).status == "past_due"
    assert len(emails(OWNER, "Subscription past due")) == 1
    tick(cli, at(first_of_month(2)))
    assert len(invoices_of(sub.id)) == 1


def test_paid_by_link_invoices_keep_repeating_while_the_last_is_open(make, acme, desk, cli):
    with clock.frozen(at(first_of_month(1), 9)):
        sub = make.subscription(acme, desk, start=first_of_month(1))
    for m in (1, 2, 3, 4):
        tick(cli, at(first_of_month(m)))
    rows = invoices_of(sub.id)
    assert period_starts(sub.id) == [first_of_month(m) for m in (1, 2, 3, 4)]
    assert all(i.status in ("open", "overdue") and i.autopay_on is None for i in rows)
    assert sub_row(sub.id).status == "active"
    assert emails(OWNER, "Subscription past due") == []
    with clock.frozen(at(date(2030, 4, 2))):
        make.payment(rows[0])
    tick(cli, at(first_of_month(5)))
    assert len(invoices_of(sub.id)) == 5, "paid or open, they repeat"
