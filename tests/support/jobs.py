"""Small helpers shared by the job tests: read the delivery log, run the tick."""
from __future__ import annotations

import re
from datetime import datetime
from urllib.parse import urlsplit

from sqlalchemy import select

from tests.support.web import email_text, links, post_form

STAFF_EMAIL = "staff@portal.example"
RESET_PATH = "/staff/password/reset/"


def deliveries() -> list:
    """Every delivery row, read fresh (what the worker and the tick wrote)."""
    from portal.extensions import db
    from portal.models import Delivery

    db.session.rollback()
    db.session.expire_all()
    return list(db.session.scalars(select(Delivery).order_by(Delivery.id)).all())


def the_delivery():
    rows = deliveries()
    assert len(rows) == 1, f"expected one delivery, found {[(d.id, d.status) for d in rows]}"
    return rows[0]


def request_staff_reset(client, email: str = STAFF_EMAIL):
    """Ask for a password reset through the real form; the page must answer normally."""
    response = post_form(client, "/staff/password/forgot", {"email": email})
    assert response.status_code == 200, response.get_data(as_text=True)
    assert "Check your email" in response.get_data(as_text=True)
    return response


def tick(cli, at: datetime | str | None = None) -> dict[str, int]:
    """``flask portal tick [--at]``; returns what each step did, e.g. {"deliveries": 1}."""
    args = ["portal", "tick"]
    if at is not None:
        args += ["--at", at if isinstance(at, str) else at.isoformat()]
    result = cli.invoke(args=args)
    assert result.exit_code == 0, result.output
    match = re.search(r"tick: (.*)", result.output)
    assert match, result.output
    run_jobs()  # the tick decides and enqueues; the jobs do the work
    return {name: int(count) for name, count in (part.split("=") for part in match.group(1).split(", "))}


def reset_path_in(message) -> str:
    """The path of the single reset link in an email."""
    found = [link for link in links(email_text(message)) if RESET_PATH in link]
    assert len(found) == 1, email_text(message)
    return urlsplit(found[0]).path


def run_jobs(queues=("default",)) -> int:
    """Run, in this process, the jobs waiting on ``queues`` (burst): what the tick handed over
    (autopay charges, reconciliation, expiring-card notices). Emails stay queued (``emails``) unless
    asked for. Returns how many jobs ran."""
    from flask import current_app
    from rq import SimpleWorker

    from portal.queues import redis_connection

    ran = []

    class Worker(SimpleWorker):
        def execute_job(self, job, queue):
            ran.append(job.id)
            return super().execute_job(job, queue)

    # In an app context of its own, as a worker process has: the jobs' sessions are not the test's.
    with current_app.app_context():
        Worker(list(queues), connection=redis_connection()).work(burst=True, with_scheduler=False)
    return len(ran)
