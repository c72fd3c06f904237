"""U1 point 7: autopay "on issue" is charged by a job queued when the invoice is issued, not at the
next tick; the job runs the tick's claim, so a tick right after, or a second job, charges nothing more."""
from __future__ import annotations


import pytest
from rq import Queue
from sqlalchemy import select

from portal import clock
from portal.extensions import db
from portal.models import Client, Invoice, Payment
from portal.queues import enqueue_job, redis_connection
from portal.services import payment_methods, payments
from portal.services.events import Actor
from tests.support import make
from tests.support.jobs import tick

STAFF = Actor("staff", None, "staff@portal.example")


@pytest.fixture
def acme(make):
    make.business(name="Tidewater Studio", currency="EUR", autopay_timing="on_issue")
    make.owner()
    client = make.client()
    payment_methods.add_in_sandbox(client.id, None, "card", "4242424242424242", "12/34", "123")
    payment_methods.set_autopay(client.id, True, STAFF)
    return db.session.get(Client, client.id)


def issue(client: Client, timing: str | None = None) -> int:
    client = db.session.get(Client, client.id)
    client.autopay_timing = timing
    db.session.commit()
    return make.invoice(client, due_in_days=14).id


def charges(invoice_id: int) -> list[Payment]:
    db.session.rollback()
    db.session.expire_all()
    return db.session.scalars(select(Payment).where(Payment.invoice_id == invoice_id)).all()


def queued_ids() -> list[str]:
    return Queue("default", connection=redis_connection()).job_ids


def test_issuing_queues_the_charge_and_the_worker_charges_it_once(acme, run_worker, cli):
    invoice_id = issue(acme)
    assert f"autopay-{invoice_id}" in queued_ids(), "finalize queues the charge"
    assert charges(invoice_id) == []

    assert run_worker() >= 1
    [payment] = charges(invoice_id)
    assert (payment.status, payment.amount, payment.off_session) == ("succeeded", 10000, True)
    assert db.session.get(Invoice, invoice_id).status == "paid"

    assert tick(cli, clock.now())["autopay"] == 0, "the tick right after has nothing to charge"
    assert len(charges(invoice_id)) == 1


def test_two_enqueues_charge_once(acme, run_worker):
    invoice_id = issue(acme)
    enqueue_job("portal.jobs.autopay.charge", invoice_id, job_id=f"autopay-{invoice_id}")
    enqueue_job("portal.jobs.autopay.charge", invoice_id, job_id=f"autopay-{invoice_id}")
    run_worker()
    enqueue_job("portal.jobs.autopay.charge", invoice_id, job_id=f"autopay-{invoice_id}")
    run_worker()
    assert [p.status for p in charges(invoice_id)] == ["succeeded"]


def test_a_later_autopay_day_queues_nothing(acme, run_worker):
    invoice_id = issue(acme, timing="on_due_date")
    assert f"autopay-{invoice_id}" not in queued_ids()
    run_worker()
    assert charges(invoice_id) == []
    row = db.session.get(Invoice, invoice_id)
    assert row.autopay_on == row.due_date
