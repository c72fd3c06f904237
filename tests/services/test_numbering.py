"""Invoice numbers are gapless and unique, also when staff finalize at the same moment."""
import threading
from decimal import Decimal

import pytest
from sqlalchemy import select

from portal.extensions import db
from portal.models import Invoice
from portal.services import invoices
from portal.services.events import Actor

STAFF = Actor("staff", None, "staff@portal.example")


@pytest.fixture
def app_settings(app_settings):
    # Twenty sessions at once need twenty connections.
    return {**app_settings, "SQLALCHEMY_ENGINE_OPTIONS": {"pool_pre_ping": True, "pool_size": 25}}


def test_twenty_concurrent_finalizations_get_twenty_consecutive_numbers(app, make, db_kind):
    if db_kind != "postgresql":
        pytest.skip("row locks under real concurrency are PostgreSQL's; SQLite serialises writers")
    make.business(invoice_number_format="INV-{seq:05d}", currency="EUR")
    client = make.client()
    ids = [make.invoice(client, status="draft").id for _ in range(20)]
    db.session.remove()

    barrier = threading.Barrier(len(ids))
    errors: list[BaseException] = []

    def finalize(invoice_id: int) -> None:
        with app.app_context():
            try:
                invoice = db.session.get(Invoice, invoice_id)
                barrier.wait(timeout=30)
                invoices.finalize(invoice, STAFF)
            except BaseException as exc:  # noqa: BLE001 - reported below
                errors.append(exc)
            finally:
                db.session.remove()

    threads = [threading.Thread(target=finalize, args=(i,)) for i in ids]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert not errors, errors
    numbers = sorted(db.session.scalars(select(Invoice.sequence_number).where(Invoice.id.in_(ids))))
    assert numbers == list(range(1, 21))
    labels = set(db.session.scalars(select(Invoice.number).where(Invoice.id.in_(ids))))
    assert labels == {f"INV-{n:05d}" for n in range(1, 21)}


def test_numbers_follow_the_next_number_in_settings(app, make):
    make.business(invoice_number_format="{year}/{seq}", invoice_next_number=500, currency="EUR")
    client = make.client()
    first = invoices.finalize(make.invoice(client, status="draft"), STAFF)
    second = invoices.finalize(make.invoice(client, status="draft"), STAFF)
    assert (first.sequence_number, second.sequence_number) == (500, 501)
    assert first.number.endswith("/500") and second.number.endswith("/501")


def test_deleting_a_draft_leaves_no_gap(app, make):
    make.business(invoice_number_format="N{seq}", currency="EUR")
    client = make.client()
    doomed = make.invoice(client, status="draft")
    invoices.delete_draft(doomed, STAFF)
    kept = invoices.finalize(make.invoice(client, status="draft"), STAFF)
    assert kept.number == "N1"
