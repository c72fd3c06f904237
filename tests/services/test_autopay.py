"""F4 autopay: finalize schedules the charge day, the tick charges the default saved method once."""
from __future__ import annotations

import threading
from datetime import date, datetime, time, timedelta, timezone

import pytest
from sqlalchemy import select

from portal import clock
from portal.extensions import db
from portal.models import Client, Delivery, Event, Invoice, Payment
from portal.services import autopay, payment_methods, payments, scheduler
from portal.services.events import Actor
from tests.support import make
from tests.support.jobs import run_jobs

STAFF = Actor("staff", None, "staff@portal.example")


@pytest.fixture
def acme(make):
    make.business(name="Tidewater Studio", currency="EUR", autopay_timing="on_issue", autopay_days_before=3)
    make.owner()
    return make.client()


def with_autopay(client: Client, number: str = "4242424242424242", timing: str | None = None,
                 days_before: int | None = None) -> Client:
    payment_methods.add_in_sandbox(client.id, None, "card", number, "12/34", "123")
    payment_methods.set_autopay(client.id, True, STAFF)
    client = db.session.get(Client, client.id)
    client.autopay_timing, client.autopay_days_before = timing, days_before
    db.session.commit()
    return client


def tick(cli, at: datetime) -> None:
    result = cli.invoke(args=["portal", "tick", "--at", at.isoformat()])
    assert result.exit_code == 0, result.output
    run_jobs()


def charges(invoice_id: int) -> list[Payment]:
    db.session.expire_all()
    return db.session.scalars(select(Payment).where(Payment.invoice_id == invoice_id).order_by(Payment.id)).all()


def invoice_row(invoice_id: int) -> Invoice:
    db.session.expire_all()
    return db.session.get(Invoice, invoice_id)


def deliveries(subject_part: str) -> list[Delivery]:
    db.session.expire_all()
    return [d for d in db.session.scalars(select(Delivery).where(Delivery.recipient == "ana@acme.example"))
            if subject_part in (d.subject or "")]


def at_utc(day: date, hour: int) -> datetime:
    return datetime.combine(day, time(hour), tzinfo=timezone.utc)


def test_on_issue_charges_at_the_first_tick_after_finalize(acme, cli):
    client = with_autopay(acme)
    invoice = make.invoice(client, due=clock.today() + timedelta(days=14))
    assert invoice.autopay_on == invoice.issue_date
    assert charges(invoice.id) == [], "finalize only schedules"

    tick(cli, clock.now())
    [payment] = charges(invoice.id)
    assert (payment.status, payment.off_session, payment.amount) == ("succeeded", True, 10000)
    assert payment.idempotency_key == f"invoice-{invoice.id}-autopay"
    paid = invoice_row(invoice.id)
    assert paid.status == "paid" and paid.autopay_attempted_at is not None
    assert len(deliveries("Receipt for invoice")) == 1
    tick(cli, clock.now() + timedelta(minutes=1))
    assert len(charges(invoice.id)) == 1


def test_on_due_date_not_before_the_due_date_in_the_business_timezone_and_once(acme, make, cli):
    make.business(timezone="America/New_York", autopay_timing="on_due_date")
    client = with_autopay(acme)
    due = clock.today("America/New_York") + timedelta(days=10)
    invoice = make.invoice(client, due=due)
    assert invoice.autopay_on == due

    tick(cli, at_utc(due - timedelta(days=1), 12))
    tick(cli, at_utc(due, 3))  # 23:00 the evening before, in New York
    assert charges(invoice.id) == [] and invoice_row(invoice.id).status == "open"

    tick(cli, at_utc(due, 6))  # 01:00 or 02:00 on the due date in New York
    tick(cli, at_utc(due, 7))
    [payment] = charges(invoice.id)
    assert payment.status == "succeeded" and invoice_row(invoice.id).status == "paid"


def test_days_before_due_from_the_clients_own_rule_never_before_issue(acme, cli):
    client = with_autopay(acme, timing="days_before_due", days_before=3)
    today = clock.today()
    later = make.invoice(client, due=today + timedelta(days=10))
    soon = make.invoice(client, due=today + timedelta(days=2))
    assert later.autopay_on == today + timedelta(days=7)
    assert soon.autopay_on == today, "not before the issue date"

    tick(cli, at_utc(today, 12))
    assert invoice_row(soon.id).status == "paid" and charges(later.id) == []
    tick(cli, at_utc(today + timedelta(days=6), 12))
    assert charges(later.id) == []
    tick(cli, at_utc(today + timedelta(days=7), 12))
    assert invoice_row(later.id).status == "paid"


def test_autopay_off_schedules_and_charges_nothing(acme, cli):
    payment_methods.add_in_sandbox(acme.id, None, "card", "4242424242424242", "12/34", "123")
    invoice = make.invoice(acme)
    assert invoice.autopay_on is None
    tick(cli, clock.now() + timedelta(days=40))
    assert charges(invoice.id) == []


def test_turned_off_or_method_removed_before_the_day_skips(acme, make, cli):
    make.business(autopay_timing="on_due_date")
    client = with_autopay(acme)
    due = clock.today() + timedelta(days=5)
    first = make.invoice(client, due=due)
    second = make.invoice(client, due=due)
    assert first.autopay_on == due and second.autopay_on == due

    payment_methods.set_autopay(client.id, False, STAFF)
    tick(cli, at_utc(due, 12))
    assert charges(first.id) == [] and charges(second.id) == []
    assert invoice_row(first.id).autopay_on is None, "unscheduled"
    skipped = db.session.scalars(select(Event).where(Event.type == "invoice.autopay_skipped")).all()
    assert {e.subject_id for e in skipped} == {first.id, second.id}
    assert all(e.data["reason"] == "autopay was turned off" for e in skipped)

    payment_methods.set_autopay(client.id, True, STAFF)  # back on: only new invoices are scheduled
    tick(cli, at_utc(due, 13))
    assert charges(first.id) == []

    third = make.invoice(client, due=due + timedelta(days=1))
    [method] = payment_methods.client_methods(client.id)
    payment_methods.remove(client.id, method.id, STAFF)
    tick(cli, at_utc(due + timedelta(days=1), 12))
    assert charges(third.id) == []


def test_a_decline_is_one_attempt_and_tells_the_client(acme, cli):
    client = with_autopay(acme, number="4000000000000341")
    invoice = make.invoice(client)
    tick(cli, clock.now())
    [payment] = charges(invoice.id)
    assert (payment.status, payment.failure_code) == ("failed", "card_declined")
    still = invoice_row(invoice.id)
    assert still.status == "open" and still.amount_due == 10000 and still.autopay_attempted_at is not None
    assert len(deliveries("didn't go through")) == 1
    tick(cli, clock.now() + timedelta(days=1))
    assert len(charges(invoice.id)) == 1, "retries are dunning's, not autopay's"
    assert len(deliveries("didn't go through")) == 1


def test_a_backlog_after_downtime_is_caught_up_once(acme, make, cli):
    make.business(autopay_timing="on_due_date")
    client = with_autopay(acme)
    today = clock.today()
    ids = [make.invoice(client, due=today + timedelta(days=d)).id for d in (1, 2, 3)]
    tick(cli, at_utc(today + timedelta(days=20), 12))
    tick(cli, at_utc(today + timedelta(days=20), 13))
    assert [len(charges(i)) for i in ids] == [1, 1, 1]
    assert all(invoice_row(i).status == "paid" for i in ids)


def test_a_crash_after_the_charge_is_retried_with_the_same_key_and_charges_once(acme, cli, monkeypatch):
    client = with_autopay(acme)
    invoice = make.invoice(client)
    real = payments.apply_intent
    seen: list[str] = []

    def crash_once(intent, actor=payments.GATEWAY):
        seen.append(intent.id)
        if len(seen) == 1:
            raise RuntimeError("the worker died")
        return real(intent, actor)

    monkeypatch.setattr(autopay, "apply_intent", crash_once)
    with pytest.raises(RuntimeError):
        autopay.charge_now(invoice.id)  # the job dies: RQ retries it
    db.session.rollback()  # what the worker does with a job that raised
    assert charges(invoice.id) == [] and invoice_row(invoice.id).autopay_attempted_at is None, "claim undone"
    assert autopay.charge_now(invoice.id) == 1
    [payment] = charges(invoice.id)
    assert seen[0] == seen[1] == payment.gateway_intent_id, "the gateway gave the first charge back"
    assert invoice_row(invoice.id).status == "paid"


def test_two_ticks_at_once_charge_once(acme, app, db_kind):
    if db_kind != "postgresql":
        pytest.skip("row locks under real concurrency are PostgreSQL's; SQLite serialises writers")
    client = with_autopay(acme)
    invoice_ids = [make.invoice(client).id for _ in range(3)]
    db.session.remove()
    barrier = threading.Barrier(4)
    errors: list[BaseException] = []
    at = clock.now()

    def run() -> None:
        try:
            with app.app_context():
                barrier.wait(timeout=30)
                scheduler.run_tick(at)  # four ticks at once enqueue the same jobs (one id per invoice)
                for invoice_id in invoice_ids:  # and four workers run them at once
                    autopay.charge_now(invoice_id, at)
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=run) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert not errors, errors
    assert [len(charges(i)) for i in invoice_ids] == [1, 1, 1]
    assert all(invoice_row(i).status == "paid" for i in invoice_ids)


def test_a_method_the_gateway_refuses_outright_is_a_failed_attempt_with_the_reason(acme, cli):
    from portal.gateways import get_gateway

    client = with_autopay(acme)
    [method] = payment_methods.client_methods(client.id)
    get_gateway().detach_payment_method(method.gateway_method_id)  # gone at the gateway, not yet here
    invoice = make.invoice(client)
    tick(cli, clock.now())
    [payment] = charges(invoice.id)
    assert (payment.status, payment.failure_code, payment.gateway_intent_id) == \
        ("failed", "payment_method_unexpected_state", None)
    assert invoice_row(invoice.id).status == "open" and invoice_row(invoice.id).autopay_attempted_at is not None
    assert len(deliveries("didn't go through")) == 1
    tick(cli, clock.now() + timedelta(minutes=20))  # the reconciliation has nothing to ask about it
    assert len(charges(invoice.id)) == 1


def test_the_portal_invoice_page_says_when_autopay_will_charge(acme, make, cli, client, auth):
    from portal.models import Contact
    from portal.services.passwords import hash_password

    make.business(autopay_timing="on_due_date")
    contact = db.session.scalars(select(Contact).where(Contact.client_id == acme.id)).one()
    contact.portal_access, contact.password_hash = True, hash_password("client password 1")
    db.session.commit()
    client_row = with_autopay(acme)
    due = clock.today() + timedelta(days=10)
    invoice = make.invoice(client_row, due=due)
    assert auth.login_contact().status_code == 302
    html = client.get(f"/portal/invoices/{invoice.id}").get_data(as_text=True)
    assert "will be charged to VISA •••• 4242 on" in html
    tick(cli, at_utc(due, 12))
    html = client.get(f"/portal/invoices/{invoice.id}").get_data(as_text=True)
    assert "will be charged" not in html
