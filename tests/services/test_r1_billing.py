"""The billing run, through the tick (``flask portal tick --at`` then the RQ jobs): catch-up after
downtime, a run killed half-way, an error on one subscription, and each lifecycle rule (trial, pause
and resume, cancel now or at period end, change now or at renewal, end date and number of cycles,
review before sending); bad input to start a subscription or a plan writes nothing.

The business is in Lisbon and bills in EUR; the plan is a €120.00 monthly hot desk. Dates are in
2030, so the jobs' ``clock.not_before`` runs them as of the tick's moment.
"""
from __future__ import annotations

import multiprocessing
from datetime import UTC, date, datetime, timedelta
from fractions import Fraction

import pytest
from sqlalchemy import func, select

from portal import clock
from portal.billing import cycles
from portal.extensions import db
from portal.models import (
    BillingRun,
    CreditEntry,
    CreditNote,
    Delivery,
    Event,
    Invoice,
    Plan,
    Subscription,
    SubscriptionItem,
    SubscriptionPeriod,
)
from portal.services import invoices as invoice_service
from portal.services import subscriptions
from portal.services.subscriptions import PlanInvalid, SubscriptionInvalid, runs
from tests.support import billing_procs
from tests.support.jobs import tick
from tests.support.make import STAFF
from tests.support.web import text_of


@pytest.fixture
def acme(make):
    make.business(timezone="Europe/Lisbon", currency="EUR")
    return make.client(currency="EUR")


@pytest.fixture
def desk(make, acme):
    return make.plan("Hot desk", "120.00")


def at(day: date, hour: int = 10) -> datetime:
    return datetime(day.year, day.month, day.day, hour, tzinfo=UTC)


def start(make, client, plans, day: date, **values) -> Subscription:
    with clock.frozen(at(day, 9)):
        return make.subscription(client, plans, start=day, **values)


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


def periods_of(subscription_id: int) -> list[SubscriptionPeriod]:
    fresh()
    return list(db.session.scalars(select(SubscriptionPeriod).where(SubscriptionPeriod.subscription_id
                                                                    == subscription_id)
                                   .order_by(SubscriptionPeriod.period_index)))


def service_periods(subscription_id: int) -> list[tuple[date, date]]:
    """(first day, last day) of each invoice's recurring line, in invoice order."""
    return [next((ln.period_start, ln.period_end) for ln in inv.lines if ln.period_start is not None)
            for inv in invoices_of(subscription_id)]


def events(subscription_id: int, kind: str) -> list[Event]:
    fresh()
    return list(db.session.scalars(select(Event).where(Event.subject_type == "subscription",
                                                       Event.subject_id == subscription_id, Event.type == kind)
                                   .order_by(Event.id)))


def assert_gapless() -> list[int]:
    """Every numbered invoice's sequence number, 1 … n with no hole and no duplicate."""
    fresh()
    numbers = sorted(db.session.scalars(select(Invoice.sequence_number)
                                        .where(Invoice.sequence_number.is_not(None))).all())
    assert numbers == list(range(1, len(numbers) + 1)), numbers
    return numbers


def month(day: int, m: int, year: int = 2030) -> tuple[date, date]:
    first = date(year, m, day)
    return first, cycles.start(first, "month", 1, 1) - timedelta(days=1)


def tick_days(cli, first: date, last: date, hour: int = 10) -> None:
    day = first
    while day <= last:
        tick(cli, at(day, hour))
        day += timedelta(days=1)


def count_rows(*models) -> tuple[int, ...]:
    fresh()
    return tuple(db.session.scalar(select(func.count()).select_from(m)) for m in models)


# Catch-up ----------------------------------------------------------------------------------------

def test_a_tick_95_days_after_the_last_bills_each_missed_period_once_in_order(make, acme, desk, cli,
                                                                            staff_client):
    sub = start(make, acme, desk, date(2030, 1, 15))
    tick(cli, at(date(2030, 1, 15)))
    assert service_periods(sub.id) == [month(15, 1)]

    counts = tick(cli, at(date(2030, 1, 15) + timedelta(days=95)))  # Apr 20: Feb 15, Mar 15, Apr 15 missed
    assert counts["subscriptions"] == 1, "one subscription handed over, once"
    rows = invoices_of(sub.id)
    assert service_periods(sub.id) == [month(15, 1), month(15, 2), month(15, 3), month(15, 4)]
    assert [i.sequence_number for i in rows] == [1, 2, 3, 4], "numbered in period order"
    assert all(i.total == 12000 and i.status in ("open", "overdue") for i in rows)
    assert "(15 Feb – 14 Mar 2030)" in rows[1].lines[0].description
    periods = periods_of(sub.id)
    assert [(p.period_index, p.invoice_on, p.caught_up) for p in periods] == [
        (0, date(2030, 1, 15), False), (1, date(2030, 2, 15), True), (2, date(2030, 3, 15), True),
        (3, date(2030, 4, 15), True)]
    [caught_up] = events(sub.id, "subscription.caught_up")
    assert caught_up.data["periods"] == 3
    assert "Caught up 3 periods" in text_of(staff_client.get(f"/staff/subscriptions/{sub.id}"))
    fresh()
    run = db.session.scalars(select(BillingRun).order_by(BillingRun.id.desc())).first()
    assert (run.status, run.total, run.processed, run.invoices, run.caught_up, run.errors) == (
        "done", 1, 1, 3, 3, 0)
    assert sub_row(sub.id).next_invoice_on == date(2030, 5, 15)

    assert tick(cli, at(date(2030, 4, 20), 18))["subscriptions"] == 0
    assert tick(cli, at(date(2030, 5, 14), 22))["subscriptions"] == 0  # 23:00 in Lisbon: still the 14th
    assert len(invoices_of(sub.id)) == 4
    assert_gapless()


def test_the_business_timezone_decides_the_day(make, cli):
    make.business(timezone="Pacific/Chatham", currency="EUR")
    acme = make.client(currency="EUR")
    sub = start(make, acme, make.plan("Hot desk", "120.00"), date(2030, 1, 1))
    tick(cli, at(date(2030, 1, 1), 0))  # 13:45 on Jan 1 in Chatham
    tick(cli, datetime(2030, 1, 31, 10, 0, tzinfo=UTC))  # 23:45 on Jan 31 there: not yet
    assert len(invoices_of(sub.id)) == 1
    tick(cli, datetime(2030, 1, 31, 11, 30, tzinfo=UTC))  # 00:30 on Feb 1 there, still Jan 31 in UTC
    assert service_periods(sub.id) == [month(1, 1), month(1, 2)]


def test_a_run_stopped_half_way_is_finished_by_the_next_run_and_nothing_twice(make, acme, desk, cli):
    subs = [start(make, make.client(f"Client {i}", currency="EUR"), desk, date(2030, 3, 1)) for i in range(6)]
    moment = at(date(2030, 3, 1))
    with clock.frozen(moment):
        run, due = runs.start_run(moment, "tick")
        assert [s for s, _ in due] == [s.id for s in subs]
        half = [s for s, _ in due[:3]]
        runs.bill_batch(run.id, half, moment)  # the other half's job never ran: the worker died
    assert [len(invoices_of(s.id)) for s in subs] == [1, 1, 1, 0, 0, 0]
    fresh()
    assert db.session.get(BillingRun, run.id).status == "running"

    # A tick while it still looks alive starts nothing; one ten minutes later interrupts it and bills the rest.
    assert tick(cli, moment + timedelta(minutes=5))["subscriptions"] == 0
    assert tick(cli, moment + timedelta(minutes=20))["subscriptions"] == 3
    assert [len(invoices_of(s.id)) for s in subs] == [1] * 6
    fresh()
    first, second = db.session.scalars(select(BillingRun).order_by(BillingRun.id)).all()
    assert (first.status, first.processed, first.invoices) == ("interrupted", 3, 3)
    assert (second.status, second.total, second.invoices) == ("done", 3, 3)
    assert sorted(p.billing_run_id for s in subs for p in periods_of(s.id)) == [first.id] * 3 + [second.id] * 3
    assert assert_gapless() == list(range(1, 7))
    assert tick(cli, moment + timedelta(hours=2))["subscriptions"] == 0


def test_a_billing_process_killed_mid_run_leaves_no_trace_and_the_rerun_bills_only_the_rest(
        make, acme, desk, cli, database_url, redis_server, instance_dir):
    """``flask portal bill`` in a process of its own, in batches of 3, killed (``os._exit``, as by
    ``kill -9``) inside the transaction of the second batch: the first batch's invoices stay, the
    second's half-made work is gone, number included; the next tick bills exactly the rest."""
    ids = [start(make, make.client(f"Client {i}", currency="EUR"), desk, date(2030, 3, 1)).id for i in range(6)]
    moment = at(date(2030, 3, 1))
    db.session.remove()
    worker = multiprocessing.get_context("spawn").Process(
        target=billing_procs.bill_run,
        args=(database_url, redis_server.url, str(instance_dir), moment.isoformat()),
        kwargs={"batch_size": 3, "die_after_numbers": 3})
    worker.start()
    worker.join(timeout=60)
    assert worker.exitcode == 9, "the worker died mid-run"
    assert [len(invoices_of(i)) for i in ids] == [1, 1, 1, 0, 0, 0]
    assert assert_gapless() == [1, 2, 3], "the dead transaction's number is not lost"
    assert sum(len(periods_of(i)) for i in ids) == 3
    fresh()
    [dead] = db.session.scalars(select(BillingRun)).all()
    assert (dead.status, dead.total, dead.processed) == ("running", 6, 3)

    assert tick(cli, moment + timedelta(minutes=20))["subscriptions"] == 3
    assert [len(invoices_of(i)) for i in ids] == [1] * 6
    assert assert_gapless() == list(range(1, 7))
    fresh()
    assert db.session.get(BillingRun, dead.id).status == "interrupted"


def test_an_error_on_one_subscription_is_recorded_shown_and_retried_while_the_run_goes_on(
        make, acme, desk, cli, monkeypatch, staff_client):
    good = start(make, acme, desk, date(2030, 2, 1))
    bad = start(make, make.client("Bravo", currency="EUR"), desk, date(2030, 2, 1))
    other = start(make, make.client("Charlie", currency="EUR"), desk, date(2030, 2, 1))
    real = invoice_service.defaults
    bad_client = bad.client_id

    def failing(client, business):  # a narrow fault: building Bravo's invoice fails
        if client.id == bad_client:
            raise RuntimeError("tax service unreachable")
        return real(client, business)

    monkeypatch.setattr(invoice_service, "defaults", failing)
    tick(cli, at(date(2030, 2, 1)))
    assert [len(invoices_of(s.id)) for s in (good, bad, other)] == [1, 0, 1]
    failed = sub_row(bad.id)
    assert failed.last_error == "RuntimeError: tax service unreachable" and failed.last_error_at is not None
    assert failed.status == "active" and failed.next_invoice_on == date(2030, 2, 1)
    [event] = events(bad.id, "subscription.billing_failed")
    assert event.data == {"period_index": 0, "error": "RuntimeError: tax service unreachable"}
    assert periods_of(bad.id) == [], "nothing half-written"
    page = staff_client.get(f"/staff/subscriptions/{bad.id}").get_data(as_text=True)
    assert "<strong>Billing failed" in page and "RuntimeError: tax service unreachable" in page
    fresh()
    run = db.session.scalars(select(BillingRun)).one()
    assert (run.status, run.processed, run.invoices, run.errors) == ("done", 3, 2, 1)

    # Still failing at the next tick: one more attempt, one more event, no duplicate for the others.
    tick(cli, at(date(2030, 2, 1), 11))
    assert len(events(bad.id, "subscription.billing_failed")) == 2
    assert [len(invoices_of(s.id)) for s in (good, bad, other)] == [1, 0, 1]

    monkeypatch.setattr(invoice_service, "defaults", real)  # fixed
    tick(cli, at(date(2030, 2, 2)))
    assert service_periods(bad.id) == [month(1, 2)]
    healed = sub_row(bad.id)
    assert healed.last_error is None and healed.last_error_at is None
    page = staff_client.get(f"/staff/subscriptions/{bad.id}").get_data(as_text=True)
    assert "<strong>Billing failed" not in page, "the notice goes; the timeline keeps the failures"
    assert [len(invoices_of(s.id)) for s in (good, bad, other)] == [1, 1, 1]
    assert_gapless()


# The lifecycle ----------------------------------------------------------------------------------------

def test_nothing_is_billed_before_the_trial_ends(make, acme, cli):
    trial = make.plan("Studio", "80.00", trial_days=14)
    sub = start(make, acme, trial, date(2030, 1, 1))
    assert (sub.status, sub.anchor, sub.trial_end, sub.next_invoice_on) == (
        "trialing", date(2030, 1, 15), date(2030, 1, 15), date(2030, 1, 15))
    tick(cli, at(date(2030, 1, 1)))
    tick(cli, at(date(2030, 1, 14), 23))  # 23:00 on the 14th in Lisbon (winter: UTC)
    assert invoices_of(sub.id) == [] and sub_row(sub.id).status == "trialing"
    tick(cli, at(date(2030, 1, 15), 0))
    assert service_periods(sub.id) == [month(15, 1)]
    assert invoices_of(sub.id)[0].total == 8000
    assert sub_row(sub.id).status == "active"


def test_no_invoice_while_paused_and_periods_started_meanwhile_are_skipped(make, acme, desk, cli):
    sub = start(make, acme, desk, date(2030, 1, 1))
    tick(cli, at(date(2030, 1, 1)))
    with clock.frozen(at(date(2030, 1, 10))):
        subscriptions.pause(sub.id, STAFF)
    tick(cli, at(date(2030, 2, 1)))
    tick(cli, at(date(2030, 3, 1)))
    assert len(invoices_of(sub.id)) == 1 and sub_row(sub.id).status == "paused"

    with clock.frozen(at(date(2030, 3, 10))):
        subscriptions.resume(sub.id, STAFF)
    resumed = sub_row(sub.id)
    assert (resumed.status, resumed.next_period, resumed.next_invoice_on) == ("active", 3, date(2030, 4, 1))
    [event] = events(sub.id, "subscription.resumed")
    assert event.data["skipped_periods"] == 2
    tick(cli, at(date(2030, 3, 20)))
    assert len(invoices_of(sub.id)) == 1
    tick(cli, at(date(2030, 4, 1)))
    assert service_periods(sub.id) == [month(1, 1), month(1, 4)]
    assert [p.period_index for p in periods_of(sub.id)] == [0, 3]
    assert len(events(sub.id, "subscription.paused")) == 1


def test_cancel_now_credits_the_unused_share(make, acme, desk, cli):
    unpaid = start(make, acme, desk, date(2030, 1, 1))
    bravo = make.client("Bravo", currency="EUR")
    paid = start(make, bravo, desk, date(2030, 1, 1))
    tick(cli, at(date(2030, 1, 1)))
    [paid_invoice] = invoices_of(paid.id)
    make.payment(paid_invoice)

    with clock.frozen(at(date(2030, 1, 11))):
        subscriptions.cancel(unpaid.id, "now", STAFF, credit_unused=True)
        subscriptions.cancel(paid.id, "now", STAFF, credit_unused=True)
    unused = cycles.prorate(12000, Fraction(21, 31))  # Jan 11–31 of January's 31 days
    assert unused == 8129
    fresh()
    [note_unpaid] = db.session.scalars(select(CreditNote).where(CreditNote.client_id == acme.id)).all()
    assert (note_unpaid.amount, note_unpaid.to_due, note_unpaid.to_balance) == (unused, unused, 0)
    assert invoices_of(unpaid.id)[0].amount_due == 12000 - unused
    [note_paid] = db.session.scalars(select(CreditNote).where(CreditNote.client_id == bravo.id)).all()
    assert (note_paid.amount, note_paid.to_due, note_paid.to_balance) == (unused, 0, unused)
    assert sum(db.session.scalars(select(CreditEntry.amount).where(CreditEntry.client_id == bravo.id))) == unused

    for sub in (unpaid, paid):
        row = sub_row(sub.id)
        assert (row.status, row.next_invoice_on) == ("cancelled", None)
        assert len(events(sub.id, "subscription.cancelled")) == 1
    tick(cli, at(date(2030, 2, 1)))
    tick(cli, at(date(2030, 3, 1)))
    assert len(invoices_of(unpaid.id)) == 1 and len(invoices_of(paid.id)) == 1


def test_cancel_now_without_credit_leaves_the_invoice_alone(make, acme, desk, cli):
    sub = start(make, acme, desk, date(2030, 1, 1))
    tick(cli, at(date(2030, 1, 1)))
    with clock.frozen(at(date(2030, 1, 11))):
        subscriptions.cancel(sub.id, "now", STAFF)
    fresh()
    assert db.session.scalar(select(func.count()).select_from(CreditNote)) == 0
    assert invoices_of(sub.id)[0].amount_due == 12000


def test_cancel_at_period_end_bills_nothing_more_then_cancels(make, acme, desk, cli):
    sub = start(make, acme, desk, date(2030, 1, 1))
    tick(cli, at(date(2030, 1, 1)))
    with clock.frozen(at(date(2030, 1, 20))):
        subscriptions.cancel(sub.id, "period_end", STAFF)
    row = sub_row(sub.id)
    assert (row.status, row.ends_on, row.cancel_at_period_end, row.next_invoice_on) == (
        "active", date(2030, 2, 1), True, None)
    tick(cli, at(date(2030, 1, 31), 22))
    assert sub_row(sub.id).status == "active", "until the end of the period it has paid for"
    tick(cli, at(date(2030, 2, 1)))
    tick(cli, at(date(2030, 3, 1)))
    assert service_periods(sub.id) == [month(1, 1)]
    row = sub_row(sub.id)
    assert (row.status, row.next_invoice_on) == ("cancelled", None) and row.cancelled_at is not None
    assert len(events(sub.id, "subscription.cancel_scheduled")) == 1
    assert len(events(sub.id, "subscription.cancelled")) == 1


def test_cancel_at_period_end_before_the_period_is_invoiced_bills_that_last_period(make, acme, desk, cli):
    """Invoiced on the 3rd for a period from the 1st (seed 004): cancelled on Feb 2, February was
    already under way and billed on Feb 3 as the last period; nothing after."""
    with clock.frozen(at(date(2030, 1, 1), 9)):
        sub = make.subscription(acme, desk, start=date(2030, 1, 1), first_invoice="manual")
    with clock.frozen(at(date(2030, 1, 3))):
        subscriptions.invoice_first_period(sub.id, STAFF)
    tick(cli, at(date(2030, 2, 1)))
    with clock.frozen(at(date(2030, 2, 2))):
        subscriptions.cancel(sub.id, "period_end", STAFF)
    tick_days(cli, date(2030, 2, 3), date(2030, 2, 3))
    tick(cli, at(date(2030, 3, 1)))
    tick(cli, at(date(2030, 3, 3)))
    tick(cli, at(date(2030, 4, 3)))
    assert service_periods(sub.id) == [month(1, 1), month(1, 2)]
    assert sub_row(sub.id).status == "cancelled"


def test_change_now_charges_the_remaining_time_on_the_next_invoice_to_the_cent(make, acme, cli):
    vat = make.tax_rate("VAT", "23")
    plan = make.plan("Hot desk", "120.00", tax_rate=vat)
    sub = start(make, acme, plan, date(2030, 1, 1))
    tick(cli, at(date(2030, 1, 1)))
    with clock.frozen(at(date(2030, 1, 11))):
        subscriptions.change_items(sub.id, [{"plan_id": str(plan.id), "quantity": "3"}], "now", STAFF)
    remaining = cycles.prorate(36000 - 12000, Fraction(21, 31))
    assert remaining == 16258
    [changed] = events(sub.id, "subscription.changed")
    assert changed.data["proration"][0]["amount"] == remaining

    tick(cli, at(date(2030, 2, 1)))
    january, february = invoices_of(sub.id)
    assert [ln.description for ln in february.lines] == [
        "Hot desk (1 Feb – 28 Feb 2030)", "Remaining time on Hot desk × 3 (11 Jan – 31 Jan 2030)"]
    recurring, extra = february.lines
    assert (recurring.quantity, recurring.unit_price, recurring.period_start) == (3, 12000, date(2030, 2, 1))
    assert (extra.quantity, extra.unit_price, extra.period_start) == (1, remaining, None)
    assert extra.tax_percent == recurring.tax_percent == 23
    # VAT per line, half up: 36,000 + 8,280 and 16,258 + 3,739 (3,739.34).
    assert february.total == 36000 + 8280 + 16258 + 3739
    assert january.total == 14760, "the period already billed is not touched"

    tick(cli, at(date(2030, 3, 1)))
    march = invoices_of(sub.id)[-1]
    assert [ln.description for ln in march.lines] == ["Hot desk (1 Mar – 31 Mar 2030)"], "charged once"


def test_a_downgrade_now_credits_the_unused_time_to_the_client(make, acme, cli):
    vat = make.tax_rate("VAT", "23")
    plan = make.plan("Hot desk", "120.00", tax_rate=vat)
    sub = start(make, acme, plan, date(2030, 2, 1), quantity="3")
    tick(cli, at(date(2030, 2, 1)))
    with clock.frozen(at(date(2030, 2, 15))):
        subscriptions.change_items(sub.id, [{"plan_id": str(plan.id), "quantity": "1"}], "now", STAFF)
    unused = cycles.prorate(24000, Fraction(14, 28))  # Feb 15–28 of February's 28 days
    with_tax = unused + unused * 23 // 100
    assert (unused, with_tax) == (12000, 14760)
    fresh()
    [entry] = db.session.scalars(select(CreditEntry).where(CreditEntry.client_id == acme.id)).all()
    assert (entry.amount, entry.kind, entry.currency) == (with_tax, "credit", "EUR")
    assert "Unused time on Hot desk × 3 (15 Feb – 28 Feb 2030)" in entry.description

    tick(cli, at(date(2030, 3, 1)))
    march = invoices_of(sub.id)[-1]
    assert [ln.description for ln in march.lines] == ["Hot desk (1 Mar – 31 Mar 2030)"]
    assert march.total == 14760
    assert len(invoices_of(sub.id)) == 2


def test_a_change_at_renewal_takes_effect_on_the_next_invoice(make, acme, desk, cli):
    sub = start(make, acme, desk, date(2030, 1, 1))
    tick(cli, at(date(2030, 1, 1)))
    with clock.frozen(at(date(2030, 1, 11))):
        subscriptions.change_items(sub.id, [{"plan_id": str(desk.id), "quantity": "2"}], "renewal", STAFF)
    assert sub_row(sub.id).items[0].quantity == 1, "not before the renewal"
    assert [u.amount for u in subscriptions.preview(sub_row(sub.id), 2)] == [24000, 24000]
    tick(cli, at(date(2030, 2, 1)))
    tick(cli, at(date(2030, 3, 1)))
    assert [i.total for i in invoices_of(sub.id)] == [12000, 24000, 24000]
    assert all(len(i.lines) == 1 for i in invoices_of(sub.id)), "no proration at renewal"
    row = sub_row(sub.id)
    assert row.pending_items is None and row.items[0].quantity == 2


@pytest.mark.parametrize("term", [{"max_cycles": 3}, {"ends_on": "2030-03-15"}], ids=["max-cycles", "end-date"])
def test_a_fixed_term_bills_exactly_its_periods_then_ends(make, acme, desk, cli, term):
    sub = start(make, acme, desk, date(2030, 1, 1), **term)
    for m in range(1, 8):
        tick(cli, at(date(2030, m, 1)))
    tick(cli, at(date(2030, 3, 15)))
    assert service_periods(sub.id) == [month(1, 1), month(1, 2), month(1, 3)]
    row = sub_row(sub.id)
    assert (row.status, row.next_invoice_on) == ("ended", None)
    assert len(events(sub.id, "subscription.ended")) == 1


def test_review_recurring_invoices_leaves_drafts_and_sends_nothing(make, acme, desk, cli):
    make.business(review_recurring_invoices=True)
    sub = start(make, acme, desk, date(2030, 1, 1))
    tick(cli, at(date(2030, 1, 1)))
    tick(cli, at(date(2030, 1, 1), 15))
    [draft] = invoices_of(sub.id)
    assert (draft.status, draft.number, draft.total) == ("draft", None, 12000)
    fresh()
    assert db.session.scalars(select(Delivery).where(Delivery.subject_type == "invoice",
                                                     Delivery.subject_id == draft.id)).all() == []
    assert len(periods_of(sub.id)) == 1
    assert sub_row(sub.id).next_invoice_on == date(2030, 2, 1)
    tick(cli, at(date(2030, 2, 1)))
    assert [i.status for i in invoices_of(sub.id)] == ["draft", "draft"]
    assert len(periods_of(sub.id)) == 2


def test_numbers_stay_gapless_between_runs_and_hand_made_invoices(make, acme, desk, cli):
    subs = [start(make, acme, desk, date(2030, 1, 1)), start(make, make.client("Bravo", currency="EUR"), desk,
                                                             date(2030, 1, 15))]
    tick(cli, at(date(2030, 1, 1)))
    with clock.frozen(at(date(2030, 1, 5))):
        make.invoice(acme, "50.00")
    tick(cli, at(date(2030, 3, 20)))
    assert assert_gapless() == list(range(1, 8))
    assert sum(len(invoices_of(s.id)) for s in subs) == 6


# Bad input -------------------------------------------------------------------------------------------

def plan_values(**changes) -> dict:
    return {"name": "Hot desk", "unit_price": "120.00", "currency": "EUR", "unit": "month", "interval": "1",
            "trial_days": "0", **changes}


@pytest.mark.parametrize("changes, field", [
    ({"unit_price": "0"}, "unit_price"), ({"unit_price": "-5.00"}, "unit_price"), ({"interval": "0"}, "interval"),
    ({"unit": "fortnight"}, "unit"), ({"interval": "61"}, "interval"), ({"currency": "EURO"}, "currency")])
def test_a_bad_plan_names_the_field_and_writes_nothing(make, acme, changes, field):
    before = count_rows(Plan, Event)
    with pytest.raises(PlanInvalid) as raised:
        subscriptions.create_plan(plan_values(**changes), STAFF)
    assert field in raised.value.errors, raised.value.errors
    assert count_rows(Plan, Event) == before


@pytest.mark.parametrize("case, field", [
    ("quantity 0", "items-0-quantity"), ("quantity over the cap", "items-0-quantity"),
    ("another currency", "items-0-plan_id"), ("past start without backlog", "backlog"),
    ("no plan", "items"), ("an archived plan", "items-0-plan_id"), ("a bad date", "start_date"),
    ("end before start", "ends_on"), ("cycles 0", "max_cycles"), ("first invoice", "first_invoice")])
def test_bad_input_to_start_a_subscription_names_the_field_and_writes_nothing(make, acme, desk, case, field):
    dollars = make.plan("Hot desk (US)", "120.00", currency="USD")
    archived = make.plan("Old desk", "90.00")
    subscriptions.set_plan_active(archived, False, STAFF)
    item = {"plan_id": str(desk.id), "quantity": "1"}
    values = {"items": [item], "start_date": "2030-01-10"}
    if case == "quantity 0":
        item["quantity"] = "0"
    elif case == "quantity over the cap":
        item["quantity"] = str(subscriptions.MAX_QUANTITY + 1)
    elif case == "another currency":
        item["plan_id"] = str(dollars.id)
    elif case == "past start without backlog":
        values["start_date"] = "2030-01-01"
    elif case == "no plan":
        values["items"] = []
    elif case == "an archived plan":
        item["plan_id"] = str(archived.id)
    elif case == "a bad date":
        values["start_date"] = "2030-02-30"
    elif case == "end before start":
        values["ends_on"] = "2030-01-09"
    elif case == "cycles 0":
        values["max_cycles"] = "0"
    else:
        values["first_invoice"] = "whenever"
    tables = (Subscription, SubscriptionItem, SubscriptionPeriod, Invoice, Event)
    before = count_rows(*tables)
    with clock.frozen(at(date(2030, 1, 10))), pytest.raises(SubscriptionInvalid) as raised:
        subscriptions.create_subscription(acme, values, STAFF)
    assert field in raised.value.errors, raised.value.errors
    if field == "backlog":
        assert "past" in raised.value.errors["backlog"]
    assert count_rows(*tables) == before


def test_a_past_start_bills_the_backlog_or_starts_today_as_asked(make, acme, desk, cli):
    with clock.frozen(at(date(2030, 3, 10))):
        backlog = subscriptions.create_subscription(
            acme, {"items": [{"plan_id": str(desk.id), "quantity": "1"}], "start_date": "2030-01-01",
                   "backlog": "bill"}, STAFF)
        today = subscriptions.create_subscription(
            make.client("Bravo", currency="EUR"),
            {"items": [{"plan_id": str(desk.id), "quantity": "1"}], "start_date": "2030-01-01", "backlog": "now"},
            STAFF)
    tick(cli, at(date(2030, 3, 10)))
    assert service_periods(backlog.id) == [month(1, 1), month(1, 2), month(1, 3)]
    assert service_periods(today.id) == [month(10, 3)]


def test_a_fixed_term_ending_during_downtime_still_bills_its_last_periods(make, acme, desk, cli):
    """Down from Jan 2 to Mar 20, past the end date (Mar 15): the run after bills February and March
    (both start before the end) once, then the subscription ends; the end is not decided first."""
    sub = start(make, acme, desk, date(2030, 1, 1), ends_on="2030-03-15")
    tick(cli, at(date(2030, 1, 1)))
    tick(cli, at(date(2030, 3, 20)))
    assert service_periods(sub.id) == [month(1, 1), month(1, 2), month(1, 3)]
    assert sub_row(sub.id).status == "ended"
    tick(cli, at(date(2030, 5, 1)))
    assert len(invoices_of(sub.id)) == 3


def test_cancel_at_period_end_during_downtime_still_bills_the_period_under_way(make, acme, desk, cli):
    with clock.frozen(at(date(2030, 1, 1), 9)):
        sub = make.subscription(acme, desk, start=date(2030, 1, 1), first_invoice="manual")
    with clock.frozen(at(date(2030, 1, 3))):
        subscriptions.invoice_first_period(sub.id, STAFF)
    with clock.frozen(at(date(2030, 2, 2))):
        subscriptions.cancel(sub.id, "period_end", STAFF)
    tick(cli, at(date(2030, 3, 10)))  # down from Feb 2 to Mar 10: February (invoiced Feb 3) is still billed
    assert service_periods(sub.id) == [month(1, 1), month(1, 2)]
    assert sub_row(sub.id).status == "cancelled"


def test_no_proration_for_a_period_skipped_while_paused(make, acme, desk, cli):
    """Resumed on Mar 10, March was skipped (not billed): a change on Mar 15 prorates nothing."""
    sub = start(make, acme, desk, date(2030, 1, 1))
    tick(cli, at(date(2030, 1, 1)))
    with clock.frozen(at(date(2030, 1, 10))):
        subscriptions.pause(sub.id, STAFF)
    with clock.frozen(at(date(2030, 3, 10))):
        subscriptions.resume(sub.id, STAFF)
    with clock.frozen(at(date(2030, 3, 15))):
        assert subscriptions.proration(sub_row(sub.id), [], date(2030, 3, 15)) == []
        subscriptions.change_items(sub.id, [{"plan_id": str(desk.id), "quantity": "3"}], "now", STAFF)
    [changed] = events(sub.id, "subscription.changed")
    assert changed.data["proration"] == []
    tick(cli, at(date(2030, 4, 1)))
    april = invoices_of(sub.id)[-1]
    assert [(ln.description, ln.quantity) for ln in april.lines] == [("Hot desk (1 Apr – 30 Apr 2030)", 3)]


def test_resumed_past_its_last_cycle_a_subscription_ends(make, acme, desk, cli):
    """Two cycles (January, February); paused in January, resumed in March: nothing is left to bill
    and the term is over, so it ends at once instead of staying active with nothing ever due."""
    sub = start(make, acme, desk, date(2030, 1, 1), max_cycles=2)
    tick(cli, at(date(2030, 1, 1)))
    with clock.frozen(at(date(2030, 1, 10))):
        subscriptions.pause(sub.id, STAFF)
    with clock.frozen(at(date(2030, 2, 10))):
        subscriptions.resume(sub.id, STAFF)  # February is skipped; the term still runs to Mar 1
        subscriptions.pause(sub.id, STAFF)
    row = sub_row(sub.id)
    assert (row.status, row.next_invoice_on, row.ends_on) == ("paused", None, date(2030, 3, 1))
    with clock.frozen(at(date(2030, 3, 10))):
        subscriptions.resume(sub.id, STAFF)
    row = sub_row(sub.id)
    assert (row.status, row.next_invoice_on) == ("ended", None)
    assert len(events(sub.id, "subscription.ended")) == 1
    tick(cli, at(date(2030, 4, 1)))
    assert service_periods(sub.id) == [month(1, 1)]


def test_cancel_at_period_end_after_the_last_cycle_ends_with_that_cycle(make, acme, cli):
    """One weekly cycle (Jan 1–7) whose invoice waits for the next run; cancelled at period end on
    Jan 17 (the week under way ends Jan 22): billed once, then over with its last cycle."""
    weekly = make.plan("Coaching", "30.00", unit="week")
    with clock.frozen(at(date(2030, 1, 17), 9)):
        sub = make.subscription(acme, weekly, start=date(2030, 1, 1), max_cycles=1)
    with clock.frozen(at(date(2030, 1, 17))):
        subscriptions.cancel(sub.id, "period_end", STAFF)
    tick(cli, at(date(2030, 1, 18)))
    assert [p.period_start for p in periods_of(sub.id)] == [date(2030, 1, 1)]
    row = sub_row(sub.id)
    assert (row.status, row.ends_on) == ("cancelled", date(2030, 1, 8))
