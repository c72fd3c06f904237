"""H1: the tick only decides and enqueues; RQ jobs on the ``default`` queue do the gateway and mail
work, one job per invoice, payment or card, under deterministic ids, retried with backoff, and a
repeated job or tick does the work once. New deliveries reach RQ from the session's after-commit
hook, whoever commits, and never from a rolled-back transaction."""
from __future__ import annotations

from datetime import datetime, timedelta, timezone

from rq import Queue
from rq.job import Job
from sqlalchemy import func, select

from portal import clock
from portal.extensions import db
from portal.models import Client, Delivery, Event, Invoice, Payment, PaymentMethod
from portal.queues import RETRY_INTERVALS, redis_connection
from portal.services import payment_methods, payments
from portal.services.events import Actor, queue_email
from tests.support.jobs import run_jobs

STAFF = Actor("staff", None, "staff@portal.example")
CARD = "4242424242424242"


def waiting(queue: str = "default") -> list[str]:
    return Queue(queue, connection=redis_connection()).job_ids


def invoke_tick(cli, at: datetime) -> dict[str, int]:
    """``flask portal tick --at`` alone: the jobs it enqueues are left waiting."""
    result = cli.invoke(args=["portal", "tick", "--at", at.isoformat()])
    assert result.exit_code == 0, result.output
    counts = result.output.split("tick: ")[1].strip()
    return {name: int(n) for name, n in (part.split("=") for part in counts.split(", "))}


def fresh(model, row_id):
    db.session.rollback()
    return db.session.get(model, row_id, populate_existing=True)


def test_the_autopay_step_enqueues_one_job_per_invoice_and_the_job_charges_once(make, cli):
    make.business(name="Tidewater Studio", currency="EUR", autopay_timing="on_due_date")
    client = make.client()
    payment_methods.add_in_sandbox(client.id, None, "card", CARD, "12/34", "123")
    payment_methods.set_autopay(client.id, True, STAFF)
    due = clock.today() + timedelta(days=3)
    invoice_ids = [make.invoice(db.session.get(Client, client.id), due=due).id for _ in range(2)]
    assert waiting() == [], "an on-due-date autopay is not charged at issue"

    at = datetime.combine(due, datetime.min.time(), tzinfo=timezone.utc) + timedelta(hours=12)
    assert invoke_tick(cli, at)["autopay"] == 2
    assert sorted(waiting()) == sorted(f"autopay-{i}" for i in invoice_ids), "one job per invoice, by id"
    job = Job.fetch(f"autopay-{invoice_ids[0]}", connection=redis_connection())
    assert job.func_name == "portal.jobs.autopay.charge"
    assert (job.retries_left, job.retry_intervals) == (len(RETRY_INTERVALS), RETRY_INTERVALS)
    assert db.session.scalar(select(func.count()).select_from(Payment)) == 0, "the tick charged nothing itself"

    assert invoke_tick(cli, at + timedelta(minutes=1))["autopay"] == 2, "still due, still in RQ's hands"
    assert sorted(waiting()) == sorted(f"autopay-{i}" for i in invoice_ids), "a waiting job is not enqueued twice"
    assert run_jobs() == 2
    for invoice_id in invoice_ids:
        [payment] = db.session.scalars(select(Payment).where(Payment.invoice_id == invoice_id)).all()
        assert (payment.status, payment.off_session) == ("succeeded", True)
        assert fresh(Invoice, invoice_id).status == "paid"
    assert invoke_tick(cli, at + timedelta(minutes=2))["autopay"] == 0, "claimed: nothing more to hand over"


def test_the_expiring_card_step_enqueues_a_job_per_card_and_the_notice_goes_once(make, cli):
    make.business(name="Tidewater Studio", card_expiry_notice_days=30)
    client = make.client()
    card = payment_methods.add_in_sandbox(client.id, None, "card", CARD, "12/34", "123")
    card_id = card.id
    at = datetime(2034, 12, 15, 9, tzinfo=timezone.utc)
    before = db.session.scalar(select(func.count()).select_from(Delivery))

    assert invoke_tick(cli, at)["expiring_cards"] == 1
    assert f"card-expiring-{card_id}" in waiting()
    assert fresh(PaymentMethod, card_id).expiry_notified_at is None, "the tick only enqueued"
    run_jobs()
    assert fresh(PaymentMethod, card_id).expiry_notified_at is not None
    assert db.session.scalar(select(func.count()).select_from(Delivery)) == before + 1
    assert invoke_tick(cli, at + timedelta(minutes=1))["expiring_cards"] == 0
    # A retried job (the first one died after its commit) sends nothing more.
    assert payment_methods.notify_expiring_card(card_id, at) is False
    assert db.session.scalar(select(func.count()).select_from(Delivery)) == before + 1


def test_the_payments_step_enqueues_a_reconcile_job_per_open_payment(make, cli):
    make.business(name="Tidewater Studio", currency="EUR")
    invoice = make.invoice(make.client())
    payment = payments.start_payment(invoice.id)
    payments.confirm_in_sandbox(payment, "sepa_debit:DE89370400440532013000")
    payment_id, invoice_id = payment.id, invoice.id
    assert fresh(Payment, payment_id).status == "processing"

    at = clock.now() + timedelta(minutes=11)
    assert invoke_tick(cli, at)["payments"] == 1
    assert waiting() == [f"reconcile-{payment_id}"]
    assert fresh(Payment, payment_id).status == "processing", "the tick asked the gateway nothing"
    run_jobs()
    assert fresh(Payment, payment_id).status == "succeeded"
    assert fresh(Invoice, invoice_id).status == "paid"
    assert payments.reconcile_payment(payment_id) == "nothing to do", "a repeated job changes nothing"
    assert db.session.scalar(select(func.count()).select_from(Event).where(Event.type == "invoice.paid")) == 1


def test_a_committed_delivery_is_enqueued_whoever_commits_and_a_rolled_back_one_never(app, make):
    make.business(name="Tidewater Studio", email="billing@tidewater.example")
    queue_email("ana@acme.example", "templated", {"business": make.business(), "subject": "Hello", "body": "Hi",
                                                  "link": None, "label": None})
    db.session.rollback()
    assert waiting("emails") == [], "rolled back: nothing for a worker to find"

    delivery = queue_email("ana@acme.example", "templated", {"business": make.business(), "subject": "Hello",
                                                             "body": "Hi", "link": None, "label": None})
    db.session.commit()  # a plain commit, not events.commit()
    delivery_id = db.session.scalar(select(func.max(Delivery.id)))
    assert waiting("emails") == [f"delivery-{delivery_id}-attempt-1"]
    assert fresh(Delivery, delivery_id).enqueued_at is not None
    assert db.session.scalar(select(func.count()).select_from(Delivery)) == 1
    assert delivery is not None


def test_a_payment_the_gateway_does_not_know_is_logged_not_retried_in_a_storm(make, cli):
    make.business(name="Tidewater Studio", currency="EUR")
    invoice = make.invoice(make.client())
    payment = payments.start_payment(invoice.id)
    payments.confirm_in_sandbox(payment, "sepa_debit:DE89370400440532013000")
    row = fresh(Payment, payment.id)
    row.gateway_intent_id = "pi_nobody_knows"
    db.session.commit()
    assert payments.reconcile_payment(row.id) == "unreachable", "a permanent refusal ends the job"
    assert fresh(Payment, row.id).status == "processing"


def test_a_savepoint_neither_loses_nor_invents_a_delivery(app, make):
    business = make.business(name="Tidewater Studio", email="billing@tidewater.example")
    context = {"business": business, "subject": "Hello", "body": "Hi", "link": None, "label": None}
    kept = queue_email("ana@acme.example", "templated", context)
    db.session.flush()
    kept_id = kept.id
    savepoint = db.session.begin_nested()
    gone = queue_email("ben@acme.example", "templated", context)
    db.session.flush()
    gone_id = gone.id
    savepoint.rollback()  # takes back the second delivery only
    assert waiting("emails") == []
    savepoint = db.session.begin_nested()
    savepoint.commit()  # a savepoint released is not the commit: nothing is enqueued yet
    assert waiting("emails") == []
    db.session.commit()
    assert waiting("emails") == [f"delivery-{kept_id}-attempt-1"]
    assert db.session.get(Delivery, gone_id) is None
