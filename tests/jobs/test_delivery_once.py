"""Deliveries are at-least-once with a stable Message-ID (issue X1, point 4 and 8).

- the SMTP server accepted the message (250 after DATA) and the connection
  dropped at QUIT: the delivery is sent, once;
- a lost DATA reply forces a retry: both copies carry the same Message-ID, so
  the receiver can tell it is one message;
- a real worker process killed with SIGKILL while sending: the claim goes
  stale within about a minute of the tick's clock and the retry arrives with
  the same Message-ID;
- a real worker started while Redis is down waits, says why, and works once
  Redis is there.
"""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from datetime import timedelta
from pathlib import Path

import pytest

from portal import clock
from tests.support.jobs import STAFF_EMAIL, deliveries, request_staff_reset, the_delivery, tick
from tests.support.faulty_smtp import FaultySmtpServer
from tests.support.servers import RedisServer

ROOT = Path(__file__).resolve().parents[2]
SECRET_KEY = "test-secret-key-" + "x" * 32  # the one tests/conftest.py gives the app


@pytest.fixture(scope="module")
def faulty_smtp():
    server = FaultySmtpServer()
    server.start()
    yield server
    server.stop()


@pytest.fixture
def app_settings(faulty_smtp):
    faulty_smtp.reset()
    return {"MAIL_SERVER": "127.0.0.1", "MAIL_PORT": faulty_smtp.port}


def _wait_for(predicate, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


class WorkerProcess:
    """``python worker.py emails`` in its own process group, with the test app's settings."""

    def __init__(self, app, database_url: str, redis_url: str, log_path: Path):
        self.log_path = log_path
        env = dict(os.environ)
        env.update({
            "PORTAL_ENV": "development",
            "DATABASE_URL": database_url,
            "REDIS_URL": redis_url,
            "SECRET_KEY": app.config["SECRET_KEY"],
            "PORTAL_BASE_URL": app.config["PORTAL_BASE_URL"],
            "PORTAL_INSTANCE_PATH": app.config["PORTAL_INSTANCE_PATH"],
            "MAIL_SERVER": app.config["MAIL_SERVER"],
            "MAIL_PORT": str(app.config["MAIL_PORT"]),
            "MAIL_DEFAULT_SENDER": app.config["MAIL_DEFAULT_SENDER"],
            "PYTHONUNBUFFERED": "1",
        })
        self.log = open(log_path, "wb")
        self.process = subprocess.Popen(
            [sys.executable, str(ROOT / "worker.py"), "emails"],
            cwd=ROOT, env=env, stdout=self.log, stderr=subprocess.STDOUT, start_new_session=True,
        )

    def output(self) -> str:
        return self.log_path.read_text(errors="replace")

    def alive(self) -> bool:
        return self.process.poll() is None

    def descendants(self) -> list[int]:
        """The worker's children (RQ's work horse calls setsid, so it leaves the process group)."""
        children: dict[int, list[int]] = {}
        for stat in Path("/proc").glob("[0-9]*/stat"):
            try:
                fields = stat.read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            children.setdefault(int(fields[1]), []).append(int(stat.parent.name))
        found, todo = [], [self.process.pid]
        while todo:
            for child in children.get(todo.pop(), []):
                found.append(child)
                todo.append(child)
        return found

    def kill(self) -> None:
        """SIGKILL the worker and everything it started, as a dying host would."""
        for pid in [self.process.pid, *self.descendants()]:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        self.process.wait(timeout=30)

    def stop(self) -> None:
        if self.alive():
            os.kill(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.kill()
        self.log.close()


@pytest.fixture
def spawn_worker(app, database_url, tmp_path):
    started: list[WorkerProcess] = []

    def spawn(redis_url: str) -> WorkerProcess:
        worker = WorkerProcess(app, database_url, redis_url, tmp_path / f"worker-{len(started)}.log")
        started.append(worker)
        return worker

    yield spawn
    for worker in started:
        worker.stop()


# 250 after DATA, then the connection drops at QUIT ------------------------------------

def test_accepted_message_is_sent_even_if_the_connection_drops_at_quit(
    app, make, client, cli, run_worker, faulty_smtp
):
    make.staff()
    faulty_smtp.drop_at_quit = True
    request_staff_reset(client)

    assert run_worker() == 1
    assert faulty_smtp.quits_dropped == 1  # the fault really happened
    assert len(faulty_smtp.to(STAFF_EMAIL)) == 1
    delivery = the_delivery()
    assert delivery.status == "sent", delivery.last_error
    assert delivery.attempts == 1
    assert delivery.last_error is None

    # Nothing more goes out, however late the tick runs.
    for later in (timedelta(minutes=2), timedelta(hours=1), timedelta(days=2)):
        assert tick(cli, clock.now() + later)["deliveries"] == 0
        assert run_worker() == 0
    assert len(faulty_smtp.messages) == 1
    assert the_delivery().status == "sent"


# A lost reply to DATA forces a retry: same Message-ID both times -----------------------

def test_a_forced_retry_carries_the_same_message_id(app, make, client, cli, run_worker, faulty_smtp):
    make.staff()
    faulty_smtp.drop_after_data = True
    request_staff_reset(client)

    assert run_worker() == 1
    delivery = the_delivery()
    assert delivery.status == "retrying"
    assert len(faulty_smtp.messages) == 1  # the server has it; the worker could not know

    faulty_smtp.drop_after_data = False
    assert tick(cli, delivery.next_attempt_at + timedelta(seconds=1))["deliveries"] == 1
    assert run_worker() == 1
    assert the_delivery().status == "sent"

    first, second = faulty_smtp.to(STAFF_EMAIL)
    assert first["Message-ID"] == second["Message-ID"]
    message_id = first["Message-ID"]
    assert message_id.startswith(f"<delivery-{delivery.id}.")
    assert message_id.endswith("@portal.example>")  # the domain of MAIL_DEFAULT_SENDER
    assert SECRET_KEY not in message_id and "x" * 16 not in message_id

    # Another delivery gets another Message-ID.
    request_staff_reset(client)
    assert run_worker() == 1
    third = faulty_smtp.messages[-1]
    assert third["Message-ID"] != message_id
    assert len({d.id for d in deliveries()}) == 2


# A live but slow send keeps its claim --------------------------------------------------

def test_a_slow_send_keeps_its_claim_fresh_and_is_not_taken_over(
    app, make, client, cli, run_worker, faulty_smtp, monkeypatch
):
    from portal.queues import EMAILS, queue
    from portal.services import deliveries as service

    monkeypatch.setattr(service, "HEARTBEAT_SECONDS", 0.2, raising=False)
    make.staff()
    request_staff_reset(client)
    queue(EMAILS).empty()
    delivery_id = the_delivery().id
    faulty_smtp.stall_data = True

    outcome = {}

    def send():
        with app.app_context():
            outcome["status"] = service.deliver(delivery_id)

    sender = threading.Thread(target=send)
    sender.start()
    try:
        assert faulty_smtp.stalled_event.wait(30)
        first_claim = the_delivery().claimed_at
        assert the_delivery().status == "sending"
        # The claim is refreshed while the send is under way.
        _wait_for(lambda: the_delivery().claimed_at > first_claim, 10, "the claim heartbeat")
        refreshed = the_delivery().claimed_at
        assert tick(cli, refreshed + timedelta(seconds=30))["deliveries"] == 0
        assert the_delivery().status == "sending"
    finally:
        faulty_smtp.stall_data = False
        sender.join(60)
    assert not sender.is_alive()
    assert outcome["status"] == "retrying"


# A worker killed while sending ---------------------------------------------------------

def test_worker_killed_while_sending_is_retried_within_a_minute_with_the_same_message_id(
    app, make, client, cli, run_worker, faulty_smtp, spawn_worker, redis_server
):
    make.staff()
    faulty_smtp.stall_data = True
    request_staff_reset(client)  # enqueued for the worker process

    worker = spawn_worker(redis_server.url)
    assert faulty_smtp.stalled_event.wait(90), worker.output()
    delivery = the_delivery()
    assert delivery.status == "sending"
    worker.kill()
    killed_at = clock.now()
    assert faulty_smtp.messages == []
    [stalled] = faulty_smtp.stalled

    # The claim is left alone for a moment, then taken back by the tick.
    assert tick(cli, killed_at + timedelta(seconds=20))["deliveries"] == 0
    assert the_delivery().status == "sending"
    assert tick(cli, killed_at + timedelta(seconds=90))["deliveries"] == 1

    faulty_smtp.stall_data = False
    assert run_worker() == 1
    [message] = faulty_smtp.to(STAFF_EMAIL)
    assert message["Message-ID"] == stalled["Message-ID"]
    assert message["Message-ID"].startswith(f"<delivery-{delivery.id}.")
    assert the_delivery().status == "sent"

    assert tick(cli, killed_at + timedelta(days=1))["deliveries"] == 0
    assert run_worker() == 0
    assert len(faulty_smtp.messages) == 1


# A worker started while Redis is down ----------------------------------------------------

class TestWorkerWithoutRedis:
    @pytest.fixture
    def down_redis(self, tmp_path):
        server = RedisServer(tmp_path / "late-redis")
        yield server
        server.stop()

    @pytest.fixture
    def app_settings(self, faulty_smtp, down_redis):
        faulty_smtp.reset()
        return {"REDIS_URL": down_redis.url, "MAIL_SERVER": "127.0.0.1", "MAIL_PORT": faulty_smtp.port}

    def test_worker_waits_for_redis_and_then_sends(
        self, app, make, client, cli, faulty_smtp, spawn_worker, down_redis
    ):
        make.staff()
        request_staff_reset(client)  # Redis is down: the delivery stays pending
        assert the_delivery().enqueued_at is None

        worker = spawn_worker(down_redis.url)
        _wait_for(lambda: "waiting for Redis" in worker.output(), 60, "the worker to say it waits")
        time.sleep(3)
        assert worker.alive(), worker.output()
        assert "waiting for Redis" in worker.output()

        down_redis.start()
        assert tick(cli)["deliveries"] == 1
        _wait_for(lambda: faulty_smtp.to(STAFF_EMAIL), 60, f"the email; worker said:\n{worker.output()}")
        _wait_for(lambda: the_delivery().status == "sent", 30, "the delivery to be marked sent")
        assert worker.alive()
        assert len(faulty_smtp.messages) == 1


def test_the_sender_and_message_id_domain_are_frozen_when_the_email_is_queued(app, make):
    """A retry after the owner changed the business email is still the same message (same id)."""
    from sqlalchemy import select

    from portal.extensions import db
    from portal.models import Business, Delivery
    from portal.services import deliveries
    from portal.services.events import commit, queue_email

    make.business(name="Tidewater Studio", email="billing@tidewater.example")
    app.config["MAIL_DEFAULT_SENDER"] = None
    delivery = queue_email("ana@acme.example", "templated",
                           {"business": db.session.scalar(select(Business)), "subject": "Hi", "body": "Hello",
                            "link": None, "label": None})
    commit()
    first = deliveries.message_id(delivery)
    assert first.endswith("@tidewater.example>")
    business = db.session.scalar(select(Business))
    business.email = "accounts@elsewhere.example"
    db.session.commit()
    again = db.session.get(Delivery, delivery.id)
    assert deliveries.message_id(again) == first
    assert again.payload["sender"] == ["Tidewater Studio", "billing@tidewater.example"]
