"""A client's monthly billing cycle (seed 002) and extra charges (seed 003), through the services and
the tick: open charges gather into one invoice on the billing day (day 31 → Feb 28 → Mar 31), exactly
once; "invoice each charge at once"; charges that wait for the next subscription invoice."""
from __future__ import annotations

from datetime import UTC, date, datetime

import pytest
from sqlalchemy import select

from portal import clock
from portal.extensions import db
from portal.models import Charge, Client, ClientCycle, Delivery, Event, Invoice
from portal.services import settings, subscriptions
from portal.services.errors import ServiceError
from tests.support.jobs import tick
from tests.support.make import STAFF


def at(day: date, hour: int = 10) -> datetime:
    return datetime(day.year, day.month, day.day, hour, tzinfo=UTC)


def fresh():
    db.session.rollback()
    db.session.expire_all()


def invoices_of(client_id: int) -> list[Invoice]:
    fresh()
    return list(db.session.scalars(select(Invoice).where(Invoice.client_id == client_id).order_by(Invoice.id)))


def add_charge(client, description: str, price: str = "10.00", currency: str = "EUR"):
    charge, invoice = subscriptions.add_charge(client, {"description": description, "quantity": "1",
                                                        "unit_price": price, "currency": currency}, STAFF)
    return charge, invoice


def monthly(client, day: int, on: date, **extra) -> Client:
    with clock.frozen(at(on)):
        settings.update_client_billing(client.id, {"autopay": False, "billing_cycle": "monthly",
                                                   "billing_day": day, **extra}, STAFF)
    fresh()
    return db.session.get(Client, client.id)


@pytest.fixture
def acme(make):
    make.business(timezone="Europe/Lisbon", currency="EUR")
    return make.client(currency="EUR")


def test_day_31_gathers_every_open_charge_on_jan_31_feb_28_and_mar_31(acme, cli):
    for name in ("Printing", "Courier", "Meeting room"):
        add_charge(acme, name)
    client = monthly(acme, 31, date(2027, 1, 10))
    assert client.next_cycle_on == date(2027, 1, 31)

    tick(cli, at(date(2027, 1, 30)))
    assert invoices_of(acme.id) == []
    tick(cli, at(date(2027, 1, 31)))
    [january] = invoices_of(acme.id)
    assert [line.description for line in january.lines] == ["Printing", "Courier", "Meeting room"]
    assert january.status == "open" and january.total == 3000 and january.issue_date == date(2027, 1, 31)
    assert {c.status for c in db.session.scalars(select(Charge))} == {"billed"}
    sent = db.session.scalars(select(Delivery).where(Delivery.subject_type == "invoice",
                                                     Delivery.subject_id == january.id)).all()
    assert [d.recipient for d in sent] == ["ana@acme.example"]
    assert db.session.get(Client, acme.id).next_cycle_on == date(2027, 2, 28)

    add_charge(acme, "February printing", "5.00")
    tick(cli, at(date(2027, 2, 27)))
    assert len(invoices_of(acme.id)) == 1
    tick(cli, at(date(2027, 2, 28)))
    february = invoices_of(acme.id)[1]
    assert [line.description for line in february.lines] == ["February printing"]
    assert db.session.get(Client, acme.id).next_cycle_on == date(2027, 3, 31), "back to the 31st: no drift"

    add_charge(acme, "March printing", "7.00")
    tick(cli, at(date(2027, 3, 30)))
    assert len(invoices_of(acme.id)) == 2
    tick(cli, at(date(2027, 3, 31)))
    march = invoices_of(acme.id)[2]
    assert march.issue_date == date(2027, 3, 31) and march.total == 700
    assert [c.cycle_on for c in db.session.scalars(select(ClientCycle).order_by(ClientCycle.id))] == [
        date(2027, 1, 31), date(2027, 2, 28), date(2027, 3, 31)]
    assert db.session.get(Client, acme.id).next_cycle_on == date(2027, 4, 30)


def test_two_ticks_and_two_jobs_on_the_same_day_make_one_invoice(acme, cli):
    add_charge(acme, "Printing")
    add_charge(acme, "Courier")
    monthly(acme, 15, date(2027, 1, 3))
    tick(cli, at(date(2027, 1, 15), 9))
    tick(cli, at(date(2027, 1, 15), 11))
    assert len(invoices_of(acme.id)) == 1
    # A second job that read the client before the first moved next_cycle_on on: the day's row refuses it.
    db.session.get(Client, acme.id).next_cycle_on = date(2027, 1, 15)
    add_charge(acme, "Late courier")
    db.session.commit()
    with clock.frozen(at(date(2027, 1, 15), 12)):
        assert subscriptions.run_cycle(acme.id) == []
    assert len(invoices_of(acme.id)) == 1
    assert db.session.get(Client, acme.id).next_cycle_on == date(2027, 2, 15)
    assert db.session.scalars(select(Charge.status).where(Charge.description == "Late courier")).one() == "open"
    assert len(db.session.scalars(select(ClientCycle)).all()) == 1


def test_no_open_charges_still_records_the_day_and_moves_on(acme, cli):
    monthly(acme, 1, date(2027, 1, 20))
    tick(cli, at(date(2027, 2, 1)))
    assert invoices_of(acme.id) == []
    [cycle] = db.session.scalars(select(ClientCycle)).all()
    assert (cycle.cycle_on, cycle.invoice_id) == (date(2027, 2, 1), None)
    assert db.session.get(Client, acme.id).next_cycle_on == date(2027, 3, 1)


def test_one_invoice_per_currency(acme, cli):
    add_charge(acme, "Printing", "10.00", "EUR")
    add_charge(acme, "Hosting", "20.00", "USD")
    add_charge(acme, "Courier", "3.00", "EUR")
    monthly(acme, 5, date(2027, 1, 1))
    tick(cli, at(date(2027, 1, 5)))
    rows = invoices_of(acme.id)
    assert sorted((i.currency, i.total, len(i.lines)) for i in rows) == [("EUR", 1300, 2), ("USD", 2000, 1)]
    assert all(i.status == "open" for i in rows)


def test_catch_up_after_downtime_gathers_once_for_the_latest_day(acme, cli):
    add_charge(acme, "Printing")
    monthly(acme, 31, date(2027, 1, 10))
    tick(cli, at(date(2027, 4, 15)))  # Jan 31, Feb 28 and Mar 31 were missed
    [invoice] = invoices_of(acme.id)
    assert invoice.total == 1000
    assert [c.cycle_on for c in db.session.scalars(select(ClientCycle))] == [date(2027, 3, 31)]
    assert db.session.get(Client, acme.id).next_cycle_on == date(2027, 4, 30)
    tick(cli, at(date(2027, 4, 16)))
    assert len(invoices_of(acme.id)) == 1


def test_review_before_sending_leaves_a_draft_and_sends_nothing(acme, make, cli):
    make.business(review_recurring_invoices=True)
    add_charge(acme, "Printing")
    monthly(acme, 10, date(2027, 1, 2))
    tick(cli, at(date(2027, 1, 10)))
    [draft] = invoices_of(acme.id)
    assert draft.status == "draft" and draft.number is None
    assert db.session.scalars(select(Charge.status)).one() == "drafted"
    assert db.session.scalars(select(Delivery)).all() == []


def test_a_client_without_a_monthly_cycle_is_never_gathered(acme, cli):
    add_charge(acme, "Printing")
    tick(cli, at(date(2027, 1, 31)))
    assert invoices_of(acme.id) == []
    client = monthly(acme, 31, date(2027, 1, 10))
    with clock.frozen(at(date(2027, 1, 12))):
        settings.update_client_billing(client.id, {"autopay": False, "billing_cycle": "none"}, STAFF)
    fresh()
    assert db.session.get(Client, acme.id).next_cycle_on is None
    tick(cli, at(date(2027, 1, 31)))
    assert invoices_of(acme.id) == []


def test_an_immediate_charge_is_invoiced_and_sent_at_once(acme):
    with clock.frozen(at(date(2027, 1, 4))):
        settings.update_client_billing(acme.id, {"autopay": False, "charges_billing": "immediate"}, STAFF)
        fresh()
        charge, invoice = add_charge(db.session.get(Client, acme.id), "Rush delivery", "45.00")
    fresh()
    invoice = db.session.get(Invoice, invoice.id)
    assert invoice.status == "open" and invoice.number and invoice.total == 4500
    assert [line.charge_id for line in invoice.lines] == [charge.id]
    assert db.session.get(Charge, charge.id).status == "billed"
    [delivery] = db.session.scalars(select(Delivery)).all()
    assert delivery.recipient == "ana@acme.example" and delivery.subject_id == invoice.id
    # One invoice per charge.
    with clock.frozen(at(date(2027, 1, 4))):
        _second, other = add_charge(db.session.get(Client, acme.id), "Another rush", "5.00")
    assert other.id != invoice.id and len(invoices_of(acme.id)) == 2


def test_manual_charges_wait_for_staff(acme):
    charge, invoice = add_charge(acme, "Printing")
    assert invoice is None
    fresh()
    assert db.session.get(Charge, charge.id).status == "open"
    assert invoices_of(acme.id) == []


def test_a_next_cycle_charge_goes_on_the_next_subscription_invoice_with_the_plan(acme, make, cli):
    with clock.frozen(at(date(2027, 1, 5))):
        settings.update_client_billing(acme.id, {"autopay": False, "charges_billing": "next_cycle"}, STAFF)
        sub = make.subscription(db.session.get(Client, acme.id), make.plan("Hot desk", "120.00"),
                                start=date(2027, 1, 5))
    tick(cli, at(date(2027, 1, 5)))
    assert len(invoices_of(acme.id)) == 1
    add_charge(acme, "Printing", "8.00")
    assert len(invoices_of(acme.id)) == 1, "the charge waits"
    tick(cli, at(date(2027, 2, 5)))
    second = invoices_of(acme.id)[1]
    assert second.subscription_id == sub.id
    assert [line.description for line in second.lines] == ["Hot desk (5 Feb – 4 Mar 2027)", "Printing"]
    assert second.total == 12800


def test_the_monthly_cycle_finds_nothing_once_a_subscription_took_the_charges(acme, make, cli):
    with clock.frozen(at(date(2027, 1, 5))):
        make.subscription(acme, make.plan("Hot desk", "120.00"), start=date(2027, 1, 5))
    tick(cli, at(date(2027, 1, 5)))
    monthly(acme, 5, date(2027, 1, 6), charges_billing="next_cycle")
    add_charge(acme, "Printing", "8.00")
    tick(cli, at(date(2027, 2, 5)))  # the subscription's run and the client's cycle, the same day
    rows = invoices_of(acme.id)
    assert len(rows) == 2, "no empty invoice, no second invoice for the charge"
    assert [line.description for line in rows[1].lines][-1] == "Printing"
    assert db.session.scalars(select(ClientCycle)).one().invoice_id is None


def test_bad_cycle_settings_write_nothing(acme):
    for values, field in [
        ({"billing_cycle": "weekly"}, "billing_cycle"),
        ({"billing_cycle": "monthly", "billing_day": 32}, "billing_day"),
        ({"billing_cycle": "monthly", "billing_day": 0}, "billing_day"),
        ({"billing_cycle": "monthly", "billing_day": None}, "billing_day"),
        ({"billing_cycle": "monthly", "billing_day": "12"}, "billing_day"),
        ({"charges_billing": "sometimes"}, "charges_billing"),
    ]:
        with pytest.raises(ServiceError) as refused:
            settings.update_client_billing(acme.id, {"autopay": False, "auto_apply_credit": True, **values}, STAFF)
        assert field in refused.value.errors
        fresh()
        row = db.session.get(Client, acme.id)
        assert (row.billing_cycle, row.billing_day, row.next_cycle_on, row.charges_billing, row.auto_apply_credit) \
            == ("none", None, None, "manual", None)
    assert db.session.scalars(select(Event).where(Event.type == "client.billing_settings_updated")).all() == []


def test_the_next_billing_day_is_month_end_safe():
    assert [settings.next_billing_day(31, day) for day in (date(2027, 1, 31), date(2027, 2, 1), date(2027, 3, 1),
                                                           date(2028, 2, 1), date(2027, 12, 31))] == [
        date(2027, 1, 31), date(2027, 2, 28), date(2027, 3, 31), date(2028, 2, 29), date(2027, 12, 31)]
    assert settings.latest_billing_day(30, date(2027, 3, 29)) == date(2027, 2, 28)
    assert settings.latest_billing_day(1, date(2027, 3, 1)) == date(2027, 3, 1)


def test_four_jobs_at_once_gather_once(app, acme, db_kind):
    if db_kind != "postgresql":
        pytest.skip("row locks under real concurrency are PostgreSQL's; SQLite serialises writers")
    import threading

    for name in ("Printing", "Courier", "Meeting room"):
        add_charge(acme, name)
    monthly(acme, 15, date(2027, 1, 3))
    db.session.remove()
    barrier = threading.Barrier(4)
    results, errors = [], []

    def job() -> None:
        with app.app_context():
            try:
                with clock.frozen(at(date(2027, 1, 15))):
                    barrier.wait(timeout=30)
                    results.append(subscriptions.run_cycle(acme.id))
            except BaseException as exc:  # noqa: BLE001 - reported below
                errors.append(exc)
            finally:
                db.session.remove()

    threads = [threading.Thread(target=job) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert not errors, errors
    assert sorted(len(r) for r in results) == [0, 0, 0, 1]
    [invoice] = invoices_of(acme.id)
    assert len(invoice.lines) == 3 and invoice.sequence_number == 1
    assert len(db.session.scalars(select(ClientCycle)).all()) == 1
    assert db.session.get(Client, acme.id).next_cycle_on == date(2027, 2, 15)
