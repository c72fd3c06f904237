"""The upcoming-invoice notice (seed 003): N days before each cycle's invoice, one email per period,
with the amount, the date, and the card autopay will charge or "you will receive a payment link"."""
from __future__ import annotations

from datetime import UTC, date, datetime

import pytest
from sqlalchemy import select

from portal import clock
from portal.extensions import db
from portal.models import Delivery, Event, Invoice, PaymentMethod, Subscription
from portal.services import subscriptions
from tests.support.jobs import tick


def at(day: date, hour: int = 10) -> datetime:
    return datetime(day.year, day.month, day.day, hour, tzinfo=UTC)


def notices() -> list[Delivery]:
    db.session.rollback()
    db.session.expire_all()
    return list(db.session.scalars(select(Delivery).where(Delivery.subject_type == "subscription")
                                   .order_by(Delivery.id)))


def save_card(client_id: int) -> PaymentMethod:
    method = PaymentMethod(client_id=client_id, gateway="sandbox", gateway_method_id="pm_card_4242",
                           gateway_setup_id="seti_4242", type="card", brand="visa", last4="4242", exp_month=12,
                           exp_year=2034, is_default=True)
    db.session.add(method)
    db.session.commit()
    return method


@pytest.fixture
def billed(make, cli):
    """A monthly €120 subscription started Feb 10, its first period billed: the next invoice is Mar 10."""
    make.business(timezone="Europe/Lisbon", currency="EUR", upcoming_notice_days=7)
    acme = make.client(currency="EUR")
    with clock.frozen(at(date(2027, 2, 10))):
        sub = make.subscription(acme, make.plan("Hot desk", "120.00"), start=date(2027, 2, 10))
    tick(cli, at(date(2027, 2, 10)))
    db.session.expire_all()
    sub = db.session.get(Subscription, sub.id)
    assert sub.next_invoice_on == date(2027, 3, 10)
    return sub


def test_seven_days_before_the_10th_one_notice_with_the_payment_link_wording(billed, cli):
    tick(cli, at(date(2027, 3, 2)))
    assert notices() == []
    for day in (3, 4, 5):
        tick(cli, at(date(2027, 3, day)))
    [notice] = notices()
    assert notice.recipient == "ana@acme.example"
    assert notice.subject.endswith(": €120.00 on March 10, 2027")
    text = notice.payload["text"]
    assert "€120.00" in text and "March 10, 2027" in text and "10 Mar – 9 Apr 2027" in text
    assert "You will receive a payment link" in text and "We will charge" not in text
    [event] = db.session.scalars(select(Event).where(Event.type == "subscription.upcoming_notice")).all()
    assert event.subject_id == billed.id and event.data["period_index"] == 1 and event.data["amount"] == 12000
    assert db.session.get(Subscription, billed.id).noticed_period == 1
    # The invoice is made on the 10th; the next notice is for April's, seven days before Apr 10.
    for day in (10, 20):
        tick(cli, at(date(2027, 3, day)))
    assert len(notices()) == 1
    tick(cli, at(date(2027, 4, 3)))
    assert len(notices()) == 2


def test_with_autopay_and_a_saved_card_the_notice_names_the_card(billed, make, cli):
    save_card(billed.client_id)
    client = billed.client
    client.autopay = True
    db.session.commit()
    tick(cli, at(date(2027, 3, 4)))
    [notice] = notices()
    assert "We will charge VISA •••• 4242" in notice.payload["text"]
    assert "payment link" not in notice.payload["text"]


def test_the_subscription_s_autopay_override_wins_over_the_client_s(billed, cli):
    save_card(billed.client_id)
    billed.client.autopay = True
    billed.autopay = False
    db.session.commit()
    tick(cli, at(date(2027, 3, 4)))
    [notice] = notices()
    assert "You will receive a payment link" in notice.payload["text"]


def test_no_notice_when_the_setting_is_blank(billed, make, cli):
    make.business(upcoming_notice_days=None)
    for day in (3, 5, 9):
        tick(cli, at(date(2027, 3, day)))
    assert notices() == []
    assert db.session.get(Subscription, billed.id).noticed_period == -1


def test_a_second_job_for_the_same_period_sends_nothing(billed):
    with clock.frozen(at(date(2027, 3, 4))):
        assert subscriptions.send_notices([billed.id, billed.id], clock.now()) == 1
        assert subscriptions.send_notices([billed.id], clock.now()) == 0
    assert len(notices()) == 1


def test_after_downtime_no_notice_for_a_period_already_due_and_one_for_the_next(billed, cli):
    # Down from Mar 1 to Apr 5: Mar 10's invoice is made late, and its notice never goes out.
    tick(cli, at(date(2027, 4, 5)))
    assert notices() == []
    db.session.expire_all()
    assert db.session.scalars(select(Invoice).where(Invoice.subscription_id == billed.id)).all()[-1].issue_date \
        == date(2027, 4, 5)
    sub = db.session.get(Subscription, billed.id)
    assert sub.next_period == 2 and sub.next_invoice_on == date(2027, 4, 10)
    tick(cli, at(date(2027, 4, 5), 11))  # the next tick: April's invoice is 5 days away
    [notice] = notices()
    assert "10 Apr – 9 May 2027" in notice.payload["text"]
    tick(cli, at(date(2027, 4, 6)))
    assert len(notices()) == 1


def test_paused_subscriptions_get_no_notice(billed, cli):
    billed.status = "paused"
    db.session.commit()
    tick(cli, at(date(2027, 3, 4)))
    assert notices() == []


def test_the_staff_edited_template_is_used(billed, cli):
    from portal.services import email_templates
    from tests.support.make import STAFF

    email_templates.save("upcoming_invoice", "Heads up: {{amount_due}}",
                         "Dear {{customer_name}}, {{invoice_date}}. {% if payment_method %}card{% else %}link{% endif %}",
                         STAFF)
    tick(cli, at(date(2027, 3, 4)))
    [notice] = notices()
    assert notice.subject == "Heads up: €120.00"
    assert notice.payload["text"].startswith("Dear Ana Ribeiro, March 10, 2027. link")
