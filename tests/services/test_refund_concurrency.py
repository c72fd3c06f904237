"""Refunds never exceed what was paid, even when several arrive at once."""
import threading

import pytest
from sqlalchemy import select

from portal.extensions import db
from portal.models import Invoice, Payment, Refund
from portal.services import payments
from portal.services.errors import ServiceError
from portal.services.events import Actor

STAFF = Actor("staff", None, "staff@portal.example")


@pytest.fixture
def app_settings(app_settings):
    return {**app_settings, "SQLALCHEMY_ENGINE_OPTIONS": {"pool_pre_ping": True, "pool_size": 15}}


def test_ten_concurrent_refunds_of_30_on_a_100_payment_refund_at_most_100(app, make, db_kind):
    if db_kind != "postgresql":
        pytest.skip("row locks under real concurrency are PostgreSQL's; SQLite serialises writers")
    make.business(currency="EUR")
    client = make.client()
    invoice = make.invoice(client)
    payment = payments.start_payment(invoice.id)
    payments.confirm_in_sandbox(payment, "card:4242424242424242")
    payment_id, invoice_id = payment.id, invoice.id
    db.session.remove()

    barrier = threading.Barrier(10)
    outcomes: list[str] = []

    def refund() -> None:
        with app.app_context():
            try:
                barrier.wait(timeout=30)
                payments.refund(payment_id, "30.00", "", STAFF)
                outcomes.append("refunded")
            except ServiceError:
                outcomes.append("refused")
            finally:
                db.session.remove()

    threads = [threading.Thread(target=refund) for _ in range(10)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert sorted(outcomes) == ["refunded"] * 3 + ["refused"] * 7
    refunds = db.session.scalars(select(Refund).where(Refund.payment_id == payment_id)).all()
    assert sum(r.amount for r in refunds) == 9000
    assert db.session.get(Payment, payment_id).refunded_amount == 9000
    assert db.session.get(Invoice, invoice_id).amount_paid == 1000
