"""Durable deliveries: an email is a row first, and the row gets it out exactly once.

Through the user's door: the reset form queues the email, a real RQ worker in
burst mode sends it to a real SMTP server, ``flask portal tick`` sweeps what is
due, and the staff Emails page shows the log.
"""
from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import update

from portal import clock
from tests.support.jobs import (
    RESET_PATH,
    STAFF_EMAIL,
    deliveries,
    request_staff_reset,
    reset_path_in,
    the_delivery,
    tick,
)
from tests.support.servers import RedisServer
from tests.support.web import links


def _opens_set_password_form(app, path: str) -> None:
    """Following the link in a fresh browser session shows the set-password form."""
    response = app.test_client().get(path)
    html = response.get_data(as_text=True)
    assert response.status_code == 200, html
    assert "Choose a new password" in html
    assert 'name="password"' in html


# (a) Redis down when the email is queued --------------------------------------------

@pytest.fixture
def private_redis(tmp_path):
    server = RedisServer(tmp_path / "redis")
    server.start()
    yield server
    server.stop()


class TestRedisOutage:
    @pytest.fixture
    def app_settings(self, smtp_server, private_redis):
        return {"REDIS_URL": private_redis.url, "MAIL_SERVER": "127.0.0.1", "MAIL_PORT": smtp_server.port}

    def test_email_queued_while_redis_is_down_goes_out_after_it_returns(
        self, app, make, client, cli, run_worker, smtp_server, private_redis
    ):
        make.staff()
        private_redis.stop()
        request_staff_reset(client)

        delivery = the_delivery()
        assert delivery.status == "pending"
        assert delivery.recipient == STAFF_EMAIL
        assert delivery.enqueued_at is None
        assert smtp_server.messages == []

        private_redis.start()
        # Redis came back empty: only the row knows about the email.
        assert private_redis.client().dbsize() == 0
        assert run_worker() == 0
        assert smtp_server.messages == []

        assert tick(cli)["deliveries"] == 1
        assert run_worker() == 1

        [message] = smtp_server.messages
        assert STAFF_EMAIL in message["X-Envelope-To"]
        _opens_set_password_form(app, reset_path_in(message))
        assert the_delivery().status == "sent"

        # Nothing more goes out on later ticks.
        assert tick(cli)["deliveries"] == 0
        assert run_worker() == 0
        assert len(smtp_server.messages) == 1


# (b) SMTP refusing, then accepting --------------------------------------------------

def test_refused_email_is_retried_with_backoff_and_arrives_exactly_once(
    app, make, client, cli, run_worker, smtp_server
):
    from portal.services.deliveries import backoff

    make.staff()
    smtp_server.refuse = True
    request_staff_reset(client)

    before = clock.now()
    assert run_worker() == 1
    after = clock.now()
    assert smtp_server.messages == []

    delivery = the_delivery()
    assert delivery.status == "retrying"
    assert delivery.attempts == 1
    assert "451" in delivery.last_error
    assert before + backoff(1) <= delivery.next_attempt_at <= after + backoff(1)
    assert delivery.next_attempt_at > clock.now()
    due = delivery.next_attempt_at

    # Not due yet: a tick now hands nothing to the workers.
    assert tick(cli)["deliveries"] == 0
    assert run_worker() == 0

    smtp_server.refuse = False
    assert tick(cli, due + timedelta(seconds=1))["deliveries"] == 1
    assert run_worker() == 1
    [message] = smtp_server.to(STAFF_EMAIL)
    _opens_set_password_form(app, reset_path_in(message))

    delivery = the_delivery()
    assert delivery.status == "sent"
    assert delivery.attempts == 2
    assert delivery.last_error is None

    # Later ticks, even much later, send nothing more.
    for later in (due + timedelta(minutes=10), due + timedelta(days=3), due + timedelta(days=400)):
        assert tick(cli, later)["deliveries"] == 0
        assert run_worker() == 0
    assert len(smtp_server.messages) == 1
    assert the_delivery().status == "sent"


# (c) the same job twice ------------------------------------------------------------

def test_same_delivery_job_run_twice_sends_once(app, make, client, run_worker, smtp_server):
    from portal.queues import EMAILS, queue

    make.staff()
    request_staff_reset(client)  # enqueues the delivery job once
    delivery_id = the_delivery().id

    q = queue(EMAILS)
    q.enqueue("portal.jobs.deliveries.deliver", delivery_id)
    q.enqueue("portal.jobs.deliveries.deliver", delivery_id)
    assert run_worker() == 3
    assert len(smtp_server.to(STAFF_EMAIL)) == 1

    # And once more after it was sent.
    job = q.enqueue("portal.jobs.deliveries.deliver", delivery_id)
    assert run_worker() == 1
    job.refresh()
    assert job.return_value() == "sent"
    assert len(smtp_server.messages) == 1
    assert the_delivery().attempts == 1


# (d) no mail server: the Emails page is the outbox ------------------------------------

class TestNoMailServer:
    @pytest.fixture
    def app_settings(self):
        return {"MAIL_SERVER": None}

    def test_email_is_kept_in_the_log_and_readable_with_a_working_link(
        self, app, make, client, auth, run_worker, smtp_server
    ):
        make.staff()
        make.owner()
        request_staff_reset(client)
        assert run_worker() == 1
        assert smtp_server.messages == []

        delivery = the_delivery()
        assert delivery.status == "logged"
        subject = delivery.subject
        assert "password" in subject.lower()

        # The owner reads it (secret links are shown to the owner only: tests/web/test_secret_links.py).
        assert auth.login_staff("owner@portal.example").status_code == 302
        listing = client.get("/staff/emails")
        html = listing.get_data(as_text=True)
        assert listing.status_code == 200
        assert "No mail server is configured" in html
        assert subject in html
        assert STAFF_EMAIL in html
        assert "Kept in log" in html
        assert f"/staff/emails/{delivery.id}" in html

        detail = client.get(f"/staff/emails/{delivery.id}")
        html = detail.get_data(as_text=True)
        assert detail.status_code == 200
        assert subject in html
        assert STAFF_EMAIL in html
        assert f'src="/staff/emails/{delivery.id}/body"' in html
        assert "<iframe" in html

        body = client.get(f"/staff/emails/{delivery.id}/body")
        assert body.status_code == 200
        assert body.mimetype == "text/html"
        reset_links = {link for link in links(body.get_data(as_text=True)) if RESET_PATH in link}
        assert len(reset_links) == 1
        [link] = reset_links
        assert link.startswith(app.config["PORTAL_BASE_URL"])
        _opens_set_password_form(app, link[len(app.config["PORTAL_BASE_URL"]):])


# (e) giving up after max_attempts ---------------------------------------------------

def test_delivery_fails_after_max_attempts_and_shows_under_failed(
    app, make, client, auth, cli, run_worker, smtp_server
):
    make.staff()
    smtp_server.refuse = True
    request_staff_reset(client)
    assert run_worker() == 1

    delivery = the_delivery()
    max_attempts = delivery.max_attempts
    for attempt in range(2, max_attempts + 1):
        assert delivery.status == "retrying"
        assert tick(cli, delivery.next_attempt_at + timedelta(seconds=1))["deliveries"] == 1
        assert run_worker() == 1
        delivery = the_delivery()
        assert delivery.attempts == attempt

    assert delivery.status == "failed"
    assert "451" in delivery.last_error
    assert smtp_server.messages == []
    # A failed delivery is done: no tick picks it up again.
    assert tick(cli, clock.now() + timedelta(days=30))["deliveries"] == 0
    assert run_worker() == 0

    assert auth.login_staff().status_code == 302
    failed = client.get("/staff/emails?status=failed")
    html = failed.get_data(as_text=True)
    assert failed.status_code == 200
    assert "<html" in html
    assert delivery.subject in html
    assert "Failed" in html
    assert client.get("/staff/emails?status=sent").get_data(as_text=True).count(delivery.subject) == 0

    partial = client.get("/staff/emails?status=failed", headers={"HX-Request": "true"})
    html = partial.get_data(as_text=True)
    assert partial.status_code == 200
    assert "<html" not in html
    assert 'id="email-rows"' in html
    assert delivery.subject in html
    assert "HX-Request" in partial.headers.get("Vary", "")
    assert "HX-Request" in failed.headers.get("Vary", "")

    empty = client.get("/staff/emails?status=sent", headers={"HX-Request": "true"})
    assert "No emails with this status" in empty.get_data(as_text=True)


# (f) a worker that died mid-send ----------------------------------------------------

def test_stale_claim_from_a_dead_worker_is_recovered_and_sent_once(
    app, make, client, cli, run_worker, smtp_server, redis_server
):
    from portal.extensions import db
    from portal.models import Delivery
    from portal.queues import EMAILS, queue
    from portal.services.deliveries import STALE_CLAIM

    make.staff()
    request_staff_reset(client)
    delivery_id = the_delivery().id

    # The worker took the job off the queue, claimed the row, and died.
    queue(EMAILS).empty()
    claimed_at = clock.now()
    db.session.execute(update(Delivery).where(Delivery.id == delivery_id)
                       .values(status="sending", claimed_at=claimed_at))
    db.session.commit()

    # While the claim is fresh, the sweep leaves it to its worker.
    assert tick(cli)["deliveries"] == 0
    assert tick(cli, claimed_at + STALE_CLAIM - timedelta(seconds=30))["deliveries"] == 0
    assert the_delivery().status == "sending"

    assert tick(cli, claimed_at + STALE_CLAIM + timedelta(seconds=1))["deliveries"] == 1
    assert run_worker() == 1
    [message] = smtp_server.to(STAFF_EMAIL)
    _opens_set_password_form(app, reset_path_in(message))
    assert the_delivery().status == "sent"

    assert tick(cli, claimed_at + timedelta(days=1))["deliveries"] == 0
    assert run_worker() == 0
    assert len(smtp_server.messages) == 1
    assert [d.status for d in deliveries()] == ["sent"]
