"""The tick: ``flask portal tick [--at ISO]`` and the same tick from ``rq cron``."""
from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from portal import clock
from tests.support.jobs import STAFF_EMAIL, deliveries, the_delivery, tick
from tests.support.web import email_text


def _retrying_email_due_at(due: datetime, to: str = STAFF_EMAIL):
    """A delivery that failed once and waits for its next attempt at ``due``."""
    from portal.extensions import db
    from portal.models import Delivery

    delivery = Delivery(
        kind="email", template="test", recipient=to, subject="Your statement",
        payload={"to": [to], "subject": "Your statement", "text": "Hello from the future.", "html": None},
        status="retrying", attempts=1, last_error="SMTPRecipientsRefused: 451 try again later",
        next_attempt_at=due, created_at=clock.now(),
    )
    db.session.add(delivery)
    db.session.commit()
    return delivery.id


def _queued_jobs(name: str) -> list[str]:
    from portal.queues import queue

    return queue(name).get_job_ids()


def test_tick_at_a_future_time_runs_what_is_due_by_then(app, cli, run_worker, smtp_server):
    due = (clock.now() + timedelta(hours=2)).replace(microsecond=0)
    delivery_id = _retrying_email_due_at(due)

    # Now, and any moment before it is due: nothing to do.
    assert tick(cli)["deliveries"] == 0
    assert tick(cli, due - timedelta(minutes=1))["deliveries"] == 0
    assert _queued_jobs("emails") == []

    # As of its time, the tick hands it to the workers.
    assert tick(cli, due)["deliveries"] == 1
    assert _queued_jobs("emails") == [f"delivery-{delivery_id}-attempt-2"]
    assert run_worker() == 1
    [message] = smtp_server.to(STAFF_EMAIL)
    assert message["Subject"] == "Your statement"
    assert "Hello from the future." in email_text(message)
    assert the_delivery().status == "sent"


def test_tick_at_understands_offsets_and_naive_times_as_utc(app, cli):
    due = datetime(2031, 5, 1, 12, 0, tzinfo=timezone.utc)
    _retrying_email_due_at(due)

    # 13:30 in UTC+2 is 11:30 UTC: not yet.
    assert tick(cli, "2031-05-01T13:30:00+02:00")["deliveries"] == 0
    # Naive means UTC: 11:59 is not yet either.
    assert tick(cli, "2031-05-01T11:59:00")["deliveries"] == 0
    # 14:00:01 in UTC+2 is just past due.
    assert tick(cli, "2031-05-01T14:00:01+02:00")["deliveries"] == 1
    assert the_delivery().enqueued_at == datetime(2031, 5, 1, 12, 0, 1, tzinfo=timezone.utc)


def test_tick_catches_up_on_the_whole_backlog_once(app, cli, run_worker, smtp_server):
    start = clock.now()
    for hours in (1, 2, 3):
        _retrying_email_due_at(start + timedelta(hours=hours), to=f"client{hours}@acme.example")

    assert tick(cli, start + timedelta(hours=5))["deliveries"] == 3
    assert tick(cli, start + timedelta(hours=5))["deliveries"] == 0
    assert run_worker() == 3
    assert sorted(m["X-Envelope-To"] for m in smtp_server.messages) == [
        "client1@acme.example", "client2@acme.example", "client3@acme.example"]
    assert {d.status for d in deliveries()} == {"sent"}


@pytest.mark.parametrize("bad", ["tomorrow", "2031-13-01T00:00", "12:00 next friday"])
def test_bad_at_is_refused_with_a_clear_message(app, cli, bad):
    due = clock.now() - timedelta(minutes=1)
    _retrying_email_due_at(due)

    result = cli.invoke(args=["portal", "tick", "--at", bad])
    assert result.exit_code != 0
    assert "--at" in result.output
    assert "ISO 8601" in result.output
    assert repr(bad) in result.output
    assert "Traceback" not in result.output
    # Nothing ran.
    assert the_delivery().enqueued_at is None
    assert _queued_jobs("emails") == []


def test_tick_is_registered_with_rq_cron_every_minute_on_the_periodic_queue(app, redis_server):
    from rq.cron import CronScheduler

    from portal.config import PROJECT_ROOT
    from portal.queues import PERIODIC, redis_connection

    scheduler = CronScheduler(connection=redis_connection())
    scheduler.load_config_from_file(str(PROJECT_ROOT / "portal" / "jobs" / "cron.py"))
    jobs = scheduler.get_jobs()

    ticks = [job for job in jobs if job.func_name == "portal.jobs.scheduler.tick"]
    assert len(ticks) == 1, [job.func_name for job in jobs]
    [cron_job] = ticks
    assert cron_job.interval == 60
    assert cron_job.cron is None
    assert cron_job.queue_name == PERIODIC == "periodic"
    assert PERIODIC in app.config["RQ_QUEUES"]

    # What cron enqueues is the tick, and a worker on the portal's queues runs it.
    job = cron_job.enqueue(redis_connection())
    assert job.origin == PERIODIC
    assert job.func_name == "portal.jobs.scheduler.tick"


def test_tick_job_runs_through_a_real_worker_from_the_periodic_queue(app, run_worker, smtp_server):
    from portal.queues import PERIODIC, queue

    due = clock.now() - timedelta(minutes=1)
    _retrying_email_due_at(due)

    job = queue(PERIODIC).enqueue("portal.jobs.scheduler.tick")
    # The tick job runs, finds the due email and enqueues it; the same burst run delivers it.
    assert run_worker() == 2
    job.refresh()
    assert job.is_finished
    assert job.return_value()["deliveries"] == 1
    assert len(smtp_server.to(STAFF_EMAIL)) == 1
    assert the_delivery().status == "sent"

    again = queue(PERIODIC).enqueue("portal.jobs.scheduler.tick")
    assert run_worker() == 1
    again.refresh()
    assert again.return_value()["deliveries"] == 0
    assert len(smtp_server.messages) == 1
