"""R1 review fixes (runs): a billing run's bookkeeping never gets stuck. Its batch jobs carry the run
in their id, so a job still waiting from an earlier run doesn't stand in for the new run's (which
would never reach its total and would block the tick's next run for ten minutes); the run counts only
what was handed over; with Redis unreachable nothing is, and the run is interrupted at once."""
from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import pytest
from sqlalchemy import select

from portal import clock
from portal.extensions import db
from portal.models import BillingRun, Invoice
from portal.queues import queue
from portal.services.subscriptions import runs
from tests.support.jobs import run_jobs

MAR_1 = datetime(2030, 3, 1, 10, tzinfo=UTC)


@pytest.fixture
def due(make):
    """Three subscriptions whose first period is due on 1 March."""
    make.business(name="Tidewater Studio", timezone="UTC", currency="EUR")
    desk = make.plan("Hot desk", "120.00")
    ids = []
    for i in range(3):
        with clock.frozen(MAR_1 - timedelta(days=1)):
            ids.append(make.subscription(make.client(f"Client {i}", currency="EUR"), desk,
                                         start=date(2030, 3, 1)).id)
    return ids


def all_runs() -> list[BillingRun]:
    db.session.rollback()
    db.session.expire_all()
    return list(db.session.scalars(select(BillingRun).order_by(BillingRun.id)))


def invoice_count() -> int:
    db.session.expire_all()
    return len(db.session.scalars(select(Invoice.id)).all())


def test_with_redis_unreachable_the_run_is_interrupted_at_once_and_the_next_tick_starts_another(
        due, app, monkeypatch):
    monkeypatch.setitem(app.config, "REDIS_URL", "redis://127.0.0.1:9/0")  # nothing listens there
    with clock.frozen(MAR_1):
        assert runs.enqueue_run(MAR_1, "tick") == 0
    [dead] = all_runs()
    assert (dead.status, dead.total, dead.processed) == ("interrupted", 0, 0)
    assert dead.finished_at is not None

    monkeypatch.undo()  # Redis is back: a tick a minute later (not ten) starts a new run
    later = MAR_1 + timedelta(minutes=1)
    with clock.frozen(later):
        assert runs.enqueue_run(later, "tick") == 3
    assert run_jobs() == 1
    dead, run = all_runs()
    assert dead.status == "interrupted"
    assert (run.status, run.total, run.processed, run.invoices) == ("done", 3, 3, 3)
    assert invoice_count() == 3


def test_a_job_still_waiting_from_an_earlier_run_does_not_stand_in_for_the_next_runs(due):
    with clock.frozen(MAR_1):
        assert runs.enqueue_run(MAR_1, "tick") == 3
    first_jobs = set(queue().job_ids)
    assert len(first_jobs) == 1
    # The workers are busy elsewhere: ten minutes on, the first run is stale and a tick starts another
    # over the same subscriptions and periods, while the first run's job still waits.
    later = MAR_1 + timedelta(minutes=20)
    with clock.frozen(later):
        assert runs.enqueue_run(later, "tick") == 3
    second_jobs = set(queue().job_ids) - first_jobs
    assert len(second_jobs) == 1, "the second run's batch is queued under its own id"
    first, second = all_runs()
    assert first.status == "interrupted" and second.status == "running"
    assert all(job.startswith(f"bill-{first.id}-") for job in first_jobs)
    assert all(job.startswith(f"bill-{second.id}-") for job in second_jobs)

    assert run_jobs() == 2
    first, second = all_runs()
    assert (second.status, second.total, second.processed) == ("done", 3, 3)
    assert first.invoices + second.invoices == 3 and invoice_count() == 3, "each period billed once"
    with clock.frozen(later + timedelta(minutes=1)):
        assert runs.enqueue_run(later + timedelta(minutes=1), "tick") == 0, "nothing due, nothing blocked"
