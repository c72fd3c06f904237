"""Two billing runs at once, in two processes (PostgreSQL): 500 subscriptions due → exactly 500 invoices,
numbered 1 … 500 with no hole and no duplicate, and 500 billed periods.

Each process does what ``flask portal bill`` does (tests/support/billing_procs.py): start a run as of
the moment and bill its batches itself; both read the same due subscriptions (they wait for each other
after starting their runs) and bill from opposite ends until they meet, so batches are fought over: the bulk path's ``SKIP LOCKED`` leaves a
row the other holds to the one-by-one path, which waits on the lock and finds the period billed.
"""
from __future__ import annotations

import multiprocessing
from datetime import UTC, date, datetime

import pytest
from sqlalchemy import func, insert, select

from portal import clock
from portal.extensions import db
from portal.models import (
    BillingRun,
    Invoice,
    Subscription,
    SubscriptionItem,
    SubscriptionPeriod,
)
from tests.support import billing_procs

SUBSCRIPTIONS = 500
CLIENTS = 25
DAY = date(2030, 3, 1)


def many_subscriptions(make, setup_fee: str) -> list[int]:
    """500 valid monthly subscriptions due on DAY, over 25 clients: one made by the service, the rest
    copies of its rows (subscription and item) inserted at once."""
    clients = [make.client(f"Client {i:02d}", contacts=[{"name": f"Payer {i}", "email": f"payer{i}@example.com",
                                                         "receives_invoices": True}], currency="EUR")
               for i in range(CLIENTS)]
    plan = make.plan("Hot desk", "120.00", setup_fee=setup_fee)
    with clock.frozen(datetime(2030, 3, 1, 9, tzinfo=UTC)):
        model = make.subscription(clients[0], plan, start=DAY)
    assert model.next_invoice_on == DAY
    columns = [c for c in Subscription.__table__.columns if c.name != "id"]
    row = {c.name: getattr(model, c.key) for c in columns}
    item = model.items[0]
    item_row = {c.name: getattr(item, c.key) for c in SubscriptionItem.__table__.columns
                if c.name not in ("id", "subscription_id")}
    rows = [{**row, "client_id": clients[i % CLIENTS].id} for i in range(1, SUBSCRIPTIONS)]
    ids = list(db.session.execute(insert(Subscription.__table__).returning(
        Subscription.__table__.c.id, sort_by_parameter_order=True), rows).scalars())
    db.session.execute(insert(SubscriptionItem.__table__), [{**item_row, "subscription_id": i} for i in ids])
    db.session.commit()
    return [model.id, *ids]


# Plain subscriptions go the bulk path; a first period with a setup fee goes one by one.
@pytest.mark.parametrize("setup_fee", ["", "25.00"], ids=["bulk", "one-by-one"])
def test_two_runs_at_once_in_two_processes_bill_each_period_once_with_gapless_numbers(
        make, db_kind, database_url, redis_server, instance_dir, setup_fee):
    if db_kind != "postgresql":
        pytest.skip("two writers at once are PostgreSQL's (row locks, SKIP LOCKED); SQLite serialises writers")
    make.business(timezone="Europe/Lisbon", currency="EUR")
    ids = many_subscriptions(make, setup_fee)
    db.session.remove()

    ctx = multiprocessing.get_context("spawn")
    barrier, results = ctx.Barrier(2), ctx.Queue()
    moment = datetime(2030, 3, 1, 10, tzinfo=UTC).isoformat()
    workers = [ctx.Process(target=billing_procs.bill_run,
                           args=(database_url, redis_server.url, str(instance_dir), moment),
                           kwargs={"barrier": barrier, "results": results, "reverse": reverse})
               for reverse in (False, True)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(timeout=120)
    assert [w.exitcode for w in workers] == [0, 0]
    reports = [results.get(timeout=5) for _ in workers]

    assert all(r["due"] == SUBSCRIPTIONS and r["processed"] == SUBSCRIPTIONS for r in reports), reports
    assert sum(r["invoices"] for r in reports) == SUBSCRIPTIONS, reports
    assert all(r["errors"] == 0 for r in reports), reports
    assert db.session.scalar(select(func.count()).select_from(Invoice)) == SUBSCRIPTIONS
    totals = db.session.scalars(select(Invoice.total)).all()
    assert set(totals) == {12000 + (2500 if setup_fee else 0)}
    numbers = sorted(db.session.scalars(select(Invoice.sequence_number)).all())
    assert numbers == list(range(1, SUBSCRIPTIONS + 1)), "numbers with a hole or a duplicate"
    assert len(set(db.session.scalars(select(Invoice.number)).all())) == SUBSCRIPTIONS
    billed = db.session.execute(select(SubscriptionPeriod.subscription_id, SubscriptionPeriod.period_start,
                                       SubscriptionPeriod.invoice_id)).all()
    assert sorted(s for s, _, _ in billed) == sorted(ids)
    assert {p for _, p, _ in billed} == {DAY}
    assert len({i for _, _, i in billed}) == SUBSCRIPTIONS
    per_sub = db.session.execute(select(Invoice.subscription_id, func.count()).group_by(Invoice.subscription_id)).all()
    assert sorted(s for s, _ in per_sub) == sorted(ids) and {n for _, n in per_sub} == {1}
    assert db.session.scalar(select(func.count()).select_from(Subscription).where(
        Subscription.next_period != 1)) == 0
    runs = db.session.scalars(select(BillingRun)).all()
    assert len(runs) == 2 and {r.status for r in runs} == {"done"}
    assert sum(r.invoices for r in runs) == SUBSCRIPTIONS
